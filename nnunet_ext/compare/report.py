"""The comparison's report: setup, accuracy per region with intervals, cost, box plots and overlays.

Writes ``report.md``, ``report.html``, ``figures/*.png`` and ``results.json`` (every number of the report in
machine-readable form) into the comparison folder. Its only input is a
:class:`~nnunet_ext.compare.results.ComparisonResults` (and the files it names), not the pipeline.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.compare.heldout import dataset_cases
from nnunet_ext.compare.results import ComparisonResults, VariantResult
from nnunet_ext.nifti_io import read_image
from nnunet_ext.reporting.document import Bullets, Document, Figure, Heading, Paragraph, Table, write_report
from nnunet_ext.reporting.figures import box_plot, overlay_figure
from nnunet_ext.reporting.tables import (
    accuracy_table,
    format_bytes,
    format_seconds,
    metric_values,
    read_per_case,
    regions_of,
)

#: channel names shown in overlays, most informative first (FLAIR shows the whole tumour)
DISPLAY_CHANNELS = (r"flair|t2f", r"t1c|t1ce|t1gd|t1-?post", r"t2")


def display_channel(channel_names: Mapping[str, str]) -> int:
    """Index of the channel to draw overlays on: FLAIR, else T1c, else T2, else the first."""
    for pattern in DISPLAY_CHANNELS:
        for index, name in sorted(channel_names.items(), key=lambda kv: int(kv[0])):
            if re.search(pattern, name, flags=re.IGNORECASE):
                return int(index)
    return 0


def label_names(dataset_json: Mapping[str, Any]) -> dict[int, str]:
    """Label value -> name for the label maps nnU-Net writes (regions map through ``regions_class_order``)."""
    labels = {k: v for k, v in dataset_json["labels"].items() if v not in (0, [0])}
    if "regions_class_order" in dataset_json:
        return {int(value): name for value, name in zip(dataset_json["regions_class_order"], labels)}
    return {int(v): k for k, v in labels.items() if isinstance(v, int)}


def _first_present(per_case: Mapping[str, Sequence[Mapping[str, object]]], candidates: Sequence[str]) -> str | None:
    """The first metric of ``candidates`` with a finite value in the per-case rows."""
    for metric in candidates:
        if any(isinstance(row.get(metric), float) and np.isfinite(row[metric])
               for rows in per_case.values() for row in rows):
            return metric
    return None


def pick_cases(per_case: Mapping[str, Sequence[Mapping[str, object]]], n: int) -> list[str]:
    """``n`` cases spread over the score range (n=1: the median case) by mean Dice over regions and methods."""
    metric = _first_present(per_case, ("lesionwise_dice", "legacy_dice"))
    scores: dict[str, list[float]] = {}
    for rows in per_case.values():
        for row in rows:
            value = row.get(metric)
            if isinstance(value, float) and np.isfinite(value):
                scores.setdefault(str(row["case"]), []).append(value)
    ranked = sorted(scores, key=lambda c: (np.mean(scores[c]), c))
    if not ranked or n <= 0:
        return []
    if n == 1:
        return [ranked[(len(ranked) - 1) // 2]]
    positions = np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int)
    return [ranked[i] for i in dict.fromkeys(positions.tolist())]


def _read(path: Any) -> tuple[np.ndarray, tuple[float, float, float]]:
    image = read_image(path)
    return sitk.GetArrayFromImage(image), tuple(float(s) for s in image.GetSpacing()[::-1])


def _cost(result: VariantResult) -> dict[str, Any]:
    trains, predicts = result.train, result.predict
    peaks = [t.get("peak_gpu_allocated_bytes") for t in trains]
    ipeaks = [p.get("peak_gpu_allocated_bytes") for p in predicts]
    cases = sum(p["cases"] for p in predicts)
    return {
        "epochs": [t["epochs"] for t in trains],
        "train_seconds_per_fold": float(np.mean([t["train_seconds"] for t in trains])),
        "budget_wall_seconds_per_fold": _mean_of(trains, "budget_wall_seconds"),
        "train_step_share": _mean_of(trains, "train_step_share"),
        "examples_seen_per_fold": _mean_of(trains, "examples_seen"),
        "train_process_seconds_per_fold": float(np.mean([t["wall_seconds"] for t in trains])),
        "peak_gpu_train_bytes": max(peaks) if all(p is not None for p in peaks) else None,
        "inference_seconds_per_case": sum(p["wall_seconds"] for p in predicts) / max(1, cases),
        "peak_gpu_inference_bytes": max(ipeaks) if all(p is not None for p in ipeaks) else None,
    }


def _mean_of(trains: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Mean of ``key`` over folds; ``None`` when a fold's cached record predates the budget accounting."""
    values = [t.get(key) for t in trains]
    return float(np.mean(values)) if all(v is not None for v in values) else None


