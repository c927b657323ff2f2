"""The 8 in-plane transforms of the square (dihedral group D4) used for augmentation and test-time views.

Transform ``t`` in 0..7 is ``rot90(k = t % 4)`` applied after an optional flip of the first in-plane
axis (``t >= 4``). All functions act on the two trailing axes, so they work for (..., H, W) arrays and
tensors alike, and ``invert(apply(x, t), t) == x`` exactly.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

IDENTITY = (0,)
MIRRORS = (0, 4, 6, 2)  # identity, flip H, flip W (= flip H then rot 180), flip both (= rot 180)
ALL = tuple(range(8))


def _rot90(x: ArrayLike, k: int) -> ArrayLike:
    if isinstance(x, torch.Tensor):
        return torch.rot90(x, k, dims=(-2, -1))
    return np.rot90(x, k, axes=(-2, -1))


def _flip(x: ArrayLike) -> ArrayLike:
    if isinstance(x, torch.Tensor):
        return torch.flip(x, dims=(-2,))
    return np.flip(x, axis=-2)


def apply(x: ArrayLike, t: int) -> ArrayLike:
    """Apply transform ``t`` (0..7) to the two trailing axes."""
    if not 0 <= t < 8:
        raise ValueError(f"dihedral transform index must be in 0..7, got {t}")
    if t >= 4:
        x = _flip(x)
    return _rot90(x, t % 4)


def invert(x: ArrayLike, t: int) -> ArrayLike:
    """Undo :func:`apply` with the same ``t``."""
    if not 0 <= t < 8:
        raise ValueError(f"dihedral transform index must be in 0..7, got {t}")
    x = _rot90(x, -(t % 4))
    if t >= 4:
        x = _flip(x)
    return x
