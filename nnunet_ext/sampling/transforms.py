"""Augmentation of 2.5D training slices: a random element of the dihedral group D4 (mirrorings and
90-degree rotations of the square crop), applied identically to the stacked image channels and the label.

A batchgeneratorsv2 transform, so it composes with nnU-Net's own label transforms (``RemoveLabelTransform``,
``ConvertSegmentationToRegionsTransform``) and runs inside nnU-Net's augmentation workers. Randomness comes
from torch's generator, which the loader seeds per batch (see :mod:`nnunet_ext.sampling.loader`).
"""

from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from nnunet_ext import dihedral


class DihedralTransform(BasicTransform):
    """Apply one of ``choices`` (D4 indices, see :mod:`nnunet_ext.dihedral`) drawn uniformly at random.

    The default draws among the 7 non-identity elements, so that with ``RandomTransform(p)`` the
    probability that a slice is changed is exactly ``p`` (the paper's "applied with probability 0.75").
    """

    def __init__(self, choices: tuple[int, ...] = tuple(range(1, 8))):
        super().__init__()
        if not choices or any(not 0 <= t < 8 for t in choices):
            raise ValueError(f"D4 choices must be indices in 0..7, got {choices}")
        self.choices = tuple(choices)

    def get_parameters(self, **data_dict) -> dict:
        return {"t": self.choices[int(torch.randint(len(self.choices), (1,)).item())]}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        return dihedral.apply(img, params["t"]).contiguous()

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        return dihedral.apply(segmentation, params["t"]).contiguous()


def training_transforms(label_transforms: ComposeTransforms, probability: float) -> ComposeTransforms:
    """D4 augmentation with ``probability``, then nnU-Net's label handling (``label_transforms``)."""
    return ComposeTransforms([RandomTransform(DihedralTransform(), apply_probability=probability),
                              *label_transforms.transforms])
