"""``SliceResPredictor``: nnU-Net's predictor with exact multi-view 2.5D sliding-window inference.

Only the per-case network evaluation is replaced; preprocessing, the fold loop's bookkeeping, export in
original geometry, ``--save_probabilities``, ``--continue_prediction``, ``-num_parts/-part_id`` and the export
worker pool stay nnU-Net's own code.

For every view (slicing axis x in-plane dihedral transform, see :mod:`nnunet_ext.inference.views`) each slice
is predicted with its true 2.5D neighbours from the whole volume (edge slices repeated, exactly as in
training), in-plane with nnU-Net's sliding window (``compute_steps_for_sliding_window``, Gaussian weights
from ``compute_gaussian``). Probabilities, not logits, are averaged: Gaussian-weighted over overlapping
tiles, then uniformly over views and over folds, in float32 whatever the network's autocast precision.

nnU-Net turns what the predictor returns into probabilities with the label manager's non-linearity (softmax,
or sigmoid for region models). We therefore return ``log p`` (softmax) or ``logit p`` (sigmoid) of the mean
probability ``p``, so that nnU-Net's export recovers exactly ``p`` for segmentation and ``.npz`` files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
from nnunetv2.utilities.helpers import dummy_context, empty_cache
from torch._dynamo import OptimizedModule
from tqdm import tqdm

from nnunet_ext.inference.views import View, from_view, make_views, to_view, view_shape
from nnunet_ext.slicing import stack_window

# probabilities are clamped to [EPS, 1 - EPS] before log/logit so that the returned "logits" stay finite
EPS = 1e-6


class SliceResPredictor(nnUNetPredictor):
    """nnU-Net predictor for 2.5D networks (with a ``neighbours`` attribute), averaging over ``views``.

    ``slices_per_batch`` bounds memory: that many slices of one in-plane tile go through the network at once
    (default: the network's ``slices_per_forward``). nnU-Net's mirroring is off; the views replace it.
    """

    def __init__(self, views: Sequence[View] = make_views(), tile_step_size: float = 0.5, use_gaussian: bool = True,
                 perform_everything_on_device: bool = True, device: torch.device = torch.device("cuda"),
                 verbose: bool = False, verbose_preprocessing: bool = False, allow_tqdm: bool = True,
                 slices_per_batch: int | None = None):
        super().__init__(tile_step_size=tile_step_size, use_gaussian=use_gaussian, use_mirroring=False,
                         perform_everything_on_device=perform_everything_on_device, device=device, verbose=verbose,
                         verbose_preprocessing=verbose_preprocessing, allow_tqdm=allow_tqdm)
        if not views:
            raise ValueError("at least one view is needed")
        self.views = tuple(views)
        self.slices_per_batch = slices_per_batch

    # ----------------------------------------------------------------------------------------- nnU-Net hooks
    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """Mean probability over folds (parameter sets) and views, returned as log/logit (see module doc)."""
        total = None
        for params in self.list_of_parameters:
            network = self.network._orig_mod if isinstance(self.network, OptimizedModule) else self.network
            network.load_state_dict(params)
            probabilities = self.predict_probabilities(data).to("cpu")
            total = probabilities if total is None else total.add_(probabilities)
        total /= len(self.list_of_parameters)
        return self.probabilities_to_logits(total)

    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        """The currently loaded parameters' mean probability over views, as log/logit (what nnU-Net expects)."""
        return self.probabilities_to_logits(self.predict_probabilities(input_image))

    # ------------------------------------------------------------------------------------------- our method
    def probabilities_to_logits(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Inverse of the label manager's non-linearity: softmax(log p) = p, sigmoid(logit p) = p."""
        if self.label_manager.has_regions:
            return torch.logit(probabilities, eps=EPS)
        return torch.log(probabilities.clamp_min(EPS))

    @property
    def neighbours(self) -> int:
        """Neighbours on each side of a slice that the network takes as extra channels."""
        neighbours = getattr(self.network, "neighbours", None)
        if neighbours is None:
            raise TypeError(f"{type(self.network).__name__} is not a 2.5D SliceRes network (it has no 'neighbours' "
                            f"attribute); predict stock nnU-Net models with nnUNetv2_predict")
        return int(neighbours)

    @torch.inference_mode()
    def predict_probabilities(self, input_image: torch.Tensor) -> torch.Tensor:
        """(C, X, Y, Z) preprocessed image -> (heads, X, Y, Z) float32 mean probability over ``self.views``.

        The result lives on the device when everything fits there, otherwise on the CPU (nnU-Net's fallback).
        """
        if not isinstance(input_image, torch.Tensor) or input_image.ndim != 4:
            raise ValueError(f"input_image must be a (C, X, Y, Z) tensor, got {getattr(input_image, 'shape', None)}")
        self.network = self.network.to(self.device)
        self.network.eval()
        empty_cache(self.device)
        if self.perform_everything_on_device and self.device.type != "cpu":
            try:
                return self._average_views(input_image, self.device)
            except torch.cuda.OutOfMemoryError:
                print("Prediction on device ran out of memory; keeping images and results on the CPU instead")
                empty_cache(self.device)
        return self._average_views(input_image, torch.device("cpu"))

    def _average_views(self, image: torch.Tensor, results_device: torch.device) -> torch.Tensor:
        image = image.to(results_device, torch.float32)
        patch = tuple(int(p) for p in self.configuration_manager.patch_size[-2:])
        plans = [self._tiles(view_shape(image.shape[1:], view), patch) for view in self.views]
        batch = self._batch_size()
        total_forwards = sum(len(tiles) * -(-depth // batch) for depth, tiles in plans)
        mean = None
        with tqdm(total=total_forwards, desc=f"{len(self.views)} views", unit="batch",
                  disable=not self.allow_tqdm) as progress:
            for view, (_depth, tiles) in zip(self.views, plans):
                probabilities = self._predict_view(image, view, patch, tiles, batch, progress)
                mean = probabilities if mean is None else mean.add_(probabilities)
                del probabilities
        return mean.div_(len(self.views))

    def _tiles(self, shape: tuple[int, int, int], patch: tuple[int, int]) -> tuple[int, list[tuple[int, int]]]:
        """Depth and in-plane tile origins of one view (after padding the plane to at least ``patch``)."""
        depth, *plane = shape
        plane = [max(s, p) for s, p in zip(plane, patch)]
        steps = compute_steps_for_sliding_window(tuple(plane), patch, self.tile_step_size)
        return depth, [(sx, sy) for sx in steps[0] for sy in steps[1]]

    def _batch_size(self) -> int:
        return int(self.slices_per_batch or getattr(self.network, "slices_per_forward", 32))

    def _predict_view(self, image: torch.Tensor, view: View, patch: tuple[int, int],
                      tiles: list[tuple[int, int]], batch: int, progress: tqdm) -> torch.Tensor:
        """One view's probabilities mapped back to (heads, X, Y, Z) on ``image.device``."""
        stack, unpad = pad_nd_image(to_view(image, view), patch, "constant", {"value": 0}, True)
        depth, height, width = stack.shape[1:]
        heads = self.label_manager.num_segmentation_heads
        accumulated = torch.zeros((heads, depth, height, width), dtype=torch.float32, device=image.device)
        weights = torch.zeros((height, width), dtype=torch.float32, device=image.device)
        gaussian = (compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=1, dtype=torch.float32,
                                     device=image.device) if self.use_gaussian
                    else torch.ones(patch, dtype=torch.float32, device=image.device))
        region = (slice(None), slice(None))
        for sx, sy in tiles:
            plane = (slice(sx, sx + patch[0]), slice(sy, sy + patch[1]))
            tile = stack[(*region, *plane)]
            for start in range(0, depth, batch):
                stop = min(depth, start + batch)
                probabilities = self._predict_slices(tile, start, stop).to(image.device)
                accumulated[(slice(None), slice(start, stop), *plane)] += probabilities * gaussian
                progress.update()
            weights[plane] += gaussian
        accumulated /= weights
        return from_view(accumulated[(*region, *unpad[-2:])], view)

    def _predict_slices(self, tile: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Probabilities (heads, stop-start, h, w) of slices ``start:stop`` of a (C, D, h, w) whole-depth tile.

        Only the slices needed as neighbours are stacked, so memory grows with the batch, not with the depth;
        edge repetition happens at the true ends of the volume only (the block reaches them exactly there).
        """
        k = self.neighbours
        lo, hi = max(0, start - k), min(tile.shape[1], stop + k)
        stacks = stack_window(tile[:, lo:hi], k)[start - lo:stop - lo].to(self.device, non_blocking=True)
        # autocast only on CUDA, as nnU-Net does (slow or unsupported elsewhere)
        with torch.autocast(self.device.type) if self.device.type == "cuda" else dummy_context():
            logits = self.network(stacks)
        return self.label_manager.apply_inference_nonlin(logits.float().transpose(0, 1))
