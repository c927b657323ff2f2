"""``nnunet-ext demo``: synthetic data -> convert -> plan -> train SliceRes -> 24-view predict -> evaluate -> report."""

from __future__ import annotations

import argparse

from nnunet_ext.commands._options import add_device, add_num_processes

NAME = "demo"
HELP = "run the whole SliceRes pipeline on built-in synthetic data (minutes on a CPU; nnU-Net folders inside --out)"
EXAMPLE = """\
Example (makes its own data with demo-data; nothing of your nnU-Net folders is used):
  nnunet-ext demo --quick --device cpu --out demo_quick    # about a minute: checks that the pipeline runs
  nnunet-ext demo --device cpu                             # the demo: about 10 minutes on 2 CPU cores
  nnunet-ext demo --task men-rt --seed 1                   # meningioma, another training seed
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=["gli", "men-rt"], default="gli", help="synthetic task (default gli)")
    parser.add_argument("--out", default="demo_out", help="output folder, also holds nnU-Net's folders "
                                                          "(default ./demo_out); re-run to resume")
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke-test setting (about a minute; checks the pipeline, does not learn much)")
    parser.add_argument("--cases", type=int, help="number of synthetic cases (default 20; --quick 10)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                        help="grid of the synthetic cases (default 64 64 48; --quick 32 32 24)")
    parser.add_argument("--budget-epochs", type=int, help="training epochs (default 40; --quick 1)")
    parser.add_argument("--budget-iterations", type=int, help="training iterations per epoch (default 25; --quick 4)")
    parser.add_argument("--budget-minutes", type=float,
                        help="safety cap on the training's wall clock (default 20; --quick none): training is "
                             "budgeted in iterations, and if the cap stops it first, the output and the report "
                             "say that the numbers are not the demo's")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed: network initialisation, slice sampling, augmentation (default 0; the "
                             "synthetic data stay the same)")
    add_device(parser)
    add_num_processes(parser, 2, "worker processes (default 2)")
    parser.add_argument("--quiet", action="store_true", help="keep nnU-Net's output in the log files only")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    from pathlib import Path

    from nnunet_ext.compare.demo import PROFILES, print_summary, run_demo
    from nnunet_ext.compare.pipeline import default_device
    from nnunet_ext.training.budget import Budget

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    profile = PROFILES["quick" if args.quick else "standard"]
    profile = dataclasses.replace(profile, **{k: v for k, v in (("cases", args.cases),
                                                                 ("shape", tuple(args.shape) if args.shape else None))
                                              if v is not None})
    if profile.cases < 10:
        raise SystemExit("nnunet-ext demo: --cases must be at least 10 (5 patients for a 5-fold split)")
    budget = Budget(epochs=args.budget_epochs or profile.epochs, iterations=args.budget_iterations or
                    profile.iterations, val_iterations=profile.val_iterations,
                    minutes=args.budget_minutes or profile.cap_minutes)
    summary = run_demo(args.task, Path(args.out), profile, budget, args.device or default_device(),
                       args.num_processes, echo=not args.quiet, seed=args.seed)
    print_summary(summary)
    return 0
