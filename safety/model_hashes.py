"""Model-file identity: SHA-256, AutoV2 and AutoV3 in one pass, and a SQLite cache of them.

- SHA-256: of the whole file (A1111's "hash", Civitai's SHA256).
- AutoV2: its first 10 hex digits (A1111's shorthash, Civitai's AutoV2).
- AutoV3: SHA-256 of the bytes after the safetensors header (kohya's ``sshs_model_hash``,
  ``addnet_hash_safetensors``), so editing metadata does not change it. Safetensors only.

All hashes are lowercase hex, as `sha256sum`, A1111 and kohya print them. Civitai shows them in
uppercase; compare with `same_hash`, which ignores case.

Both digests are fed from the same reads. They run on two threads (hashlib releases the GIL on
large buffers), so the second digest costs no extra wall time on a machine with two free cores.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("sdguard.model")

# Large reads: fewer syscalls and thread hand-offs; 4 MiB is past the point of diminishing returns.
READ_BYTES = 4 << 20
# Below this, a second thread costs more than it saves (small files, the last short read).
_PARALLEL_MIN_BYTES = 1 << 20
AUTOV2_DIGITS = 10
CACHE_FILE = "model_hashes-v2.sqlite"  # v2: keys hold the ctime (a v1 file is left unread)
_SQLITE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class FileHashes:
    """A file's hashes, lowercase hex. `autov3` is ``None`` for files that are not valid safetensors."""

    sha256: str
    autov2: str
    autov3: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"sha256": self.sha256, "autov2": self.autov2, "autov3": self.autov3}


@dataclass(frozen=True)
class FileKey:
    """What says a file is unchanged since it was hashed: path, size, mtime and ctime (ns), inode.
    On POSIX the ctime is there because no user call can set it: a file rewritten in place at the
    same size with its mtime put back (`os.utime`) still changes it. (On Windows Python reports the
    creation time there, which a rewrite does not move.) A chmod or chown moves it too, so a
    start-up script that does `chown -R` on the models folder costs one re-hash per file."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileKey:
        """Stat `path` (following links; the key keeps the absolute path as given, since resolving
        links costs a system call per folder level and the stat already identifies the target).

        Raises:
            `OSError`: it cannot be stat'ed or is not a regular file; `IsADirectoryError` for a folder.
        """
        absolute = os.path.abspath(path)
        st = os.stat(absolute)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{path} is a folder; give a model file (the CLI walks folders)")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return cls(absolute, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def same_hash(a: str, b: str) -> bool:
    """Hash equality ignoring case (Civitai prints uppercase, sha256sum lowercase)."""
    return a.lower() == b.lower()


def hash_file(path: str | os.PathLike[str], *, data_offset: int | None = None,
              read_bytes: int = READ_BYTES) -> FileHashes:
    """Hash a file in one pass: SHA-256 of everything and, when `data_offset` is given, SHA-256 of
    the bytes from `data_offset` on (AutoV3).

    Args:
        path (`str` or `PathLike`): the file.
        data_offset (`int`, *optional*): where a safetensors file's data starts (8 + header length).
        read_bytes (`int`, *optional*): size of each read.

    Returns:
        `FileHashes`

    Raises:
        `OSError`: the file cannot be read.
    """
    full = hashlib.sha256()
    tail = hashlib.sha256() if data_offset is not None else None
    buffer = bytearray(read_bytes)
    view = memoryview(buffer)
    position = 0
    pool: ThreadPoolExecutor | None = None
    try:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buffer):
                pending = None
                if tail is not None and position + n > data_offset:  # type: ignore[operator]
                    part = view[max(0, data_offset - position):n]  # type: ignore[operator]
                    if len(part) < _PARALLEL_MIN_BYTES:
                        tail.update(part)
                    else:
                        pool = pool or ThreadPoolExecutor(1, "sdguard-hash")
                        pending = pool.submit(tail.update, part)
                full.update(view[:n])
                if pending is not None:
                    pending.result()  # the buffer is reused by the next read
                position += n
    finally:
        if pool is not None:
            pool.shutdown()
    sha = full.hexdigest()
    return FileHashes(sha, sha[:AUTOV2_DIGITS], tail.hexdigest() if tail is not None else None)


def default_cache_dir() -> Path:
    """``$SDGUARD_CACHE``, else ``$XDG_CACHE_HOME/sdguard`` (``~/.cache/sdguard`` by default;
    ``%LOCALAPPDATA%\\sdguard\\cache`` on Windows)."""
    env = os.environ.get("SDGUARD_CACHE")
    if env:
        return Path(env)
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "sdguard" / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sdguard"


class HashCache:
    """Hashes and screening results per file, in SQLite, valid while the file's `FileKey` matches.

    A cache that cannot be opened or written is skipped with a warning: it only saves time, and
    every answer it gives is re-derivable from the file.

    Args:
        path (`str` or `Path`, *optional*): the database; defaults to ``default_cache_dir()/CACHE_FILE``.
            ``":memory:"`` keeps it in memory (tests).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = str(path) if path is not None else str(default_cache_dir() / CACHE_FILE)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=_SQLITE_TIMEOUT_S, check_same_thread=False,
                                 isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " ctime_ns INTEGER, inode INTEGER, sha256 TEXT, autov2 TEXT, autov3 TEXT);"
                "CREATE TABLE IF NOT EXISTS verdicts (path TEXT, screen_key TEXT, size INTEGER,"
                " mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, verdict TEXT, PRIMARY KEY (path, screen_key));"
            )
            self._db = db
        except (OSError, sqlite3.Error) as e:
            logger.warning("hash cache %s unavailable (%s); hashing without it", self.path, e)

    def get_hashes(self, key: FileKey) -> FileHashes | None:
        row = self._query("SELECT sha256, autov2, autov3 FROM hashes WHERE path=? AND size=? AND mtime_ns=?"
                          " AND ctime_ns=? AND inode=?", (key.path, key.size, key.mtime_ns, key.ctime_ns, key.inode))
        return FileHashes(*row) if row else None

    def put_hashes(self, key: FileKey, hashes: FileHashes) -> None:
        self._write("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key.path, key.size, key.mtime_ns, key.ctime_ns, key.inode, hashes.sha256, hashes.autov2,
                     hashes.autov3))

    def get_verdict(self, key: FileKey, screen_key: str) -> dict[str, Any] | None:
        """A stored screening result for this exact file state and `screen_key` (policy, lists, code)."""
        row = self._query("SELECT verdict FROM verdicts WHERE path=? AND screen_key=? AND size=? AND mtime_ns=?"
                          " AND ctime_ns=? AND inode=?",
                          (key.path, screen_key, key.size, key.mtime_ns, key.ctime_ns, key.inode))
        if not row:
            return None
        try:
            return json.loads(row[0])
        except ValueError:
            return None

    def put_verdict(self, key: FileKey, screen_key: str, verdict: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key.path, screen_key, key.size, key.mtime_ns, key.ctime_ns, key.inode,
                     json.dumps(verdict, ensure_ascii=False, sort_keys=True)))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self._db is None:
            return None
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchone()
        except sqlite3.Error as e:
            logger.warning("hash cache %s read failed (%s)", self.path, e)
            return None

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        if self._db is None:
            return
        try:
            with self._lock:
                self._db.execute(sql, params)
        except sqlite3.Error as e:
            logger.warning("hash cache %s write failed (%s)", self.path, e)
