"""Focal + soft Dice loss of the SliceRes method.

Both terms are computed per output channel that represents a structure and averaged over those channels:

- label-based datasets (softmax): probabilities ``softmax(logits)``, channels = foreground classes
  1..K-1 as one-vs-rest targets (background too on request, see Channels below). With one foreground
  class this is exactly the sigmoid loss of the paper, because ``softmax([l0, l1])[1] = sigmoid(l1 - l0)``
  (nnU-Net's label manager always gives binary datasets two outputs, so the model stays loadable by stock
  ``nnUNetv2_predict``);
- region-based datasets (nnU-Net regions, e.g. BraTS WT/TC/ET): ``sigmoid(logits)`` per region.

Focal term, per channel: ``mean_i alpha_i (1 - x_i)^gamma (-log x_i)`` with ``x_i = p_i`` where the pixel
carries the structure and ``1 - p_i`` where not. ``alpha`` (setting ``loss.focal_alpha``):

- ``"dataset_frequency"`` (the study's reading): one weight per class, the inverse of the fraction of pixels
  carrying it, measured once on the training fold (:mod:`nnunet_ext.loss.class_weights`, background
  included, normalised to average 1 over the training pixels) and passed in with :meth:`set_class_weights`.
  Label data: a pixel of class ``k`` weighs ``w_k`` in every channel's term; region data: ``w_inside`` /
  ``w_outside`` of each region;
- ``"batch_frequency"``: inverse frequency of the pixel's value (positive / negative for this channel)
  recomputed on every batch, i.e. "mean over positive pixels + mean over negative pixels" per channel;
  needs no statistics, but the weights follow the batch's prevalence;
- ``None``: no weighting (plain focal loss).

Channels: the foreground classes, plus the background class when ``include_background`` is set on label
data with more than one foreground class (the study computes the multi-class loss "per class and
averaged" and does not say whether background is one of them). Absent values contribute nothing.

Soft Dice term, per channel over the whole batch (all slices' pixels summed, like nnU-Net's ``batch_dice``
for 2d; per-slice Dice is undefined on the 50 % empty slices): ``1 - (2 sum(p y) + eps) / (sum p + sum y + eps)``.

Pixels marked with nnU-Net's ignore label are left out of both terms.
"""

from __future__ import annotations

import torch
from torch import nn

from nnunet_ext.planning.sliceres_settings import FOCAL_ALPHAS


