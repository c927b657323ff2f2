"""``nnunet-ext evaluate``: score a prediction folder against references with the BraTS (or plain voxel) rules."""

from __future__ import annotations

import argparse
import sys

NAME = "evaluate"
HELP = "score predictions against references (BraTS 2024 lesion-wise + legacy scores, CIs, volume ICC)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunet_ext.evaluation.rules import LABEL_CONVENTIONS, RULES

    parser.add_argument("--pred", required=True, help="folder with predicted label maps (same names as --ref)")
    parser.add_argument("--ref", required=True, help="folder with reference label maps; every case must be predicted")
    parser.add_argument("--rules", required=True, choices=list(RULES), help="scoring rules")
    parser.add_argument("-o", "--output", required=True, help="output folder for per_case.csv and summary.json")
    parser.add_argument("-j", "--num-workers", type=int, default=None,
                        help="parallel processes over cases (default: nnU-Net's default_num_processes)")
    parser.add_argument("--labels-are", default="as-is",
                        help=f"label convention of the files: {', '.join(LABEL_CONVENTIONS)} or SRC:DST pairs "
                             "such as 4:3 or *:1 (default: as-is)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every case (default: resume from OUT/cases)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnunetv2.configuration import default_num_processes

    from nnunet_ext.evaluation import EvaluationError, evaluate_folders, format_table, write_outputs

    out = Path(args.output)
    try:
        rows, summary = evaluate_folders(
            args.pred, args.ref, args.rules,
            num_workers=args.num_workers or default_num_processes,
            labels_are=args.labels_are,
            cache_dir=None if args.no_cache else out / "cases",
        )
    except (EvaluationError, ValueError) as error:
        print(f"nnunet-ext evaluate: error: {error}", file=sys.stderr)
        return 2
    per_case, summary_file = write_outputs(rows, summary, out)
    table = format_table(summary)
    (out / "summary.txt").write_text(table + "\n")
    print(table)
    print(f"\nwrote {per_case} and {summary_file}")
    return 0