def cost_table(costs: Mapping[str, Mapping[str, Any]]) -> Table:
    rows = []
    for name, c in costs.items():
        epochs = sorted(set(c["epochs"]))
        wall, share, examples = c["budget_wall_seconds_per_fold"], c["train_step_share"], c["examples_seen_per_fold"]
        rows.append([name, "/".join(map(str, epochs)), format_seconds(wall),
                     "n/a" if share is None else f"{100 * share:.0f} %",
                     "n/a" if examples is None else f"{examples:,.0f}",
                     format_bytes(c["peak_gpu_train_bytes"]), format_seconds(c["inference_seconds_per_case"]),
                     format_bytes(c["peak_gpu_inference_bytes"])])
    return Table(["method", "epochs", "training time per fold", "in train steps", "examples seen per fold",
                  "peak GPU memory (training)", "inference per case", "peak GPU memory (inference)"], rows,
                 "training time = the wall clock the budget counts (start-up, then every epoch with its validation, "
                 "checkpoints and plot; not the final validation); in train steps = its share spent in optimiser "
                 "steps; examples = training slices (SliceRes) or patches (stock) seen; inference = whole predict "
                 "command / cases")


def build_report(results: ComparisonResults) -> dict[str, Any]:
    """Write the report of a finished comparison into ``results.out``; returns the figures written (relative paths)."""
    variants, out, ending = results.variants, results.out, results.file_ending
    per_case = {r.variant.name: read_per_case(r.evaluation / "per_case.csv") for r in variants}
    summaries = {r.variant.name: json.loads((r.evaluation / "summary.json").read_text()) for r in variants}
    costs = {r.variant.name: _cost(r) for r in variants}
    n_cases = sum(len(v) for v in results.heldout.values())
    figures_dir = out / "figures"
    if figures_dir.exists():
        shutil.rmtree(figures_dir)  # figures of an earlier report (other methods or cases) would be stale
    figures: list[str] = []

    doc = Document(results.title or f"Stock nnU-Net vs SliceRes on {results.dataset_name}")
    budgeted = results.budget.epochs
    short = {r.method.name: f"{r.method.name} trained {'/'.join(str(t['epochs']) for t in r.train)} of {budgeted} "
                            f"epochs" for r in variants if budgeted and any(t["epochs"] < budgeted for t in r.train)}
    if short:
        doc.add(Heading("Warning"), Paragraph(f"WARNING: {results.time_cap_warning} ({'; '.join(short.values())})."))
    doc.add(Heading("Setup"), Bullets([
        f"dataset: {results.dataset_name} ({results.raw_folder}), {n_cases} held-out cases from fold(s) "
        f"{', '.join(map(str, results.folds))} of nnU-Net's 5-fold split",
        f"training budget (every method): {results.budget.describe()}",
        f"device: {_device_name(results.device)}; host: {platform.node()}, "
        f"{platform.processor() or platform.machine()}",
        f"evaluation rules: {results.rules}",
        f"written {datetime.now().isoformat(timespec='seconds')}",
    ]))
    doc.add(Heading("Methods"), Bullets([f"{r.variant.name}: {r.method.description}; inference: "
                                         f"{r.variant.description}" for r in variants]))
    doc.add(Heading("Accuracy"), accuracy_table(summaries))
    doc.add(Heading("Cost"), cost_table(costs))

    regions = list(dict.fromkeys(reg for rows in per_case.values() for reg in regions_of(rows)))
    for candidates, label in ((("lesionwise_dice", "legacy_dice"), "Dice"),
                              (("lesionwise_hd95", "legacy_hd95"), "HD95 (mm)")):
        metric = _first_present(per_case, candidates)
        if metric is None:
            continue
        data = {reg: {name: metric_values(rows, reg, metric) for name, rows in per_case.items()} for reg in regions}
        title = f"{metric.replace('_', ' ')} per held-out case"
        path = box_plot(data, label, figures_dir / f"box_{metric}.png", title=title)
        figures.append(f"figures/{path.name}")
        doc.add(Figure(figures[-1], title))

    cases = dataset_cases(results.raw_folder)
    channel_names = results.dataset_json["channel_names"]
    channel = display_channel(channel_names)
    names = label_names(results.dataset_json)
    chosen = pick_cases(per_case, results.overlays)
    if chosen:
        doc.add(Heading("Overlays"), Paragraph(
            f"Channel '{channel_names[str(channel)]}' with each segmentation's contours; "
            "dashed white = reference outline. Slices through the largest reference area on each axis."))
    for case in chosen:
        image, spacing = _read(cases[case]["images"][channel])
        segs = {"reference": _read(out / "heldout" / "labels" / f"{case}{ending}")[0]}
        segs.update({r.variant.name: _read(r.predictions / f"{case}{ending}")[0] for r in variants})
        path = overlay_figure(image, segs, figures_dir / f"overlay_{case}.png", spacing, names, title=case)
        figures.append(f"figures/{path.name}")
        doc.add(Figure(figures[-1], f"case {case}"))

    doc.add(Heading("Files"), Bullets([
        "per-case scores: evaluation/<method>/per_case.csv; summaries: evaluation/<method>/summary.json",
        "predictions: predictions/<method>/fold_X; trained models: nnUNet_results; logs: logs/",
        "all numbers above: results.json; step cache: manifest.json (re-run the command to resume)",
    ]))
    write_report(doc, out)
    atomic_write_text(out / "results.json", json.dumps(
        {"dataset": results.dataset_name, "folds": results.folds, "budget": results.budget.as_dict(),
         "device": results.device, "rules": results.rules,
         "held_out": {str(k): list(v) for k, v in results.heldout.items()}, "cost": costs,
         "summaries": summaries}, indent=2))
    return {"figures": figures}


def _device_name(device: str) -> str:
    if device != "cuda":
        return device
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cuda"
