"""Balanced 2.5D slice loader for nnU-Net's augmentation workers.

A training example is one slice of a preprocessed volume along one of the configured axes, with its
neighbours stacked as channels (:func:`nnunet_ext.slicing.stack_slice`, edges repeated) and the centre
slice's label. Volumes are read through nnU-Net's dataset class (blosc2/numpy memmaps); nothing is copied.

Sampling, reproducible and resume-friendly:

- Epoch ``e`` is a plan of ``iterations_per_epoch * batch_size`` examples: ``round(fraction * n)`` slices
  with foreground and the rest without. Foreground (and empty) slices are drawn without replacement as long
  as the pool lasts, so an "all slices" epoch (``2 x foreground slices``) shows every foreground slice
  once. The plan depends only on ``(seed, stream, e)``.
- With nnU-Net's DDP (``-num_gpus N``) the batch is the global one, split over the ranks
  (``rank_batch_sizes``). Every rank draws the same epoch and takes its share (:func:`share_bounds`):
  contiguous parts of the drawn foreground and empty slices, in proportion to its batch size, shuffled in
  runs on their own. The shares are disjoint, their union is the single-process epoch, and each rank's
  foreground count is within one slice of ``fraction`` times its examples.
- The plan is shuffled in runs (:func:`group_into_runs`): each case's slices in random order, cut into
  runs of ``slices_per_case_load``, runs in random order. nnU-Net's 2d blosc2 files hold one chunk per
  axis-0 plane, so a slice along axis 1 or 2 decompresses the whole volume; with runs, a batch touches
  about ``batch_size / slices_per_case_load`` cases and each is decompressed once (:meth:`volumes`) for all
  its slices. Cases whose slices in the batch are all along axis 0 are read plane by plane instead.
- Batch ``b`` of the endless stream is rows ``b % iterations`` of the plan of epoch ``b // iterations``, and
  everything random inside it (crop positions, augmentation) is seeded from ``(seed, stream, rank, b)``: the crops
  from a numpy generator of their own, the transforms from torch's and numpy's global generators, seeded for
  the batch and restored afterwards (batchgeneratorsv2 draws from both). Worker ``w`` of ``N`` makes batches
  ``w, w + N, ...``, so the stream's content does not depend on the number of workers; with a deterministic
  augmenter the order does not either.
- The crop is a random ``crop_size`` window (zero-padded where the slice is smaller). For a foreground
  slice the window is drawn among those containing a random foreground pixel, so the label survives the
  crop and the 50 % balance holds for what the network actually sees. ``context`` pixels are added on each
  side of the window for a spatial augmentation that rotates/scales about its centre and crops it back
  (:class:`nnunet_ext.sampling.transforms.Augmentation`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from batchgenerators.dataloading.data_loader import SlimDataLoaderBase
from threadpoolctl import threadpool_limits

from nnunet_ext.sampling.slice_index import SliceIndex
from nnunet_ext.slicing import stack_slice

EPOCH_STREAM, BATCH_STREAM = 0, 1


def _draw(rng: np.random.Generator, pool_size: int, count: int) -> np.ndarray:
    """``count`` indices into a pool: whole permutations first, then a random remainder (no repeats
    while the pool lasts)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if pool_size == 0:
        raise ValueError("cannot draw slices from an empty pool")
    full, rest = divmod(count, pool_size)
    parts = [rng.permutation(pool_size) for _ in range(full)] + [rng.choice(pool_size, rest, replace=False)]
    return np.concatenate(parts)


def share_bounds(total: int, fraction: float, sizes: np.ndarray) -> np.ndarray:
    """Cumulative shares ``[0, ..., total]`` of ``total`` items for consumers of ``sizes`` examples each, the
    ``r``-th share ``bounds[r + 1] - bounds[r]`` within one item of ``fraction * sizes[r]``.

    The bounds are the rounded cumulative targets, so the last one is ``round(fraction * sum(sizes))``: the
    number of items the caller drew.
    """
    bounds = np.rint(fraction * np.concatenate([[0], np.cumsum(sizes)])).astype(np.int64)
    if bounds[-1] != total:
        raise ValueError(f"{total} items are not round({fraction} * {int(np.sum(sizes))})")
    return bounds


def group_into_runs(rows: np.ndarray, rng: np.random.Generator, run_length: int) -> np.ndarray:
    """``rows`` (first column: case) reordered as shuffled runs of up to ``run_length`` rows of one case.

    Every row is kept exactly once; with ``run_length`` 1 this is a plain random permutation.
    """
    rows = rows[rng.permutation(len(rows))]
    rows = rows[np.argsort(rows[:, 0], kind="stable")]  # each case's rows together, in random order
    if len(rows) == 0:
        return rows
    case_start = np.r_[0, np.flatnonzero(np.diff(rows[:, 0])) + 1]
    position = np.arange(len(rows)) - np.repeat(case_start, np.diff(np.r_[case_start, len(rows)]))
    run = np.cumsum(position % run_length == 0) - 1
    run_rank = np.argsort(rng.permutation(run[-1] + 1))
    return rows[np.argsort(run_rank[run], kind="stable")]


