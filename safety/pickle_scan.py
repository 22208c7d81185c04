"""List what a pickle would import, without unpickling it.

Pickle-based checkpoints (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can run any code when loaded:
unpickling calls whatever callables the stream names. This scanner walks the opcode stream with
`pickletools.genops` (which only decodes, never executes) and collects the globals it imports:
``GLOBAL``/``INST`` name them inline, ``STACK_GLOBAL`` takes them from the two strings pushed
before it (memo look-ups followed). Imports that can run code (os.system, builtins.eval, ...) are
`dangerous`; one the scanner cannot resolve is dangerous too, since a scan that cannot tell must
not pass.

Formats: PyTorch's zip format (``archive/data.pkl`` and any other ``*.pkl`` member) and the legacy
raw format (several pickles back to back, then raw tensor bytes, which end the scan). PyTorch's
oldest format, a tar archive, is refused (an error), not scanned.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickletools
import tarfile
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass
from typing import IO

try:
    import lzma
except ImportError:  # a Python built without it: zipfile then refuses LZMA members (NotImplementedError)
    lzma = None

# Pickle bytes scanned at most per file (all zip members together); a pickle running past this is
# refused (torch's data.pkl holds only structure, a few MB; legacy files put their pickles first
# and raw tensor bytes after them).
MAX_PICKLE_BYTES = 256 << 20
# Opcodes decoded at most per file (about 1-4 µs each: seconds and ~150 MB at worst): torch's
# data.pkl has about 30 per tensor (90 000 for 3 000 tensors; a training checkpoint with EMA and
# optimizer state, ~15 000 tensors), while 256 MB of one-byte opcodes (a 250 KB zip) would keep
# the CPU busy for many minutes.
MAX_OPCODES = 2_000_000
# What reading a damaged or encrypted member raises: RuntimeError (encrypted), zlib.error (deflate),
# OSError (bzip2; the file itself is already open, so not an unreadable file), LZMAError.
_INFLATE_ERRORS = (RuntimeError, zlib.error, OSError) + ((lzma.LZMAError,) if lzma is not None else ())
# .pkl members of a zip scanned at most: torch.save writes one (data.pkl), torch.package a few.
MAX_PICKLE_MEMBERS = 100
# Legacy torch files hold 5 pickles (magic, protocol, sys info, object, storage keys), then raw
# tensor bytes: torch.load unpickles no more than these from a raw file, pickle.load only the first.
MAX_PICKLES_PER_STREAM = 5
ZIP_MAGIC = b"PK\x03\x04"
PROTO_OPCODE = 0x80

# Modules whose every global can run code, touch files or the network.
DANGEROUS_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "socket", "shutil", "runpy", "importlib", "pty",
    "webbrowser", "ctypes", "multiprocessing", "signal", "code", "codeop", "commands", "popen2",
    "pickle", "_pickle", "marshal", "asyncio", "threading", "_thread", "tempfile", "pathlib", "io",
    "http", "urllib", "urllib2", "requests", "ftplib", "smtplib", "telnetlib", "ssl", "pip",
    "setuptools", "platform", "pdb", "bdb", "timeit", "cProfile", "profile", "trace", "inspect",
    "types", "zipimport", "builtins.__dict__", "torch.hub", "torch.jit", "numpy.testing",
    # C modules behind the ones above, and pydoc, whose pagers run a shell command.
    "_io", "_posixsubprocess", "_winapi", "_socket", "_ssl", "_signal", "_multiprocessing", "_ctypes",
    "pydoc",
})
# Single globals that run code, import modules or read/write arbitrary attributes and files.
DANGEROUS_GLOBALS = frozenset(
    f"{module}.{name}"
    for module in ("builtins", "__builtin__")
    for name in ("eval", "exec", "execfile", "compile", "getattr", "setattr", "delattr", "__import__",
                 "open", "input", "breakpoint", "globals", "locals", "vars", "apply", "file", "reload",
                 "memoryview", "help", "exit", "quit")
) | frozenset({"operator.attrgetter", "operator.methodcaller", "_operator.attrgetter",
               "_operator.methodcaller", "functools.reduce", "_functools.reduce", "codecs.open",
               "numpy.load", "numpy.fromfile", "numpy.save", "torch.load", "torch.save"})
# What ordinary checkpoints import (A1111's safe unpickler allows the same kind of list). A prefix
# covers a family (torch.float16, torch._utils._rebuild_tensor_v2), never attributes reached through
# one of its names (see `is_known_safe`).
SAFE_PREFIXES = (
    "collections.OrderedDict", "collections.defaultdict", "torch._utils._rebuild_", "torch._tensor._rebuild_",
    "torch.nn.parameter.Parameter", "torch.Size", "torch.device", "torch.dtype", "torch.float", "torch.bfloat16",
    "torch.half", "torch.int", "torch.long", "torch.bool", "torch.uint8", "torch.torch_version.TorchVersion",
    "numpy.core.multiarray.scalar", "numpy.core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray", "_codecs.encode",
    "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.complex", "builtins.bytearray",
    "builtins.bytes", "builtins.object", "__builtin__.bytes", "__builtin__.object", "copyreg._reconstructor",
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint", "__builtin__.set",
)
_PICKLE_DUNDERS = frozenset({"copyreg.__newobj__", "copyreg.__newobj_ex__"})
_STORAGE_SUFFIX = "Storage"  # torch.FloatStorage, torch.HalfStorage, ... (legacy storage classes)
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                         "BINSTRING", "SHORT_BINSTRING"})
_MEMO_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NO_STACK_EFFECT = frozenset({"FRAME", "PROTO"})
UNRESOLVED = "<unresolved STACK_GLOBAL>"
EXTENSION = "<copyreg extension>"


@dataclass(frozen=True)
class PickleScan:
    """What a pickle file imports.

    Args:
        container (`str`): ``"zip"`` (PyTorch ≥ 1.6), ``"raw"`` (legacy / plain pickle) or ``"tar"``
            (PyTorch < 0.4; never scanned, so always with an `error`).
        globals (`tuple[str, ...]`): every ``module.name`` imported, sorted, without repeats.
        dangerous (`tuple[str, ...]`): those that can run code (plus unresolvable imports).
        unknown (`tuple[str, ...]`): neither known-safe nor known-dangerous.
        error (`str`, *optional*): why the file could not be scanned (then it is not clean).
    """

    container: str
    globals: tuple[str, ...] = ()
    dangerous: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    error: str | None = None


def is_dangerous(name: str) -> bool:
    """Whether importing `name` (``module.qualname``) can run code, as named or as Python 3 reads it.

    A protocol 0-2 pickle's imports go through `_compat_pickle`'s Python 2 names first (cPickle.loads
    is pickle.loads); the protocol is not tracked, since at protocol 3+ such a name does not import.
    """
    return any(map(_names_dangerous, (name, *_python3_names(name))))


def _python3_names(name: str) -> list[str]:
    """What the unpickler's ``fix_imports`` maps `name` to, for each way to split it into a module
    and a qualified name (``GLOBAL`` names are joined with a dot, so the split is not known)."""
    found = []
    for index, char in enumerate(name):
        if char != ".":
            continue
        module, qualname = name[:index], name[index + 1:]
        if (module, qualname) in _compat_pickle.NAME_MAPPING:
            found.append(".".join(_compat_pickle.NAME_MAPPING[module, qualname]))
        elif module in _compat_pickle.IMPORT_MAPPING:
            found.append(f"{_compat_pickle.IMPORT_MAPPING[module]}.{qualname}")
    return found


def _names_dangerous(name: str) -> bool:
    if name in (UNRESOLVED, EXTENSION) or name in DANGEROUS_GLOBALS:
        return True
    # A dunder past the module's first name is an attribute walk (f.__globals__, f.__builtins__.get,
    # object.__subclasses__) that reaches any object; pickle itself only names copyreg's two.
    if name not in _PICKLE_DUNDERS and any(part[:2] == part[-2:] == "__" for part in name.split(".")[1:]):
        return True
    module = name.rpartition(".")[0]
    parts = module.split(".")
    return any(".".join(parts[:i]) in DANGEROUS_MODULES for i in range(1, len(parts) + 1))


def is_known_safe(name: str) -> bool:
    # Protocol 4+ resolves a dotted name attribute by attribute, so an extension of a safe name
    # (torch._utils._rebuild_tensor_v2.__builtins__.get) can reach anything: no dot past the prefix.
    return any(name.startswith(prefix) and "." not in name[len(prefix):] for prefix in SAFE_PREFIXES) or (
        name.startswith("torch.") and name.endswith(_STORAGE_SUFFIX) and name.count(".") == 1)


def looks_like_pickle(head: bytes) -> bool:
    """A zip archive or a pickle with a protocol header (every torch.save since protocol 2)."""
    return head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == PROTO_OPCODE and head[1] <= 5)


def scan_pickle_file(path: str | os.PathLike[str]) -> PickleScan:
    """Scan a pickle-based checkpoint for the globals it imports. Never unpickles.

    Args:
        path (`str` or `PathLike`): a ``.ckpt``/``.pt``/``.pth``/``.bin`` file.

    Returns:
        `PickleScan`; `.error` says why a file could not be scanned.

    Raises:
        `OSError`: the file cannot be opened.

    Example:
        >>> scan_pickle_file("model.ckpt").dangerous  # doctest: +SKIP
        ('posix.system',)
    """
    with open(path, "rb") as f:
        # A zip only when the file starts with a zip header, as torch.load decides: zipfile.is_zipfile
        # finds the end record at the end, so a pickle with a zip appended would be scanned as that
        # zip while torch unpickles the pickle in front of it.
        if f.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
            return _scan_zip(f)
        f.seek(0)
        if _starts_a_tar(f.read(tarfile.BLOCKSIZE)):
            # torch.load unpickles several members of it (pickles mixed with raw bytes in
            # 'storages'); scanning only the raw stream would read a tar header as a pickle.
            return PickleScan("tar", error="PyTorch's legacy tar format (before 0.4) is not scanned; "
                                           "use a .safetensors version of this model")
        f.seek(0)
        size = os.fstat(f.fileno()).st_size
        names, error = scan_stream(f, size)
    return _result("raw", names, error)


def _starts_a_tar(block: bytes) -> bool:
    """Whether torch.load would open the file as its legacy tar format: it tries that first, and
    `tarfile` takes the file when its first 512-byte block is a header with a valid checksum."""
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _scan_zip(file: IO[bytes]) -> PickleScan:
    names: set[str] = set()
    try:
        with zipfile.ZipFile(file) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".pkl")]
            if not members:
                return PickleScan("zip", error="zip archive without a .pkl member (not a PyTorch checkpoint)")
            if len(members) > MAX_PICKLE_MEMBERS:
                return PickleScan("zip", error=f"{len(members)} .pkl members, above the scan limit of "
                                               f"{MAX_PICKLE_MEMBERS}")
            # Members inflate to their declared size at most (zipfile stops there), so the sum
            # bounds what is read.
            total = sum(m.file_size for m in members)
            if total > MAX_PICKLE_BYTES:
                return PickleScan("zip", error=f"the .pkl members hold {total} bytes, above the "
                                               f"{MAX_PICKLE_BYTES}-byte scan limit")
            budget = _Budget()
            for member in members:
                with archive.open(member) as f:
                    found, error = scan_stream(f, member.file_size, budget)
                names |= found
                if error:
                    return _result("zip", names, f"{member.filename}: {error}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError,
            *_INFLATE_ERRORS) as e:
        return _result("zip", names, f"unreadable zip archive ({e})")
    return _result("zip", names, None)


def _result(container: str, names: set[str], error: str | None) -> PickleScan:
    ordered = tuple(sorted(names))
    return PickleScan(
        container, ordered, tuple(n for n in ordered if is_dangerous(n)),
        tuple(n for n in ordered if not is_dangerous(n) and not is_known_safe(n)), error,
    )


class _Bounded:
    """A read-only view of the next `size` bytes of `stream` (at most `MAX_PICKLE_BYTES`), so a
    hostile length field cannot make `genops` read a whole multi-GB file into memory."""

    def __init__(self, stream: IO[bytes], size: int):
        self._stream = stream
        self._position = 0
        self.truncated = size > MAX_PICKLE_BYTES
        self._left = min(size, MAX_PICKLE_BYTES)

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._stream.read(n)
        self._left -= len(data)
        self._position += len(data)
        return data

    def readline(self) -> bytes:
        line = self._stream.readline(self._left)
        self._left -= len(line)
        self._position += len(line)
        return line

    def tell(self) -> int:
        return self._position

    @property
    def at_end(self) -> bool:
        return self._left == 0


class _OverBudget(Exception):
    """A file holds more opcodes than `MAX_OPCODES`."""


class _Budget:
    """Opcodes one file's scan may still decode, shared by its pickles and zip members."""

    def __init__(self) -> None:
        self.opcodes = MAX_OPCODES


