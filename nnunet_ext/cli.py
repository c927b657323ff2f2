"""``nnunet-ext``: one console script whose subcommands live in :mod:`nnunet_ext.commands`.

Every module in that package defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
and is picked up here by name, so adding a command never touches this file. Command modules keep heavy
imports (torch, nnU-Net) inside ``run`` so that ``nnunet-ext env`` stays fast enough for shell start-up.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from nnunet_ext import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-ext", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nnunet-ext {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
