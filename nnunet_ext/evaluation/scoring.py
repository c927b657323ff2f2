"""Score one case: label maps in, one row of metrics per region out.

Which masks each score sees follows the official scorers: legacy Dice/Jaccard use the prediction after small
predicted lesions were deleted; with ``label_map_quirks`` Legacy HD95 and sensitivity/specificity see the lesion-id
maps. ``voxel_*`` columns are the same scores computed correctly on the (processed) masks, and volumes are those of
the masks as given, so that volume agreement (ICC) does not depend on the scoring rules.
"""

from __future__ import annotations

import math

import numpy as np

from nnunet_ext.evaluation.legacy import (
    Overlap,
    brats_sensitivity_specificity,
    dice,
    jaccard,
    volume_ml,
    voxel_sensitivity_specificity,
)
from nnunet_ext.evaluation.lesionwise import (
    delete_small,
    match_lesions,
    merge_across_regions,
    merge_by_dilation,
    score_lesions,
)
from nnunet_ext.evaluation.rules import Region, Rules
from nnunet_ext.evaluation.surface import robust_hausdorff

Spacing = tuple[float, float, float]


def hd95_penalty(rules: Rules, shape: tuple[int, ...]) -> float:
    """HD95 given to a missed lesion / false positive / empty side: fixed, or the image diagonal in voxels."""
    return rules.hd95_penalty if rules.hd95_penalty is not None else math.sqrt(sum(s * s for s in shape))


def _hd95(reference: np.ndarray, prediction: np.ndarray, spacing: Spacing, penalty: float) -> float:
    if not reference.any() and not prediction.any():
        return 0.0
    distance = robust_hausdorff(reference, prediction, spacing)
    return penalty if math.isinf(distance) else distance


def present_labels(labels: np.ndarray) -> set[int]:
    """Labels occurring in a non-negative integer label map (bincount: much faster than np.unique)."""
    return {int(v) for v in np.flatnonzero(np.bincount(labels.ravel()))}


def _region_mask(labels: np.ndarray, members: tuple[int, ...]) -> np.ndarray:
    lut = np.zeros(max(int(labels.max(initial=0)), *members) + 1, dtype=bool)
    lut[list(members)] = True
    return lut[labels]


def _lesion_ids(
    masks: dict[str, tuple[np.ndarray, np.ndarray]], regions: tuple[Region, ...], rules: Rules, spacing: Spacing
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    voxel_volume = float(np.prod(spacing))
    ref_ids, pred_ids = {}, {}
    for region in regions:
        ref_mask, pred_mask = masks[region.name]
        ref_ids[region.name] = merge_by_dilation(ref_mask, region.dilation)
        ids = merge_by_dilation(pred_mask, region.dilation if rules.merge_predictions else 0)
        if region.delete_pred_at_most > 0:
            limit = region.delete_pred_at_most
            ids = delete_small(ids, limit / voxel_volume if rules.pred_size_unit == "mm3" else limit)
        pred_ids[region.name] = ids
    partners = {region.name: region.merge_with for region in regions if region.merge_with}
    if partners:
        ref_ids = merge_across_regions(ref_ids, partners)
        pred_ids = merge_across_regions(pred_ids, partners)
    return ref_ids, pred_ids


def score_case(reference: np.ndarray, prediction: np.ndarray, spacing: Spacing, rules: Rules) -> list[dict]:
    """Rows (without ``case``) for every region of ``rules``; arrays are validated label maps in (x, y, z) order."""
    labels = present_labels(reference) | present_labels(prediction)
    regions = rules.regions_for(labels)
    penalty = hd95_penalty(rules, reference.shape)
    masks = {r.name: (_region_mask(reference, r.labels), _region_mask(prediction, r.labels)) for r in regions}
    if rules.lesionwise:
        ref_ids, pred_ids = _lesion_ids(masks, regions, rules, spacing)
    rows = []
    for region in regions:
        ref_mask, pred_mask = masks[region.name]
        row: dict = {"region": region.name}
        if rules.lesionwise:
            ref_scored, pred_scored = ref_ids[region.name], pred_ids[region.name]
            lesions, num_fp = match_lesions(ref_scored, pred_scored, region.dilation, spacing)
            scores = score_lesions(lesions, num_fp, region.min_ref_volume_mm3, penalty, rules.count_fp)
            row.update(lesionwise_dice=scores.dice, lesionwise_hd95=scores.hd95, num_tp=scores.num_tp,
                       num_fp=scores.num_fp, num_fn=scores.num_fn)
        else:
            ref_scored, pred_scored = ref_mask, pred_mask
            row.update(lesionwise_dice=math.nan, lesionwise_hd95=math.nan, num_tp=None, num_fp=None, num_fn=None)
        overlap = Overlap.of(ref_scored, pred_scored)
        voxel_sensitivity, voxel_specificity = voxel_sensitivity_specificity(overlap)
        voxel_hd95 = _hd95(ref_scored != 0, pred_scored != 0, spacing, penalty)
        single_ids = ref_scored.max(initial=0) <= 1 and pred_scored.max(initial=0) <= 1
        if rules.label_map_quirks and not single_ids:
            legacy_hd95 = _hd95(ref_scored, pred_scored, spacing, penalty)
            sensitivity, specificity = brats_sensitivity_specificity(ref_scored, pred_scored)
        else:
            legacy_hd95, sensitivity, specificity = voxel_hd95, voxel_sensitivity, voxel_specificity
        row.update(
            legacy_dice=dice(overlap),
            legacy_hd95=legacy_hd95,
            jaccard=jaccard(overlap),
            sensitivity=sensitivity,
            specificity=specificity,
            ref_volume_ml=volume_ml(ref_mask, spacing),
            pred_volume_ml=volume_ml(pred_mask, spacing),
            voxel_hd95=voxel_hd95,
            voxel_sensitivity=voxel_sensitivity,
            voxel_specificity=voxel_specificity,
        )
        rows.append(row)
    return rows


def absent_region_row(region_name: str, rules: Rules) -> dict:
    """The row of a per-label region that neither reference nor prediction of a case contains (both empty)."""
    label = int(region_name)
    empty = np.zeros((1, 1, 1), dtype=np.int32)
    single = Rules(name=rules.name, regions=(Region(region_name, (label,)),), valid_labels=None,
                   lesionwise=rules.lesionwise, hd95_penalty=0.0)
    return score_case(empty, empty, (1.0, 1.0, 1.0), single)[0]