def scan_stream(stream: IO[bytes], size: int, budget: _Budget | None = None) -> tuple[set[str], str | None]:
    """Collect globals from back-to-back pickles in the next `size` bytes of `stream`.

    Up to `MAX_PICKLES_PER_STREAM` pickles are read (what torch.load may unpickle); each must
    parse or the stream must end before it. The bytes after them (raw tensor data in legacy torch
    files) are never unpickled, so they are not read.

    Args:
        stream (`IO[bytes]`): positioned at the first pickle.
        size (`int`): bytes of it that belong to the pickles (at most `MAX_PICKLE_BYTES` are read).
        budget (`_Budget`, *optional*): opcodes left for the whole file; a fresh one by default.

    Returns:
        ``(globals, error)``; `error` is ``None`` when the scan finished.
    """
    data = _Bounded(stream, size)
    budget = _Budget() if budget is None else budget
    names: set[str] = set()
    for index in range(MAX_PICKLES_PER_STREAM):
        if data.at_end:
            if index == 0:  # torch.load fails on it too: a file that cannot load is malformed, not clean
                return names, "empty: no pickle in it"
            break
        try:
            names |= _globals_of_one(data, budget)
        except _OverBudget:
            return names, f"more than {MAX_OPCODES} pickle opcodes, above the scan limit"
        except (ValueError, EOFError, KeyError, IndexError, TypeError, UnicodeDecodeError) as e:
            # Not the end of the scan: the unpickler accepts some input genops rejects (``I0x3e9``
            # is int(s, 0) to it), and stopping here would leave the pickles after it unseen.
            too_big = " (it runs past the scan limit)" if data.truncated and data.at_end else ""
            where = f"pickle {index + 1}: " if index else ""
            return names, f"{where}not a valid pickle ({e}){too_big}"
    return names, None


