"""The model stage: screen a LoRA, checkpoint or embedding file before a host loads it.

`check_model_file(path, policy)` reads only what it needs: a safetensors header (never the
tensors), or a pickle's opcode stream (never unpickled), and hashes the file once (then caches the
hashes and the verdict per file state and policy). Findings come from:

- the hash, against blocklists a host imports (``blocked_hash``: blocks in every profile);
- the format: pickle checkpoints can run code when loaded (``unsafe_format`` unless
  ``[model] allow_pickle``) and dangerous imports block regardless (``unsafe_code``);
- the file name and metadata, through the prompt stage's term engine, with training tags weighed
  by the share of images that carry them (`model_metadata`).

A file that cannot be parsed blocks with reason ``malformed_input``; a screen that cannot run
(the term lists fail to load) blocks with ``guard_unavailable``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .hash_blocklist import Blocklist
from .model_hashes import CACHE_FILE, FileHashes, FileKey, HashCache, default_cache_dir, hash_file
from .model_metadata import TermScanner, details_of, metadata_findings, tag_stats
from .pickle_scan import looks_like_pickle, scan_pickle_file
from .policy import Policy, load_policy
from .prompt_lexical import Lexicon
from .safetensors_header import SafetensorsHeader, looks_like_safetensors, read_header
from .verdict import MALFORMED_INPUT, Action, Finding, Reason, Verdict, decide, unavailable

logger = logging.getLogger("sdguard.model")

STAGE = "model"
SAFETENSORS = "safetensors"
PICKLE = "pickle"
UNKNOWN = "unknown"
SAFETENSORS_EXTS = (".safetensors", ".sft")
PICKLE_EXTS = (".ckpt", ".pt", ".pth", ".bin")
MODEL_EXTS = SAFETENSORS_EXTS + PICKLE_EXTS
BLOCKED_HASH = "blocked_hash"
UNSAFE_FORMAT = "unsafe_format"
UNSAFE_CODE = "unsafe_code"
UNKNOWN_IMPORT = "unknown_import"
# Bump when findings or details change meaning, so cached verdicts from older code are not reused.
SCREEN_VERSION = "11"
_SNIFF_BYTES = 16
# Real kohya metadata is well under 1 MB (tag counts included); beyond this a file is refused.
MAX_METADATA_CHARS = 16_000_000


def check_model_file(path: str | os.PathLike[str], policy: Policy | None = None, *,
                     blocklists: Iterable[Blocklist] = (), cache: HashCache | None = None,
                     lexicon: TermScanner | None = None, hashes: bool = True) -> Verdict:
    """Screen one model file.

    Args:
        path (`str` or `PathLike`): a ``.safetensors``, ``.ckpt``, ``.pt``, ``.pth`` or ``.bin`` file
            (judged by its extension, as hosts load it; other names are sniffed, see `detect_format`).
        policy (`Policy`, *optional*, defaults to the ``public`` profile).
        blocklists (`Iterable[Blocklist]`, *optional*): hash lists; a listed file blocks in every profile.
        cache (`HashCache`, *optional*): where hashes and verdicts are kept; defaults to the user
            cache (``$SDGUARD_CACHE``). Pass ``HashCache(":memory:")`` for none that outlives the process.
        lexicon (`TermScanner`, *optional*): the prompt stage's term engine; defaults to its lists.
        hashes (`bool`, *optional*, defaults to ``True``): ``False`` skips hashing when no blocklist is
            given (a header-only screen, milliseconds whatever the file's size); the hash fields are
            then ``None``. With blocklists the file is always hashed.

    Returns:
        `Verdict` with stage ``"model"``; details hold ``format``, ``sha256``, ``autov2``, ``autov3``,
        ``error`` (when malformed), ``top_tags`` and, for pickles, the imported globals.

    Raises:
        `FileNotFoundError`, `IsADirectoryError`, `PermissionError`: the path is not a readable file.

    Example:
        >>> check_model_file("models/loras/style.safetensors", load_policy("public")).action  # doctest: +SKIP
        <Action.ALLOW: 'allow'>
    """
    policy = policy or load_policy()
    key = FileKey.of(path)
    blocklist = Blocklist.combine(blocklists)
    hashes = hashes or len(blocklist) > 0
    cache = cache if cache is not None else default_cache()
    try:
        lexicon = lexicon if lexicon is not None else Lexicon.for_policy(policy)
    except Exception as e:  # noqa: BLE001 - any failure to load the term lists fails closed
        # Still report format, hashes, blocklist and pickle findings; only metadata goes unscreened.
        failed = unavailable(STAGE, policy, "the model metadata screen (term lists)", e)
        return failed.merge(_screen(key, policy, blocklist, None, cache, hashes))
    screen_key = _screen_key(policy, blocklist, lexicon, hashes)
    if screen_key is not None:
        stored = cache.get_verdict(key, screen_key)
        if stored is not None:
            try:
                return _decode(stored)
            except (KeyError, ValueError, TypeError) as e:  # a damaged entry is a miss, not a failure
                logger.warning("ignoring a damaged cached verdict for %s (%s)", key.path, e)
    verdict = _screen(key, policy, blocklist, lexicon, cache, hashes)
    if screen_key is not None and FileKey.of(key.path) == key:  # unchanged while we read it
        cache.put_verdict(key, screen_key, _encode(verdict))
    return verdict


def _screen(key: FileKey, policy: Policy, blocklist: Blocklist, lexicon: TermScanner | None,
            cache: HashCache, hashes: bool) -> Verdict:
    """Everything but the cache look-up; `lexicon` ``None`` skips the metadata screen."""
    settings = policy.section(STAGE)
    fmt = detect_format(key.path)
    findings: list[Finding] = []
    details: dict[str, Any] = {"path": key.path, "file_name": os.path.basename(key.path), "format": fmt,
                               "size": key.size}
    error = None
    header: SafetensorsHeader | None = None
    metadata: Mapping[str, str] = {}
    if fmt == SAFETENSORS:
        header = read_header(key.path)
        error = header.error
        metadata = header.metadata
        if sum(len(key) + len(value) for key, value in metadata.items()) > MAX_METADATA_CHARS:
            # Screening cost grows with the text, keys included (each is screened with its value);
            # truncating it would let a padded file through.
            error, metadata = f"__metadata__ holds more than {MAX_METADATA_CHARS} characters; too large to screen", {}
    elif fmt == PICKLE:
        scan = scan_pickle_file(key.path)
        error = scan.error
        details.update(pickle_container=scan.container, pickle_globals=list(scan.globals),
                       pickle_dangerous=list(scan.dangerous))
        findings += _pickle_findings(scan.dangerous, scan.unknown, settings["allow_pickle"])
    else:
        findings.append(Finding(UNSAFE_FORMAT, 1.0, "format", term=Path(key.path).suffix or "(no extension)",
                                detail="neither safetensors nor a pickle checkpoint: cannot be screened"))
    if hashes:
        identity = _hashes(key, header, cache)
        details.update(identity.to_dict())
        findings += _blocklist_findings(blocklist, identity)
    else:
        details.update(sha256=None, autov2=None, autov3=None)
    stats = tag_stats(metadata)
    # Unreadable tag counts or image counts could hide a trained concept: the file is malformed.
    error = error or stats.error
    if lexicon is not None:
        findings += metadata_findings(metadata, details["file_name"], lexicon, policy, stats)
    details.update(details_of(stats, settings["top_tags"]))
    if error is not None:
        details["error"] = error
    verdict = decide(STAGE, findings, policy, details)
    if error is None:
        return verdict
    reason = Reason(MALFORMED_INPUT, Action.BLOCK,
                    f"{MALFORMED_INPUT}: this {fmt} file cannot be screened ({error}); blocked")
    return replace(verdict, action=Action.BLOCK, reasons=(reason, *verdict.reasons))


def unreadable(path: str | os.PathLike[str], policy: Policy, error: OSError) -> Verdict:
    """The verdict for a file that cannot be read (a broken link, a link loop, no permission, not a
    regular file): it cannot be screened, so it blocks with reason ``malformed_input``.

    Args:
        path (`str` or `PathLike`): the file as named.
        policy (`Policy`): the policy in force (named in the verdict).
        error (`OSError`): what `check_model_file` raised.

    Returns:
        `Verdict` with ``details["error"]`` saying why; ``format`` is judged by the extension alone.
    """
    name = os.path.abspath(path)
    suffix = Path(name).suffix.lower()
    fmt = SAFETENSORS if suffix in SAFETENSORS_EXTS else PICKLE if suffix in PICKLE_EXTS else UNKNOWN
    message = f"cannot be read ({error.strerror or error})"
    details = {"path": name, "file_name": os.path.basename(name), "format": fmt, "size": None,
               "sha256": None, "autov2": None, "autov3": None, "error": message}
    reason = Reason(MALFORMED_INPUT, Action.BLOCK, f"{MALFORMED_INPUT}: this file {message}; blocked")
    return replace(decide(STAGE, [], policy, details), action=Action.BLOCK, reasons=(reason,))


def detect_format(path: str | os.PathLike[str]) -> str:
    """``safetensors``, ``pickle`` or ``unknown``.

    By extension first, because hosts pick their loader by it: a ``.ckpt`` goes to `torch.load`
    whatever its first bytes say, so it is judged as a pickle (and a ``.ckpt`` holding safetensors
    bytes fails the pickle scan and blocks). Other names are sniffed from their first bytes.
    """
    suffix = Path(path).suffix.lower()
    if suffix in SAFETENSORS_EXTS:
        return SAFETENSORS
    if suffix in PICKLE_EXTS:
        return PICKLE
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        size = os.fstat(f.fileno()).st_size
    if looks_like_safetensors(head, size):
        return SAFETENSORS
    if looks_like_pickle(head):
        return PICKLE
    return UNKNOWN


def _hashes(key: FileKey, header: SafetensorsHeader | None, cache: HashCache) -> FileHashes:
    cached = cache.get_hashes(key)
    if cached is not None:
        return cached
    offset = header.data_offset if header is not None else None
    hashes = hash_file(key.path, data_offset=offset)
    if FileKey.of(key.path) == key:
        cache.put_hashes(key, hashes)
    else:
        logger.warning("%s changed while it was hashed; not caching its hashes", key.path)
    return hashes


def _pickle_findings(dangerous: Iterable[str], unknown: Iterable[str], allow_pickle: bool) -> list[Finding]:
    findings = [Finding(UNSAFE_CODE, 1.0, "pickle_scan", term=name,
                        detail="imported when the file is loaded; can run code") for name in dangerous]
    if not allow_pickle:
        findings.append(Finding(UNSAFE_FORMAT, 1.0, "format", term=PICKLE,
                                detail="pickle checkpoints can run code when loaded; use the .safetensors "
                                       "version, or set [model] allow_pickle = true in a policy file"))
    else:
        findings += [Finding(UNKNOWN_IMPORT, 1.0, "pickle_scan", term=name,
                             detail="not on the list of imports ordinary checkpoints use") for name in unknown]
    return findings


def _blocklist_findings(blocklist: Blocklist, hashes: FileHashes) -> list[Finding]:
    findings = []
    for entry in blocklist.match(hashes):
        detail = f"listed as {entry.category}" + (f": {entry.reason}" if entry.reason else "")
        if entry.source:
            detail += f" (source: {entry.source})"
        # blocked_hash blocks in every profile; the list's category is reported (and combined) too.
        for category in dict.fromkeys((BLOCKED_HASH, entry.category)):
            findings.append(Finding(category, 1.0, "blocklist", term=f"{entry.hash_type}:{entry.hash}",
                                    model=blocklist.name, detail=detail))
    return findings


def _screen_key(policy: Policy, blocklist: Blocklist, lexicon: TermScanner, hashes: bool) -> str | None:
    """What a cached verdict depends on besides the file. ``None`` (no verdict caching) when the
    term engine cannot say which lists it holds."""
    lists = getattr(lexicon, "fingerprint", None)
    if lists is None:
        return None
    parts = (SCREEN_VERSION, policy.fingerprint, blocklist.fingerprint, str(lists), str(hashes))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


_DEFAULT_CACHES: dict[str, HashCache] = {}


def default_cache() -> HashCache:
    """The process's cache at the default location (re-read from ``$SDGUARD_CACHE`` each call)."""
    path = str(default_cache_dir() / CACHE_FILE)
    if path not in _DEFAULT_CACHES:
        _DEFAULT_CACHES[path] = HashCache(path)
    return _DEFAULT_CACHES[path]


def _encode(verdict: Verdict) -> dict[str, Any]:
    # Verdict.to_dict keeps one action per verdict; keep each reason's own for an exact round trip.
    return dict(verdict.to_dict(), _reason_actions=[r.action.value for r in verdict.reasons])


def _decode(data: Mapping[str, Any]) -> Verdict:
    data = dict(data)
    actions = data.pop("_reason_actions", [])
    verdict = Verdict.from_dict(data)
    reasons = tuple(replace(r, action=Action(a)) for r, a in zip(verdict.reasons, actions, strict=True))
    return replace(verdict, reasons=reasons)

