"""``nnunet-ext compare``: stock nnU-Net 2d / 3d_fullres (optionally ResEnc) against SliceRes on one dataset.

Same folds, same training budget, each method's own standard inference, the same evaluation rules; a
Markdown + HTML report with accuracy (with 95% intervals) and cost (training time, peak GPU memory, inference
seconds per case). Every step is cached in ``OUT/manifest.json``: re-run the same command to resume.
"""

from __future__ import annotations

import argparse

from nnunet_ext.commands._options import add_device, add_num_processes, example

NAME = "compare"
HELP = "train and evaluate stock nnU-Net and SliceRes under one budget; resumable; writes a report"
EXAMPLE = example("convert", "nnunet-ext compare -d 501 --budget-epochs 2 --budget-iterations 10 --device cpu -np 2 "
                  "-o compare_501", "# writes compare_501/report.md and .html; run it again to resume")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunet_ext.compare.methods import DEFAULT_METHODS, METHODS

    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (DatasetXXX_Name) in nnUNet_raw")
    parser.add_argument("-f", "--folds", type=int, nargs="+", default=[0],
                        help="cross-validation folds to train and hold out (default: 0; nnU-Net's 5-fold split)")
    parser.add_argument("--budget-epochs", type=int, help="epochs per training (same for every method)")
    parser.add_argument("--budget-iterations", type=int, help="training iterations per epoch")
    parser.add_argument("--budget-val-iterations", type=int, help="validation iterations per epoch")
    parser.add_argument("--budget-minutes", type=float, help="wall-clock minutes per training")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=sorted(METHODS),
                        help=f"methods to train (default: {' '.join(DEFAULT_METHODS)})")
    parser.add_argument("--resenc", action="store_true",
                        help="also train stock 3d_fullres with the ResEnc M preset (nnUNetResEncUNetMPlans)")
    parser.add_argument("--rules", default="brats-gli-2024",
                        help="evaluation rules for `nnunet-ext evaluate` (default brats-gli-2024)")
    add_device(parser)
    parser.add_argument("-o", "--out", help="output folder (default: ./compare_DatasetXXX_Name)")
    add_num_processes(parser, 2, "worker processes for preprocessing, data augmentation and prediction (default 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="SliceRes plan setting passed to `nnunet-ext plan --set` (repeatable)")
    parser.add_argument("--preset", help="SliceRes preset passed to `nnunet-ext plan --preset`")
    parser.add_argument("--splits", help="splits_final.json to use (default: the one in $nnUNet_preprocessed/"
                                         "DatasetXXX_Name when present, e.g. from `nnunet-ext convert`; else "
                                         "nnU-Net's default 5-fold split)")
    parser.add_argument("--quiet", action="store_true", help="keep nnU-Net's output in the log files only")


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    from pathlib import Path

    from nnunet_ext.compare.methods import select
    from nnunet_ext.compare.pipeline import Comparison, Settings, default_device, find_raw_dataset
    from nnunet_ext.training.budget import Budget

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    raw_root = os.environ.get("nnUNet_raw")
    if not raw_root:
        raise SystemExit("nnUNet_raw is not set: compare reads the dataset from nnUNet_raw/DatasetXXX_Name")
    try:
        budget = Budget(args.budget_epochs, args.budget_iterations, args.budget_val_iterations,
                        args.budget_minutes).bounded()
        methods = select(args.methods, args.resenc)
        raw_folder = find_raw_dataset(Path(raw_root), args.dataset)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"nnunet-ext compare: {e}") from None
    splits = Path(args.splits) if args.splits else None
    user_preprocessed = os.environ.get("nnUNet_preprocessed")
    if splits is None and user_preprocessed:
        candidate = Path(user_preprocessed) / raw_folder.name / "splits_final.json"
        splits = candidate if candidate.is_file() else None
    plan_args = ["--preset", args.preset] if args.preset else []
    plan_args += [arg for override in args.overrides for arg in ("--set", override)]
    settings = Settings(dataset=raw_folder.name, raw_root=Path(raw_root), budget=budget, methods=methods,
                        out=Path(args.out or f"compare_{raw_folder.name}"), folds=args.folds, rules=args.rules,
                        device=args.device or default_device(), num_processes=args.num_processes,
                        plan_args=plan_args, echo=not args.quiet, splits_file=splits)
    report = Comparison(settings).run()
    print(f"\nreport: {report}\n        {report.with_suffix('.html')}")
    return 0
