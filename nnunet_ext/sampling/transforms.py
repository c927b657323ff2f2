"""Augmentation of 2.5D training slices: the study's D4 flips/rotations and nnU-Net's own 2D training transforms,
applied to the whole stack of neighbour slices consistently.

A training example is an image of C modalities x S = 2k+1 neighbour slices, stacked as (C*S, H, W) (modality
major, see :func:`nnunet_ext.slicing.stack_slice`), and the centre slice's label (1, H, W). The sliceres
setting ``augmentation`` names what runs (:data:`nnunet_ext.planning.sliceres_settings.AUGMENTATIONS`):

- ``d4``: a random non-identity element of the dihedral group D4 (mirrorings and 90-degree rotations of the
  square crop) with ``augmentation_probability``: the study's augmentation, and the default;
- ``spatial``, ``noise``, ``blur``, ``brightness``, ``contrast``, ``lowres``, ``gamma``: the transforms that
  ``nnUNetTrainer.get_training_transforms`` builds, with nnU-Net's parameters and probabilities and in nnU-Net's
  order (the order of the names does not matter). ``gamma`` is both of nnU-Net's gamma transforms (with and
  without inversion). nnU-Net's spatial transform has elastic deformation switched off; so has this one.

How the stack stays consistent: nnU-Net is asked for the pipeline it builds for 3D patches that are augmented
in-plane only (``do_dummy_2d_data_aug``, used for anisotropic data), and the example is shown to it as a 3D
image (C, S, H, W): channel = modality, first spatial axis = the neighbour slices (:class:`StackAs3D`).

- spatial: nnU-Net folds (C, S) into channels and samples all of them, and the label, on one grid;
- brightness, contrast, gamma, noise: one draw per channel = per modality, and their statistics (mean,
  range, std) are taken over the modality's whole stack, so the S slices of a modality get the same change
  while different modalities change independently, as channels do in nnU-Net 2d;
- lowres: nnU-Net's in-plane variant (``ignore_axes=(0,)``);
- blur: nnU-Net would blur along the neighbour axis too; :class:`InPlane` blurs each slice in-plane with one
  draw per modality, as 2D nnU-Net does.

Left out of nnU-Net's list: ``MirrorTransform`` (``d4`` mirrors), ``MaskImageTransform`` (it would need each
neighbour slice's brain mask; the loader hands the centre slice's label only) and deep supervision. The
label transforms (``-1`` -> background, regions) are always applied.

``spatial`` rotates and scales about the crop centre and crops back; :attr:`Augmentation.context` is the
margin the loader adds around the crop so that the rotated corners hold image, not padding, sized with
nnU-Net's own rule (``get_patch_size``, as for nnU-Net's initial patch size).

Randomness comes from torch's and numpy's global generators, which the loader seeds per batch (see
:mod:`nnunet_ext.sampling.loader`); blur's speed benchmark (timing-dependent choice between FFT and direct
convolution) is switched off so that a seed gives the same numbers every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, ImageOnlyTransform
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext import dihedral
from nnunet_ext.planning.sliceres_settings import SliceResSettings

#: nnU-Net's transform classes under their augmentation names (the Convert3DTo2D/2DTo3D pair belongs to spatial)
NNUNET_NAMES: dict[type, str] = {
    SpatialTransform: "spatial", Convert3DTo2DTransform: "spatial", Convert2DTo3DTransform: "spatial",
    GaussianNoiseTransform: "noise", GaussianBlurTransform: "blur", MultiplicativeBrightnessTransform: "brightness",
    ContrastTransform: "contrast", SimulateLowResolutionTransform: "lowres", GammaTransform: "gamma",
}
LABEL_TRANSFORMS = (RemoveLabelTransform, ConvertSegmentationToRegionsTransform)
#: nnU-Net's rotation range for a square 2d patch (crop_size is validated square), repeated from
#: configure_rotation_dummyDA_mirroring_and_inital_patch_size: that method reads the plans' patch size, which for
#: SliceRes is the 3D inference window, not the 2.5D training crop
ROTATION = (-np.pi, np.pi)
#: the scale range that the same nnU-Net method sizes its larger initial patch with
INITIAL_PATCH_SCALING = (0.85, 1.25)


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


class StackAs3D(BasicTransform):
    """Run ``transform`` on a 2.5D example seen as a 3D image: image (C*S, H, W) as (C, S, H, W), label
    (L, H, W) as (L, 1, H, W); both come back in their 2.5D shapes (the label with the channels the
    transform gives it, e.g. one per region)."""

    def __init__(self, transform: BasicTransform, slices: int):
        super().__init__()
        self.transform = transform
        self.slices = int(slices)

    def apply(self, data_dict: dict, **params) -> dict:
        image = data_dict["image"]
        if image.shape[0] % self.slices:
            raise ValueError(f"a 2.5D image of {image.shape[0]} channels is not a stack of {self.slices} slices "
                             f"per modality")
        data_dict["image"] = image.reshape(image.shape[0] // self.slices, self.slices, *image.shape[1:])
        data_dict["segmentation"] = data_dict["segmentation"][:, None]
        data_dict = self.transform(**data_dict)
        data_dict["image"] = data_dict["image"].reshape(-1, *data_dict["image"].shape[2:])
        data_dict["segmentation"] = data_dict["segmentation"][:, 0]
        return data_dict


class InPlane(ImageOnlyTransform):
    """A 2D image-only filter applied to every slice of a (C, S, H, W) stack with one parameter draw (per
    channel, i.e. per modality). For filters whose parameters depend on the shape only and whose effect uses
    no image statistics (blur), so each slice gets exactly the filter its modality drew."""

    def __init__(self, transform: ImageOnlyTransform):
        super().__init__()
        self.transform = transform

    def get_parameters(self, **data_dict) -> dict:
        return self.transform.get_parameters(image=data_dict["image"][:, 0])

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        for s in range(img.shape[1]):
            img[:, s] = self.transform.apply({"image": img[:, s].clone()}, **params)["image"]
        return img


@dataclass(frozen=True)
class Augmentation:
    """The training transforms and the margin (pixels per side) the loader adds around the crop for them."""

    transforms: BasicTransform
    context: int


def nnunet_name(transform: BasicTransform) -> str | None:
    """The augmentation name of one transform of nnU-Net's list (``None``: a label transform, always kept)."""
    inner = transform.transform if isinstance(transform, RandomTransform) else transform
    if isinstance(inner, LABEL_TRANSFORMS):
        return None
    for cls, name in NNUNET_NAMES.items():
        if type(inner) is cls:
            return name
    raise ValueError(f"nnU-Net's training transforms contain {type(inner).__name__}, which SliceRes does not "
                     f"know how to apply to a 2.5D stack (known: {sorted({c.__name__ for c in NNUNET_NAMES})})")


