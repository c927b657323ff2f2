"""``nnunet-ext export-brats PRED_DIR OUT_DIR --task gli|men-rt|brats-2021``: predictions -> submission files."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_ext.commands._options import EXAMPLE_RAW, add_num_processes, example
from nnunet_ext.errors import UsageError

NAME = "export-brats"
HELP = "turn nnU-Net predictions into BraTS 2024 / 2021 submission files (names, labels, original geometry)"
EXAMPLE = example("train", f"nnunet-ext predict -d 501 -i {EXAMPLE_RAW}/imagesTs -o pred_ts -device cpu",
                  "nnunet-ext export-brats pred_ts submission --task gli --raw gli_src")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", type=Path, help="folder with nnU-Net predictions (CASE.nii.gz)")
    parser.add_argument("out_dir", type=Path, help="folder for the submission files")
    parser.add_argument("--task", choices=["gli", "men-rt", "brats-2021"], required=True,
                        help="brats-2021: predictions of a 'convert brats-2021' model, written with ET as 4")
    parser.add_argument("--raw", type=Path, default=None,
                        help="the challenge download the predictions are for: their grid is checked against "
                             "it and its exact header geometry copied")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="nnU-Net raw dataset folder written by 'convert men-rt --resample-iso/--register-to': "
                             "predictions are resampled back to the scanner grid it recorded")
    add_num_processes(parser, 1, "parallel worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from nnunet_ext.dataset_conversion.export_brats import ExportError, export_predictions

    try:
        written = export_predictions(args.pred_dir, args.out_dir, args.task, args.raw, args.dataset,
                                     args.num_processes)
    except ExportError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {len(written)} submission files to {args.out_dir}")
    return 0
