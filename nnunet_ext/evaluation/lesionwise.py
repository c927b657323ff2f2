"""BraTS lesion-wise matching: lesion ids by dilation merge, cross-tissue merge, matching and the case score.

Lesion *ids* matter beyond grouping: the 2024 scorers compute Legacy HD95 and sensitivity/specificity on the id
maps (see :mod:`.legacy` and :mod:`.surface`), so ids are numbered exactly as the official code numbers them:
a dilated component's id is its rank by first voxel in (x, y, z) lexicographic order (cc3d on SciPy's C-ordered
dilation output), deleted predictions leave gaps, and merged tissue maps are renumbered by id value.
All work is done inside bounding boxes; the results equal whole-volume computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from nnunet_ext.evaluation.legacy import Overlap, dice
from nnunet_ext.evaluation.surface import bounding_box, robust_hausdorff

STRUCTURE = ndimage.generate_binary_structure(3, 2)  # 18-connected, as in the official code
_OFFSETS = [tuple(int(v) for v in o) for o in np.argwhere(STRUCTURE) - 1]


def _number_by_first_voxel(components: np.ndarray) -> np.ndarray:
    """Renumber component labels 1..K by first occurrence in C order (independent of cc3d's internal order)."""
    flat = components.ravel(order="C")
    positions = np.flatnonzero(flat)
    first = np.full(int(flat.max()) + 1, flat.size, dtype=np.int64)
    first[flat[positions][::-1]] = positions[::-1]  # repeated indices: the last write (the first voxel) wins
    present = np.flatnonzero(first < flat.size)
    lut = np.zeros(first.size, dtype=np.int32)
    lut[present[np.argsort(first[present], kind="stable")]] = np.arange(1, present.size + 1, dtype=np.int32)
    return lut[components]


def merge_by_dilation(mask: np.ndarray, dilation: int) -> np.ndarray:
    """Lesion ids: voxels of ``mask`` share an id when their 26-components touch after ``dilation`` dilations."""
    ids = np.zeros(mask.shape, dtype=np.int32)
    box = bounding_box(mask, pad=dilation)
    if box is None:
        return ids
    sub = mask[box]
    grown = ndimage.binary_dilation(sub, STRUCTURE, iterations=dilation) if dilation > 0 else sub
    ids[box] = _number_by_first_voxel(cc3d.connected_components(grown, connectivity=26)) * sub
    return ids


def delete_small(ids: np.ndarray, at_most: float) -> np.ndarray:
    """Remove lesions of ``at_most`` voxels or fewer; ids keep their gaps, as in the official code."""
    counts = np.bincount(ids.ravel())
    small = counts <= at_most
    small[0] = False
    if not small.any():
        return ids
    lut = np.arange(counts.size, dtype=np.int32)
    lut[small] = 0
    return lut[ids]


def touching_pairs(own: np.ndarray, other: np.ndarray) -> set[tuple[int, int]]:
    """(own id, other id) pairs whose voxels are 18-neighbours (or overlap)."""
    box = bounding_box(own != 0, pad=1)
    if box is None or not other.any():
        return set()
    own_box = own[box]
    padded = np.pad(other[box], 1)  # neighbours outside the image are background
    coords = np.nonzero(own_box)
    own_ids = own_box[coords].astype(np.int64)
    base = int(other.max()) + 1
    codes = []
    for offset in _OFFSETS:
        neighbours = padded[tuple(c + 1 + o for c, o in zip(coords, offset))].astype(np.int64)
        keep = neighbours != 0
        codes.append(own_ids[keep] * base + neighbours[keep])
    return {(int(code // base), int(code % base)) for code in np.unique(np.concatenate(codes))}


def _relabel(ids: np.ndarray, pairs: set[tuple[int, int]]) -> np.ndarray:
    """The official relabelling: each other-tissue id gets a fresh id; an own id takes that of its smallest partner."""
    top = int(ids.max())
    fresh: dict[int, int] = {}
    for _, common in sorted(pairs):
        fresh.setdefault(common, top + 1 + len(fresh))
    lut = np.arange(top + 1, dtype=np.int64)
    assigned: set[int] = set()
    for own_id, common in sorted(pairs):
        if own_id not in assigned:
            lut[own_id] = fresh[common]
            assigned.add(own_id)
    return lut[ids].astype(np.int32)


def _renumber_by_value(ids: np.ndarray) -> np.ndarray:
    present = np.flatnonzero(np.bincount(ids.ravel()))
    present = present[present != 0]
    lut = np.zeros(int(ids.max()) + 1, dtype=np.int32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return lut[ids]


def merge_across_regions(ids: dict[str, np.ndarray], partners: dict[str, tuple[str, ...]]) -> dict[str, np.ndarray]:
    """GLI 2024 tissue merge: lesions touching a partner tissue's lesion are relabelled together.

    As in the official code every step reads the partners' *unmerged* maps, a step only applies when it finds more
    than one touching pair, and the result is renumbered 1..K by id value.
    """
    merged = dict(ids)
    for name, others in partners.items():
        current = ids[name]
        for other in others:
            pairs = touching_pairs(current, ids[other])
            if len(pairs) > 1:
                current = _relabel(current, pairs)
        merged[name] = _renumber_by_value(current)
    return merged


@dataclass(frozen=True)
class Lesion:
    """One reference lesion after matching."""

    volume_mm3: float
    matched: int  # number of predicted lesions overlapping its dilated mask
    dice: float
    hd95: float  # inf when nothing matched


@dataclass(frozen=True)
class LesionScores:
    """The lesion-wise case score of one region and its lesion counts."""

    dice: float
    hd95: float
    num_tp: int
    num_fp: int
    num_fn: int


def _union_box(boxes: list[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(slice(min(b[i].start for b in boxes), max(b[i].stop for b in boxes)) for i in range(len(boxes[0])))


def match_lesions(
    reference_ids: np.ndarray, prediction_ids: np.ndarray, dilation: int, spacing: tuple[float, float, float]
) -> tuple[list[Lesion], int]:
    """Match predicted lesions to each reference lesion's dilated mask; returns lesions and unmatched predictions."""
    voxel_volume = float(np.prod(spacing))
    pred_boxes = ndimage.find_objects(prediction_ids)
    matched_ids: set[int] = set()
    lesions = []
    for lesion_id, box in enumerate(ndimage.find_objects(reference_ids), start=1):
        if box is None:
            continue
        grown_box = tuple(slice(max(s.start - dilation, 0), min(s.stop + dilation, n))
                          for s, n in zip(box, reference_ids.shape))
        lesion = reference_ids[grown_box] == lesion_id
        grown = ndimage.binary_dilation(lesion, STRUCTURE, iterations=dilation) if dilation > 0 else lesion
        hits = np.unique(prediction_ids[grown_box][grown])
        hits = hits[hits != 0]
        matched_ids.update(int(h) for h in hits)
        crop = _union_box([box] + [pred_boxes[h - 1] for h in hits])
        ref_mask = reference_ids[crop] == lesion_id
        pred_mask = np.isin(prediction_ids[crop], hits)
        lesions.append(Lesion(
            volume_mm3=float(np.count_nonzero(ref_mask)) * voxel_volume,
            matched=int(hits.size),
            dice=dice(Overlap.of(ref_mask, pred_mask)),
            hd95=robust_hausdorff(ref_mask, pred_mask, spacing),
        ))
    present = {i for i, b in enumerate(pred_boxes, start=1) if b is not None}
    return lesions, len(present - matched_ids)


def score_lesions(
    lesions: list[Lesion], num_fp: int, min_ref_volume_mm3: float, penalty: float, count_fp: bool
) -> LesionScores:
    """Case score: mean over reference lesions above the threshold (+ false positives when counted).

    No scored lesion and no counted false positive: Dice 1, HD95 0. Lesions at or under the threshold count
    neither as TP nor FN, but predictions matched to them are no false positives.
    """
    kept = [lesion for lesion in lesions if lesion.volume_mm3 > min_ref_volume_mm3]
    counted_fp = num_fp if count_fp else 0
    denominator = len(kept) + counted_fp
    if denominator == 0:
        dice_score, hd95_score = 1.0, 0.0
    else:
        dices = np.array([lesion.dice for lesion in kept], dtype=float)
        hds = np.array([penalty if math.isinf(lesion.hd95) else lesion.hd95 for lesion in kept], dtype=float)
        dice_score = float(np.sum(dices) / denominator)
        hd95_score = float((np.sum(hds) + counted_fp * penalty) / denominator)
    return LesionScores(
        dice=dice_score,
        hd95=hd95_score,
        num_tp=sum(1 for lesion in kept if lesion.matched),
        num_fp=num_fp,
        num_fn=sum(1 for lesion in kept if not lesion.matched),
    )