def _imported(module: str, qualname: str) -> list[str]:
    """The names an import of `module`.`qualname` reaches: itself, and, since protocol 4 resolves a
    dotted qualname attribute by attribute, each dangerous tail of that qualname read as a name of
    its own (``torch.serialization`` + ``os.system`` is os.system, through the module's ``import os``)."""
    name, parts = f"{module}.{qualname}", qualname.split(".")
    if is_dangerous(name):
        return [name]
    tails = (".".join(parts[i:]) for i in range(len(parts) - 1))
    return [name, *(tail for tail in tails if is_dangerous(tail))]


def _globals_of_one(data: _Bounded, budget: _Budget) -> set[str]:
    """Globals imported by the pickle starting at `data`'s position; leaves it after the STOP.

    Raises:
        `_OverBudget`: the file's opcode budget ran out.
    """
    names: set[str] = set()
    memo: dict[int, object] = {}
    # Values the last two opcodes pushed (strings, or None for anything else): all STACK_GLOBAL
    # and MEMOIZE look at, kept without growing with the number of opcodes.
    recent: deque[object] = deque(maxlen=2)
    for opcode, arg, _ in pickletools.genops(data):
        budget.opcodes -= 1
        if budget.opcodes < 0:
            raise _OverBudget
        op = opcode.name
        if op in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            names.update(_imported(module, name))
            recent.append(None)
        elif op == "STACK_GLOBAL":
            if len(recent) >= 2 and isinstance(recent[-1], str) and isinstance(recent[-2], str):
                names.update(_imported(recent[-2], recent[-1]))
            else:
                names.add(UNRESOLVED)
            recent.append(None)
        elif op in ("EXT1", "EXT2", "EXT4"):
            names.add(EXTENSION)
            recent.append(None)
        elif op in _STRING_OPS:
            recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif op == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif op in _NO_STACK_EFFECT:
            pass
        elif op in _MEMO_PUT:
            memo[arg] = recent[-1] if recent else None
        elif op in _MEMO_GET:
            recent.append(memo.get(arg))
        else:
            recent.append(None)
        if op == "STOP":
            break
    return names
