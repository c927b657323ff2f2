"""Figures for the reports: box plots of per-case scores and an overlay of one case.

matplotlib runs with the Agg backend (no display needed: CI, servers, the GPU machine). Every figure is
written atomically so that an interrupted run never leaves a truncated PNG behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from nnunet_ext.atomic import atomic_write  # noqa: E402

#: label colours (by label value) in every overlay; the reference outline is always white
LABEL_COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]
VIEWS = ("axial", "coronal", "sagittal")


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def box_plot(data: Mapping[str, Mapping[str, Sequence[float]]], ylabel: str, path: Path, title: str = "") -> Path:
    """One panel per region (``data[region][method] -> per-case values``), one box per method.

    Non-finite values (undefined distances) are dropped; a method with no finite value gets an empty slot
    rather than disappearing, so the boxes line up across panels.
    """
    regions = list(data)
    if not regions:
        raise ValueError("box_plot needs at least one region")
    methods = list(dict.fromkeys(m for region in regions for m in data[region]))
    fig, axes = plt.subplots(1, len(regions), figsize=(max(4.0, 1.0 + 0.9 * len(methods)) * len(regions) / 1.6, 4.2),
                             squeeze=False, sharey=True)
    for ax, region in zip(axes[0], regions):
        values = [np.asarray(data[region].get(m, []), dtype=float) for m in methods]
        values = [v[np.isfinite(v)] for v in values]
        ax.boxplot(values, tick_labels=methods, showmeans=True, meanprops={"marker": "D", "markersize": 4})
        for i, v in enumerate(values, start=1):
            jitter = np.linspace(-0.12, 0.12, len(v)) if len(v) > 1 else np.zeros(len(v))
            ax.scatter(i + jitter, v, s=10, alpha=0.6, color="k", zorder=3)
        ax.set_title(region)
        ax.tick_params(axis="x", labelrotation=35)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _colour(label: int) -> str:
    return LABEL_COLOURS[(label - 1) % len(LABEL_COLOURS)]


def _best_slices(mask: np.ndarray) -> tuple[int, int, int]:
    """Per axis, the slice index with the largest foreground area (the middle slice when ``mask`` is empty)."""
    if not mask.any():
        return tuple(s // 2 for s in mask.shape)
    return tuple(int(np.argmax(mask.sum(axis=tuple(a for a in range(3) if a != axis)))) for axis in range(3))


def _view(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """2D slice of a (z, y, x) array, oriented for ``imshow(origin='lower')`` with superior up."""
    if view == "axial":
        return volume[index]
    if view == "coronal":
        return volume[:, index, :]
    return volume[:, :, index]


def _aspect(spacing: Sequence[float], view: str) -> float:
    sz, sy, sx = spacing
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[view]


def overlay_figure(image: np.ndarray, segmentations: Mapping[str, np.ndarray], path: Path,
                   spacing: Sequence[float] = (1.0, 1.0, 1.0), label_names: Mapping[int, str] | None = None,
                   reference_key: str = "reference", title: str = "") -> Path:
    """Image slices of one case with each segmentation's contours: one column per segmentation, one row per view.

    ``image`` and every segmentation are (z, y, x) arrays (SimpleITK order) of the same shape; ``spacing``
    is (z, y, x) in mm. Slices go through the largest reference area on each axis. Every column draws its
    own labels in colour; method columns also outline the reference foreground in dashed white, so misses
    and false positives are visible at a glance.
    """
    if reference_key not in segmentations:
        raise ValueError(f"overlay_figure needs a '{reference_key}' segmentation; got {list(segmentations)}")
    for name, seg in segmentations.items():
        if seg.shape != image.shape:
            raise ValueError(f"segmentation '{name}' has shape {seg.shape}, the image has {image.shape}")
    reference = segmentations[reference_key]
    indices = _best_slices(reference > 0)
    labels = sorted(int(v) for v in np.unique(np.concatenate([np.unique(s) for s in segmentations.values()])) if v > 0)
    names = dict(label_names or {})
    lo, hi = np.percentile(image[image != 0], [1, 99]) if np.any(image != 0) else (0.0, 1.0)

    columns = list(segmentations)
    fig, axes = plt.subplots(len(VIEWS), len(columns), figsize=(2.6 * len(columns), 2.6 * len(VIEWS)), squeeze=False)
    for row, (view, index) in enumerate(zip(VIEWS, indices)):
        aspect = _aspect(spacing, view)
        ref2d = _view(reference, view, index) > 0
        for col, name in enumerate(columns):
            ax = axes[row][col]
            ax.imshow(_view(image, view, index), cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect,
                      interpolation="nearest")
            seg2d = _view(segmentations[name], view, index)
            for label in labels:
                mask = seg2d == label
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors=[_colour(label)], linewidths=1.2)
            if name != reference_key and ref2d.any():
                ax.contour(ref2d.astype(float), levels=[0.5], colors=["white"], linewidths=0.8, linestyles="dashed")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{view} {index}", fontsize=8)
    handles = [Line2D([], [], color=_colour(label), label=names.get(label, str(label))) for label in labels]
    handles.append(Line2D([], [], color="white", linestyle="dashed", label="reference outline"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, facecolor="#777")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97 if title else 1))
    return _save(fig, path)
