"""The CompVis Stable Diffusion safety checker (CLIP ViT-L/14 image tower, a projection, 17 concept
and 3 "special care" embeddings with one threshold each), scored as diffusers'
``StableDiffusionSafetyChecker`` does, but kept continuous instead of a yes/no.

diffusers flags an image when ``cos(image, concept) - threshold + adjustment > 0`` for any concept,
where ``adjustment`` is 0.01 once any special-care concept fires. We report that largest margin as
``sexual = 0.5 + margin / (2 * MARGIN_SPAN)`` clipped to 0..1, so a policy threshold of 0.5
reproduces diffusers' decision exactly, and higher thresholds demand a clearer match. The largest
special-care margin is reported as the tag ``special_care`` only: what those three embeddings
stand for is undocumented, so sdguard does not map them to a category.

User-provided weights (the manifest's ``compvis_safety_checker`` + ``compvis_safety_checker_config``:
the Hugging Face folder's ``model.safetensors`` or ``pytorch_model.bin`` and ``config.json``).
transformers and torch are imported on load only; diffusers is not needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import weights
from ..errors import GuardUnavailable
from ..image_types import Detection

NAME = "compvis"
WEIGHTS = "compvis_safety_checker"
CONFIG = "compvis_safety_checker_config"
# diffusers lowers every concept threshold by this once a special-care concept fires.
SPECIAL_CARE_ADJUSTMENT = 0.01
# A cosine margin of ±MARGIN_SPAN maps to a score of 1 / 0; 0.5 is diffusers' decision boundary.
MARGIN_SPAN = 0.1
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Prefix of the image tower in the checkpoint (diffusers' `self.vision_model = CLIPVisionModel(...)`).
TOWER_PREFIX = "vision_model."
_EMBEDDINGS = ("concept_embeds", "concept_embeds_weights", "special_care_embeds",
               "special_care_embeds_weights", "visual_projection.weight")


class CompVisBackend:
    """The CompVis safety checker on whole images (no tiles: CLIP judges the whole picture)."""

    name = NAME
    tileable = False
    needs_faces = False

    def __init__(self, weights_path: str | Path, config_path: str | Path):
        """Load the checker.

        Args:
            weights_path (`str | Path`): ``model.safetensors`` or ``pytorch_model.bin``.
            config_path (`str | Path`): its ``config.json`` (a ``CLIPConfig``).

        Raises:
            GuardUnavailable: torch/transformers missing, or the files do not hold a safety checker.
        """
        try:
            import torch
            from transformers import CLIPVisionConfig, CLIPVisionModel
        except ImportError as e:
            raise GuardUnavailable(f"the compvis backend needs torch and transformers ({e}); "
                                   f"pip install transformers") from None
        self._torch = torch
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        vision_config = CLIPVisionConfig(**config.get("vision_config", {}))
        state = _read_state_dict(Path(weights_path))
        missing = [k for k in _EMBEDDINGS if k not in state]
        if missing:
            raise GuardUnavailable(f"{weights_path} is not a CompVis safety checker (no {', '.join(missing)})")
        self.tower = CLIPVisionModel(vision_config).eval()
        _load_tower(self.tower, state, weights_path)
        self.projection = state["visual_projection.weight"].float()
        self.concepts = _unit_rows(state["concept_embeds"].float())
        self.thresholds = state["concept_embeds_weights"].float()
        self.special = _unit_rows(state["special_care_embeds"].float())
        self.special_thresholds = state["special_care_embeds_weights"].float()
        if self.concepts.shape[1] != self.projection.shape[0]:
            raise GuardUnavailable(f"{weights_path}: concept embeddings have {self.concepts.shape[1]} "
                                   f"dimensions, the projection {self.projection.shape[0]}")
        self.image_size = int(vision_config.image_size)

    def detect(self, images: Sequence[Any]) -> list[Detection]:
        """One `Detection` per RGB uint8 image: ``scores={"sexual": ...}``, tags ``concept`` and
        ``special_care`` (the raw largest margins)."""
        if not images:
            return []
        with self._torch.no_grad():
            return [_detection(m) for m in zip(*self.margins(self.embed(images)))]

    def embed(self, images: Sequence[Any]) -> Any:
        """Unit-length projected CLIP embeddings, one row per RGB uint8 image."""
        pixels = self._torch.from_numpy(_preprocess_batch(images, self.image_size))
        with self._torch.no_grad():
            return _unit_rows(self.tower(pixel_values=pixels).pooler_output @ self.projection.T)

    def margins(self, embeds: Any) -> tuple[list[float], list[float]]:
        """diffusers' rule on unit image embeddings: (largest concept margin, largest special-care
        margin) per image; a concept margin > 0 is diffusers' "NSFW"."""
        special = embeds @ self.special.T - self.special_thresholds
        adjustment = (special > 0).any(dim=1, keepdim=True).float() * SPECIAL_CARE_ADJUSTMENT
        concept = embeds @ self.concepts.T - self.thresholds + adjustment
        return concept.max(dim=1).values.tolist(), special.max(dim=1).values.tolist()


def _detection(margins: tuple[float, float]) -> Detection:
    concept, special = margins
    score = min(1.0, max(0.0, 0.5 + concept / (2 * MARGIN_SPAN)))
    return Detection(NAME, {"sexual": score}, tags={"concept": concept, "special_care": special})


def _unit_rows(x: Any) -> Any:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _read_state_dict(path: Path) -> Mapping[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    # weights_only refuses pickled code: a .bin can hold nothing but tensors here.
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _load_tower(tower: Any, state: Mapping[str, Any], source: str | Path) -> None:
    """Load the image tower whichever way this transformers version names its keys (4.x nests
    ``vision_model.`` once more inside `CLIPVisionModel` than 5.x does)."""
    own = set(tower.state_dict())
    picked = {}
    for key, value in state.items():
        if not key.startswith(TOWER_PREFIX):
            continue
        key = key[len(TOWER_PREFIX):]
        if key not in own and key.startswith(TOWER_PREFIX):
            key = key[len(TOWER_PREFIX):]
        if key in own:
            picked[key] = value
    absent = sorted(own - set(picked) - {k for k in own if k.endswith("position_ids")})
    if absent:
        raise GuardUnavailable(f"{source}: the CLIP image tower lacks {len(absent)} weights "
                               f"(first: {absent[0]}); is this the CompVis safety checker?")
    tower.load_state_dict(picked, strict=False)


def _preprocess_batch(images: Sequence[Any], size: int) -> Any:
    """CLIP's preprocessing: shorter side to `size` (bicubic), centre crop, scale, normalise; NCHW."""
    import numpy as np
    from PIL import Image

    out = []
    for image in images:
        picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
        scale = size / min(picture.size)
        width, height = max(size, round(picture.width * scale)), max(size, round(picture.height * scale))
        picture = picture.resize((width, height), Image.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        picture = picture.crop((left, top, left + size, top + size))
        pixels = np.asarray(picture, dtype=np.float32) / 255.0
        out.append(((pixels - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def load() -> CompVisBackend:
    """The registry's loader: weights and config from the weights manager (never downloaded)."""
    return CompVisBackend(weights.require(WEIGHTS), weights.require(CONFIG))
