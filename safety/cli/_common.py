"""What every subcommand shares: policy options, JSON output, exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from ..audit import AuditLog
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


def audit_from_args(args: argparse.Namespace) -> AuditLog | None:
    return AuditLog(args.audit) if args.audit else None


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def exit_status(verdicts: Iterable[Verdict]) -> int:
    return EXIT_BLOCKED if any(v.blocked for v in verdicts) else EXIT_OK
