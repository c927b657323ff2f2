"""``nnunet-ext demo-data OUT --task gli|men-rt -n N``: synthetic cases in the challenges' download layout."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo-data"
HELP = "write synthetic BraTS-GLI / BraTS-MEN-RT cases (challenge naming and geometry) for demos and tests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (one sub-folder per case)")
    parser.add_argument("--task", choices=["gli", "men-rt"], required=True)
    parser.add_argument("-n", "--num-cases", type=int, default=10, help="number of cases (default 10)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="grid size (default: GLI 240 240 155, MEN-RT 256 256 112)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (case i uses seed + i)")
    parser.add_argument("--unlabelled", type=int, default=0,
                        help="the last N cases get no label file, like a validation download")
    parser.add_argument("-j", "--num-workers", type=int, default=1, help="parallel worker processes")


def run(args: argparse.Namespace) -> int:
    from nnunet_ext.dataset_conversion.demo_data import write_demo_dataset

    if args.num_cases < 1 or not 0 <= args.unlabelled <= args.num_cases:
        print("error: need -n >= 1 and 0 <= --unlabelled <= -n")
        return 2
    ids = write_demo_dataset(args.out, args.task, args.num_cases, tuple(args.shape) if args.shape else None,
                             args.seed, args.unlabelled, args.num_workers)
    print(f"wrote {len(ids)} {args.task} cases to {args.out}")
    return 0