def crop_window(rng: np.random.Generator, size: int, crop: int, must_contain: int | None) -> int:
    """Lower corner of a ``crop``-long window on an axis of ``size`` (may start < 0 or end > size when
    the axis is shorter than the crop: padding), containing ``must_contain`` when given."""
    lo, hi = min(0, size - crop), max(0, size - crop)
    if must_contain is not None:
        lo, hi = max(lo, must_contain - crop + 1), min(hi, must_contain)
    return int(rng.integers(lo, hi + 1))


@contextmanager
def seeded_global_generators(seed: int) -> Iterator[None]:
    """torch's and numpy's global generators seeded from ``seed`` inside the block and restored after it:
    batchgeneratorsv2 transforms draw from both."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(np.random.SeedSequence(seed).generate_state(4))  # not the MT19937 stream torch starts
        try:
            yield
        finally:
            np.random.set_state(state)


def in_plane_window(volume: np.ndarray, axis: int, bbox: list[list[int]]) -> tuple[np.ndarray, list[list[int]]]:
    """``volume`` (C, X, Y, Z) cut to the in-plane crop ``bbox`` of a slice along ``axis`` (clipped to the
    volume), and ``bbox`` relative to the cut. Only for numpy arrays, where the cut is a free view and
    stacking the window instead of whole planes saves most of the copying (gathers along the last axis are
    slow); other arrays (blosc2) come back unchanged, since cutting them would decompress every plane."""
    if not isinstance(volume, np.ndarray):
        return volume, bbox
    index, shifted = [slice(None)] * 4, []
    for a, (lo, hi) in zip((a for a in range(3) if a != axis), bbox):
        start, stop = max(lo, 0), min(hi, volume.shape[a + 1])
        index[a + 1] = slice(start, stop)
        shifted.append([lo - start, hi - start])
    return volume[tuple(index)], shifted


class BalancedSliceLoader(SlimDataLoaderBase):
    """Endless stream of balanced 2.5D batches ``{'data', 'target', 'keys'}`` (see module docstring)."""

    def __init__(self, dataset, index: SliceIndex, batch_size: int, neighbours: int, crop_size: tuple[int, int],
                 foreground_fraction: float, iterations_per_epoch: int, transforms, seed: int, stream: int = 0,
                 num_workers: int = 1, start_epoch: int = 0, ignore_label: int | None = None,
                 slices_per_case_load: int = 1, context: int = 0, rank: int = 0,
                 rank_batch_sizes: Sequence[int] | None = None):
        super().__init__(dataset, batch_size, max(1, num_workers))
        self.rank = int(rank)
        self.rank_batch_sizes = np.asarray(rank_batch_sizes if rank_batch_sizes is not None else [batch_size],
                                           dtype=np.int64)
        if not 0 <= self.rank < len(self.rank_batch_sizes) or self.rank_batch_sizes[self.rank] != batch_size:
            raise ValueError(f"rank {rank} with batch size {batch_size} is not one of the ranks' batch sizes "
                             f"{self.rank_batch_sizes.tolist()}")
        self.index = index
        self.neighbours = int(neighbours)
        self.crop_size = tuple(int(c) for c in crop_size)
        self.foreground_fraction = float(foreground_fraction)
        self.iterations_per_epoch = int(iterations_per_epoch)
        self.transforms = transforms
        self.seed = int(seed)
        self.stream = int(stream)
        self.first_batch = int(start_epoch) * self.iterations_per_epoch
        self.ignore_label = ignore_label
        self.slices_per_case_load = int(slices_per_case_load)
        self.context = int(context)
        self._made = 0
        self._cached: tuple | None = None  # (case, whole, data, seg) of the last case read
        self._plan_epoch: int | None = None
        self._plan: np.ndarray | None = None

    @property
    def examples_per_epoch(self) -> int:
        """This rank's examples per epoch."""
        return self.iterations_per_epoch * self.batch_size

    def epoch_plan(self, epoch: int) -> np.ndarray:
        """This rank's rows ``(case, axis, index, is_foreground)`` of epoch ``epoch``, shuffled in runs per case."""
        rng = np.random.default_rng([self.seed, self.stream, EPOCH_STREAM, epoch])
        examples = self.iterations_per_epoch * self.rank_batch_sizes  # per rank
        n = int(examples.sum())
        fraction = self.foreground_fraction
        if len(self.index.foreground) == 0:
            fraction = 0.0
        elif len(self.index.empty) == 0:
            fraction = 1.0
        n_fg = int(round(n * fraction))
        fg = self.index.foreground[_draw(rng, len(self.index.foreground), n_fg)]
        empty = self.index.empty[_draw(rng, len(self.index.empty), n - n_fg)]
        fg_bounds = share_bounds(n_fg, fraction, examples)
        empty_bounds = np.concatenate([[0], np.cumsum(examples)]) - fg_bounds
        plans = []
        for r in range(len(examples)):  # every rank's share in turn: each rank's generator goes the same way
            part_fg, part_empty = fg[fg_bounds[r]:fg_bounds[r + 1]], empty[empty_bounds[r]:empty_bounds[r + 1]]
            rows = np.concatenate([np.column_stack([part_fg, np.ones(len(part_fg), np.int32)]),
                                   np.column_stack([part_empty, np.zeros(len(part_empty), np.int32)])])
            plans.append(group_into_runs(rows, rng, self.slices_per_case_load))
        return plans[self.rank]

    def batch_rows(self, b: int) -> np.ndarray:
        epoch, j = divmod(b, self.iterations_per_epoch)
        if self._plan_epoch != epoch:
            self._plan, self._plan_epoch = self.epoch_plan(epoch), epoch
        return self._plan[j * self.batch_size:(j + 1) * self.batch_size]

    def volumes(self, case: int, whole: bool) -> tuple[np.ndarray, np.ndarray]:
        """Image and segmentation of ``case``, decompressed into memory when ``whole`` (needed for slices
        along axes 1/2, which touch every axis-0 chunk), else nnU-Net's lazy arrays (an axis-0 slice reads
        only its own planes). The last case is kept, so consecutive slices of one case read it once."""
        if self._cached is not None and self._cached[0] == case and (self._cached[1] or not whole):
            return self._cached[2], self._cached[3]
        self._cached = None  # free the previous volume before reading the next
        data, seg, _, _ = self._data.load_case(self.index.identifiers[case])
        if whole:
            data, seg = np.asarray(data[:]), np.asarray(seg[:])
        self._cached = (case, whole, data, seg)
        return data, seg

    def example(self, rng: np.random.Generator, row: np.ndarray, data: np.ndarray,
                seg: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Stacked, cropped (not yet augmented) image and label of one slice of ``data``/``seg`` (the
        row's case), ``context`` wider on each side than the crop, plus a readable key."""
        case, axis, idx, is_fg = (int(v) for v in row)
        identifier = self.index.identifiers[case]
        label = stack_slice(seg, axis, idx, 0)
        anchor = None
        if is_fg:
            fg = label[0] > 0
            if self.ignore_label is not None:
                fg &= label[0] != self.ignore_label
            pixels = np.argwhere(fg)
            anchor = pixels[rng.integers(len(pixels))]
        bbox = []
        for d, crop in enumerate(self.crop_size):
            lb = crop_window(rng, label.shape[d + 1], crop, None if anchor is None else int(anchor[d]))
            bbox.append([lb - self.context, lb + crop + self.context])
        window, window_bbox = in_plane_window(data, axis, bbox)
        image = stack_slice(window, axis, idx, self.neighbours)
        image = torch.from_numpy(crop_and_pad_nd(image, window_bbox, 0).astype(np.float32, copy=False))
        label = torch.from_numpy(crop_and_pad_nd(label, bbox, -1).astype(np.int16, copy=False))
        return image, label, f"{identifier}/axis{axis}/{idx}"

    def make_batch(self, b: int) -> dict:
        """Batch ``b`` of this rank's stream: a pure function of ``(seed, stream, rank, b)``.

        Slices are cut case by case (each case read once, see :meth:`volumes`) and put back in plan order
        before augmentation, so the batch does not depend on what the worker read before."""
        rows = self.batch_rows(b)
        rng = np.random.default_rng([self.seed, self.stream, BATCH_STREAM, self.rank, b])
        off_plane = set(rows[rows[:, 1] != 0, 0].tolist())
        examples: list = [None] * len(rows)
        with seeded_global_generators(int(rng.integers(2 ** 62))), threadpool_limits(limits=1, user_api=None), \
                torch.no_grad():
            for j in np.argsort(rows[:, 0], kind="stable"):
                examples[j] = self.example(rng, rows[j], *self.volumes(int(rows[j, 0]), int(rows[j, 0]) in off_plane))
            images, labels, keys = [], [], []
            for image, label, key in examples:
                if self.transforms is not None:
                    out = self.transforms(image=image, segmentation=label)
                    image, label = out["image"], out["segmentation"]
                images.append(image)
                labels.append(label)
                keys.append(key)
        return {"data": torch.stack(images), "target": torch.stack(labels), "keys": keys}

    def generate_train_batch(self) -> dict:
        b = self.first_batch + self.thread_id + self._made * self.number_of_threads_in_multithreaded
        self._made += 1
        return self.make_batch(b)
