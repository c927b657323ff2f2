"""Test-time views of a volume: a slicing axis combined with an in-plane transform of the dihedral group D4.

A view turns a (C, X, Y, Z) volume into a (C, D, H, W) stack of 2D slices: the slicing axis is moved to the
front (the two remaining axes keep their order, as in :func:`nnunet_ext.slicing.stack_slice`, i.e. as in
training) and transform ``t`` of :mod:`nnunet_ext.dihedral` is applied to the slice plane. ``from_view``
undoes both exactly, so predictions made in any view land on the voxels they belong to.

Axes are those of nnU-Net's preprocessed array, i.e. after the plans' ``transpose_forward``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from nnunet_ext import dihedral

# identity + the flip of the last in-plane axis: left-right on axial and coronal slices of BraTS-oriented data
FAST_TRANSFORMS = (0, 6)
TRANSFORM_PRESETS = {"all": dihedral.ALL, "mirror": dihedral.MIRRORS, "fast": FAST_TRANSFORMS,
                     "identity": dihedral.IDENTITY}


@dataclass(frozen=True)
class View:
    """One view: slices along spatial ``axis`` (0, 1, 2), in-plane dihedral transform ``transform`` (0..7)."""

    axis: int
    transform: int

    def __post_init__(self) -> None:
        if self.axis not in (0, 1, 2):
            raise ValueError(f"view axis must be 0, 1 or 2, got {self.axis}")
        if not 0 <= self.transform < 8:
            raise ValueError(f"view transform must be in 0..7, got {self.transform}")


def parse_transforms(spec: str) -> tuple[int, ...]:
    """``all`` (8), ``mirror`` (identity + 3 flips, nnU-Net's 2D mirroring), ``fast`` (identity + one flip),
    ``identity`` or indices such as ``0,3,5``."""
    spec = spec.strip().lower()
    if spec in TRANSFORM_PRESETS:
        return TRANSFORM_PRESETS[spec]
    try:
        values = tuple(int(v) for v in spec.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"transforms must be one of {sorted(TRANSFORM_PRESETS)} or comma-separated indices "
                         f"0..7, got {spec!r}") from None
    if not values or any(not 0 <= v < 8 for v in values) or len(set(values)) != len(values):
        raise ValueError(f"transform indices must be distinct values in 0..7, got {spec!r}")
    return values


def make_views(axes: Iterable[int] = (0, 1, 2), transforms: Sequence[int] = dihedral.ALL) -> tuple[View, ...]:
    """Every (axis, transform) combination, axis-major; duplicates are an error (they would bias the mean)."""
    axes = tuple(int(a) for a in axes)
    if not axes or len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct values among 0, 1, 2, got {axes}")
    return tuple(View(a, t) for a in axes for t in transforms)



#: the view sets that the benchmarks compare (``benchmarks/view_subsets.py``, ``bench_inference.py``), by
#: "<number of views>: what they are"
VIEW_SUBSETS = {
    "1: axis 0": make_views([0], [0]),
    "2: axis 0 x identity, flip": make_views([0], FAST_TRANSFORMS),
    "3: 3 axes x identity": make_views((0, 1, 2), [0]),
    "6: 3 axes x identity, flip (fast)": make_views((0, 1, 2), FAST_TRANSFORMS),
    "8: axis 0 x D4": make_views([0]),
    "12: 3 axes x 4 mirrors": make_views((0, 1, 2), (0, 4, 6, 2)),
    "24: 3 axes x D4 (all)": make_views(),
}

def view_shape(spatial_shape: Sequence[int], view: View) -> tuple[int, int, int]:
    """(D, H, W) that :func:`to_view` gives for a volume of spatial shape (X, Y, Z), without touching data."""
    depth = spatial_shape[view.axis]
    height, width = (s for a, s in enumerate(spatial_shape) if a != view.axis)
    # odd rotations (transforms 1, 3, 5, 7) swap the two in-plane axes
    return (depth, width, height) if view.transform % 2 else (depth, height, width)


def to_view(volume: torch.Tensor, view: View) -> torch.Tensor:
    """(C, X, Y, Z) -> (C, D, H, W) with D the slicing axis and the slice plane transformed."""
    return dihedral.apply(torch.movedim(volume, view.axis + 1, 1), view.transform)


def from_view(stack: torch.Tensor, view: View) -> torch.Tensor:
    """Inverse of :func:`to_view` for any leading channel count: (K, D, H, W) -> (K, X, Y, Z)."""
    return torch.movedim(dihedral.invert(stack, view.transform), 1, view.axis + 1)
