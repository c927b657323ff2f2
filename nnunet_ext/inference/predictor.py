"""``SliceResPredictor``: nnU-Net's predictor with exact multi-view 2.5D inference.

Only the per-case network evaluation is replaced; preprocessing, the fold loop's bookkeeping, export in
original geometry, ``--save_probabilities``, ``--continue_prediction``, ``-num_parts/-part_id`` and the export
worker pool stay nnU-Net's own code.

For every view (slicing axis x in-plane dihedral transform, see :mod:`nnunet_ext.inference.views`) each slice is
predicted with its true 2.5D neighbours from the whole volume (edge slices repeated, exactly as in training).
In-plane, each slice is predicted whole in one pass (the network is fully convolutional; the plane is zero-padded to
a multiple of its downsampling and cropped back) or cut into nnU-Net's sliding-window tiles of the training crop
with Gaussian weights (``compute_steps_for_sliding_window``, ``compute_gaussian``; the method's "sliding window over
every slice"), as the model's plans say (``sliceres.inference``) unless ``tiles`` is given. Either way the
transforms of one axis go through the network together, each window transformed and transformed back as nnU-Net's
test-time mirroring does with its patches, and windows whose 2.5D input is zero get the network's prediction for an
all-zero input, computed once per axis. Probabilities, not logits, are averaged: over windows, views and folds, in
float32 whatever the network's precision (``precision="auto"``: bfloat16 on CUDA devices that support it, else
float16, float32 elsewhere; ``"bf16"`` also on the CPU; ``"fp32"``) and backend (torch, or OpenVINO on the CPU:
:mod:`nnunet_ext.inference.backends`).

nnU-Net turns what the predictor returns into probabilities with the label manager's non-linearity (softmax,
or sigmoid for region models). We therefore return ``log p`` (softmax) or ``logit p`` (sigmoid) of the mean
probability ``p``, so that nnU-Net's export recovers exactly ``p`` for segmentation and ``.npz`` files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from nnunetv2.configuration import default_num_processes
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
from nnunetv2.utilities.helpers import empty_cache
from torch._dynamo import OptimizedModule
from tqdm import tqdm

from nnunet_ext import dihedral
from nnunet_ext.inference import backends
from nnunet_ext.inference.views import View, make_views
from nnunet_ext.planning.settings import SLICERES_KEY, from_configuration
from nnunet_ext.planning.sliceres_settings import SliceResSettings
from nnunet_ext.slicing import empty_input_slices, stack_slices
from nnunet_ext.utils.processes import workers_exit_with_parent

# probabilities are clamped to [EPS, 1 - EPS] before log/logit so that the returned "logits" stay finite
EPS = 1e-6


class PlaneTooLarge(RuntimeError):
    """Even one slice (with its transforms) does not fit through the network in one pass."""


class NotSliceResNetwork(TypeError):
    """The model's network is not a 2.5D one: it does not say how many neighbouring slices it takes."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError`` or the CPU allocator's failure (a plain ``RuntimeError``)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class SliceResPredictor(nnUNetPredictor):
    """nnU-Net predictor for 2.5D networks (with a ``neighbours`` attribute), averaging over ``views``.

    The views are the in-plane ``transforms`` on each of ``axes``; without ``axes``, on the axes the model was
    trained on (its plans' ``sliceres.axes``; all three when the plans do not say), known once the model is
    loaded, as nnU-Net's predictor learns its mirroring axes from the checkpoint. ``views`` gives an explicit
    set instead. ``slices_per_batch`` bounds memory: at most that many 2D inputs (slices x transforms) go
    through the network at once (default: the network's ``slices_per_forward``); when a batch does not fit, it
    is halved, and a whole plane too large for one pass falls back to tiles. nnU-Net's mirroring is off; the
    views replace it. ``tiles``: sliding-window tiles of the training crop (``True``), whole slices (``False``) or,
    by default, what the model's plans say (``sliceres.inference``), known once the model is loaded.
    """

    def __init__(self, views: Sequence[View] | None = None, tile_step_size: float = 0.5, use_gaussian: bool = True,
                 perform_everything_on_device: bool = True, device: torch.device = torch.device("cuda"),
                 verbose: bool = False, verbose_preprocessing: bool = False, allow_tqdm: bool = True,
                 slices_per_batch: int | None = None, tiles: bool | None = None, axes: Sequence[int] | None = None,
                 transforms: Sequence[int] = dihedral.ALL, precision: str = "auto", backend: str = "torch"):
        super().__init__(tile_step_size=tile_step_size, use_gaussian=use_gaussian, use_mirroring=False,
                         perform_everything_on_device=perform_everything_on_device, device=device, verbose=verbose,
                         verbose_preprocessing=verbose_preprocessing, allow_tqdm=allow_tqdm)
        if slices_per_batch is not None and slices_per_batch < 1:
            raise ValueError(f"slices per batch must be a positive integer, got {slices_per_batch}")
        if views is not None and axes is not None:
            raise ValueError("give either views or axes (with transforms), not both")
        self.axes = None if axes is None else tuple(int(a) for a in axes)
        self.transforms = tuple(transforms)
        # bad axes or transforms are refused now, not when the model is loaded
        make_views((0, 1, 2) if self.axes is None else self.axes, self.transforms)
        self._views = None
        if views is not None:
            self.views = views
        self.slices_per_batch = slices_per_batch
        self.tiles = tiles
        backends.check_precision(precision)
        backends.check_backend(backend, self.device)
        self.precision, self.backend = precision, backend
        self._parameter_set: tuple[int, int] | None = None  # (fold index, id of its parameters) while predicting
        self._converted: dict[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]] = {}  # openvino, per set

    @property
    def views(self) -> tuple[View, ...]:
        """The views averaged: as set, else ``transforms`` on ``axes`` (default: the model's trained axes)."""
        if self._views is not None:
            return self._views
        return make_views(self.axes or self.trained_axes() or (0, 1, 2), self.transforms)

    @views.setter
    def views(self, views: Sequence[View]) -> None:
        if not views:
            raise ValueError("at least one view is needed")
        self._views = tuple(views)

    def _planned_settings(self) -> SliceResSettings | None:
        """The loaded model's ``sliceres`` settings; ``None`` before loading or for plans without the block."""
        if self.configuration_manager is None or SLICERES_KEY not in self.configuration_manager.configuration:
            return None
        return from_configuration(self.configuration_manager.configuration)

    @property
    def uses_tiles(self) -> bool:
        """Tiles or whole slices: as set, else the loaded model's ``sliceres.inference`` (tiles before loading or
        for plans without a ``sliceres`` block)."""
        if self.tiles is not None:
            return self.tiles
        planned = self._planned_settings()
        return planned is None or planned.inference == "tiles"

    def trained_axes(self) -> tuple[int, ...] | None:
        """The slicing axes in the loaded model's plans (``sliceres.axes``); ``None`` before loading or for plans
        without a ``sliceres`` block."""
        planned = self._planned_settings()
        return None if planned is None else planned.axes

    # ----------------------------------------------------------------------------------------- nnU-Net hooks
    def predict_from_data_iterator(self, *args, **kwargs):
        """nnU-Net's loop, unchanged; its preprocessing and export workers exit with this process when it is killed."""
        with workers_exit_with_parent():
            return super().predict_from_data_iterator(*args, **kwargs)

    def initialize_from_trained_model_folder(self, model_training_output_dir: str,
                                             use_folds: Sequence[int | str] | None,
                                             checkpoint_name: str = "checkpoint_final.pth") -> None:
        """nnU-Net's loading, then the refusal of networks that are not 2.5D, before any case is preprocessed."""
        super().initialize_from_trained_model_folder(model_training_output_dir, use_folds, checkpoint_name)
        self.check_network()

    @torch.inference_mode()
    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """Mean probability over folds (parameter sets) and views, returned as log/logit (see module doc).

        A copy of nnU-Net's fold loop, which averages the folds' logits where SliceRes averages probabilities; its
        thread cap is kept: at most ``default_num_processes`` threads while predicting, restored afterwards.
        """
        n_threads = torch.get_num_threads()
        torch.set_num_threads(min(default_num_processes, n_threads))
        try:
            total = None
            for index, params in enumerate(self.list_of_parameters):
                network = self.network._orig_mod if isinstance(self.network, OptimizedModule) else self.network
                network.load_state_dict(params)
                self._parameter_set = (index, id(params))
                probabilities = self.predict_probabilities(data).to("cpu")
                total = probabilities if total is None else total.add_(probabilities)
            total /= len(self.list_of_parameters)
            return self.probabilities_to_logits(total)
        finally:
            self._parameter_set = None
            torch.set_num_threads(n_threads)

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

    def check_network(self) -> None:
        """:class:`NotSliceResNetwork` unless the network is a 2.5D one (it says how many ``neighbours`` it takes)."""
        if getattr(self.network, "neighbours", None) is None:
            raise NotSliceResNetwork(f"{type(self.network).__name__} is not a 2.5D SliceRes network (it has no "
                                     f"'neighbours' attribute); predict stock nnU-Net models with nnUNetv2_predict")

    @property
    def neighbours(self) -> int:
        """Neighbours on each side of a slice that the network takes as extra channels."""
        self.check_network()
        return int(self.network.neighbours)

    @torch.inference_mode()
    def predict_probabilities(self, input_image: torch.Tensor) -> torch.Tensor:
        """(C, X, Y, Z) preprocessed image -> (heads, X, Y, Z) float32 mean probability over ``self.views``.

        The result lives on the device when everything fits there, otherwise on the CPU (nnU-Net's fallback).
        """
        if not isinstance(input_image, torch.Tensor) or input_image.ndim != 4:
            raise ValueError(f"input_image must be a (C, X, Y, Z) tensor, got {getattr(input_image, 'shape', None)}")
        self.network = self.network.to(self.device, memory_format=torch.channels_last)
        self.network.eval()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # whole slices: one input shape per axis and transform parity
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
        heads = self.label_manager.num_segmentation_heads
        mean = torch.zeros((heads, *image.shape[1:]), dtype=torch.float32, device=results_device)
        by_axis: dict[int, list[int]] = {}
        for view in self.views:
            by_axis.setdefault(view.axis, []).append(view.transform)
        tiles = self.uses_tiles
        with tqdm(total=len(by_axis), desc=f"{len(self.views)} views", unit="axis",
                  disable=not self.allow_tqdm) as progress:
            for axis, transforms in by_axis.items():
                stack = torch.movedim(image, axis + 1, 1)  # (C, D, H, W), a view of the image
                try:
                    axis_sum = self._predict_axis(stack, transforms, tiles)
                except PlaneTooLarge:
                    if tiles:
                        raise RuntimeError(f"not even one {self._patch()} tile of one slice fits through the "
                                           f"network; free device memory or predict with -device cpu") from None
                    print(f"Slices along axis {axis} (plane {tuple(stack.shape[-2:])}) do not fit through the "
                          f"network in one pass; predicting this axis in tiles instead")
                    axis_sum = self._predict_axis(stack, transforms, True)
                mean.add_(torch.movedim(axis_sum, 1, axis + 1))
                progress.update()
        return mean.div_(len(self.views))

    def _batch_size(self) -> int:
        return int(self.slices_per_batch or getattr(self.network, "slices_per_forward", 32))

    def _patch(self) -> tuple[int, int]:
        return tuple(int(p) for p in self.configuration_manager.patch_size[-2:])

    def _predict_axis(self, stack: torch.Tensor, transforms: Sequence[int], tiles: bool) -> torch.Tensor:
        """(heads, D, H, W) probabilities of every slice of ``stack`` (C, D, H, W), summed over ``transforms``.

        The plane is cut into windows: the whole (padded) plane, or nnU-Net's sliding-window tiles of the training
        crop with Gaussian weights. Each window's slices go through the network under every transform of the axis
        (nnU-Net's test-time mirroring also transforms each patch); slices whose 2.5D input is zero in a window
        get the all-zero prediction, computed once per axis.
        """
        if tiles:
            patch = self._patch()
            padded, unpad = pad_nd_image(stack, patch, "constant", {"value": 0}, True)
            steps = compute_steps_for_sliding_window(tuple(padded.shape[-2:]), patch, self.tile_step_size)
            origins = [(sx, sy) for sx in steps[0] for sy in steps[1]]
            weight = (compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=1, dtype=torch.float32,
                                       device=stack.device) if self.use_gaussian
                      else torch.ones(patch, dtype=torch.float32, device=stack.device))
        else:
            multiple = int(getattr(self.network, "downsampling", 1))
            padded, unpad = pad_nd_image(stack, None, "constant", {"value": 0}, True, [1, 1, multiple, multiple])
            patch, origins, weight = tuple(padded.shape[-2:]), [(0, 0)], None
        heads = self.label_manager.num_segmentation_heads
        accumulated = torch.zeros((heads, *padded.shape[1:]), dtype=torch.float32, device=stack.device)
        weights = torch.zeros(padded.shape[-2:], dtype=torch.float32, device=stack.device)
        empty_prediction = None
        for sx, sy in origins:
            plane = (slice(sx, sx + patch[0]), slice(sy, sy + patch[1]))
            window = padded[(slice(None), slice(None), *plane)]
            target = accumulated[(slice(None), slice(None), *plane)]  # a view: adding into it adds into the sum
            empty = empty_input_slices(window, self.neighbours)
            idle, active = torch.nonzero(empty).flatten(), torch.nonzero(~empty).flatten()
            if len(idle):
                if empty_prediction is None:
                    zeros = window.new_zeros((1, window.shape[0] * (2 * self.neighbours + 1), *patch))
                    empty_prediction = self._forward_transforms(zeros, transforms).to(stack.device)
                    if weight is not None:
                        empty_prediction *= weight
                target.index_add_(1, idle.to(stack.device), empty_prediction.expand(-1, len(idle), -1, -1))
            position = 0
            while position < len(active):  # the batch may shrink on the way (out of memory)
                chunk = active[position:position + max(1, self._batch_size() // len(transforms))]
                probabilities = self._predict_chunk(window, chunk, transforms).to(stack.device)
                if weight is not None:
                    probabilities *= weight
                target.index_add_(1, chunk.to(stack.device), probabilities)
                position += len(chunk)
            weights[plane] += 1.0 if weight is None else weight
        accumulated /= weights
        return accumulated[(slice(None), slice(None), *unpad[-2:])]

    def _predict_chunk(self, padded: torch.Tensor, chunk: torch.Tensor, transforms: Sequence[int]) -> torch.Tensor:
        """Summed probabilities (heads, len(chunk), H, W) of slices ``chunk``; halves the batch when out of memory."""
        try:
            return self._forward_transforms(stack_slices(padded, chunk, self.neighbours), transforms)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
        empty_cache(self.device)
        if len(chunk) == 1:
            raise PlaneTooLarge
        half = (len(chunk) + 1) // 2
        self.slices_per_batch = max(1, half * len(transforms))
        print(f"Out of memory with {len(chunk) * len(transforms)} slices per network call; "
              f"continuing with {self.slices_per_batch}")
        return torch.cat([self._predict_chunk(padded, part, transforms) for part in chunk.split(half)], dim=1)

    def _forward_transforms(self, inputs: torch.Tensor, transforms: Sequence[int]) -> torch.Tensor:
        """(B, C', H, W) 2.5D inputs -> (heads, B, H, W) probabilities summed over the in-plane ``transforms``.

        Transforms that give the same plane shape share one network call (odd ones swap H and W).
        """
        inputs = inputs.to(self.device, non_blocking=True)
        square = inputs.shape[-2] == inputs.shape[-1]
        groups: dict[int, list[int]] = {}
        for t in transforms:
            groups.setdefault(0 if square else t % 2, []).append(t)
        total = None
        n = inputs.shape[0]
        for group in groups.values():
            batch = torch.cat([dihedral.apply(inputs, t) for t in group])
            probabilities = self._network_probabilities(batch)
            for i, t in enumerate(group):
                part = dihedral.invert(probabilities[:, i * n:(i + 1) * n], t)
                total = part if total is None else total.add_(part)
        return total

    def _network_probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, C', H, W) -> (heads, N, H, W) float32 probabilities, by the backend at the precision asked for."""
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        if self.backend == "openvino":
            logits = self._converted_network(inputs)(inputs)
        else:
            with backends.autocast(self.device, self.precision):
                logits = self.network(inputs)
        return self.label_manager.apply_inference_nonlin(logits.float().transpose(0, 1))

    def _converted_network(self, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The OpenVINO model of the loaded parameters: converted once per fold's parameter set, then reused."""
        key = self._parameter_set
        if key in self._converted:
            return self._converted[key]
        network = self.network._orig_mod if isinstance(self.network, OptimizedModule) else self.network
        converted = backends.openvino_network(network, example[:1], self.precision, torch.get_num_threads())
        if key is not None:  # outside the fold loop the parameters may change under us: no caching
            self._converted[key] = converted
        return converted
