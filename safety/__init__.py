"""sdguard: safety and provenance for local Stable Diffusion.

The front door: a policy, the verdict it produces, and one verb per stage.
Stage modules import their heavy dependencies (numpy, torch, onnxruntime) only when used, so
`import sdguard` and the lexical prompt guard run without them.
"""

from .audit import AuditLog
from .censor import censor_image
from .errors import Blocked, GuardUnavailable, PolicyError, SdguardError
from .image_guard import check_image, check_images
from .model_guard import check_model_file
from .monitor import LoopMonitor
from .policy import Policy, load_policy
from .prompt_guard import check_prompt, check_prompts
from .verdict import Action, Finding, Verdict

__version__ = "0.1.0"

__all__ = [
    "Action", "AuditLog", "Blocked", "Finding", "GuardUnavailable", "LoopMonitor", "Policy",
    "PolicyError", "SdguardError", "Verdict", "censor_image", "check_image", "check_images",
    "check_model_file", "check_prompt", "check_prompts", "load_policy",
]
