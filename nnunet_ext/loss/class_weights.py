"""Dataset-level focal weights (the paper's alpha): one number per class, from a training fold, stored once.

The study defines alpha as "inverse class frequency (1 / fraction of pixels carrying that class)": a property
of the segmentation, one number per class. This module measures that fraction once per training fold and
``SliceResTrainer`` stores the result in the fold's output folder (:data:`WEIGHTS_FILE`), so ``--c`` resumes
with exactly the numbers the run started with, even if the data or the code counting them change later.

What is counted, and why: the fraction of counted pixels carrying each class **in what the sampler shows
the network**. Every slice along every configured axis is a sample; a balanced epoch draws foreground
slices with total probability ``foreground_fraction`` and empty slices with the rest, uniformly within
each pool. So the frequency of class ``c`` is ``(q E_fg[n_c] + (1 - q) E_empty[n_c]) / (q E_fg[n] +
(1 - q) E_empty[n])`` with ``n_c`` the class-``c`` pixels of a slice, ``n`` its counted pixels and ``q``
the foreground share. These are the frequencies the loss actually sees on average, so ``1 / frequency``
balances the classes of the training distribution; fractions over whole volumes would instead count the
many empty slices that balanced sampling mostly skips and over-weight the tumour classes a second time.
The random crop is not modelled (it raises the tumour share of foreground samples somewhat), which keeps
the statistic a deterministic property of the segmentations, the axes and ``foreground_fraction``.
Pixels with the ignore label are not counted; nnU-Net's ``-1`` (outside the nonzero crop) counts as
background, as nnU-Net's label transforms make it for the loss.

Normalisation: ``w_c = 1 / (K f_c)`` for the ``K`` classes (background included), the "balanced" class
weight. Then ``sum_c f_c w_c = 1``: on the training distribution the average pixel weight is 1, so the
weighted focal term keeps the scale of the unweighted one (``focal_alpha: null``) and its balance against
the Dice term, and each class carries the same share ``1 / K`` of the total weight. Region-based
(sigmoid) data: each region is its own two-class problem, pixels inside get ``1 / (2 f_r)``, outside
``1 / (2 (1 - f_r))``.

A class without any pixel in the fold's training cases has no inverse frequency: :func:`compute` raises a
``ValueError`` naming the class and the fold instead of dividing by zero (no silent fallback weight).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nnunet_ext.atomic import atomic_write_text

WEIGHTS_FILE = "sliceres_class_weights.json"
FORMAT_VERSION = 1
LABELS, REGIONS = "labels", "regions"


@dataclass(frozen=True)
class ClassSpec:
    """What the loss weights: the classes (softmax, background first) or the regions (sigmoid) of a dataset."""

    kind: str  # LABELS or REGIONS
    names: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]  # labels making up each class (one each) or region
    ignore_label: int | None

    @classmethod
    def from_label_manager(cls, label_manager) -> ClassSpec:
        """Classes or regions of nnU-Net's ``LabelManager``, named as in ``dataset.json``."""
        names = {tuple(v) if isinstance(v, (list, tuple)) else (int(v),): k
                 for k, v in label_manager.label_dict.items() if k != "ignore"}
        if label_manager.has_regions:
            members = tuple(tuple(int(v) for v in np.atleast_1d(r)) for r in label_manager.foreground_regions)
            kind = REGIONS
        else:
            members = tuple((int(v),) for v in label_manager.all_labels)
            kind = LABELS
        return cls(kind, tuple(names.get(m, str(list(m))) for m in members), members, label_manager.ignore_label)

    @property
    def num_labels(self) -> int:
        """Label values 0..num_labels-1 counted (the ignore label, nnU-Net's largest, excluded)."""
        return max(max(m) for m in self.members) + 1


