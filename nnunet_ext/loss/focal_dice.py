"""Focal + soft Dice loss of the SliceRes method.

Both terms are computed per output channel that represents a structure and averaged over those channels:

- label-based datasets (softmax): probabilities ``softmax(logits)``, channels = foreground classes
  1..K-1 as one-vs-rest targets. With one foreground class this is exactly the sigmoid loss of the paper,
  because ``softmax([l0, l1])[1] = sigmoid(l1 - l0)`` (nnU-Net's label manager always gives binary
  datasets two outputs, so the model stays loadable by stock ``nnUNetv2_predict``);
- region-based datasets (nnU-Net regions, e.g. BraTS WT/TC/ET): ``sigmoid(logits)`` per region.

Focal term, per channel: ``mean_i alpha_i (1 - x_i)^gamma (-log x_i)`` with ``x_i = p_i`` where the pixel
carries the structure and ``1 - p_i`` where not. ``alpha`` is the inverse frequency of the pixel's value
(1 / fraction of pixels with that value) measured on the batch itself, i.e. on exactly what the network
sees after balanced sampling and cropping; it needs no dataset statistics, is resume-safe, and turns the
focal term into "mean over positive pixels + mean over negative pixels" (bounded, unlike 1/frequency of a
rare class taken over the whole dataset). Absent values contribute nothing.

Soft Dice term, per channel over the whole batch (all slices' pixels summed, like nnU-Net's ``batch_dice``
for 2d; per-slice Dice is undefined on the 50 % empty slices): ``1 - (2 sum(p y) + eps) / (sum p + sum y + eps)``.

Pixels marked with nnU-Net's ignore label are left out of both terms.
"""

from __future__ import annotations

import torch
from torch import nn


class FocalDiceLoss(nn.Module):
    """``focal_weight * focal + dice_weight * dice`` for 2D logits (B, C, H, W).

    ``target`` follows nnU-Net's conventions: (B, 1, H, W) label map for softmax training (``ignore_label``
    values ignored), or (B, R, H, W) region maps for sigmoid training, plus one trailing ignore channel
    when ``ignore_label`` is set.
    """

    def __init__(self, use_sigmoid: bool, gamma: float = 2.0, dice_eps: float = 1e-5,
                 inverse_frequency_alpha: bool = True, focal_weight: float = 1.0, dice_weight: float = 1.0,
                 ignore_label: int | None = None):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        self.gamma = float(gamma)
        self.dice_eps = float(dice_eps)
        self.inverse_frequency_alpha = inverse_frequency_alpha
        self.focal_weight = float(focal_weight)
        self.dice_weight = float(dice_weight)
        self.ignore_label = ignore_label

    def extra_repr(self) -> str:
        return (f"use_sigmoid={self.use_sigmoid}, gamma={self.gamma}, dice_eps={self.dice_eps}, "
                f"inverse_frequency_alpha={self.inverse_frequency_alpha}, focal_weight={self.focal_weight}, "
                f"dice_weight={self.dice_weight}, ignore_label={self.ignore_label}")

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
        probs = torch.softmax(logits, 1)[:, 1:]
        onehot = torch.zeros_like(logits).scatter_(1, labels[:, None], 1.0)[:, 1:]
        return probs, onehot, valid[:, None]

    def focal(self, p: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mean over channels of the per-channel focal term (see module docstring)."""
        dims = (0, 2, 3)
        x = torch.where(y > 0.5, p, 1.0 - p).clamp_min(1e-7)
        term = (1.0 - x) ** self.gamma * -torch.log(x) * valid
        n = valid.sum(dims).clamp_min(1.0)  # (1,) counted pixels
        if self.inverse_frequency_alpha:
            n_pos = (y * valid).sum(dims)
            n_neg = ((1.0 - y) * valid).sum(dims)
            alpha_pos = n / n_pos.clamp_min(1.0)
            alpha_neg = n / n_neg.clamp_min(1.0)
            alpha = torch.where(y > 0.5, alpha_pos[None, :, None, None], alpha_neg[None, :, None, None])
            term = term * alpha.detach()
        return (term.sum(dims) / n).mean()

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
