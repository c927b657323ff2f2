"""``nnunet-ext``: one console script whose subcommands live in :mod:`nnunet_ext.commands`.

Every public module in that package defines ``NAME``, ``HELP``, ``EXAMPLE`` (the end of its ``--help``),
``add_arguments(parser)`` and ``run(args) -> int`` and is picked up here by name, so adding a command never
touches this file. Command modules keep heavy imports (torch, nnU-Net) inside ``run`` so that
``nnunet-ext env`` stays fast enough for shell start-up. Errors end every command the same way
(:mod:`nnunet_ext.errors`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from nnunet_ext import __version__, commands
from nnunet_ext.commands._options import subcommand_parser
from nnunet_ext.errors import DEBUG_ENV, EXIT_BAD_INPUT, debug_requested, run_command


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: a bad command line names the problem, ``--help`` the usage."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nnunet-ext", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nnunet-ext {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"print the traceback of an error (also: {DEBUG_ENV}=1); exit statuses: 2 bad input, "
                             "1 a failed run")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # shared helpers of the commands
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        sub = subcommand_parser(subparsers, module.NAME, module.HELP, module.EXAMPLE)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_BAD_INPUT
    return run_command(args.command, lambda: args.run(args), debug_requested(args.debug))


if __name__ == "__main__":
    sys.exit(main())
