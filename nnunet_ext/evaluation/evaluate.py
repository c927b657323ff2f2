"""Folders in, per-case rows and a summary out: pairing, parallel scoring, caching, files and the printed table.

Each case's rows are cached under ``OUT/cases/`` keyed by the rules, the label mapping and the two files' size and
modification time, so an interrupted evaluation resumes where it stopped and a repeated one is instant.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.evaluation.icc import icc_a1
from nnunet_ext.evaluation.rules import RULES, Rules, parse_label_mapping
from nnunet_ext.evaluation.scoring import absent_region_row, score_case
from nnunet_ext.evaluation.stats import BOOTSTRAP_RESAMPLES, CONFIDENCE, SEED, describe
from nnunet_ext.evaluation.volumes import (
    EvaluationError,
    apply_label_mapping,
    case_name,
    check_labels,
    check_same_geometry,
    read_label_map,
)
from nnunet_ext.utils.file_stamp import file_stamp
from nnunet_ext.utils.pool import map_cases

PER_CASE_COLUMNS = [
    "case", "region", "lesionwise_dice", "lesionwise_hd95", "legacy_dice", "legacy_hd95", "jaccard",
    "sensitivity", "specificity", "num_tp", "num_fp", "num_fn", "ref_volume_ml", "pred_volume_ml",
    "voxel_hd95", "voxel_sensitivity", "voxel_specificity",
]
SUMMARY_METRICS = [c for c in PER_CASE_COLUMNS if c not in ("case", "region", "num_tp", "num_fp", "num_fn")]
_CACHE_VERSION = 1

__all__ = ["EvaluationError", "PER_CASE_COLUMNS", "evaluate_case", "evaluate_folders", "format_table",
           "summarize_rows", "write_outputs"]


def _resolve_rules(rules: str | Rules) -> Rules:
    if isinstance(rules, Rules):
        return rules
    if rules not in RULES:
        raise EvaluationError(f"unknown rules {rules!r}; choose from {', '.join(RULES)}")
    return RULES[rules]


def find_case_pairs(pred_dir: Path, ref_dir: Path) -> list[tuple[str, Path, Path]]:
    """(case, reference, prediction) for every reference file; a missing prediction is an error.

    Predictions without a reference are not scored; they are named in a warning (a wrong --ref folder, or
    cases left out of the reference set, would otherwise go unnoticed).
    """
    for name, folder in (("prediction", pred_dir), ("reference", ref_dir)):
        if not folder.is_dir():
            raise EvaluationError(f"{folder}: {name} folder does not exist")
    references = {case_name(p): p for p in sorted(ref_dir.iterdir()) if p.is_file() and case_name(p)}
    predictions = {case_name(p): p for p in sorted(pred_dir.iterdir()) if p.is_file() and case_name(p)}
    if not references:
        raise EvaluationError(f"{ref_dir}: no reference label maps (.nii.gz, .nii, .mha, .nrrd, .mhd)")
    missing = [references[c].name for c in references if c not in predictions]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EvaluationError(f"{pred_dir}: no prediction for reference case(s) {shown}")
    extra = [predictions[c].name for c in predictions if c not in references]
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        print(f"warning: {pred_dir}: {len(extra)} prediction(s) have no reference in {ref_dir} and are not scored: "
              f"{shown}", file=sys.stderr)
    return [(case, references[case], predictions[case]) for case in sorted(references)]


def evaluate_case(reference: Path, prediction: Path, rules: str | Rules, labels_are: str = "as-is") -> list[dict]:
    """Rows of one case (``case`` = reference file name without extension), validated as described in volumes."""
    rules = _resolve_rules(rules)
    mapping = parse_label_mapping(labels_are)
    ref, pred = read_label_map(Path(reference)), read_label_map(Path(prediction))
    check_same_geometry(ref, pred)
    for label_map in (ref, pred):
        label_map.labels = apply_label_mapping(label_map.labels, mapping)
        check_labels(label_map, rules.valid_labels, rules.name)
    case = case_name(Path(reference))
    return [{"case": case, **row} for row in score_case(ref.labels, pred.labels, ref.spacing, rules)]


def _cache_key(rules: Rules, labels_are: str, reference: Path, prediction: Path) -> dict:
    return {"version": _CACHE_VERSION, "rules": repr(rules), "labels_are": labels_are,
            "files": [file_stamp(reference), file_stamp(prediction)]}


def _evaluate_cached(job: tuple[str, Path, Path, Rules, str, Path | None]) -> list[dict]:
    case, reference, prediction, rules, labels_are, cache_dir = job
    if cache_dir is None:
        return evaluate_case(reference, prediction, rules, labels_are)
    cache_file = cache_dir / f"{case}.json"
    key = _cache_key(rules, labels_are, reference, prediction)
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("key") == key:
                return cached["rows"]
        except (json.JSONDecodeError, KeyError):
            pass
    rows = evaluate_case(reference, prediction, rules, labels_are)
    atomic_write_text(cache_file, json.dumps({"key": key, "rows": _json_safe(rows)}))
    return rows


def evaluate_folders(
    pred_dir: str | Path,
    ref_dir: str | Path,
    rules: str | Rules,
    num_workers: int = 1,
    labels_are: str = "as-is",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Score every reference case against the same-named prediction; returns (per-case rows, summary).

    ``cache_dir`` enables per-case resume (``write_outputs`` users typically pass ``OUT/cases``).
    """
    rules = _resolve_rules(rules)
    parse_label_mapping(labels_are)  # fail before starting workers
    pairs = find_case_pairs(Path(pred_dir), Path(ref_dir))
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    jobs = [(case, ref, pred, rules, labels_are, cache) for case, ref, pred in pairs]
    results = map_cases(_evaluate_cached, jobs, num_workers, f"evaluate ({rules.name})", progress, "spawn")
    rows = _complete_regions([row for case_rows in results for row in case_rows], rules)
    return rows, summarize_rows(rows, rules.name, labels_are)


