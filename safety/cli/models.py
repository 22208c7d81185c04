"""`sdguard scan-models`: the model-file stage from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..audit import hash_input
from ..hash_blocklist import Blocklist, BlocklistError
from ..model_guard import MODEL_EXTS, check_model_file, default_cache, unreadable
from ..model_report import write_report
from ..verdict import Verdict
from ._common import (EXIT_USAGE, UsageError, add_audit_arg, add_policy_args, audit_from_args, exit_status,
                      find_files, policy_from_args, print_json)

# Without a terminal, progress lines appear only for scans at least this long (a cron job's log
# should not fill with them for three files).
PROGRESS_MIN_FILES_NO_TTY = 100
_PROGRESS_INTERVAL_S = 0.2
_RECORD_KEYS = ("path", "format", "sha256", "autov2", "autov3", "action", "categories", "reasons", "error")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan-models", help="screen LoRAs, checkpoints and embeddings before they load",
                       description="Screen model files (folders are walked for "
                                   f"{' '.join(MODEL_EXTS)}): hashes, blocklists, pickle imports, "
                                   "metadata and training tags. Prints one result per file; exit 0 "
                                   "none blocked, 3 some blocked, 2 some file unreadable (it is "
                                   "reported as blocked and the rest are still scanned).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="model files or folders")
    add_policy_args(p)
    p.add_argument("--blocklist", action="append", default=[], metavar="FILE",
                   help="hash blocklist (CSV or JSON; repeatable); a listed file blocks in every profile")
    p.add_argument("--report", metavar="OUT.html", help="also write an HTML report for a moderator")
    add_audit_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = policy_from_args(args)
    blocklists = [_load_blocklist(path) for path in args.blocklist]
    files = [os.path.abspath(file) for file, _ in find_files(args.paths, MODEL_EXTS)]
    if not files:
        print("sdguard: no model files found", file=sys.stderr)
        return 0
    cache = default_cache()
    progress = Progress(len(files), sys.stderr)
    verdicts: list[Verdict] = []
    any_unreadable = False
    for path in files:
        try:
            verdicts.append(check_model_file(path, policy, blocklists=blocklists, cache=cache))
        except OSError as e:  # a broken link in models/loras must not hide the other files' verdicts
            any_unreadable = True
            verdicts.append(unreadable(path, policy, e))
            print(f"sdguard: error: {path}: {verdicts[-1].details['error']}", file=sys.stderr)
        progress.step(path)
    progress.close()
    records = [file_record(v) for v in verdicts]
    if args.report:
        try:
            write_report(args.report, records)
        except OSError as e:
            raise UsageError(f"{args.report}: cannot write the report ({e.strerror or e})") from None
    log = audit_from_args(args, policy)
    if log is not None:
        for verdict in verdicts:
            log.record(verdict, input_hash=verdict.details.get("sha256") or hash_input(verdict.details["path"]),
                       host=policy.section("audit")["host"])
    for record in records:
        if args.json:
            print_json(record)
        else:
            print(f"{record['action'].upper():6} {record['path']}")
            for reason in record["reasons"]:
                print(f"       {reason}")
    # As check-image: 2 when some file could not be read (its record blocks; the rest are reported).
    return EXIT_USAGE if any_unreadable else exit_status(verdicts)


def file_record(verdict: Verdict) -> dict[str, Any]:
    """One file's JSON object: the fixed keys first (``error`` is ``null`` unless malformed), then
    the rest of the verdict (codes, evidence, top tags, policy, pickle imports)."""
    data = verdict.to_dict()
    record = {key: data.pop(key, None) for key in _RECORD_KEYS}
    record.update(data)
    return record


def _load_blocklist(path: str) -> Blocklist:
    try:
        return Blocklist.load(path)
    except BlocklistError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read the blocklist ({e.strerror or e})") from None


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal; without one, a line per tenth,
    and only for long scans. Silent otherwise, so piped output stays clean."""

    WIDTH = 30

    def __init__(self, total: int, stream: IO[str]):
        self.total = total
        self.stream = stream
        self.done = 0
        self.tty = stream.isatty()
        self.enabled = (self.tty and total > 1) or total >= PROGRESS_MIN_FILES_NO_TTY
        self._last_draw = 0.0
        self._last_tenth = 0

    def step(self, path: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= _PROGRESS_INTERVAL_S or self.done == self.total:
                self._last_draw = now
                filled = self.WIDTH * self.done // self.total
                name = Path(path).name[:40]
                self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                                  f"{self.done}/{self.total} {name:<40}")
                self.stream.flush()
        elif self.done * 10 // self.total > self._last_tenth:
            self._last_tenth = self.done * 10 // self.total
            self.stream.write(f"sdguard: scanned {self.done}/{self.total} files\n")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
