"""What every subcommand shares: policy options, JSON output, exit codes."""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from .._files import write_atomic
from ..audit import AuditLog, json_safe
from ..policy import DEFAULT_PROFILE, PROFILES, Policy, load_policy
from ..verdict import Verdict

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BLOCKED = 3


class UsageError(Exception):
    """Bad arguments or unreadable input: exit status 2, message on stderr."""


def add_policy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILES, help=f"built-in profile (default: {DEFAULT_PROFILE})")
    parser.add_argument("--policy", metavar="FILE", help="policy TOML file (it names its own profile in 'extends')")


def policy_from_args(args: argparse.Namespace) -> Policy:
    if args.policy and args.profile:
        raise UsageError("give --profile or --policy, not both (a policy file names its profile in 'extends')")
    return load_policy(args.policy or args.profile or DEFAULT_PROFILE)


def add_audit_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audit", metavar="FILE", help="append a record per check to this audit trail")


def audit_from_args(args: argparse.Namespace, policy: Policy) -> AuditLog | None:
    """The trail named by --audit, else the one the policy's ``[audit] path`` names, else none."""
    path = args.audit or policy.section("audit")["path"]
    return AuditLog(path) if path else None


def find_files(paths: Sequence[str], suffixes: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """Files named directly, and files ending in one of `suffixes` (lower case) under folders:
    sorted, each once, with its path relative to the named folder's parent (for mirrored output
    folders). Links to folders are not followed, so a loop cannot trap the walk; a broken link is
    returned like a file, for the caller to report; pipes inside folders are left out.

    Raises:
        `UsageError`: a path does not exist (before anything is checked or printed).
    """
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise UsageError(f"{', '.join(missing)}: no such file or folder")
    found: dict[str, tuple[Path, Path]] = {}
    for raw in paths:
        root = Path(raw)
        # The real folder's name: ``..``, ``.`` or ``dir/..`` as written would lead a mirrored output
        # out of its folder (``out/../x.png``); ``/`` has none, so its files go straight in.
        base = Path(Path(os.path.abspath(raw)).name)
        if not root.is_dir():
            found.setdefault(os.path.abspath(root), (root, base))
            continue
        for folder, subfolders, names in os.walk(root):
            subfolders.sort()
            for name in sorted(names):
                file = Path(folder) / name
                # A pipe found in a folder is no image and reading it would wait for a writer.
                if name.lower().endswith(suffixes) and not _is_pipe(file):
                    found.setdefault(os.path.abspath(file), (file, base / file.relative_to(root)))
    return list(found.values())


def _is_pipe(path: Path) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:  # a broken link: returned, for the caller to report
        return False


def read_input(path: str | os.PathLike[str]) -> bytes:
    """A whole input file: a regular file, or a pipe named on the command line (``<(...)``,
    /dev/stdin), which ends when its writer does. Anything else is refused: a device such as
    /dev/zero never ends, so reading it would exhaust memory.

    Raises:
        `OSError`: cannot be read, or ``EINVAL`` "not a regular file or pipe".
    """
    mode = os.stat(path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise OSError(errno.EINVAL, "not a regular file or pipe", str(path))
    return Path(path).read_bytes()


def write_new_file(target: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a new file named `target`, or ``<stem>-1<suffix>``, ``-2``, ... where that name is
    taken: an output never replaces a file, nor writes through a link (a dangling one included).
    The content goes to a temporary file in the same folder, renamed over the claimed name once
    complete, so a reader never sees it half-written.

    Args:
        target (`Path`): the name wanted; its folder is created.
        write (`Callable`): writes the content into the binary file it is given.

    Returns:
        `Path`: the file written.

    Raises:
        `OSError`: the folder cannot be created or written; `write`'s errors. Nothing is left behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = target, 1
    while True:
        try:
            # O_EXCL claims the name atomically, and refuses any link there: no race, no write-through.
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
            n += 1
    try:
        write_atomic(candidate, write)  # replaces the empty claimed file, keeping the mode the umask gave it
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    return candidate


def print_json(obj: Any) -> None:
    """One JSON object per line, made JSON-safe as audit records are (NaN becomes null). A reader
    that goes away (`sdguard ... | head`) silences the rest, so the exit status still tells the truth."""
    try:
        sys.stdout.write(json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def report_error(path: str | os.PathLike[str], error: Exception, as_json: bool) -> None:
    """One input that could not be read, in a run that goes on with the others (which then exits 2):
    the message on stderr, and with --json an ``error`` object in its place in the output."""
    message = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    print(f"sdguard: error: {path}: {message}", file=sys.stderr)
    if as_json:
        print_json({"path": str(path), "error": message})


def exit_status(verdicts: Iterable[Verdict]) -> int:
    return EXIT_BLOCKED if any(v.blocked for v in verdicts) else EXIT_OK
