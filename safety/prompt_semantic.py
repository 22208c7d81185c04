"""The semantic prompt classifier: sentence embeddings → a small trained head → findings.

Keyword lists miss most prompts that produce nudity (they name artists, styles and situations, or
are optimised token soup). This stage embeds each prompt with all-MiniLM-L6-v2 (`text_encoder`)
and scores it with a 1-hidden-layer MLP trained by `training/train_prompt_head.py`, one sigmoid per
category. A gate goes first: the same kind of head on the encoder's bag of input word embeddings
(`SentenceEncoder.bag_of_words`, ~1 % of the encoder's cost) clears plainly harmless prompts, and
only the rest are encoded. The head, the gate, its categories and its calibrated thresholds live in
`weights/prompt_head.safetensors` (card: `prompt_head.md`).

With ``[prompt] semantic_encoder = "mpnet"`` a second head follows: the prompts the MiniLM head
scores at or over its escalation thresholds (a wider net than its own thresholds) are embedded
with all-mpnet-base-v2 and that head's scores decide them; the MiniLM head then only gates.
Weights, escalation and decision thresholds: `weights/prompt_head_mpnet.safetensors` (card:
`prompt_head_mpnet.md`); its findings are signal ``semantic_mpnet``. A policy's
``thresholds.semantic`` / ``thresholds.semantic_mpnet`` override the stored thresholds.
Everything loads once per process, on first use.
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
from .text_encoder import SentenceEncoder, load_encoder
from .verdict import Finding

if TYPE_CHECKING:
    import numpy as np

    from .policy import Policy

logger = logging.getLogger("sdguard.prompt")

SOURCE = "semantic"
HEAD_FILE = "prompt_head.safetensors"
FOLLOW_HEAD_FILE = "prompt_head_mpnet.safetensors"
# Tensor names of the head: embedding → hidden (ReLU) → one logit per category.
HEAD_TENSORS = ("hidden.weight", "hidden.bias", "out.weight", "out.bias")
# The gate's tensors: the same shapes under this prefix.
GATE_PREFIX = "gate."
REQUIRED_METADATA = ("name", "version", "categories", "thresholds", "gate_thresholds")
# The encoders a head file may name (its ``encoder`` metadata) and `text_encoder`'s names for them.
ENCODERS = {"sentence-transformers/all-MiniLM-L6-v2": "minilm", "sentence-transformers/all-mpnet-base-v2": "mpnet"}


@dataclass(frozen=True)
class PromptHead:
    """The trained head. Build it with `load_head()`.

    Args:
        name (`str`), version (`str`): identify the head in findings (``model``) and the audit trail.
        categories (`tuple[str, ...]`): one output per category, in order.
        thresholds (`Mapping[str, float]`): calibrated thresholds; the policy may override them.
        params (`Mapping[str, np.ndarray]`): `HEAD_TENSORS`.
        gate (`Mapping[str, np.ndarray] | None`): `HEAD_TENSORS` of the bag-of-words gate (see
            `semantic_scores`); None for a head that follows another.
        gate_thresholds (`Mapping[str, float]`): a prompt whose gate scores (a following head:
            the scores of the head it follows) are all below these is cleared without this
            head's encoder; calibrated to pass a set share of ordinary captions (see the card).
        encoder (`str`, *optional*, defaults to ``"minilm"``): the `text_encoder` it reads.
        follows (`str`, *optional*): the ``model`` of the head whose scores gate this one.
    """

    name: str
    version: str
    categories: tuple[str, ...]
    thresholds: Mapping[str, float]
    params: Mapping[str, np.ndarray]
    gate: Mapping[str, np.ndarray] | None
    gate_thresholds: Mapping[str, float]
    encoder: str = "minilm"
    follows: str = ""

    @property
    def model(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def source(self) -> str:
        """Its findings' signal name: ``semantic`` for MiniLM, ``semantic_mpnet`` for MPNet. The
        scores differ in scale, so each has its own policy thresholds."""
        return SOURCE if self.encoder == "minilm" else f"{SOURCE}_{self.encoder}"

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) embeddings → (n, len(categories)) scores in 0..1."""
        return head_scores(self.params, vectors)


