"""Intraclass correlation ICC(A,1): two-way model, absolute agreement, single measurement (McGraw & Wong 1996).

This is the volume-agreement statistic of the reference study (prediction vs reference volume over cases). It
equals Shrout & Fleiss' ICC(2,1):

    ICC(A,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)

with MSR the between-subject (row), MSC the between-rater (column) and MSE the residual mean square of an n x k
table.
"""

from __future__ import annotations

import math

import numpy as np


def icc_a1(ratings: np.ndarray) -> float:
    """ICC(A,1) of an (n subjects x k raters) table; NaN when undefined (n < 2 or no variance at all)."""
    table = np.asarray(ratings, dtype=float)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 2:
        return math.nan
    n, k = table.shape
    grand = table.mean()
    ss_rows = k * np.sum((table.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((table.mean(axis=0) - grand) ** 2)
    ss_error = np.sum((table - grand) ** 2) - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_error / ((n - 1) * (k - 1))
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    return float((msr - mse) / denominator) if denominator > 0 else math.nan
