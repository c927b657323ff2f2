"""Focal + soft Dice loss against values computed by hand from the formulas in the method spec."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_ext.loss.focal_dice import FocalDiceLoss

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
