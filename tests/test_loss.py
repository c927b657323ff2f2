"""Focal + soft Dice loss and its dataset-level class weights against values computed by hand from the method spec."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_ext.loss import class_weights
from nnunet_ext.loss.focal_dice import FocalDiceLoss
from nnunet_ext.planning import settings
from nnunet_ext.planning.sliceres_settings import SliceResSettings
from tests.helpers.synthetic import make_raw_dataset

EPS = 1e-5


def logits_from_probs(probs: list[list[float]]) -> torch.Tensor:
    """(B=1, C, H=1, W=len(probs)) logits whose softmax over C gives ``probs`` (one row per pixel)."""
    return torch.log(torch.tensor(probs, dtype=torch.float64)).T[None, :, None, :]


def test_binary_softmax_equals_hand_computed_sigmoid_loss():
    # pixel a: p(fg) = 3/4, label 1; pixel b: p(fg) = 1/2, label 0
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64)[None, :, None, :]
    target = torch.tensor([[[[1, 0]]]])
    loss = FocalDiceLoss(use_sigmoid=False, gamma=2.0, dice_eps=EPS)
    p, y, valid = loss.probabilities_and_targets(logits, target)
    # alpha = 1 / (fraction of pixels with that value) = 2 for both; mean over 2 pixels
    focal = (2 * 0.25 ** 2 * -math.log(0.75) + 2 * 0.5 ** 2 * -math.log(0.5)) / 2
    dice = 1 - (2 * 0.75 + EPS) / (1.25 + 1 + EPS)
    assert loss.focal(p, y, valid).item() == pytest.approx(focal, rel=1e-6)
    assert loss.dice(p, y, valid).item() == pytest.approx(dice, rel=1e-6)
    assert loss(logits, target).item() == pytest.approx(focal + dice, rel=1e-6)


def test_multiclass_softmax_is_per_class_average_of_hand_computed_terms():
    probs = [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.2, 0.7], [0.25, 0.25, 0.5]]
    target = torch.tensor([[[[1, 0, 2, 0]]]])
    loss = FocalDiceLoss(use_sigmoid=False, gamma=2.0, dice_eps=EPS)

    def fl(x: float) -> float:
        return (1 - x) ** 2 * -math.log(x)

    # class 1: positive pixel a (x = .5); negatives b, c, d (x = .9, .8, .75); alpha 4 and 4/3 over 4 pixels
    focal_1 = (4 * fl(0.5) + 4 / 3 * (fl(0.9) + fl(0.8) + fl(0.75))) / 4
    # class 2: positive pixel c (x = .7); negatives a, b, d (x = .7, .7, .5)
    focal_2 = (4 * fl(0.7) + 4 / 3 * (fl(0.7) + fl(0.7) + fl(0.5))) / 4
    dice_1 = 1 - (2 * 0.5 + EPS) / (0.5 + 0.1 + 0.2 + 0.25 + 1 + EPS)
    dice_2 = 1 - (2 * 0.7 + EPS) / (0.3 + 0.3 + 0.7 + 0.5 + 1 + EPS)
    expected = (focal_1 + focal_2) / 2 + (dice_1 + dice_2) / 2
    assert loss(logits_from_probs(probs), target).item() == pytest.approx(expected, rel=1e-6)


def test_sigmoid_regions_and_gamma_zero_give_weighted_cross_entropy():
    logits = torch.zeros(1, 2, 1, 2, dtype=torch.float64)  # p = 0.5 everywhere
    target = torch.tensor([[[[1, 0]], [[1, 1]]]], dtype=torch.bool)  # region 0: one positive; region 1: all
    loss = FocalDiceLoss(use_sigmoid=True, gamma=0.0, dice_eps=EPS)
    # region 0: alpha 2 for both pixels -> (2 ln 2 + 2 ln 2) / 2 = 2 ln 2;
    # region 1: both pixels positive, alpha_pos = N / n_pos = 1 -> ln 2
    focal = (2 * math.log(2) + math.log(2)) / 2
    dice = ((1 - (2 * 0.5 + EPS) / (1 + 1 + EPS)) + (1 - (2 * 1.0 + EPS) / (1 + 2 + EPS))) / 2
    assert loss(logits, target).item() == pytest.approx(focal + dice, rel=1e-6)


def test_ignore_label_pixels_do_not_count():
    probs = [[0.3, 0.7], [0.8, 0.2], [0.5, 0.5]]
    with_ignored = FocalDiceLoss(use_sigmoid=False, ignore_label=5)(logits_from_probs(probs),
                                                                    torch.tensor([[[[1, 0, 5]]]]))
    without = FocalDiceLoss(use_sigmoid=False)(logits_from_probs(probs[:2]), torch.tensor([[[[1, 0]]]]))
    assert with_ignored.item() == pytest.approx(without.item(), rel=1e-6)


def test_better_prediction_gives_lower_loss_and_gradients_flow():
    target = torch.tensor([[[[1, 0, 0, 1]]]])
    good = torch.tensor([[[-3.0, 3.0, 3.0, -3.0]], [[3.0, -3.0, -3.0, 3.0]]])[None].requires_grad_()
    bad = -good.detach()
    loss = FocalDiceLoss(use_sigmoid=False)
    value = loss(good, target)
    value.backward()
    assert value.item() < loss(bad, target).item()
    assert torch.isfinite(good.grad).all() and good.grad.abs().sum() > 0


def fl(x: float) -> float:
    """Focal term of one pixel, gamma 2, alpha 1."""
    return (1 - x) ** 2 * -math.log(x)


# pixels a..d of test_multiclass_softmax_..., plus e with the ignore label 3
PROBS = [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.2, 0.7], [0.25, 0.25, 0.5], [0.3, 0.3, 0.4]]
LABELS = torch.tensor([[[[1, 0, 2, 0, 3]]]])
WEIGHTS = torch.tensor([0.5, 4.0, 2.0])  # background, class 1, class 2


def test_dataset_alpha_weighs_each_pixel_by_its_class_in_every_channel():
    loss = FocalDiceLoss(use_sigmoid=False, focal_alpha="dataset_frequency", class_weights=WEIGHTS, ignore_label=3)
    # pixel weights a..d: 4 (class 1), .5 (bg), 2 (class 2), .5 (bg); e is ignored; mean over the 4 counted pixels
    focal_1 = (4 * fl(0.5) + 0.5 * fl(0.9) + 2 * fl(0.8) + 0.5 * fl(0.75)) / 4
    focal_2 = (4 * fl(0.7) + 0.5 * fl(0.7) + 2 * fl(0.7) + 0.5 * fl(0.5)) / 4
    dice_1 = 1 - (2 * 0.5 + EPS) / (0.5 + 0.1 + 0.2 + 0.25 + 1 + EPS)
    dice_2 = 1 - (2 * 0.7 + EPS) / (0.3 + 0.3 + 0.7 + 0.5 + 1 + EPS)
    expected = (focal_1 + focal_2) / 2 + (dice_1 + dice_2) / 2
    assert loss(logits_from_probs(PROBS), LABELS).item() == pytest.approx(expected, rel=1e-6)

    with_background = FocalDiceLoss(use_sigmoid=False, focal_alpha="dataset_frequency", class_weights=WEIGHTS,
                                    ignore_label=3, include_background=True)
    focal_0 = (4 * fl(0.8) + 0.5 * fl(0.6) + 2 * fl(0.9) + 0.5 * fl(0.25)) / 4
    dice_0 = 1 - (2 * (0.6 + 0.25) + EPS) / (0.2 + 0.6 + 0.1 + 0.25 + 2 + EPS)
    expected = (focal_0 + focal_1 + focal_2) / 3 + (dice_0 + dice_1 + dice_2) / 3
    assert with_background(logits_from_probs(PROBS), LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_dataset_alpha_on_regions_uses_inside_and_outside_weights():
    logits = torch.zeros(1, 2, 1, 2, dtype=torch.float64)  # p = 0.5 everywhere
    target = torch.tensor([[[[1, 0]], [[1, 1]]]], dtype=torch.bool)
    weights = torch.tensor([[0.5, 3.0], [0.25, 6.0]])  # (outside, inside) per region
    loss = FocalDiceLoss(use_sigmoid=True, gamma=0.0, focal_alpha="dataset_frequency", class_weights=weights)
    focal = ((3 + 0.5) * math.log(2) / 2 + (6 + 6) * math.log(2) / 2) / 2
    dice = ((1 - (2 * 0.5 + EPS) / (1 + 1 + EPS)) + (1 - (2 * 1.0 + EPS) / (1 + 2 + EPS))) / 2
    assert loss(logits, target).item() == pytest.approx(focal + dice, rel=1e-6)


def test_dataset_alpha_without_weights_or_with_bad_weights_fails_clearly():
    with pytest.raises(RuntimeError, match="set_class_weights"):
        FocalDiceLoss(use_sigmoid=False, focal_alpha="dataset_frequency")(logits_from_probs(PROBS[:4]),
                                                                          LABELS[..., :4])
    with pytest.raises(ValueError, match="finite and positive"):
        FocalDiceLoss(use_sigmoid=False, focal_alpha="dataset_frequency", class_weights=torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"expected \(R, 2\)"):
        FocalDiceLoss(use_sigmoid=True, focal_alpha="dataset_frequency", class_weights=WEIGHTS)
    with pytest.raises(ValueError, match="focal_alpha must be one of"):
        FocalDiceLoss(use_sigmoid=False, focal_alpha="inverse_frequency")


def test_focal_alpha_setting_accepts_the_old_name_as_the_per_batch_alias():
    block = settings.build({"loss": {"focal_alpha": "inverse_frequency"}}, num_modalities=1, spacing=[1, 1, 1],
                           min_depth=20)
    assert SliceResSettings.from_dict(block).loss.resolved_focal_alpha == "batch_frequency"
    assert block["loss"]["focal_alpha"] == "inverse_frequency"  # the plans keep the name as written
    for value in ("dataset_frequency", "batch_frequency", None):
        block = settings.build({"loss": {"focal_alpha": value}}, 1, [1, 1, 1], 20)
        assert SliceResSettings.from_dict(block).loss.resolved_focal_alpha == value
    with pytest.raises(ValueError, match="sliceres.loss.focal_alpha = .median.: must be 'dataset_frequency'"):
        settings.build({"loss": {"focal_alpha": "median"}}, 1, [1, 1, 1], 20)
    with pytest.raises(ValueError, match="sliceres.loss.include_background = .yes.: must be true or false"):
        settings.build({"loss": {"include_background": "yes"}}, 1, [1, 1, 1], 20)


IGNORE = 3


@pytest.fixture
def preprocessed(tmp_path) -> Path:
    """Two preprocessed cases (nnU-Net's blosc2 format), 3 slices of 2x2 along axis 0, counts by hand below.

    case_0 slice 0: one class-1 pixel, 3 background (foreground slice); slice 1: two class-2 pixels, one
    ignored, one nnU-Net ``-1`` (= background; foreground slice); slice 2: empty. case_1: 3 empty slices.
    """
    segs = np.zeros((2, 1, 3, 2, 2), np.int16)
    segs[0, 0, 0, 0, 0] = 1
    segs[0, 0, 1] = [[2, 2], [IGNORE, -1]]
    for i, seg in enumerate(segs):
        nnUNetDatasetBlosc2.save_case(np.zeros((1, 3, 2, 2), np.float32), seg, {"case": i}, str(tmp_path / f"c{i}"),
                                      chunks=(1, 1, 2, 2), blocks=(1, 1, 2, 2))
    return tmp_path


def spec(label_dict: dict, regions_class_order=None) -> class_weights.ClassSpec:
    return class_weights.ClassSpec.from_label_manager(LabelManager(label_dict, regions_class_order))


def test_class_weights_count_what_the_balanced_sampler_shows(preprocessed):
    labels = spec({"background": 0, "one": 1, "two": 2, "ignore": IGNORE})
    weights = class_weights.compute(nnUNetDatasetBlosc2(str(preprocessed)), labels, axes=[0],
                                    foreground_fraction=0.5, where="fold 0")
    # foreground slices (2): mean pixels bg (3 + 1) / 2, one 1 / 2, two 2 / 2 of (4 + 3) / 2 counted;
    # empty slices (4): bg 4 of 4. Half of the samples from each pool: bg 3, one 1/4, two 1/2 of 15/4
    assert weights.frequencies == pytest.approx([0.8, 1 / 15, 2 / 15])
    assert weights.weights == pytest.approx([1 / (3 * 0.8), 5.0, 2.5])  # 1 / (K f), so sum f w = 1
    assert weights.source["volume_pixels_per_label"] == [3 + 1 + 4 * 4, 1, 2]
    loss = FocalDiceLoss(use_sigmoid=False, focal_alpha="dataset_frequency", class_weights=weights.tensor())
    assert loss.class_weights.tolist() == pytest.approx([1 / 2.4, 5.0, 2.5])

    regions = spec({"background": 0, "both": [1, 2], "two": [2], "ignore": IGNORE}, regions_class_order=[1, 2])
    region_weights = class_weights.compute(nnUNetDatasetBlosc2(str(preprocessed)), regions, [0], 0.5, "fold 0")
    assert region_weights.frequencies == pytest.approx([0.2, 2 / 15])
    assert region_weights.tensor().flatten().tolist() == pytest.approx([1 / 1.6, 2.5, 1 / (2 * 13 / 15), 3.75])


def test_class_weights_round_trip_exactly_and_refuse_other_classes(preprocessed, tmp_path):
    labels = spec({"background": 0, "one": 1, "two": 2, "ignore": IGNORE})
    weights = class_weights.compute(nnUNetDatasetBlosc2(str(preprocessed)), labels, [0, 1, 2], 0.5, "fold 0")
    path = weights.write(tmp_path / "fold_0" / class_weights.WEIGHTS_FILE)
    again = class_weights.ClassWeights.read(path, labels)
    assert torch.equal(again.tensor(), weights.tensor()) and again.frequencies == weights.frequencies
    with pytest.raises(ValueError, match=f"{path}: stored focal class weights are for"):
        class_weights.ClassWeights.read(path, spec({"background": 0, "one": 1, "ignore": 2}))


def test_class_without_pixels_in_the_fold_is_named_with_the_fold(preprocessed):
    labels = spec({"background": 0, "one": 1, "two": 2, "three": 3, "four": 4, "ignore": 5})  # no 4 in the segs
    with pytest.raises(ValueError, match=r"fold 3: class 'four' \(labels \[4\]\) covers no pixel of the 2 "):
        class_weights.compute(nnUNetDatasetBlosc2(str(preprocessed)), labels, [0], 0.5, "fold 3")


@pytest.mark.e2e
def test_trainer_stores_class_weights_once_and_resume_reads_them_back(tmp_path):
    from tests.test_training import SMALL, _env, _model, _run, _train

    for sub in ("raw", "pre", "res"):
        (tmp_path / sub).mkdir()
    make_raw_dataset(tmp_path / "raw", 523, name="Alpha", n_cases=5, shape=(12, 24, 24), n_modalities=1, n_labels=2)
    _run([sys.executable, "-m", "nnunet_ext.cli", "plan", "-d", "523", "-c", "2d", "-np", "1", *SMALL,
          "--set", "loss.focal_alpha=dataset_frequency", "--set", "seed=0"], _env(tmp_path))
    fold = _model(tmp_path, "Dataset523_Alpha") / "fold_0"
    stored = fold / class_weights.WEIGHTS_FILE
    stored.parent.mkdir(parents=True)
    stored.write_text("left over from an earlier run")  # a fresh start must count again, not read this

    first = _train(tmp_path, 523, 0, epochs=1, iterations=1, val_iterations=1)
    computed = json.loads(stored.read_text())
    assert [c["name"] for c in computed["classes"]] == ["background", "label_1", "label_2"]
    assert sum(c["frequency"] * c["weight"] for c in computed["classes"]) == pytest.approx(1.0)
    assert "Computed focal class weights" in first.stdout

    # --c must use the stored numbers, not recount: mark them, resume, and find the marked ones in use
    marked = dict(computed, classes=[dict(c, weight=c["weight"] * 2) for c in computed["classes"]])
    stored.write_text(json.dumps(marked))
    resumed = _train(tmp_path, 523, 0, "SliceResTrainer", "--c", epochs=2, iterations=1, val_iterations=1)
    in_use = f"label_2 {marked['classes'][2]['frequency']:.4g} -> {marked['classes'][2]['weight']:.4g}"
    assert "Resumed focal class weights" in resumed.stdout and in_use in resumed.stdout
    assert json.loads(stored.read_text()) == marked
    assert len(torch.load(fold / "checkpoint_final.pth", weights_only=False)["logging"]["train_losses"]) == 2
