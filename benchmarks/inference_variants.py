"""Accuracy and time of inference variants on the same checkpoints: every fold's held-out cases, BraTS rules.

Each variant is a set of extra ``nnunet-ext predict`` arguments (for example ``--inference whole`` against the
default tiles, or another precision or backend). For every fold of a trained SliceRes model, the fold's own
held-out cases (nnU-Net's ``splits_final.json``) are predicted with the fold's checkpoint by the real command, once
per variant, and scored by ``nnunet-ext evaluate``; the whole command is timed (preprocessing and export included,
the same for all variants). The record holds per-case scores and, per region, every variant's mean and the paired
difference to the first variant with a percentile-bootstrap 95% interval over cases (cases of all folds pooled).

    python benchmarks/inference_variants.py -d 601 --raw $nnUNet_raw/Dataset601_RealGlio -f 0 1 2 3 4 \\
        --variant tiles= --variant whole=--inference,whole --rules brats-2023 --out variants.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.evaluation.stats import bootstrap_ci, describe

METRICS = ("lesionwise_dice", "legacy_dice", "lesionwise_hd95", "legacy_hd95")


def _variant(text: str) -> tuple[str, list[str]]:
    name, _, args = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected NAME=ARG,ARG,... (ARGs may be empty)")
    return name, [a for a in args.split(",") if a]


def _run(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode:
        sys.exit(f"{command[:3]} failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - start


def _link_cases(raw: Path, cases: list[str], images: Path, labels: Path, ending: str) -> None:
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for source in sorted((raw / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}")):
            (images / source.name).unlink(missing_ok=True)
            (images / source.name).symlink_to(source.resolve())
        (labels / f"{case}{ending}").unlink(missing_ok=True)
        (labels / f"{case}{ending}").symlink_to((raw / "labelsTr" / f"{case}{ending}").resolve())


def _scores(per_case_csv: Path, variant: str, fold: int) -> list[dict]:
    with per_case_csv.open() as handle:
        return [{"variant": variant, "fold": fold, "case": row["case"], "region": row["region"],
                 **{m: (float(row[m]) if row.get(m) else None) for m in METRICS}} for row in csv.DictReader(handle)]


def summarise(rows: list[dict], variants: list[str]) -> list[dict]:
    """Per region and metric: each variant's mean over cases and its paired difference to the first variant."""
    table = []
    base = variants[0]
    for region in sorted({r["region"] for r in rows}):
        for metric in METRICS:
            by_variant = {v: {(r["fold"], r["case"]): r[metric] for r in rows
                              if r["variant"] == v and r["region"] == region} for v in variants}
            for variant in variants:
                entry = {"region": region, "metric": metric, "variant": variant,
                         **describe(list(by_variant[variant].values()))}
                if variant != base:
                    pairs = [(by_variant[variant][k], by_variant[base][k]) for k in by_variant[base]
                             if by_variant[base][k] is not None and by_variant[variant].get(k) is not None]
                    diffs = np.array([a - b for a, b in pairs], dtype=float)
                    low, high = bootstrap_ci(diffs)
                    entry["difference_to_" + base] = {"mean": float(diffs.mean()) if diffs.size else None,
                                                      "ci95": [low, high], "n": int(diffs.size)}
                table.append(entry)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", required=True, help="dataset id or name (trained SliceResTrainer 2d model)")
    parser.add_argument("--raw", type=Path, required=True, help="the dataset's raw folder (imagesTr, labelsTr)")
    parser.add_argument("-f", nargs="+", type=int, required=True, help="folds")
    parser.add_argument("--variant", type=_variant, action="append", required=True,
                        help="NAME=ARG,ARG (extra predict arguments); the first is the baseline")
    parser.add_argument("--rules", default="brats-2023")
    parser.add_argument("--preprocessed", type=Path, help="folder with splits_final.json (default: from -d)")
    parser.add_argument("--work", type=Path, required=True, help="work folder (predictions, scores, logs)")
    parser.add_argument("--out", type=Path, required=True, help="JSON record")
    args = parser.parse_args()
    variants = [name for name, _ in args.variant]
    dataset = json.loads((args.raw / "dataset.json").read_text())
    ending = dataset["file_ending"]
    preprocessed = args.preprocessed or next(
        Path(os.environ["nnUNet_preprocessed"]).glob(f"Dataset{int(args.d):03d}_*"))
    splits = json.loads((preprocessed / "splits_final.json").read_text())
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "commands.log"
    rows, timings = [], []
    for fold in args.f:
        cases = sorted(splits[fold]["val"])
        images, labels = args.work / f"fold_{fold}" / "images", args.work / f"fold_{fold}" / "labels"
        _link_cases(args.raw, cases, images, labels, ending)
        for name, extra in args.variant:
            predictions = args.work / f"fold_{fold}" / name
            scores = args.work / f"fold_{fold}" / f"{name}_scores"
            if not (scores / "per_case.csv").is_file():
                shutil.rmtree(predictions, ignore_errors=True)
                seconds = _run(["nnunet-ext", "predict", "-i", str(images), "-o", str(predictions), "-d", str(args.d),
                                "-f", str(fold), "-device", "cpu", "--disable_progress_bar", "-npp", "1", "-nps", "1",
                                *extra], log)
                _run(["nnunet-ext", "evaluate", "--pred", str(predictions), "--ref", str(labels),
                      "--rules", args.rules, "-o", str(scores)], log)
                atomic_write_text(scores / "seconds.json", json.dumps({"predict_seconds": seconds}))
            seconds = json.loads((scores / "seconds.json").read_text())["predict_seconds"]
            timings.append({"variant": name, "fold": fold, "cases": len(cases), "predict_seconds": seconds})
            rows += _scores(scores / "per_case.csv", name, fold)
    summary = summarise(rows, variants)
    record = {"dataset": str(args.d), "folds": args.f, "rules": args.rules,
              "variants": {name: extra for name, extra in args.variant}, "timings": timings,
              "summary": summary, "per_case": rows}
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    print(f"{'region':6} {'metric':16} {'variant':10} {'mean [95% CI]':28} difference to {variants[0]} [95% CI]")
    for entry in summary:
        difference = entry.get("difference_to_" + variants[0])
        text = "" if difference is None or difference["mean"] is None else (
            f"{difference['mean']:+.4f} [{difference['ci95'][0]:+.4f}, {difference['ci95'][1]:+.4f}] "
            f"n={difference['n']}")
        print(f"{entry['region']:6} {entry['metric']:16} {entry['variant']:10} "
              f"{entry['mean']:.4f} [{entry['ci95'][0]:.4f}, {entry['ci95'][1]:.4f}]  {text}")
    for variant in variants:
        total = sum(t["predict_seconds"] for t in timings if t["variant"] == variant)
        print(f"{variant}: {total:.0f} s of predict over {sum(t['cases'] for t in timings if t['variant'] == variant)} "
              f"cases")


if __name__ == "__main__":
    main()
