"""The semantic prompt classifier: MiniLM sentence embeddings → a small trained head → findings.

Keyword lists miss most prompts that produce nudity (they name artists, styles and situations, or
are optimised token soup). This stage embeds each prompt with all-MiniLM-L6-v2 (`text_encoder`)
and scores it with a 1-hidden-layer MLP trained by `training/train_prompt_head.py`, one sigmoid per
category. A gate goes first: the same kind of head on the encoder's bag of input word embeddings
(`MiniLMEncoder.bag_of_words`, ~1 % of the encoder's cost) clears plainly harmless prompts, and
only the rest are encoded. The head, the gate, its categories and its calibrated thresholds live in
`weights/prompt_head.safetensors` (card: `prompt_head.md`); a policy's
``thresholds.semantic`` overrides the stored threshold. Both load once per process, on first use.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._paths import bundled_weights_dir
from .errors import GuardUnavailable
from .text_encoder import load_encoder
from .verdict import Finding

if TYPE_CHECKING:
    import numpy as np

    from .policy import Policy

logger = logging.getLogger("sdguard.prompt")

SOURCE = "semantic"
HEAD_FILE = "prompt_head.safetensors"
# Tensor names of the head: embedding → hidden (ReLU) → one logit per category.
HEAD_TENSORS = ("hidden.weight", "hidden.bias", "out.weight", "out.bias")
# The gate's tensors: the same shapes under this prefix.
GATE_PREFIX = "gate."
REQUIRED_METADATA = ("name", "version", "categories", "thresholds", "gate_thresholds")


@dataclass(frozen=True)
class PromptHead:
    """The trained head. Build it with `load_head()`.

    Args:
        name (`str`), version (`str`): identify the head in findings (``model``) and the audit trail.
        categories (`tuple[str, ...]`): one output per category, in order.
        thresholds (`Mapping[str, float]`): calibrated thresholds; the policy may override them.
        params (`Mapping[str, np.ndarray]`): `HEAD_TENSORS`.
        gate (`Mapping[str, np.ndarray]`): `HEAD_TENSORS` of the gate (see `semantic_scores`).
        gate_thresholds (`Mapping[str, float]`): a prompt whose gate scores are all below these
            is cleared without the encoder; calibrated to pass a set share (10 %) of ordinary
            captions to the encoder (the card gives the recall this costs).
    """

    name: str
    version: str
    categories: tuple[str, ...]
    thresholds: Mapping[str, float]
    params: Mapping[str, np.ndarray]
    gate: Mapping[str, np.ndarray]
    gate_thresholds: Mapping[str, float]

    @property
    def model(self) -> str:
        return f"{self.name}@{self.version}"

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 384) embeddings → (n, len(categories)) scores in 0..1."""
        return head_scores(self.params, vectors)


def head_scores(params: Mapping[str, np.ndarray], vectors: np.ndarray) -> np.ndarray:
    """The head's forward pass (shared with the training script, so both score alike).

    Args:
        params (`Mapping[str, np.ndarray]`): `HEAD_TENSORS`; weights are (in, out).
        vectors (`np.ndarray`): (n, 384) L2-normalised embeddings.

    Returns:
        `np.ndarray` float32 (n, categories): sigmoid scores.
    """
    import numpy as np

    hidden = np.maximum(vectors @ params["hidden.weight"] + params["hidden.bias"], 0.0)
    logits = hidden @ params["out.weight"] + params["out.bias"]
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def save_head(path: Path, params: Mapping[str, np.ndarray], gate: Mapping[str, np.ndarray],
              metadata: Mapping[str, str]) -> None:
    """Write a head and its gate as safetensors with their metadata (`REQUIRED_METADATA`, ...)."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors = {**{k: params[k] for k in HEAD_TENSORS}, **{GATE_PREFIX + k: gate[k] for k in HEAD_TENSORS}}
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path),
              metadata=dict(metadata))


def load_head(path: Path | None = None) -> PromptHead:
    """Read and check a head file.

    Args:
        path (`Path`, *optional*, defaults to ``weights/prompt_head.safetensors``).

    Returns:
        `PromptHead`

    Raises:
        `GuardUnavailable`: the file is missing, corrupt, or its tensors and metadata disagree.
    """
    path = path or bundled_weights_dir() / HEAD_FILE
    fix = "reinstall sdguard, or retrain it with training/train_prompt_head.py"
    if not path.is_file():
        raise GuardUnavailable(f"semantic prompt classifier: head weights {path} are missing; {fix}")
    try:
        import numpy as np
        from safetensors import safe_open
    except ImportError as e:
        raise GuardUnavailable(f"semantic prompt classifier needs numpy and safetensors ({e}); "
                               f"pip install 'sdguard[semantic]'") from None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            params = {k: f.get_tensor(k).astype(np.float32) for k in HEAD_TENSORS}
            gate = {k: f.get_tensor(GATE_PREFIX + k).astype(np.float32) for k in HEAD_TENSORS}
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise ValueError(f"metadata lacks {', '.join(missing)}")
        categories = tuple(meta["categories"].split(","))
        thresholds = {c: float(t) for c, t in json.loads(meta["thresholds"]).items()}
        gate_thresholds = {c: float(t) for c, t in json.loads(meta["gate_thresholds"]).items()}
        if not (_shapes_fit(params, len(categories)) and _shapes_fit(gate, len(categories))
                and set(thresholds) == set(gate_thresholds) == set(categories)):
            raise ValueError("tensor shapes, categories and thresholds disagree")
        # A threshold of 1 or more (or NaN) would clear every prompt: such a file is corrupt.
        if not all(0.0 < t < 1.0 for t in (*thresholds.values(), *gate_thresholds.values())):
            raise ValueError("thresholds must lie strictly between 0 and 1")
        if not all(np.isfinite(v).all() for v in (*params.values(), *gate.values())):
            raise ValueError("weights contain NaN or infinity")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types; all mean "corrupt"
        raise GuardUnavailable(f"semantic prompt classifier: head weights {path} are unreadable "
                               f"({type(e).__name__}: {e}); {fix}") from None
    return PromptHead(meta["name"], meta["version"], categories, thresholds, params, gate, gate_thresholds)


def _shapes_fit(params: Mapping[str, np.ndarray], categories: int) -> bool:
    hidden = params["hidden.weight"].shape[1]
    return (params["hidden.bias"].shape == (hidden,) and params["out.weight"].shape == (hidden, categories)
            and params["out.bias"].shape == (categories,))


_LOCK = threading.Lock()
_HEAD: list[PromptHead] = []


def default_head() -> PromptHead:
    """The bundled head, loaded once per process."""
    with _LOCK:
        if not _HEAD:
            _HEAD.append(load_head())
            logger.info("loaded prompt head %s", _HEAD[0].model)
        return _HEAD[0]


def gate_passes(scores: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Which prompts the gate sends to the encoder: those not below every threshold (NaN counts
    as not below, so a gate that cannot score clears nothing). Shared with the training script."""
    import numpy as np

    return ~(scores < np.asarray(thresholds, dtype=np.float32)).all(axis=1)


