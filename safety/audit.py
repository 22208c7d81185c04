"""Append-only, hash-chained audit trail in JSON Lines.

Why JSON Lines and not SQLite: a record is one `write()` of one line to a file opened with
O_APPEND, so a crash can only ever leave a *partial last line*, which `verify()` reports and the
next `record()` cuts off before appending. The file is readable with `tail`, `grep` and `jq`,
ships to log collectors as is, and needs no schema migrations. SQLite would add a journal and a
page format between us and that guarantee without adding anything the chain needs.

Each record holds the SHA-256 of the previous record, so editing or deleting any complete record
breaks verification from that point on, except records cut off the end: the shorter chain still
verifies, so whoever must notice that keeps the last hash elsewhere. The trail never stores
images: only hashes of inputs, scores, reasons and the policy fingerprint. Prompt text is stored only as the policy's
``[audit] prompt_text`` allows (`prompt_text_to_store`); by default it is not.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _json
from .errors import SdguardError
from .prompt_normalize import replace_lone_surrogates
from .verdict import Verdict

if TYPE_CHECKING:
    from .policy import Policy

GENESIS = "0" * 64
_TAIL_READ = 1 << 16  # read backwards in 64 KiB steps to find the last record
_RECORD_START = b'{"seq":'  # how every record line begins (`record` writes "seq" first)
_RECORD_KEYS = {"seq", "prev", "time", "stage", "host", "verdict", "hash"}
_VERDICT_KEYS = {"action", "reasons"}


def default_audit_path() -> Path:
    """``$SDGUARD_AUDIT``, else ``$XDG_STATE_HOME/sdguard/audit.jsonl`` (``~/.local/state`` by default;
    ``%LOCALAPPDATA%\\sdguard`` on Windows)."""
    env = os.environ.get("SDGUARD_AUDIT")
    if env:
        return Path(env)
    if os.name == "nt":
        root = Path(os.environ.get("LOCALAPPDATA", Path.home()))
    else:
        root = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return root / "sdguard" / "audit.jsonl"


def hash_input(data: bytes | str) -> str:
    """SHA-256 hex of an input (prompt text, image bytes, file bytes), the only trace kept of it."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")  # a lone surrogate still hashes, never raises
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `AuditLog.verify`.

    Args:
        ok (`bool`): every complete record chains correctly.
        records (`int`): complete records that verified.
        error (`str`, *optional*): the first problem found, with its line number.
        partial_tail (`bool`): the file ends in an incomplete record (a write was cut short);
            that alone does not make `ok` false.
    """

    ok: bool
    records: int
    error: str | None = None
    partial_tail: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "error": self.error, "partial_tail": self.partial_tail}


def prompt_text_to_store(policy: Policy, verdict: Verdict, text: str) -> str | None:
    """`text` if the policy's ``[audit] prompt_text`` keeps it for this verdict, else None:
    ``"none"`` keeps nothing, ``"allowed"`` the text of prompts not blocked, ``"all"`` every prompt."""
    keep = policy.section("audit")["prompt_text"]
    return text if keep == "all" or (keep == "allowed" and not verdict.blocked) else None


class AuditLog:
    """An append-only audit trail at `path`.

    Args:
        path (`str` or `Path`, *optional*): defaults to `default_audit_path()`.

    Example:
        >>> log = AuditLog(tmp_path / "audit.jsonl")                      # doctest: +SKIP
        >>> log.record(verdict, input_hash=hash_input(prompt), host="cli")  # doctest: +SKIP
        >>> log.verify().ok                                                # doctest: +SKIP
        True
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_audit_path()

    def record(self, verdict: Verdict, *, input_hash: str, host: str = "cli",
               text: str | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Append one record and return it.

        Args:
            verdict (`Verdict`): what was decided.
            input_hash (`str`): `hash_input()` of what was checked.
            host (`str`): who asked ("cli", "comfyui", "a1111", "forge").
            text (`str`, *optional*): the checked text, stored as given: pass
                `prompt_text_to_store(...)`, which applies the policy.
            extra (`Mapping`, *optional*): more JSON fields (e.g. the step an in-loop check fired).
        """
        body: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "stage": verdict.stage,
            "profile": verdict.profile,
            "host": host,
            "input_sha256": input_hash,
            "verdict": verdict.to_dict(),
        }
        if text is not None:
            body["text"] = text
        if extra:
            body["extra"] = dict(extra)
        body = json_safe(body)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as fd:
            prev, seq = self._repair_and_last(fd)
            body = {"seq": seq + 1, "prev": prev, **body}
            body["hash"] = _record_hash(body)
            line = (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            os.write(fd, line)
            os.fsync(fd)
        return body

    def records(self) -> Iterator[dict[str, Any]]:
        """Complete records in order (a partial last line is skipped)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    return
                try:
                    rec = _json.loads(raw)
                except ValueError:
                    rec = None
                # What readers rely on; anything else (a hand edit, another program's JSON) is damage.
                if not (isinstance(rec, dict) and _RECORD_KEYS <= rec.keys()
                        and isinstance(rec["verdict"], dict) and _VERDICT_KEYS <= rec["verdict"].keys()):
                    raise SdguardError(f"{self.path}:{lineno}: not an audit record; run "
                                       f"`sdguard audit verify --path {self.path}`")
                yield rec

    def tail(self, n: int = 10) -> list[dict[str, Any]]:
        """The last `n` complete records."""
        out: list[dict[str, Any]] = []
        for rec in self.records():
            out.append(rec)
            if len(out) > n:
                out.pop(0)
        return out

    def verify(self) -> VerifyResult:
        """Check the whole chain. A partial last line (a write cut short) is reported, not an error.

        Raises:
            `FileNotFoundError`: there is no trail at `path` (a mistyped path must not verify).
        """
        if not self.path.exists():
            raise FileNotFoundError(f"no audit trail at {self.path}")
        prev, count = GENESIS, 0
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    if _starts_like_record(raw):  # what the next record() cuts off: a write cut short
                        return VerifyResult(True, count, None, partial_tail=True)
                    return VerifyResult(False, count, f"line {lineno}: an incomplete last line that is not "
                                                      f"an audit record (appending refuses to cut it off)")
                try:
                    rec = _json.loads(raw)
                except ValueError as e:
                    return VerifyResult(False, count, f"line {lineno}: not a JSON record ({e.msg})")
                if not isinstance(rec, dict) or rec.get("prev") != prev:
                    return VerifyResult(False, count, f"line {lineno}: chain broken (prev hash does not match)")
                if rec.get("seq") != count + 1:
                    return VerifyResult(False, count, f"line {lineno}: sequence number {rec.get('seq')}, expected {count + 1}")
                if _record_hash({k: v for k, v in rec.items() if k != "hash"}) != rec.get("hash"):
                    return VerifyResult(False, count, f"line {lineno}: record was altered (hash mismatch)")
                prev, count = rec["hash"], count + 1
        return VerifyResult(True, count)

    @contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            _lock(fd)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock

    def _repair_and_last(self, fd: int) -> tuple[str, int]:
        """Return (hash, seq) of the last complete record, after cutting off a partial last line
        (a write killed midway). Nothing is cut unless the file reads as a trail: the last
        complete line is a record and the partial one starts like one, so a path that points at
        some other file is refused unchanged."""
        size = os.fstat(fd).st_size
        end = _after_last_newline(fd, size)
        last = GENESIS, 0
        if end:
            start = _after_last_newline(fd, end - 1)
            try:
                rec = _json.loads(os.pread(fd, end - start, start))
                last = rec["hash"], rec["seq"]
            except (ValueError, KeyError, TypeError):
                raise self._damaged() from None
            if not isinstance(last[0], str) or type(last[1]) is not int:  # a hand edit: "seq": "5"
                raise self._damaged()
        if end != size:
            if not _starts_like_record(os.pread(fd, len(_RECORD_START), end)):
                raise self._damaged()
            os.ftruncate(fd, end)
        return last

    def _damaged(self) -> SdguardError:
        return SdguardError(f"{self.path}: the last record is damaged or this is not an audit trail, so "
                            f"the chain cannot be continued (the file was left as it is); run `sdguard "
                            f"audit verify --path {self.path}` and move the file aside to start a new trail")


def _starts_like_record(partial: bytes) -> bool:
    """Whether an incomplete last line could be a record cut short (so it may be cut off)."""
    head = partial[:len(_RECORD_START)]
    return head == _RECORD_START[:len(head)]


def _after_last_newline(fd: int, limit: int) -> int:
    """Offset just after the last newline among the first `limit` bytes (0 if there is none)."""
    pos = limit
    while pos > 0:
        start = max(0, pos - _TAIL_READ)
        i = os.pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def json_safe(value: Any) -> Any:
    """`value` as JSON can hold it, so that what callers pass (a host's run info: paths, numpy
    numbers) never stops a record or a line of output from being written: NaN and infinities
    become null, lone surrogates U+FFFD, other objects their number or text."""
    if isinstance(value, str):
        return replace_lone_surrogates(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, Mapping):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return json_safe(str(value))


def _record_hash(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


if os.name == "nt":  # pragma: no cover - Windows hosts
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
