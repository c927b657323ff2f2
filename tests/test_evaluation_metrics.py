"""Metric functions on hand-built volumes whose answers can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnunet_ext.evaluation.icc import icc_a1
from nnunet_ext.evaluation.legacy import (
    Overlap,
    brats_sensitivity_specificity,
    dice,
    jaccard,
    voxel_sensitivity_specificity,
)
from nnunet_ext.evaluation.lesionwise import merge_across_regions, merge_by_dilation
from nnunet_ext.evaluation.rules import RULES, parse_label_mapping
from nnunet_ext.evaluation.scoring import score_case
from nnunet_ext.evaluation.stats import bootstrap_ci, describe
from nnunet_ext.evaluation.surface import robust_hausdorff
from nnunet_ext.evaluation.volumes import apply_label_mapping


def _rows(reference, prediction, rules, spacing=(1.0, 1.0, 1.0)):
    return {row["region"]: row for row in score_case(reference, prediction, spacing, RULES[rules])}


# --- surface distances --------------------------------------------------------------------------------------------

def test_hd95_of_one_voxel_shifted_three_voxels_is_three_spacing_aware():
    a = np.zeros((10, 4, 4), np.int32)
    b = np.zeros_like(a)
    a[2, 1, 1] = 1
    b[5, 1, 1] = 1
    # The 8 corner surfels of each voxel: 4 are 2 voxels and 4 are 3 voxels from the other voxel's corners;
    # the area-weighted 95th percentile is the larger one.
    assert robust_hausdorff(a, b, (1.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert robust_hausdorff(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert robust_hausdorff(a, a, (1.0, 1.0, 1.0)) == 0.0
    assert math.isinf(robust_hausdorff(a, np.zeros_like(a), (1.0, 1.0, 1.0)))


def test_hd95_of_cube_and_shifted_cube_is_the_shift():
    a = np.zeros((20, 12, 12), np.int32)
    a[4:10, 3:9, 3:9] = 1
    b = np.roll(a, 2, axis=0)
    assert robust_hausdorff(a, b, (1.0, 1.0, 1.0)) == pytest.approx(2.0)


def test_hd95_on_lesion_id_maps_reproduces_the_official_wraparound():
    """Why legacy_hd95 and voxel_hd95 can differ: the 2024 scorer hands lesion ids to a uint8 surface code.

    The same mask labelled with id 2 instead of 1 has interior codes 2*255 mod 256 = 254, which count as surface,
    so the official Legacy HD95 of two identical masks is not 0. We reproduce that (the vectors demand it) in
    ``legacy_hd95`` and report the correct mask-based value as ``voxel_hd95``.
    """
    ref = np.zeros((16, 16, 16), np.int32)
    ref[3:12, 3:12, 3:12] = 1
    assert robust_hausdorff(ref, ref * 2, (1.0, 1.0, 1.0)) > 1.0
    assert robust_hausdorff(ref != 0, (ref * 2) != 0, (1.0, 1.0, 1.0)) == 0.0


# --- voxel overlap scores -----------------------------------------------------------------------------------------

def test_overlap_scores_known_values():
    ref = np.zeros((4, 4, 4), np.int32)
    pred = np.zeros_like(ref)
    ref[0:2, 0:2, 0:2] = 1  # 8 voxels
    pred[0:2, 0:2, 0:1] = 1  # 4 of them
    pred[3, 0:2, 0:2] = 1  # 4 outside
    overlap = Overlap.of(ref, pred)
    assert (overlap.tp, overlap.fp, overlap.fn, overlap.tn) == (4, 4, 4, 52)
    assert dice(overlap) == pytest.approx(0.5)
    assert jaccard(overlap) == pytest.approx(1 / 3)
    assert voxel_sensitivity_specificity(overlap) == pytest.approx((0.5, 52 / 56))
    empty = Overlap.of(np.zeros_like(ref), np.zeros_like(ref))
    assert (dice(empty), jaccard(empty), voxel_sensitivity_specificity(empty)[0]) == (1.0, 1.0, 1.0)


def test_brats_sensitivity_uses_lesion_ids_like_the_official_scorer():
    ref = np.zeros((6, 6, 6), np.int32)
    ref[0:2, 0:2, 0:2] = 1
    ref[4:6, 4:6, 4:6] = 2  # second lesion: counts twice in the official "count" (a sum of ids)
    sensitivity, _ = brats_sensitivity_specificity(ref, ref)
    assert sensitivity == pytest.approx(8 / (8 + 16))  # only id-1 voxels are true positives
    assert voxel_sensitivity_specificity(Overlap.of(ref, ref))[0] == 1.0


# --- lesion-wise --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("gap", "lesions"), [(6, 1), (7, 2)])
def test_dilation_merge_joins_blobs_up_to_twice_the_dilation_apart(gap, lesions):
    mask = np.zeros((30, 5, 5), bool)
    mask[2:5, 1:4, 1:4] = True
    mask[5 + gap:8 + gap, 1:4, 1:4] = True
    ids = merge_by_dilation(mask, 3)
    assert ids.max() == lesions
    assert set(np.unique(ids[mask])) == set(range(1, lesions + 1))


def test_cross_tissue_merge_gives_touching_lesions_one_id():
    netc = np.zeros((20, 6, 6), np.int32)
    netc[2:5, 1:4, 1:4] = 1
    netc[12:15, 1:4, 1:4] = 2
    et = np.zeros_like(netc)
    et[5:12, 1:4, 1:4] = 1  # one ET lesion touching both NETC lesions
    merged = merge_across_regions({"NETC": netc, "ET": et}, {"NETC": ("ET",)})
    assert set(np.unique(merged["NETC"])) == {0, 1}


def _cube(volume, corner, size, label):
    x, y, z = corner
    volume[x:x + size, y:y + size, z:z + size] = label


def test_gli_2024_lesionwise_counts_and_scores_by_hand():
    ref = np.zeros((60, 20, 20), np.int32)
    pred = np.zeros_like(ref)
    _cube(ref, (5, 5, 5), 3, 3)  # ET lesion found exactly
    _cube(ref, (25, 5, 5), 3, 3)  # ET lesion missed
    _cube(pred, (5, 5, 5), 3, 3)
    _cube(pred, (45, 5, 5), 3, 3)  # false positive, 27 voxels
    pred[55, 15, 15] = 3  # 1-voxel dust: deleted (<= 10 voxels) before scoring
    et = _rows(ref, pred, "brats-gli-2024")["ET"]
    assert (et["num_tp"], et["num_fp"], et["num_fn"]) == (1, 1, 1)
    assert et["lesionwise_dice"] == pytest.approx(1 / 3)
    assert et["lesionwise_hd95"] == pytest.approx(2 * 337 / 3)
    assert et["legacy_dice"] == pytest.approx(2 * 27 / (54 + 54))  # dust excluded from the legacy Dice too
    assert et["ref_volume_ml"] == pytest.approx(54 / 1000)
    assert et["pred_volume_ml"] == pytest.approx(55 / 1000)  # volumes are of the masks as given
    rc = _rows(ref, pred, "brats-gli-2024")["RC"]
    assert (rc["lesionwise_dice"], rc["lesionwise_hd95"], rc["legacy_dice"], rc["legacy_hd95"]) == (1.0, 0.0, 1.0, 0.0)


def test_small_reference_lesions_are_neither_tp_nor_fn():
    ref = np.zeros((30, 10, 10), np.int32)
    ref[5:7, 5:7, 5:7] = 3  # 8 voxels <= 10 mm^3: not scored
    pred = np.zeros_like(ref)
    et = _rows(ref, pred, "brats-gli-2024")["ET"]
    assert (et["num_tp"], et["num_fn"], et["lesionwise_dice"], et["lesionwise_hd95"]) == (0, 0, 1.0, 0.0)
    assert et["legacy_dice"] == 0.0 and et["legacy_hd95"] == 337.0


def test_men_rt_ignores_false_positives_in_the_score_and_penalises_with_the_diagonal():
    ref = np.zeros((40, 20, 20), np.int32)
    pred = np.zeros_like(ref)
    _cube(ref, (5, 5, 5), 5, 1)
    _cube(pred, (5, 5, 5), 5, 1)
    _cube(pred, (30, 5, 5), 5, 1)  # 125 mm^3 false positive
    gtv = _rows(ref, pred, "brats-men-rt-2024")["GTV"]
    assert (gtv["lesionwise_dice"], gtv["lesionwise_hd95"], gtv["num_fp"]) == (1.0, 0.0, 1)
    missed = _rows(ref, np.zeros_like(ref), "brats-men-rt-2024")["GTV"]
    assert missed["lesionwise_hd95"] == pytest.approx(math.sqrt(40 ** 2 + 20 ** 2 + 20 ** 2))


def test_voxel_rules_score_each_label_without_lesion_matching():
    ref = np.zeros((10, 10, 10), np.int32)
    ref[2:5, 2:5, 2:5] = 1
    ref[6:8, 6:8, 6:8] = 2
    rows = _rows(ref, ref, "voxel", spacing=(2.0, 1.0, 1.0))
    assert set(rows) == {"1", "2"}
    assert rows["1"]["legacy_dice"] == 1.0 and math.isnan(rows["1"]["lesionwise_dice"])
    assert rows["2"]["ref_volume_ml"] == pytest.approx(8 * 2 / 1000)


def test_label_mapping_conventions():
    labels = np.array([0, 1, 2, 4], np.int32)
    assert apply_label_mapping(labels, parse_label_mapping("brats-2021")).tolist() == [0, 1, 2, 3]
    assert apply_label_mapping(labels, parse_label_mapping("binary")).tolist() == [0, 1, 1, 1]
    assert apply_label_mapping(labels, parse_label_mapping("*:1,4:0")).tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="bad label mapping"):
        parse_label_mapping("four-to-three")


# --- across-case statistics ---------------------------------------------------------------------------------------

def test_icc_a1_matches_shrout_fleiss_1979_example():
    """Shrout & Fleiss (1979), Psychol. Bull. 86:420, Table 2: 6 targets x 4 judges; ICC(2,1) = .29.

    ICC(2,1) of Shrout & Fleiss is McGraw & Wong's (1996) ICC(A,1). From the paper's mean squares
    (BMS 11.24, JMS 32.49, EMS 1.02) the unrounded value is 0.2898.
    """
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert icc_a1(ratings) == pytest.approx(0.2898, abs=5e-4)


def test_icc_a1_perfect_agreement_and_bias():
    volumes = np.array([10.0, 20.0, 35.0, 50.0, 80.0])
    assert icc_a1(np.stack([volumes, volumes], axis=1)) == pytest.approx(1.0)
    biased = icc_a1(np.stack([volumes + 20, volumes], axis=1))  # consistent but not in absolute agreement
    assert 0 < biased < 1
    assert math.isnan(icc_a1(np.zeros((4, 2))))


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    values = np.array([0.9, 0.8, 0.85, 0.6, 0.95, 0.7, 0.88, 0.91])
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_ci(values)
    assert bootstrap_ci(np.array([1.0, 1.0, 1.0])) == (1.0, 1.0)
    summary = describe([0.5, None, float("nan"), 1.0])
    assert summary["n"] == 2 and summary["mean"] == pytest.approx(0.75) and summary["median"] == pytest.approx(0.75)
