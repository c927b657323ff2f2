"""``nnunet-ext evaluate``: score a prediction folder against references with the BraTS (or plain voxel) rules."""

from __future__ import annotations

import argparse

from nnunet_ext.commands._options import EXAMPLE_RAW, add_num_processes, example
from nnunet_ext.errors import UsageError

NAME = "evaluate"
HELP = "score predictions against references (BraTS 2024 lesion-wise + legacy scores, CIs, volume ICC)"
EXAMPLE = example("train", f"nnunet-ext predict -d 501 -i {EXAMPLE_RAW}/imagesTr -o pred_tr -device cpu",
                  f"nnunet-ext evaluate --pred pred_tr --ref {EXAMPLE_RAW}/labelsTr --rules brats-gli-2024 "
                  "-o eval_tr",
                  "# (training cases: this shows the commands, not a held-out score)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunet_ext.evaluation.rules import LABEL_CONVENTIONS, RULES

    parser.add_argument("--pred", required=True, help="folder with predicted label maps (same names as --ref)")
    parser.add_argument("--ref", required=True, help="folder with reference label maps; every case must be predicted")
    parser.add_argument("--rules", required=True, choices=list(RULES), help="scoring rules")
    parser.add_argument("-o", "--output", required=True, help="output folder for per_case.csv and summary.json")
    add_num_processes(parser, None, "parallel processes over cases (default: nnU-Net's default_num_processes)")
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
            num_workers=args.num_processes or default_num_processes,
            labels_are=args.labels_are,
            cache_dir=None if args.no_cache else out / "cases",
        )
    except (EvaluationError, ValueError) as error:
        raise UsageError(str(error)) from None
    per_case, summary_file = write_outputs(rows, summary, out)
    table = format_table(summary)
    (out / "summary.txt").write_text(table + "\n")
    print(table)
    print(f"\nwrote {per_case} and {summary_file}")
    return 0
