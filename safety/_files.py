"""Writing output files so that no reader ever sees half of one, with the permissions a user expects."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(target: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Write `target` through a temporary file in its folder, renamed over it once complete: a
    reader sees the old file or the new one, and a failure leaves the old one (or nothing) behind.
    The file gets `mode_for(target)`.

    Args:
        target: the file to write or replace (a link there is replaced, not written through).
        write: writes the content into the binary file it is given.

    Raises:
        `OSError`: the folder cannot be written, or `target` cannot be replaced (a folder, say);
            `write`'s errors. The temporary file is removed.
    """
    target = Path(target)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(temp, mode_for(target))  # mkstemp makes the file owner-only
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def mode_for(target: str | os.PathLike[str]) -> int:
    """The permissions of the regular file at `target` (rewriting a private file in place must not make
    it readable to others), else the usual ones for a new file under the umask."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        mode = 0
    if stat.S_ISREG(mode):
        return stat.S_IMODE(mode)
    # The only way to read the umask is to set it, for a moment: fine for the CLI that writes
    # outputs; a threaded host should not call this.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
