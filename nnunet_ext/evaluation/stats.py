"""Across-case summaries: mean, median and a percentile-bootstrap 95% interval of the mean.

The percentile method (not SciPy's default BCa) is used because per-case scores are often degenerate (every case
Dice 1, HD95 0 on an absent region) where BCa is undefined; it also needs no assumption about the distribution.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 0


def bootstrap_ci(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over cases (resampling cases); NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def describe(values: list[float | None]) -> dict:
    """Mean, median, bootstrap interval and count of the finite values (missing scores are skipped)."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return {"mean": math.nan, "median": math.nan, "ci95": [math.nan, math.nan], "n": 0}
    low, high = bootstrap_ci(finite)
    return {"mean": float(finite.mean()), "median": float(np.median(finite)), "ci95": [low, high],
            "n": int(finite.size)}
