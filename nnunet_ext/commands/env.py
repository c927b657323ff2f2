"""``nnunet-ext env``: print the shell line that lets ``nnUNetv2_train``/``nnUNetv2_predict`` find our trainers."""

from __future__ import annotations

import argparse
import os
import shlex

from nnunet_ext.discovery import ENV_VAR, trainer_search_path

NAME = "env"
HELP = "print the line for eval \"$(nnunet-ext env)\" that lets stock nnUNetv2_* CLIs find SliceResTrainer"
EXAMPLE = """\
Example (once per shell, or in ~/.bashrc):
  eval "$(nnunet-ext env)"
  nnunet-ext env --shell fish | source                       # fish
  nnUNetv2_train 501 2d 0 -tr SliceResTrainer -device cpu    # now finds the trainer (data: nnunet-ext plan --help)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shell", choices=["sh", "fish"], default="sh", help="syntax of the printed line")


def run(args: argparse.Namespace) -> int:
    value = trainer_search_path(os.environ.get(ENV_VAR))
    if args.shell == "fish":
        print(f"set -gx {ENV_VAR} {shlex.quote(value)}")
    else:
        print(f"export {ENV_VAR}={shlex.quote(value)}")
    return 0
