"""Import modules from a host's own checkout (ComfyUI, Forge) for one test module, then forget them."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


@contextmanager
def host_checkout(folder: str, stubs: Mapping[str, Mapping[str, Any]] = {}) -> Iterator[None]:
    """Put `folder` first on sys.path. Each module in `stubs` that does not import there becomes an
    empty module (parents included) with the given attributes: hosts import heavy packages at the
    top of files whose tested parts never use them. On exit, the host's modules and the stubs are
    dropped, so other tests never see them; packages the host imported from site-packages stay, as
    compiled ones (scipy's) cannot be loaded twice in a process."""
    root = os.path.abspath(folder) + os.sep
    sys.path.insert(0, folder)
    before = set(sys.modules)
    stubbed = set()
    try:
        for name, attrs in stubs.items():
            try:
                importlib.import_module(name)
            except ImportError:
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    parent = ".".join(parts[:depth])
                    if parent not in sys.modules:
                        sys.modules[parent] = types.ModuleType(parent)
                        stubbed.add(parent)
                vars(sys.modules[name]).update(attrs)
        yield
    finally:
        sys.path.remove(folder)
        # decided before any is dropped: a namespace package's __path__ reads its parent's
        drop = [name for name in set(sys.modules) - before if name in stubbed or _inside(sys.modules[name], root)]
        for name in drop:
            del sys.modules[name]


def _inside(module: types.ModuleType, root: str) -> bool:
    # a namespace package has no __file__, only search locations (torch._classes has neither)
    spec = getattr(module, "__spec__", None)
    places = [getattr(module, "__file__", None), *(getattr(spec, "submodule_search_locations", None) or ())]
    return any(isinstance(p, str) and os.path.abspath(p).startswith(root) for p in places)
