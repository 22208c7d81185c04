"""Writing output files so that no reader ever sees half of one, with the permissions a user expects."""

from __future__ import annotations

import os
import stat
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(target: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Write `target` through a temporary file in its folder, renamed over it once complete: a
    reader sees the old file or the new one, and a failure leaves the old one (or nothing) behind.
    A file replaced keeps its permissions (rewriting a private file in place must not make it
    readable to others); a new one gets the umask's, as any new file does.

    Args:
        target: the file to write or replace (a link there is replaced, not written through).
        write: writes the content into the binary file it is given.

    Raises:
        `OSError`: the folder cannot be written, or `target` cannot be replaced (a folder, say);
            `write`'s errors. The temporary file is removed.
    """
    target = Path(target)
    try:
        old = os.stat(target).st_mode
    except OSError:
        old = 0
    while True:
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            # Created like any new file, so the kernel applies the umask (mkstemp would make it
            # owner-only, and reading the umask means setting it, which a threaded host must not).
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        if stat.S_ISREG(old):
            os.chmod(temp, stat.S_IMODE(old))
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