class FocalDiceLoss(nn.Module):
    """``focal_weight * focal + dice_weight * dice`` for 2D logits (B, C, H, W).

    ``target`` follows nnU-Net's conventions: (B, 1, H, W) label map for softmax training (``ignore_label``
    values ignored), or (B, R, H, W) region maps for sigmoid training, plus one trailing ignore channel
    when ``ignore_label`` is set.
    """

    def __init__(self, use_sigmoid: bool, gamma: float = 2.0, dice_eps: float = 1e-5,
                 focal_alpha: str | None = "batch_frequency", class_weights: torch.Tensor | None = None,
                 include_background: bool = False, focal_weight: float = 1.0, dice_weight: float = 1.0,
                 ignore_label: int | None = None):
        super().__init__()
        if focal_alpha not in FOCAL_ALPHAS:
            raise ValueError(f"focal_alpha must be one of {FOCAL_ALPHAS}, got {focal_alpha!r}")
        self.use_sigmoid = use_sigmoid
        self.gamma = float(gamma)
        self.dice_eps = float(dice_eps)
        self.focal_alpha = focal_alpha
        self.include_background = include_background
        self.focal_weight = float(focal_weight)
        self.dice_weight = float(dice_weight)
        self.ignore_label = ignore_label
        self.class_weights: torch.Tensor | None = None
        if class_weights is not None:
            self.set_class_weights(class_weights)

    def set_class_weights(self, weights: torch.Tensor) -> None:
        """Dataset-level weights: (K,) per class incl. background (labels) or (R, 2) outside/inside per region."""
        weights = torch.as_tensor(weights, dtype=torch.float64)
        expected = "(R, 2) for region-based (sigmoid) data" if self.use_sigmoid else "(K,) for label data"
        if weights.ndim != (2 if self.use_sigmoid else 1) or (self.use_sigmoid and weights.shape[1] != 2):
            raise ValueError(f"class weights of shape {tuple(weights.shape)}: expected {expected}")
        if not torch.isfinite(weights).all() or (weights <= 0).any():
            raise ValueError(f"class weights must be finite and positive, got {weights.tolist()}")
        self.class_weights = weights

    def extra_repr(self) -> str:
        return (f"use_sigmoid={self.use_sigmoid}, gamma={self.gamma}, dice_eps={self.dice_eps}, "
                f"focal_alpha={self.focal_alpha}, include_background={self.include_background}, "
                f"focal_weight={self.focal_weight}, dice_weight={self.dice_weight}, ignore_label={self.ignore_label}")

    def probabilities_and_targets(self, logits: torch.Tensor, target: torch.Tensor
                                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(p, y, valid): structure channels only, float targets, a (B, 1, H, W) mask of counted pixels."""
        logits = logits.float()
        if self.use_sigmoid:
            if self.ignore_label is not None:
                valid = 1.0 - target[:, -1:].float()
                target = target[:, :-1]
            else:
                valid = torch.ones_like(target[:, :1], dtype=torch.float32)
            return torch.sigmoid(logits), target.float(), valid
        labels = target[:, 0].long()
        valid = torch.ones_like(labels, dtype=torch.float32)
        if self.ignore_label is not None:
            valid = (labels != self.ignore_label).float()
            labels = torch.where(labels == self.ignore_label, torch.zeros_like(labels), labels)
        first = 0 if self.include_background and logits.shape[1] > 2 else 1
        probs = torch.softmax(logits, 1)[:, first:]
        onehot = torch.zeros_like(logits).scatter_(1, labels[:, None], 1.0)[:, first:]
        return probs, onehot, valid[:, None]

    def focal(self, p: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mean over channels of the per-channel focal term (see module docstring)."""
        dims = (0, 2, 3)
        x = torch.where(y > 0.5, p, 1.0 - p).clamp_min(1e-7)
        term = (1.0 - x) ** self.gamma * -torch.log(x) * valid
        n = valid.sum(dims).clamp_min(1.0)  # (1,) counted pixels
        if self.focal_alpha == "batch_frequency":
            n_pos = (y * valid).sum(dims)
            n_neg = ((1.0 - y) * valid).sum(dims)
            alpha_pos = n / n_pos.clamp_min(1.0)
            alpha_neg = n / n_neg.clamp_min(1.0)
            term = term * torch.where(y > 0.5, alpha_pos[None, :, None, None], alpha_neg[None, :, None, None])
        elif self.focal_alpha == "dataset_frequency":
            term = term * self.dataset_alpha(y)
        return (term.sum(dims) / n).mean()

    def dataset_alpha(self, y: torch.Tensor) -> torch.Tensor:
        """Per-pixel weight from the dataset-level class weights, broadcastable to ``y`` (B, C, H, W)."""
        if self.class_weights is None:
            raise RuntimeError("focal_alpha 'dataset_frequency' needs the dataset's class weights: call "
                               "set_class_weights() before the first loss evaluation")
        w = self.class_weights.to(device=y.device, dtype=y.dtype)
        if self.use_sigmoid:
            if w.shape[0] != y.shape[1]:
                raise ValueError(f"{w.shape[0]} region weights for {y.shape[1]} output regions")
            return torch.where(y > 0.5, w[None, :, 1, None, None], w[None, :, 0, None, None])
        foreground = y[:, 1:] if y.shape[1] == w.shape[0] else y  # K channels: background included
        if foreground.shape[1] != w.shape[0] - 1:
            raise ValueError(f"{w.shape[0]} class weights for {foreground.shape[1]} foreground channels")
        # one-hot targets: a pixel of class k weighs w_k, background (no foreground channel set) w_0
        return w[0] + (foreground * (w[1:] - w[0])[None, :, None, None]).sum(1, keepdim=True)

    def dice(self, p: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mean over channels of the batch soft Dice loss."""
        dims = (0, 2, 3)
        p = p * valid
        y = y * valid
        intersection = (p * y).sum(dims)
        return (1.0 - (2.0 * intersection + self.dice_eps) / (p.sum(dims) + y.sum(dims) + self.dice_eps)).mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, y, valid = self.probabilities_and_targets(logits, target)
        return self.focal_weight * self.focal(p, y, valid) + self.dice_weight * self.dice(p, y, valid)