@dataclass(frozen=True)
class ClassWeights:
    """Frequencies and focal weights of :class:`ClassSpec`'s classes, as stored in :data:`WEIGHTS_FILE`.

    ``weights``: one per class (labels), or ``(outside, inside)`` per region.
    """

    spec: ClassSpec
    frequencies: tuple[float, ...]
    weights: tuple[float, ...] | tuple[tuple[float, float], ...]
    source: dict

    def tensor(self) -> torch.Tensor:
        """(K,) for labels, (R, 2) for regions: what :class:`~nnunet_ext.loss.focal_dice.FocalDiceLoss` takes."""
        return torch.tensor(self.weights, dtype=torch.float64)

    def describe(self) -> str:
        if self.spec.kind == LABELS:
            parts = [f"{n} {f:.4g} -> {w:.4g}" for n, f, w in zip(self.spec.names, self.frequencies, self.weights)]
        else:
            parts = [f"{n} {f:.4g} -> inside {w[1]:.4g} / outside {w[0]:.4g}"
                     for n, f, w in zip(self.spec.names, self.frequencies, self.weights)]
        return "focal class weights (frequency -> weight): " + ", ".join(parts)

    def to_json(self) -> str:
        classes = [{"name": n, "labels": list(m), "frequency": f, "weight": w}
                   for n, m, f, w in zip(self.spec.names, self.spec.members, self.frequencies, self.weights)]
        return json.dumps({"version": FORMAT_VERSION, "kind": self.spec.kind, "ignore_label": self.spec.ignore_label,
                           "source": self.source, "classes": classes}, indent=2) + "\n"

    def write(self, path: Path) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def read(cls, path: Path, spec: ClassSpec) -> ClassWeights:
        """The stored weights; ``ValueError`` naming ``path`` when they were made for other classes."""
        try:
            stored = json.loads(Path(path).read_text())
            found = (stored["version"], stored["kind"], stored["ignore_label"],
                     tuple(tuple(c["labels"]) for c in stored["classes"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: unreadable focal class weights ({error}); delete the file to recompute "
                             f"them, or train without --c") from None
        expected = (FORMAT_VERSION, spec.kind, spec.ignore_label, spec.members)
        if found != expected:
            raise ValueError(f"{path}: stored focal class weights are for (version, kind, ignore label, classes) "
                             f"{found}, this dataset has {expected}; delete the file to recompute them, or train "
                             f"without --c")
        classes = stored["classes"]
        weights = [c["weight"] if spec.kind == LABELS else tuple(c["weight"]) for c in classes]
        return cls(spec, tuple(c["frequency"] for c in classes), tuple(weights), stored["source"])


def slice_histograms(labels: np.ndarray, valid: np.ndarray, axes: Sequence[int], num_labels: int
                     ) -> dict[int, np.ndarray]:
    """Per axis: (slices along it, num_labels) pixel counts per label of a 3D label map, ``valid`` pixels only."""
    counts = {axis: np.zeros((labels.shape[axis], num_labels), dtype=np.int64) for axis in axes}
    for label in range(num_labels):
        mask = (labels == label) & valid
        for axis in axes:
            counts[axis][:, label] = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    return counts


def sampled_frequencies(dataset, spec: ClassSpec, axes: Sequence[int], foreground_fraction: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(frequency per label as the balanced sampler shows them, pixel count per label over the volumes).

    ``dataset`` is an nnU-Net dataset object (its preprocessed segmentations are read, nothing is written).
    Slices are foreground when they hold a label > 0 that is not the ignore label, as in the slice index.
    """
    n = spec.num_labels
    sums = {True: np.zeros(n), False: np.zeros(n)}
    slices = {True: 0, False: 0}
    volume = np.zeros(n, dtype=np.int64)
    for identifier in tqdm(dataset.identifiers, desc="counting class pixels", unit="case",
                           disable=len(dataset.identifiers) < 50):
        _, seg, _, _ = dataset.load_case(identifier)
        labels = np.asarray(seg[0]).astype(np.int64)
        valid = labels != spec.ignore_label if spec.ignore_label is not None else np.ones(labels.shape, bool)
        labels[labels < 0] = 0  # nnU-Net's outside-the-crop marker is background for the loss
        unknown = np.unique(labels[valid & (labels >= n)])
        if unknown.size:
            raise ValueError(f"case {identifier}: label values {unknown.tolist()} are not among the classes "
                             f"{list(spec.members)}")
        volume += np.bincount(labels[valid], minlength=n)
        for histograms in slice_histograms(labels, valid, axes, n).values():
            foreground = histograms[:, 1:].sum(1) > 0
            for flag in (True, False):
                sums[flag] += histograms[foreground == flag].sum(0)
                slices[flag] += int((foreground == flag).sum())
    share = {True: foreground_fraction if slices[False] else 1.0, False: 0.0}
    share[False] = 1.0 - share[True] if slices[True] else 1.0
    expected = sum(share[flag] * sums[flag] / max(slices[flag], 1) for flag in (True, False))
    if expected.sum() <= 0:
        raise ValueError("the training cases have no counted pixel (all ignore label?)")
    return expected / expected.sum(), volume


def compute(dataset, spec: ClassSpec, axes: Sequence[int], foreground_fraction: float, where: str
            ) -> ClassWeights:
    """Frequencies and balanced inverse-frequency weights (see module docstring) of ``dataset``'s cases.

    ``where`` names the cases in error messages, e.g. ``"fold 0"``.
    """
    label_frequency, volume = sampled_frequencies(dataset, spec, axes, foreground_fraction)
    frequencies = [float(label_frequency[list(m)].sum()) for m in spec.members]
    for name, members, f in zip(spec.names, spec.members, frequencies):
        if f <= 0.0 or (spec.kind == REGIONS and f >= 1.0):
            what = "no pixel" if f <= 0.0 else "every counted pixel"
            raise ValueError(f"{where}: class {name!r} (labels {list(members)}) covers {what} of the "
                             f"{len(dataset.identifiers)} training cases, so its inverse frequency (the "
                             f"'dataset_frequency' focal alpha) is undefined; check the split and the labels, "
                             f"or set sliceres.loss.focal_alpha to 'batch_frequency' or null")
    if spec.kind == LABELS:
        weights: tuple = tuple(1.0 / (len(frequencies) * f) for f in frequencies)
    else:
        weights = tuple((1.0 / (2.0 * (1.0 - f)), 1.0 / (2.0 * f)) for f in frequencies)
    source = {"cases": where, "training_cases": len(dataset.identifiers), "axes": list(axes),
              "foreground_fraction": foreground_fraction, "volume_pixels_per_label": volume.tolist()}
    return ClassWeights(spec, tuple(frequencies), weights, source)
