"""Voxel-wise ("legacy") scores of one region: Dice, Jaccard, sensitivity, specificity, volumes.

Two definitions of sensitivity/specificity exist on purpose. :func:`voxel_sensitivity_specificity` is the textbook
one on masks. :func:`brats_sensitivity_specificity` reproduces the 2024 scorers, which feed *lesion-id maps* to a
GaNDLF-derived formula: true positives are voxels where both maps hold id 1, and the "counts" are sums of ids. The
published BraTS 2024 numbers (and the reference study's, e.g. WT sensitivity 0.49 at Dice 0.88) come from the latter,
so both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Overlap:
    """Voxel counts of one binary comparison."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, reference: np.ndarray, prediction: np.ndarray) -> Overlap:
        ref, pred = reference != 0, prediction != 0
        tp = int(np.count_nonzero(ref & pred))
        n_ref, n_pred = int(np.count_nonzero(ref)), int(np.count_nonzero(pred))
        return cls(tp=tp, fp=n_pred - tp, fn=n_ref - tp, tn=int(ref.size) - n_ref - n_pred + tp)

    @property
    def both_empty(self) -> bool:
        return self.tp + self.fp + self.fn == 0


def dice(overlap: Overlap) -> float:
    """Dice; 1 when reference and prediction are both empty (BraTS convention)."""
    return 1.0 if overlap.both_empty else 2.0 * overlap.tp / (2 * overlap.tp + overlap.fp + overlap.fn)


def jaccard(overlap: Overlap) -> float:
    """Intersection over union; 1 when both are empty."""
    return 1.0 if overlap.both_empty else overlap.tp / (overlap.tp + overlap.fp + overlap.fn)


def _ratio(numerator: float, denominator: float) -> float:
    # The scorers add sys.float_info.min to the denominator: x / (0 + tiny) = 0 for x = 0, which is all that occurs.
    return float(numerator) / float(denominator) if denominator > 0 else 0.0


def voxel_sensitivity_specificity(overlap: Overlap) -> tuple[float, float]:
    """TP/(TP+FN) and TN/(TN+FP) on masks; sensitivity 1 when both are empty."""
    sensitivity = 1.0 if overlap.both_empty else _ratio(overlap.tp, overlap.tp + overlap.fn)
    return sensitivity, _ratio(overlap.tn, overlap.tn + overlap.fp)


def brats_sensitivity_specificity(reference_ids: np.ndarray, prediction_ids: np.ndarray) -> tuple[float, float]:
    """The official 2024 formula applied, as the official code does, to lesion-id maps (see module docstring)."""
    pred_sum = int(prediction_ids.sum(dtype=np.int64))
    ref_sum = int(reference_ids.sum(dtype=np.int64))
    pred_one, ref_one = prediction_ids == 1, reference_ids == 1
    tp = int(np.count_nonzero(pred_one & ref_one))
    tn = int(prediction_ids.size) - int(np.count_nonzero(pred_one | ref_one))
    sensitivity = 1.0 if pred_sum == 0 and ref_sum == 0 else _ratio(tp, ref_sum)
    return sensitivity, _ratio(tn, tn + pred_sum - tp)


def volume_ml(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Volume of the non-zero voxels in millilitres (spacing in mm)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0