def semantic_scores(prompts: Sequence[str], max_tokens: int, head: PromptHead | None = None, *,
                    use_gate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Score prompts: the gate reads every prompt, the encoder (in length-sorted batches) and the
    head read the prompts the gate did not clear.

    Args:
        prompts (`Sequence[str]`): positive prompts.
        max_tokens (`int`): tokens the encoder reads per prompt.
        head (`PromptHead`, *optional*, defaults to the bundled head).
        use_gate (`bool`, *optional*, defaults to `True`): `False` encodes every prompt.

    Returns:
        `(scores, encoded)`: `np.ndarray` (len(prompts), len(head.categories)) and a bool
        `np.ndarray` (len(prompts),). Where `encoded` is False the gate cleared the prompt and its
        row holds the gate's scores, each below its `head.gate_thresholds` value.

    Raises:
        `GuardUnavailable`: the encoder or the head cannot load.
    """
    import numpy as np

    head = head or default_head()
    encoder = load_encoder()
    if head.params["hidden.weight"].shape[0] != encoder.dim or head.gate["hidden.weight"].shape[0] != encoder.dim:
        # Another BERT in $SDGUARD_MINILM_DIR loads fine but cannot feed this head.
        raise GuardUnavailable(f"semantic prompt classifier: the sentence encoder in {encoder.model_dir} gives "
                               f"{encoder.dim}-dimensional embeddings, the head {head.model} reads "
                               f"{head.params['hidden.weight'].shape[0]}; point $SDGUARD_MINILM_DIR at "
                               f"all-MiniLM-L6-v2")
    # NFKC folds full-width and styled letters (ｎｕｄｅ, 𝐧𝐮𝐝𝐞) that the uncased BERT vocabulary
    # would otherwise read as [UNK].
    texts = [unicodedata.normalize("NFKC", p) for p in prompts]
    if not use_gate:
        return head.scores(encoder.encode(texts, max_tokens)), np.ones(len(texts), dtype=bool)
    scores = head_scores(head.gate, encoder.bag_of_words(texts, max_tokens))
    encoded = gate_passes(scores, [head.gate_thresholds[c] for c in head.categories])
    if encoded.any():
        scores[encoded] = head.scores(encoder.encode([t for t, e in zip(texts, encoded) if e], max_tokens))
    return scores, encoded


def semantic_findings(prompts: Sequence[str], policy: Policy, head: PromptHead | None = None) -> list[list[Finding]]:
    """One finding per category per prompt, fired or not, with the policy's semantic threshold.

    A prompt the gate cleared gets the gate's findings (its score and threshold, model
    ``<head> gate``). The gate is calibrated for the head's stored thresholds, so a policy that
    sets a lower ``thresholds.semantic`` for any category has every prompt encoded.

    Args:
        prompts (`Sequence[str]`): positive prompts (the negative prompt is the lexical stage's cue).
        policy (`Policy`): supplies ``[prompt] semantic_max_tokens`` and ``thresholds.semantic``
            (defaulting to the head's calibrated threshold where the policy sets none).
        head (`PromptHead`, *optional*, defaults to the bundled head).

    Returns:
        `list[list[Finding]]`, parallel to `prompts`.

    Raises:
        `GuardUnavailable`: the encoder or the head cannot load.

    Example:
        >>> from sdguard import load_policy
        >>> [f.category for f in semantic_findings(["a red bicycle"], load_policy())[0]]
        ['sexual', 'violence']
    """
    head = head or default_head()
    if not prompts:
        return []
    thresholds = [policy.threshold(c, SOURCE, head.thresholds[c]) for c in head.categories]
    use_gate = all(t >= head.thresholds[c] for c, t in zip(head.categories, thresholds))
    scores, encoded = semantic_scores(prompts, int(policy.section("prompt")["semantic_max_tokens"]), head,
                                      use_gate=use_gate)
    gate_thresholds = [head.gate_thresholds[c] for c in head.categories]
    return [[Finding(category, float(score), SOURCE, threshold if read else gate_threshold, field="prompt",
                     model=head.model if read else f"{head.model} gate")
             for category, score, threshold, gate_threshold in zip(head.categories, row, thresholds, gate_thresholds)]
            for row, read in zip(scores.tolist(), encoded.tolist())]
