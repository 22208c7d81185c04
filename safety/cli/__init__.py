"""The `sdguard` command. Each module in this package adds its subcommands through `register()`.

Exit status everywhere: 0 nothing blocked, 3 something blocked (or a required mark missing),
2 bad usage or unreadable input (message on stderr, nothing half-written to stdout).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from ..errors import SdguardError
from ._common import EXIT_USAGE, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdguard", description="Safety and provenance checks for local Stable Diffusion.",
        epilog="Exit status: 0 nothing blocked, 3 something blocked (or a required mark missing), "
               "2 bad usage or unreadable input.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        return args.run(args)
    except (UsageError, SdguardError) as e:
        print(f"sdguard: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a path that is a file where a folder is needed, a full disk, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"sdguard: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
