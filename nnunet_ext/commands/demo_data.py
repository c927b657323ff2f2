"""``nnunet-ext demo-data OUT --task gli|men-rt -n N``: synthetic cases in the challenges' download layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_ext.commands._options import add_num_processes
from nnunet_ext.errors import UsageError

NAME = "demo-data"
HELP = "write synthetic BraTS-GLI / BraTS-MEN-RT cases (challenge naming and geometry) for demos and tests"
EXAMPLE = """\
Example (the input of the other commands' examples):
  nnunet-ext demo-data gli_src --task gli -n 10 --shape 64 64 48 --unlabelled 2
  # gli_src/BraTS-GLI-XXXXX-YYY/BraTS-GLI-XXXXX-YYY-{t1n,t1c,t2w,t2f,seg}.nii.gz, the last 2 cases without -seg
  nnunet-ext demo-data men_src --task men-rt -n 10 --shape 64 64 40 -np 2
  nnunet-ext convert brats-gli gli_src -d 501                      # next: an nnU-Net raw dataset
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (one sub-folder per case)")
    parser.add_argument("--task", choices=["gli", "men-rt"], required=True)
    parser.add_argument("-n", "--num-cases", type=int, default=10, help="number of cases (default 10)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="grid size (default: GLI 240 240 155, MEN-RT 256 256 112)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (case i uses seed + i)")
    parser.add_argument("--unlabelled", type=int, default=0,
                        help="the last N cases get no label file, like a validation download")
    add_num_processes(parser, 1, "parallel worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from nnunet_ext.dataset_conversion.demo_data import write_demo_dataset

    if args.num_cases < 1 or not 0 <= args.unlabelled <= args.num_cases:
        raise UsageError(f"need -n >= 1 and 0 <= --unlabelled <= -n, got -n {args.num_cases} --unlabelled "
                         f"{args.unlabelled}")
    ids = write_demo_dataset(args.out, args.task, args.num_cases, tuple(args.shape) if args.shape else None,
                             args.seed, args.unlabelled, args.num_processes)
    print(f"wrote {len(ids)} {args.task} cases to {args.out}")
    return 0
