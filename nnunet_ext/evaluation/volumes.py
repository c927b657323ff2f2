"""Reading and validating label maps: every problem is reported with the file it was found in.

Arrays are returned in (x, y, z) order with (sx, sy, sz) spacing, the orientation the official scorers (nibabel)
work in; SimpleITK's (z, y, x) array is transposed as a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_ext.nifti_io import ImageReadError, read_label_image

SUPPORTED_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd", ".mhd")


class EvaluationError(ValueError):
    """Bad evaluation input; the message names the file and the problem."""


def case_name(path: Path) -> str | None:
    """File name without its (supported) extension, or None for unsupported files."""
    for ending in SUPPORTED_ENDINGS:
        if path.name.endswith(ending):
            return path.name[: -len(ending)]
    return None


@dataclass
class LabelMap:
    """An integer label map with its geometry."""

    path: Path
    labels: np.ndarray  # (x, y, z)
    spacing: tuple[float, float, float]
    origin: tuple[float, ...]
    direction: tuple[float, ...]


def read_label_map(path: Path) -> LabelMap:
    """Read a 3D label map; truncated files, non-integer or negative values are errors."""
    try:
        image = read_label_image(path)
    except ImageReadError as error:
        raise EvaluationError(str(error)) from None
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise EvaluationError(f"{path}: contains non-integer values; a label map is expected")
    if array.min(initial=0) < 0:
        raise EvaluationError(f"{path}: contains negative labels")
    return LabelMap(
        path=path,
        labels=array.astype(np.int32, copy=False).transpose(2, 1, 0),
        spacing=tuple(float(s) for s in image.GetSpacing()),
        origin=tuple(image.GetOrigin()),
        direction=tuple(image.GetDirection()),
    )


def check_same_geometry(reference: LabelMap, prediction: LabelMap, tolerance: float = 1e-4) -> None:
    """Prediction and reference must share shape, spacing, origin and direction."""
    if reference.labels.shape != prediction.labels.shape:
        raise EvaluationError(f"{prediction.path}: shape {prediction.labels.shape} (x, y, z) differs from the "
                              f"reference {reference.path} {reference.labels.shape}")
    for name in ("spacing", "origin", "direction"):
        ours, theirs = getattr(prediction, name), getattr(reference, name)
        if not np.allclose(ours, theirs, rtol=0, atol=tolerance):
            raise EvaluationError(f"{prediction.path}: {name} {tuple(round(v, 6) for v in ours)} differs from the "
                                  f"reference {reference.path} {tuple(round(v, 6) for v in theirs)}")


def check_labels(label_map: LabelMap, valid: frozenset[int] | None, rules_name: str) -> None:
    """Labels outside the rule set's labels are an error (after --labels-are mapping)."""
    if valid is None:
        return
    unknown = sorted({int(v) for v in np.flatnonzero(np.bincount(label_map.labels.ravel()))} - set(valid))
    if unknown:
        raise EvaluationError(f"{label_map.path}: labels {unknown} are not used by the {rules_name} rules "
                              f"(allowed: {sorted(valid)}); map them with --labels-are, e.g. 4:3 or binary")


def apply_label_mapping(labels: np.ndarray, mapping: dict[int | str, int]) -> np.ndarray:
    """Relabel a label map; explicit sources win over ``*``; background 0 stays 0 unless mapped explicitly."""
    if not mapping:
        return labels
    out = labels.copy()
    if "*" in mapping:
        out[labels != 0] = mapping["*"]
    for src, dst in mapping.items():
        if src != "*":
            out[labels == src] = dst
    return out