def spatial_context(crop_size: Sequence[int]) -> int:
    """Pixels per side that nnU-Net's rule for the initial patch size adds to ``crop_size`` (rounded up)."""
    initial = get_patch_size(list(crop_size), ROTATION, ROTATION, ROTATION, INITIAL_PATCH_SCALING)
    return int(-(-max(int(i) - int(c) for i, c in zip(initial, crop_size)) // 2))


def training_augmentation(settings: SliceResSettings, regions: Sequence | None, ignore_label: int | None,
                          get_training_transforms: Callable[..., BasicTransform] =
                          nnUNetTrainer.get_training_transforms) -> Augmentation:
    """The transforms named by ``settings.augmentation`` (resolved settings), for the trainer's label handling
    (``regions``, ``ignore_label``), built by ``get_training_transforms`` (nnU-Net's, or a trainer's override
    of it)."""
    names = set(settings.augmentation)
    slices = settings.slices_per_modality
    crop = tuple(settings.crop_size)
    nnunet = get_training_transforms(patch_size=(slices, *crop), rotation_for_DA=ROTATION,
                                     deep_supervision_scales=None, mirror_axes=None, do_dummy_2d_data_aug=True,
                                     use_mask_for_norm=None, is_cascaded=False, foreground_labels=None,
                                     regions=list(regions) if regions is not None else None,
                                     ignore_label=ignore_label)
    augment, labels = [], []
    for transform in nnunet.transforms:
        name = nnunet_name(transform)
        if name is None:
            labels.append(transform)
        elif name in names:
            augment.append(_in_plane_blur(transform) if name == "blur" else transform)
    if "d4" in names:
        augment.append(RandomTransform(DihedralTransform(), apply_probability=settings.augmentation_probability))
    context = spatial_context(crop) if "spatial" in names else 0
    return Augmentation(StackAs3D(ComposeTransforms([*augment, *labels]), slices), context)


def _in_plane_blur(transform: RandomTransform) -> RandomTransform:
    blur = transform.transform
    blur.benchmark = False  # its benchmark picks FFT or direct convolution by timing: not reproducible
    return RandomTransform(InPlane(blur), apply_probability=transform.apply_probability)
