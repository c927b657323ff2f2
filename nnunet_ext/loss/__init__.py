"""SliceRes loss: focal (gamma 2, inverse-frequency alpha) + soft Dice (:mod:`nnunet_ext.loss.focal_dice`), with
the dataset-level class weights of the study's alpha (:mod:`nnunet_ext.loss.class_weights`)."""

from nnunet_ext.loss.focal_dice import FocalDiceLoss

__all__ = ["FocalDiceLoss"]
