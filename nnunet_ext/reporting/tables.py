"""Tables of the reports: accuracy per region with 95% intervals, and cost (time, GPU memory).

Input is what ``nnunet-ext evaluate`` writes: ``summary.json`` (per region and metric: mean, median, 95%
bootstrap interval, n; ICC(A,1) of volumes) for the tables, so the report shows exactly the numbers the
evaluation computed, and ``per_case.csv`` (one row per case and region) for the figures.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_ext.reporting.document import Table


@dataclass(frozen=True)
class Metric:
    label: str
    digits: int
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    "lesionwise_dice": Metric("lesion-wise Dice", 3, True),
    "lesionwise_hd95": Metric("lesion-wise HD95 (mm)", 1, False),
    "legacy_dice": Metric("Dice", 3, True),
    "legacy_hd95": Metric("HD95 (mm)", 1, False),
}


@dataclass(frozen=True)
class Estimate:
    """Mean over cases with its 95% interval (NaN when undefined, e.g. one case); ``n`` finite cases."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def from_summary(cls, stats: Mapping[str, object] | None) -> Estimate:
        """From one metric entry of the evaluation's ``summary.json`` (``mean``, ``ci95``, ``n``; null = NaN)."""
        if not stats:
            return cls(math.nan, math.nan, math.nan, 0)
        low, high = (math.nan if v is None else float(v) for v in stats.get("ci95") or (None, None))
        mean = stats.get("mean")
        return cls(math.nan if mean is None else float(mean), low, high, int(stats.get("n") or 0))

    def format(self, digits: int) -> str:
        if self.n == 0 or not math.isfinite(self.mean):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def read_per_case(path: Path) -> list[dict[str, object]]:
    """Rows of a ``per_case.csv``; numeric columns become floats (``inf``/``nan`` included)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: per-case results are missing (did `nnunet-ext evaluate` run?)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"case", "region"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: columns {sorted(missing)} are missing")
        rows = []
        for row in reader:
            parsed: dict[str, object] = {}
            for key, value in row.items():
                try:
                    parsed[key] = value if key in ("case", "region") else float(value)
                except (TypeError, ValueError):
                    parsed[key] = value
            rows.append(parsed)
    return rows


def regions_of(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Regions in order of first appearance."""
    return list(dict.fromkeys(str(r["region"]) for r in rows))


def metric_values(rows: Sequence[Mapping[str, object]], region: str, metric: str) -> np.ndarray:
    """Finite values of ``metric`` for ``region`` (one per case)."""
    values = np.array([float(r[metric]) for r in rows if r["region"] == region and metric in r
                       and isinstance(r[metric], float)], dtype=float)
    return values[np.isfinite(values)]


def accuracy_table(summaries: Mapping[str, Mapping[str, object]], metrics: Sequence[str] = tuple(METRICS)) -> Table:
    """Rows = region x method, columns = metrics as ``mean [95% interval]`` plus the volume ICC(A,1).

    ``summaries`` maps a method name to its evaluation ``summary.json``. Metrics no method has a value for
    (lesion-wise scores under ``voxel`` rules) are left out. The best mean of each metric in a region
    (highest Dice, lowest HD95) is bold when more than one method has it.
    """
    regions = list(dict.fromkeys(r for s in summaries.values() for r in s["regions"]))  # type: ignore[union-attr]
    metrics = [m for m in metrics if any(Estimate.from_summary(region.get("metrics", {}).get(m)).n
                                         for s in summaries.values() for region in s["regions"].values())]
    table_rows = []
    for region in regions:
        cells, iccs = {}, {}
        for name, summary in summaries.items():
            entry = summary["regions"].get(region, {})  # type: ignore[union-attr]
            cells[name] = {m: Estimate.from_summary(entry.get("metrics", {}).get(m)) for m in metrics}
            iccs[name] = entry.get("volume_icc_a1")
        best = {}
        for m in metrics:
            means = [c[m].mean for c in cells.values() if c[m].n and math.isfinite(c[m].mean)]
            if len(means) > 1:
                best[m] = max(means) if METRICS[m].higher_is_better else min(means)
        for name, cell in cells.items():
            row = [region, name]
            for m in metrics:
                text = cell[m].format(METRICS[m].digits)
                row.append(f"**{text}**" if cell[m].n and best.get(m) == cell[m].mean else text)
            icc = iccs[name]
            row.append("n/a" if icc is None or not math.isfinite(icc) else f"{icc:.3f}")
            row.append(str(max((c.n for c in cell.values()), default=0)))
            table_rows.append(row)
    return Table(["region", "method", *(METRICS[m].label for m in metrics), "volume ICC(A,1)", "cases"], table_rows,
                 "mean over held-out cases [95% bootstrap interval]; best mean per region in bold")


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def format_bytes(count: float | None) -> str:
    """GiB with two decimals; ``n/a`` when nothing was measured (CPU runs)."""
    if count is None:
        return "n/a"
    return f"{count / 2**30:.2f} GiB"
