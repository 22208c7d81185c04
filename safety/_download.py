"""Resumable HTTP download into a ``.part`` file, with an optional progress bar. Knows nothing of
manifests or checksums: `weights.fetch` checks the result before it is renamed into place."""

from __future__ import annotations

import http.client
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_S = 30
USER_AGENT = "sdguard-weights/0.1"
HTTP_PARTIAL = 206
HTTP_RANGE_NOT_SATISFIABLE = 416

Progress = Callable[[int, "int | None"], None]


class DownloadError(Exception):
    """The download stopped; `unreachable` is true when the server could not be reached at all."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def download(url: str, part: Path, *, size: int | None = None, progress: Progress | None = None) -> None:
    """Fill `part` with the whole file at `url`, resuming (HTTP Range) from what it already holds.

    Args:
        url (`str`): http(s) URL.
        part (`Path`): the partial file; created or appended to, never deleted here.
        size (`int`, *optional*): the expected size; a `part` already this long is not re-fetched.
        progress (`Callable[[int, int | None], None]`, *optional*): called with (bytes so far, total).

    Raises:
        DownloadError: HTTP error, connection refused or lost, or the file could not be written.
    """
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return  # a previous run got every byte and stopped before the rename
    if size is not None and have > size:
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            if have and response.status != HTTP_PARTIAL:  # the server ignored Range: start again
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else size
            done = _copy(response, part, have, total, progress)
        if length is not None and done < total:  # urllib returns short reads when the peer hangs up
            raise DownloadError(f"the connection closed after {done} of {total} bytes")
    except urllib.error.HTTPError as e:
        if e.code == HTTP_RANGE_NOT_SATISFIABLE and have:  # nothing left to send: the caller checks it
            return
        raise DownloadError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DownloadError(str(e.reason), unreachable=True) from None
    except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
        raise DownloadError(f"the download was interrupted ({type(e).__name__}: {e})") from None
    finally:
        if isinstance(progress, StderrBar):
            progress.close()


def _copy(response: http.client.HTTPResponse, part: Path, have: int, total: int | None,
          progress: Progress | None) -> int:
    try:
        out = part.open("ab" if have else "wb")
    except OSError as e:
        raise DownloadError(f"cannot write {part} ({e.strerror})") from None
    done = have
    with out:
        while chunk := response.read(CHUNK_BYTES):
            try:
                out.write(chunk)
            except OSError as e:  # e.g. disk full: what was written stays for a resume
                raise DownloadError(f"cannot write {part} ({e.strerror})") from None
            done += len(chunk)
            if progress:
                progress(done, total)
    return done


class StderrBar:
    """A one-line progress bar on stderr, redrawn at most every `INTERVAL_S`."""

    INTERVAL_S = 0.2
    WIDTH = 30

    def __init__(self, label: str, stream: TextIO | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.drawn = 0.0
        self.last: tuple[int, int | None] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        self.last = (done, total)
        now = time.monotonic()
        if now - self.drawn >= self.INTERVAL_S:
            self.drawn = now
            self._draw(done, total, now)

    def _draw(self, done: int, total: int | None, now: float) -> None:
        rate = done / max(now - self.started, 1e-6) / 1e6
        if total:
            filled = int(self.WIDTH * done / total)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * done / total:5.1f}%"
        else:
            bar = f"{done / 1e6:8.1f} MB"
        self.stream.write(f"\r{self.label} {bar} {rate:6.1f} MB/s")
        self.stream.flush()

    def close(self) -> None:
        if self.last is not None:
            self._draw(*self.last, time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