def head_scores(params: Mapping[str, np.ndarray], vectors: np.ndarray) -> np.ndarray:
    """The head's forward pass (shared with the training script, so both score alike).

    Args:
        params (`Mapping[str, np.ndarray]`): `HEAD_TENSORS`; weights are (in, out).
        vectors (`np.ndarray`): (n, dim) L2-normalised embeddings.

    Returns:
        `np.ndarray` float32 (n, categories): sigmoid scores.
    """
    import numpy as np

    hidden = np.maximum(vectors @ params["hidden.weight"] + params["hidden.bias"], 0.0)
    logits = hidden @ params["out.weight"] + params["out.bias"]
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def save_head(path: Path, params: Mapping[str, np.ndarray], gate: Mapping[str, np.ndarray] | None,
              metadata: Mapping[str, str]) -> None:
    """Write a head and its gate (None for a following head) as safetensors with their metadata
    (`REQUIRED_METADATA`, ``encoder``, and ``follows`` for a following head)."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors = {**{k: params[k] for k in HEAD_TENSORS}, **{GATE_PREFIX + k: gate[k] for k in HEAD_TENSORS if gate}}
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
            follows = meta.get("follows", "")
            params = {k: f.get_tensor(k).astype(np.float32) for k in HEAD_TENSORS}
            gate = None if follows else {k: f.get_tensor(GATE_PREFIX + k).astype(np.float32) for k in HEAD_TENSORS}
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise ValueError(f"metadata lacks {', '.join(missing)}")
        # A file naming no encoder is read as a MiniLM head, as every head before MPNet was.
        encoder = ENCODERS.get(meta.get("encoder", "sentence-transformers/all-MiniLM-L6-v2"))
        if encoder is None:
            raise ValueError(f"unknown encoder {meta['encoder']!r}; expected one of {', '.join(ENCODERS)}")
        categories = tuple(meta["categories"].split(","))
        thresholds = {c: float(t) for c, t in json.loads(meta["thresholds"]).items()}
        gate_thresholds = {c: float(t) for c, t in json.loads(meta["gate_thresholds"]).items()}
        if not (_shapes_fit(params, len(categories)) and (gate is None or _shapes_fit(gate, len(categories)))
                and set(thresholds) == set(gate_thresholds) == set(categories)):
            raise ValueError("tensor shapes, categories and thresholds disagree")
        # A threshold of 1 or more (or NaN) would clear every prompt: such a file is corrupt.
        if not all(0.0 < t < 1.0 for t in (*thresholds.values(), *gate_thresholds.values())):
            raise ValueError("thresholds must lie strictly between 0 and 1")
        if not all(np.isfinite(v).all() for v in (*params.values(), *(gate or {}).values())):
            raise ValueError("weights contain NaN or infinity")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types; all mean "corrupt"
        raise GuardUnavailable(f"semantic prompt classifier: head weights {path} are unreadable "
                               f"({type(e).__name__}: {e}); {fix}") from None
    return PromptHead(meta["name"], meta["version"], categories, thresholds, params, gate, gate_thresholds,
                      encoder, follows)


def _shapes_fit(params: Mapping[str, np.ndarray], categories: int) -> bool:
    hidden = params["hidden.weight"].shape[1]
    return (params["hidden.bias"].shape == (hidden,) and params["out.weight"].shape == (hidden, categories)
            and params["out.bias"].shape == (categories,))


_LOCK = threading.Lock()
_HEADS: dict[str, tuple[PromptHead, ...]] = {}


def default_heads(encoder: str = "minilm") -> tuple[PromptHead, ...]:
    """The bundled heads for ``[prompt] semantic_encoder`` (one of `ENCODERS`' values), loaded
    once per process: the MiniLM head, then for ``"mpnet"`` the head that follows it.

    Raises:
        `GuardUnavailable`: a head file is missing or corrupt, or the MPNet head follows another
            head than the bundled MiniLM one.
    """
    if encoder not in ENCODERS.values():
        raise ValueError(f"unknown semantic encoder {encoder!r}; expected one of {', '.join(ENCODERS.values())}")
    with _LOCK:
        if encoder not in _HEADS:
            first = _HEADS["minilm"] if "minilm" in _HEADS else (load_head(),)
            if encoder == "minilm":
                _HEADS[encoder] = first
            else:
                follow = load_head(bundled_weights_dir() / FOLLOW_HEAD_FILE)
                _check_chain((*first, follow))
                _HEADS[encoder] = (*first, follow)
            logger.info("loaded prompt heads %s", ", ".join(h.model for h in _HEADS[encoder]))
        return _HEADS[encoder]


def _check_chain(heads: Sequence[PromptHead]) -> None:
    """A chain starts with a gated head; each later head follows the one before it, same categories."""
    problems = [f"{h.model} has no gate" for h in heads[:1] if h.gate is None]
    problems += [f"{h.model} follows {h.follows or 'no head'}, not {before.model}"
                 for before, h in zip(heads, heads[1:]) if h.follows != before.model]
    problems += [f"{h.model} scores {', '.join(h.categories)}, not {', '.join(heads[0].categories)}"
                 for h in heads[1:] if h.categories != heads[0].categories]
    if problems:
        raise GuardUnavailable(f"semantic prompt classifier: the head files do not fit together ({'; '.join(problems)}); "
                               "reinstall sdguard, or retrain them with training/train_prompt_head.py")


def gate_passes(scores: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Which prompts the gate sends to the encoder: those not below every threshold (NaN counts
    as not below, so a gate that cannot score clears nothing). Shared with the training script."""
    import numpy as np

    return ~(scores < np.asarray(thresholds, dtype=np.float32)).all(axis=1)


def semantic_scores(prompts: Sequence[str], max_tokens: int, heads: Sequence[PromptHead] | None = None, *,
                    use_gate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Score prompts through a chain of heads: the first head's gate reads every prompt; each head
    (its encoder in length-sorted batches) reads the prompts its gate did not clear, and a
    following head's gate is the scores of the head before it.

    Args:
        prompts (`Sequence[str]`): positive prompts.
        max_tokens (`int`): tokens each encoder reads per prompt.
        heads (`Sequence[PromptHead]`, *optional*, defaults to `default_heads()`): the chain.
        use_gate (`bool`, *optional*, defaults to `True`): `False` sends every prompt straight to
            the last head.

    Returns:
        `(scores, stage)`: `np.ndarray` (len(prompts), len(categories)) and an int `np.ndarray`
        (len(prompts),). Where ``stage == len(heads)`` the row holds the last head's scores;
        where ``stage == k`` < len(heads), heads[k]'s gate cleared the prompt and the row holds
        the scores that gate read (the bag-of-words gate's for k = 0, heads[k - 1]'s after),
        each below its ``heads[k].gate_thresholds`` value.

    Raises:
        `GuardUnavailable`: an encoder or a head cannot load.
    """
    import numpy as np

    heads = tuple(heads or default_heads())
    _check_chain(heads)
    # NFKC folds full-width and styled letters (ｎｕｄｅ, 𝐧𝐮𝐝𝐞) that the uncased vocabularies
    # would otherwise read as [UNK].
    texts = [unicodedata.normalize("NFKC", p) for p in prompts]
    if not use_gate:  # only the last head reads prompts, so only its encoder is needed
        return heads[-1].scores(_encoder_for(heads[-1]).encode(texts, max_tokens)), np.full(len(texts), len(heads))
    encoders = [_encoder_for(head) for head in heads]
    scores = head_scores(heads[0].gate, encoders[0].bag_of_words(texts, max_tokens))
    stage = np.zeros(len(texts), dtype=np.int64)
    for k, (head, encoder) in enumerate(zip(heads, encoders)):
        passed = (stage == k) & gate_passes(scores, [head.gate_thresholds[c] for c in head.categories])
        if passed.any():
            scores[passed] = head.scores(encoder.encode([t for t, e in zip(texts, passed) if e], max_tokens))
            stage[passed] = k + 1
    return scores, stage


def _encoder_for(head: PromptHead) -> SentenceEncoder:
    """The head's encoder, checked to give the embeddings the head reads."""
    encoder = load_encoder(head.encoder)
    if head.params["hidden.weight"].shape[0] != encoder.dim or (
            head.gate is not None and head.gate["hidden.weight"].shape[0] != encoder.dim):
        # Another model in $SDGUARD_MINILM_DIR (or the weights folders) loads fine but cannot feed this head.
        fix = "point $SDGUARD_MINILM_DIR at all-MiniLM-L6-v2" if head.encoder == "minilm" else \
            "put all-mpnet-base-v2's files there"
        raise GuardUnavailable(f"semantic prompt classifier: the sentence encoder in {encoder.model_dir} gives "
                               f"{encoder.dim}-dimensional embeddings, the head {head.model} reads "
                               f"{head.params['hidden.weight'].shape[0]}; {fix}")
    return encoder


def semantic_findings(prompts: Sequence[str], policy: Policy,
                      heads: Sequence[PromptHead] | None = None) -> list[list[Finding]]:
    """One finding per category per prompt, fired or not, with the policy's semantic threshold.

    A prompt a gate cleared gets that gate's findings (the score it read and its threshold, model
    ``<head> gate``). The gates are calibrated for the last head's stored thresholds, so a policy
    that sets a lower threshold for any category sends every prompt to the last head.

    Args:
        prompts (`Sequence[str]`): positive prompts (the negative prompt is the lexical stage's cue).
        policy (`Policy`): supplies ``[prompt] semantic_encoder``, ``semantic_max_tokens`` and the
            last head's thresholds (``thresholds.semantic``, or ``thresholds.semantic_mpnet`` for
            MPNet; its calibrated threshold where the policy sets none).
        heads (`Sequence[PromptHead]`, *optional*, defaults to the policy's encoder's `default_heads`).

    Returns:
        `list[list[Finding]]`, parallel to `prompts`.

    Raises:
        `GuardUnavailable`: an encoder or a head cannot load.

    Example:
        >>> from sdguard import load_policy
        >>> [f.category for f in semantic_findings(["a red bicycle"], load_policy())[0]]
        ['sexual', 'violence']
    """
    section = policy.section("prompt")
    heads = tuple(heads or default_heads(section["semantic_encoder"]))
    if not prompts:
        return []
    last = heads[-1]
    thresholds = [policy.threshold(c, last.source, last.thresholds[c]) for c in last.categories]
    use_gate = all(t >= last.thresholds[c] for c, t in zip(last.categories, thresholds))
    scores, stage = semantic_scores(prompts, int(section["semantic_max_tokens"]), heads, use_gate=use_gate)
    out = []
    for row, k in zip(scores.tolist(), stage.tolist()):
        if k == len(heads):
            out.append([Finding(c, float(score), last.source, t, field="prompt", model=last.model)
                        for c, score, t in zip(last.categories, row, thresholds)])
        else:  # cleared by heads[k]'s gate, which read the bag-of-words gate's (k = 0) or heads[k - 1]'s scores
            out.append([Finding(c, float(score), heads[max(k - 1, 0)].source, heads[k].gate_thresholds[c],
                                field="prompt", model=f"{heads[k].model} gate")
                        for c, score in zip(last.categories, row)])
    return out
