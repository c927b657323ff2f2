"""Tables of the reports: accuracy per region with 95% intervals, and cost (time, GPU memory).

Input is what ``nnunet-ext evaluate`` writes (``per_case.csv``: one row per case and region); intervals come
from the caller (the evaluation package's bootstrap), so the report shows exactly the numbers the evaluation
computed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
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
    """Mean over cases with a 95% interval; ``n`` cases with a finite value."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int) -> str:
        if self.n == 0 or not math.isfinite(self.mean):
            return "n/a"
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


def estimate(values: np.ndarray, interval: Callable[[np.ndarray], tuple[float, float]]) -> Estimate:
    """Mean of ``values`` with ``interval(values)`` as its 95% interval."""
    if len(values) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    low, high = interval(values)
    return Estimate(float(np.mean(values)), float(low), float(high), len(values))


def accuracy_table(per_case: Mapping[str, Sequence[Mapping[str, object]]],
                   interval: Callable[[np.ndarray], tuple[float, float]],
                   metrics: Sequence[str] = tuple(METRICS)) -> Table:
    """Rows = region x method, columns = metrics as ``mean [95% interval]``; the best mean per region in bold."""
    regions = list(dict.fromkeys(r for rows in per_case.values() for r in regions_of(rows)))
    metrics = [m for m in metrics if any(m in row for rows in per_case.values() for row in rows)]
    table_rows = []
    for region in regions:
        cells = {name: {m: estimate(metric_values(rows, region, m), interval) for m in metrics}
                 for name, rows in per_case.items()}
        best = {}
        for m in metrics:
            means = [c[m].mean for c in cells.values() if c[m].n]
            if len(means) > 1:
                best[m] = max(means) if METRICS[m].higher_is_better else min(means)
        for name, cell in cells.items():
            row = [region, name]
            for m in metrics:
                text = cell[m].format(METRICS[m].digits)
                row.append(f"**{text}**" if cell[m].n and best.get(m) == cell[m].mean else text)
            row.append(str(max((c.n for c in cell.values()), default=0)))
            table_rows.append(row)
    return Table(["region", "method", *(METRICS[m].label for m in metrics), "cases"], table_rows,
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
