"""`sdguard audit verify|tail`."""

from __future__ import annotations

import argparse

from ..audit import AuditLog
from ._common import EXIT_BLOCKED, UsageError, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="verify or read the audit trail")
    cmds = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = cmds.add_parser("verify", help="check the hash chain (exit 3 if broken)")
    tail = cmds.add_parser("tail", help="print the last records")
    tail.add_argument("-n", type=int, default=10, help="how many records (default 10)")
    for c in (verify, tail):
        c.add_argument("--path", help="audit file (default: $SDGUARD_AUDIT or the user state dir)")
        c.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(run=run_verify)
    tail.set_defaults(run=run_tail)


def run_verify(args: argparse.Namespace) -> int:
    log = AuditLog(args.path)
    result = log.verify()
    if args.json:
        print_json({"path": str(log.path), **result.to_dict()})
    elif result.ok:
        tail = " (the last write was cut short; it will be dropped on the next append)" if result.partial_tail else ""
        print(f"ok: {result.records} records verify in {log.path}{tail}")
    else:
        print(f"BROKEN after {result.records} good records in {log.path}: {result.error}")
    return 0 if result.ok else EXIT_BLOCKED


def run_tail(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise UsageError("-n must be 0 or more")
    log = AuditLog(args.path)
    if not log.path.exists():
        raise FileNotFoundError(f"no audit trail at {log.path}")
    for rec in log.tail(args.n):
        if args.json:
            print_json(rec)
        else:
            v = rec["verdict"]
            why = "; ".join(v["reasons"]) or "-"
            print(f"{rec['seq']:>6} {rec['time']} {rec['host']:<8} {rec['stage']:<7} {v['action']:<7} {why}")
    return 0
