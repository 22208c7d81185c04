"""A strict, bounded reader of safetensors headers: the tensors' layout and `__metadata__`, no tensors.

Layout: 8 bytes little-endian N, then N bytes of UTF-8 JSON, then the tensor data. The JSON maps
tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
data) plus an optional ``"__metadata__"`` of str → str. This module reads only those 8 + N bytes,
refuses N above `MAX_HEADER_BYTES`, and checks everything the format promises: no duplicate keys,
known dtypes, offsets in range, tensors that tile the data exactly (no gaps, no overlaps) and a
size that matches shape × dtype. Every problem becomes `SafetensorsHeader.error`; nothing raises
except `OSError` from opening the file.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import operator
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, NamedTuple

# The reference implementation refuses headers above 100 MB; real ones are a few hundred KB.
MAX_HEADER_BYTES = 100_000_000
LENGTH_BYTES = 8
METADATA_KEY = "__metadata__"
# Bits per element. Sub-byte types (F4, F6) pack; a tensor's bits must fill whole bytes.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "C64": 64,
}
_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_BY_OFFSET = operator.itemgetter(3, 4)  # (begin, end) of a TensorInfo
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_BEGIN, _END = operator.itemgetter(3), operator.itemgetter(4)
# Real tensors have at most 5 dimensions; longer shapes take the entry-by-entry path, whose
# element count stops early on hostile ones.
MAX_FAST_DIMS = 8


class HeaderError(ValueError):
    """The header breaks the format; the message says where."""


class TensorInfo(NamedTuple):
    """One tensor's entry: dtype, shape and ``[begin, end)`` offsets relative to the data.
    (A named tuple, not a dataclass: checkpoints list thousands and it is several times cheaper.)"""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


# TensorInfo from a (name, dtype, shape, begin, end) tuple without running Python code.
_new_tensor = functools.partial(tuple.__new__, TensorInfo)


@dataclass(frozen=True)
class SafetensorsHeader:
    """What the header says, or why it could not be read.

    Args:
        path (`str`): the file.
        file_size (`int`): its size in bytes.
        header_size (`int`): N, the JSON's length (0 when the length field itself is bad).
        metadata (`dict[str, str]`): ``__metadata__`` (empty when absent or on error).
        tensors (`tuple[TensorInfo, ...]`): in offset order (empty on error).
        error (`str`, *optional*): why the file is not a valid safetensors file; ``None`` when valid.
    """

    path: str
    file_size: int
    header_size: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    tensors: tuple[TensorInfo, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def data_offset(self) -> int | None:
        """Where the tensor data starts (8 + N); AutoV3 hashes from here. ``None`` on error."""
        return LENGTH_BYTES + self.header_size if self.ok else None


def read_header(path: str | os.PathLike[str], *, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file, reading only the header's bytes.

    Args:
        path (`str` or `PathLike`): the file.
        max_header_bytes (`int`, *optional*, defaults to `MAX_HEADER_BYTES`): larger headers are refused
            before any of their bytes are read.

    Returns:
        `SafetensorsHeader`: check `.error` (``None`` when the file is valid).

    Raises:
        `OSError`: the file cannot be opened or read (missing, a folder, no permission).

    Example:
        >>> h = read_header("lora.safetensors")  # doctest: +SKIP
        >>> h.error is None, h.metadata.get("ss_output_name")
        (True, 'my_lora')
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < LENGTH_BYTES:
            return SafetensorsHeader(name, size, error=f"file too short for a safetensors header ({size} bytes)")
        (n,) = struct.unpack("<Q", f.read(LENGTH_BYTES))
        if n > size - LENGTH_BYTES:
            return SafetensorsHeader(name, size, error=f"header length {n} is larger than the file ({size} bytes)")
        if n > max_header_bytes:
            return SafetensorsHeader(name, size,
                                     error=f"header length {n} exceeds the limit of {max_header_bytes} bytes")
        raw = f.read(n)
    if len(raw) != n:  # the file shrank while we read it
        return SafetensorsHeader(name, size, error=f"header truncated: {len(raw)} of {n} bytes")
    try:
        with _gc_paused():
            metadata, tensors = parse_header(raw, size - LENGTH_BYTES - n)
    except HeaderError as e:
        return SafetensorsHeader(name, size, n, error=str(e))
    return SafetensorsHeader(name, size, n, metadata, tensors)


def parse_header(raw: bytes, data_size: int) -> tuple[dict[str, str], tuple[TensorInfo, ...]]:
    """Validate header bytes against a data section of `data_size` bytes.

    Returns:
        ``(metadata, tensors)`` with tensors in offset order.

    Raises:
        `HeaderError`: with the first problem found.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HeaderError(f"header is not UTF-8 (byte {e.start})") from None
    if not text.lstrip(" ").startswith("{"):
        raise HeaderError("header is not a JSON object")
    try:
        # Objects parse to tuples of (key, value) pairs (arrays stay lists, so the two never mix):
        # a C-level hook, where a Python one per object costs more than the parse itself on a
        # checkpoint's thousands of tensor entries, and duplicate keys stay visible.
        doc = json.loads(text, object_pairs_hook=tuple)
    except RecursionError:
        raise HeaderError("header JSON is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and int() of absurdly long numbers
        raise HeaderError(f"header is not valid JSON ({e})") from None
    if type(doc) is not tuple:
        raise HeaderError("header is not a JSON object")
    top = _object(doc, "header")
    metadata = _metadata(top.pop(METADATA_KEY, ()))
    tensors = _fast_tensors(top, data_size)
    if tensors is None:  # something is off (or unusual): the entry-by-entry path says exactly what
        tensors = sorted((_tensor(k, v) for k, v in top.items()), key=_BY_OFFSET)
        _check_layout(tensors, data_size)
    return metadata, tuple(tensors)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector while a header's tens of thousands of containers are built: in a
    small process (a CLI scan) they trigger full collections that cost more than the parse itself.
    A header's JSON cannot make reference cycles, so nothing is left behind for the collector."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _object(pairs: tuple[tuple[str, Any], ...], where: str) -> dict[str, Any]:
    """A parsed JSON object as a dict. Raises `HeaderError` on a duplicate key (readers disagree on
    which one wins, so a screen could read one value and a host the other)."""
    out = dict(pairs)
    if len(out) != len(pairs):  # rare: find the culprit only then
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise HeaderError(f"duplicate key {key!r} in {where}")
            seen.add(key)
    return out


def _fast_tensors(entries: dict[str, Any], data_size: int) -> list[TensorInfo] | None:
    """Validate every tensor entry with whole-list operations (no Python code per tensor).

    Returns:
        The tensors in offset order, or ``None`` when any check fails or the header is unusual
        (entry keys in another order, shapes of more than `MAX_FAST_DIMS` dimensions): the caller
        then validates entry by entry, which accepts exactly what this accepts and names the problem.
    """
    if not entries:
        return None
    names, values = list(entries), list(entries.values())
    # Entries as the reference writer orders them: (("dtype", d), ("shape", s), ("data_offsets", o)).
    if set(map(type, values)) != {tuple} or set(map(len, values)) != {3}:
        return None
    pairs = list(zip(*values))
    keys = [set(map(_FIRST, column)) for column in pairs]
    if keys != [{"dtype"}, {"shape"}, {"data_offsets"}]:
        return None
    dtypes, shapes, offsets = (list(map(_SECOND, column)) for column in pairs)
    if (set(map(type, dtypes)) != {str} or not set(dtypes) <= DTYPE_BITS.keys()
            or set(map(type, shapes)) != {list} or set(map(type, offsets)) != {list}
            or set(map(len, offsets)) != {2} or max(map(len, shapes)) > MAX_FAST_DIMS):
        return None
    dims = list(chain.from_iterable(shapes))
    bounds = list(chain.from_iterable(offsets))
    if not set(map(type, bounds)) == {int} or min(bounds) < 0:
        return None
    if dims and (set(map(type, dims)) != {int} or min(dims) < 0):
        return None
    begins, ends = bounds[0::2], bounds[1::2]
    sizes = list(map(operator.sub, ends, begins))
    if min(sizes) < 0:
        return None
    bits = list(map(operator.mul, map(math.prod, shapes), map(DTYPE_BITS.__getitem__, dtypes)))
    if bits != list(map(operator.mul, sizes, repeat(8))):
        return None
    # tuple.__new__ builds the named tuples in C (TensorInfo(...) and _make run Python per call).
    tensors = list(map(_new_tensor, zip(names, dtypes, map(tuple, shapes), begins, ends)))
    tensors.sort(key=_BY_OFFSET)
    begins, ends = list(map(_BEGIN, tensors)), list(map(_END, tensors))
    if begins[0] != 0 or begins[1:] != ends[:-1] or ends[-1] != data_size:
        return None
    return tensors


def _metadata(value: Any) -> dict[str, str]:
    if type(value) is not tuple:
        raise HeaderError(f"{METADATA_KEY} must be an object of strings")
    metadata = _object(value, METADATA_KEY)
    for key, item in metadata.items():
        if not isinstance(item, str):
            raise HeaderError(f"{METADATA_KEY}[{key!r}] must be a string, not {_json_type(item)}")
    return metadata


def _json_type(value: Any) -> str:
    return "object" if type(value) is tuple else type(value).__name__


def _is_index(value: Any) -> bool:
    return type(value) is int and value >= 0  # not bool, which is an int subclass


def _tensor(name: str, entry: Any) -> TensorInfo:
    entry = _object(entry, f"tensor {name!r}") if type(entry) is tuple else None
    if entry is None or len(entry) != len(_TENSOR_KEYS) or not _TENSOR_KEYS.issuperset(entry):
        raise HeaderError(f"tensor {name!r} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    bits_per = DTYPE_BITS.get(dtype) if type(dtype) is str else None
    if bits_per is None:
        raise HeaderError(f"tensor {name!r} has unknown dtype {dtype!r}")
    if type(shape) is not list or not all(map(_is_index, shape)):
        raise HeaderError(f"tensor {name!r} shape must be a list of non-negative integers")
    if (type(offsets) is not list or len(offsets) != 2 or not all(map(_is_index, offsets))
            or offsets[0] > offsets[1]):
        raise HeaderError(f"tensor {name!r} data_offsets must be [begin, end] with 0 <= begin <= end")
    begin, end = offsets
    bits = _element_count(shape, limit=(end - begin) * 8) * bits_per
    if bits != (end - begin) * 8:
        raise HeaderError(f"tensor {name!r}: shape {shape} of {dtype} needs {bits / 8:g} bytes "
                          f"but data_offsets give {end - begin}")
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def _element_count(shape: list[int], limit: int) -> int:
    """Product of `shape`, stopping once it passes `limit` so hostile shapes stay cheap."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > limit:
            return limit + 1
    return count


def _check_layout(tensors: list[TensorInfo], data_size: int) -> None:
    """Tensors must tile ``[0, data_size)`` exactly, in offset order."""
    position = 0
    for t in tensors:
        if t.begin != position:
            problem = "overlaps the previous tensor" if t.begin < position else "leaves a gap before it"
            raise HeaderError(f"tensor {t.name!r} at offset {t.begin} {problem} (expected {position})")
        position = t.end
    if position != data_size:
        raise HeaderError(f"tensors cover {position} bytes but the file holds {data_size} bytes of data"
                          + (" (truncated?)" if position > data_size else ""))


def looks_like_safetensors(head: bytes, file_size: int) -> bool:
    """A cheap sniff of a file's first 9 bytes: a plausible length followed by ``{``. Tells formats
    apart; `read_header` does the validation."""
    if len(head) < LENGTH_BYTES + 1:
        return False
    (n,) = struct.unpack("<Q", head[:LENGTH_BYTES])
    return head[LENGTH_BYTES:LENGTH_BYTES + 1] == b"{" and 0 < n <= file_size - LENGTH_BYTES
