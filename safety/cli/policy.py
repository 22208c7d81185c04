"""`sdguard policy show|check`."""

from __future__ import annotations

import argparse

from ..policy import load_policy
from ._common import add_policy_args, policy_from_args, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="show or check policies")
    cmds = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    show = cmds.add_parser("show", help="print the resolved policy")
    add_policy_args(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_show)
    check = cmds.add_parser("check", help="validate a policy file (exit 2 with the line on error)")
    check.add_argument("file")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(run=run_check)


def run_show(args: argparse.Namespace) -> int:
    policy = policy_from_args(args)
    if args.json:
        print_json(policy.to_dict())
        return 0
    print(f"policy {policy.name} ({policy.source}), fingerprint {policy.fingerprint}")
    if policy.data.get("description"):
        print(f"  {policy.data['description']}")
    print(f"  {'category':<20} {'action':<8} stage actions / thresholds")
    for name, rule in policy.data["categories"].items():
        stages = ", ".join(f"{s}={a}" for s, a in rule.get("stage_actions", {}).items())
        thresholds = ", ".join(f"{s}={v:g}" for s, v in rule.get("thresholds", {}).items())
        print(f"  {name:<20} {rule['action']:<8} {'; '.join(x for x in (stages, thresholds) if x)}")
    for name, combo in policy.combinations.items():
        rule = " and ".join(combo.all) + (f" and any of {', '.join(combo.any)}" if combo.any else "")
        print(f"  {name} = {rule}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)  # raises PolicyError (exit 2) with file:line
    if args.json:
        print_json({"ok": True, "name": policy.name, "fingerprint": policy.fingerprint})
    else:
        print(f"ok: {args.file} (policy {policy.name}, fingerprint {policy.fingerprint})")
    return 0
