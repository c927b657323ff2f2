"""2.5D input: one slice plus its neighbours along the slicing axis, stacked as channels.

Training (the sampler), nnU-Net's sliding window (the network's 5D path) and the 24-view predictor all
build the network input here, so the channel layout is defined exactly once:

    channel index = modality * (2 * neighbours + 1) + (offset + neighbours),  offset in [-k, k]

Neighbours that fall outside the volume repeat the edge slice, as in the published method.
"""

from __future__ import annotations

import numpy as np
import torch


def neighbour_indices(centre: int, depth: int, neighbours: int) -> np.ndarray:
    """Slice indices ``centre-k .. centre+k`` along an axis of length ``depth``, edges repeated."""
    offsets = np.arange(-neighbours, neighbours + 1)
    return np.clip(centre + offsets, 0, depth - 1)


def stack_slice(volume: np.ndarray, axis: int, centre: int, neighbours: int) -> np.ndarray:
    """The 2.5D input for one slice of a (C, X, Y, Z) volume along spatial ``axis`` (0, 1 or 2).

    Returns a (C * (2k+1), H, W) array whose two trailing axes are the remaining spatial axes in their
    original order. Works on memmaps/blosc2 arrays without loading the whole volume.
    """
    depth = volume.shape[axis + 1]
    idx = neighbour_indices(centre, depth, neighbours)
    taken = np.take(np.asarray(volume[(slice(None),) * (axis + 1) + (slice(int(idx.min()), int(idx.max()) + 1),)]),
                    idx - idx.min(), axis=axis + 1)
    # (C, ..., 2k+1 at axis+1, ...) -> (C, 2k+1, H, W)
    taken = np.moveaxis(taken, axis + 1, 1)
    return taken.reshape(-1, *taken.shape[2:])


def stack_window(window: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Turn a (C, D, H, W) block of whole slices into D 2.5D inputs, shape (D, C * (2k+1), H, W).

    Slice ``d`` gets slices ``d-k .. d+k`` of the block, the block's first and last slices repeated beyond
    its ends. When the block spans the whole volume along D this is exactly the training input.
    """
    return stack_slices(window, torch.arange(window.shape[1], device=window.device), neighbours)


def stack_slices(volume: torch.Tensor, centres: torch.Tensor, neighbours: int) -> torch.Tensor:
    """2.5D inputs (len(centres), C * (2k+1), H, W) for slices ``centres`` of a (C, D, H, W) stack, edges repeated.

    Gathers only the slices that are needed, so memory grows with the number of centres, not with the depth.
    """
    c, d, h, w = volume.shape
    offsets = torch.arange(-neighbours, neighbours + 1, device=centres.device)
    idx = (centres.long()[:, None] + offsets[None]).clamp_(0, d - 1).to(volume.device)
    # (C, B, 2k+1, H, W) gathered along D
    gathered = volume[:, idx.reshape(-1)].reshape(c, len(centres), 2 * neighbours + 1, h, w)
    return gathered.permute(1, 0, 2, 3, 4).reshape(len(centres), c * (2 * neighbours + 1), h, w)


def empty_input_slices(volume: torch.Tensor, neighbours: int) -> torch.Tensor:
    """(D,) bool: slices of a (C, D, H, W) stack whose whole 2.5D input (the slice and its neighbours) is zero.

    Their prediction is the network's prediction for an all-zero input, which needs computing only once.
    """
    occupied = volume.abs().amax(dim=(0, 2, 3)) > 0
    d = occupied.shape[0]
    offsets = torch.arange(-neighbours, neighbours + 1, device=occupied.device)
    idx = (torch.arange(d, device=occupied.device)[:, None] + offsets[None]).clamp_(0, d - 1)
    return ~occupied[idx].any(dim=1)