def _complete_regions(rows: list[dict], rules: Rules) -> list[dict]:
    """Per-label rules: give every case a row for every label seen anywhere (absent = both empty)."""
    if rules.regions:
        return rows
    names = sorted({row["region"] for row in rows}, key=int)
    present = {(row["case"], row["region"]) for row in rows}
    cases = sorted({row["case"] for row in rows})
    extra = [{"case": c, **absent_region_row(n, rules)} for c in cases for n in names if (c, n) not in present]
    order = {n: i for i, n in enumerate(names)}
    return sorted(rows + extra, key=lambda r: (r["case"], order[r["region"]]))


def summarize_rows(rows: list[dict], rules_name: str, labels_are: str = "as-is") -> dict:
    """Across-case statistics per region: metric summaries, lesion counts and ICC(A,1) of volumes."""
    regions: dict[str, dict] = {}
    for name in dict.fromkeys(row["region"] for row in rows):
        region_rows = [row for row in rows if row["region"] == name]
        volumes = np.array([[row["pred_volume_ml"], row["ref_volume_ml"]] for row in region_rows], dtype=float)
        counts = {key: (sum(row[key] for row in region_rows) if region_rows[0][key] is not None else None)
                  for key in ("num_tp", "num_fp", "num_fn")}
        regions[name] = {
            "metrics": {metric: describe([row[metric] for row in region_rows]) for metric in SUMMARY_METRICS},
            "counts": counts,
            "volume_icc_a1": icc_a1(volumes),
            "num_cases": len(region_rows),
        }
    return {
        "rules": rules_name,
        "labels_are": labels_are,
        "num_cases": len({row["case"] for row in rows}),
        "bootstrap": {"method": "percentile", "resamples": BOOTSTRAP_RESAMPLES, "confidence": CONFIDENCE,
                      "seed": SEED, "statistic": "mean over cases"},
        "icc": "ICC(A,1) of predicted vs reference volume (McGraw & Wong 1996)",
        "regions": regions,
    }


def _json_safe(value):
    """NaN/inf become null so that summary.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _csv_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def write_outputs(rows: list[dict], summary: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``per_case.csv`` and ``summary.json`` atomically; returns their paths."""
    out = Path(out_dir)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PER_CASE_COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(row.get(column)) for column in PER_CASE_COLUMNS])
    per_case, summary_file = out / "per_case.csv", out / "summary.json"
    atomic_write_text(per_case, buffer.getvalue())
    atomic_write_text(summary_file, json.dumps(_json_safe(summary), indent=1, allow_nan=False) + "\n")
    return per_case, summary_file


def _mean_ci(stats: dict, digits: int) -> str:
    if stats["n"] == 0:
        return "-"
    low, high = stats["ci95"]
    interval = "" if math.isnan(low) else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{stats['mean']:.{digits}f}{interval}"


def format_table(summary: dict) -> str:
    """A readable table: mean [95% CI] per region of the main scores, lesion counts and volume ICC."""
    header = ["region", "LW Dice", "LW HD95", "Dice", "HD95", "Jaccard", "Sens", "Spec", "TP/FP/FN", "ICC vol"]
    lines = []
    for name, region in summary["regions"].items():
        m = region["metrics"]
        counts = region["counts"]
        icc = region["volume_icc_a1"]
        lines.append([
            name,
            _mean_ci(m["lesionwise_dice"], 3),
            _mean_ci(m["lesionwise_hd95"], 1),
            _mean_ci(m["legacy_dice"], 3),
            _mean_ci(m["legacy_hd95"], 1),
            _mean_ci(m["jaccard"], 3),
            _mean_ci(m["sensitivity"], 3),
            _mean_ci(m["specificity"], 4),
            "-" if counts["num_tp"] is None else f"{counts['num_tp']}/{counts['num_fp']}/{counts['num_fn']}",
            "-" if icc is None or (isinstance(icc, float) and math.isnan(icc)) else f"{icc:.3f}",
        ])
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    title = (f"{summary['rules']}: {summary['num_cases']} case(s); mean [95% bootstrap CI] over cases; "
             f"HD95 in mm")
    return "\n".join([title, fmt.format(*header), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*line) for line in lines)])
