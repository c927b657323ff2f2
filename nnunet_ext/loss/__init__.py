"""SliceRes loss: focal (inverse-frequency alpha, gamma 2) + soft Dice, see :mod:`nnunet_ext.loss.focal_dice`."""

from nnunet_ext.loss.focal_dice import FocalDiceLoss

__all__ = ["FocalDiceLoss"]
