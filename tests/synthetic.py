"""Tiny generated nnU-Net raw datasets for tests: ellipsoid 'tumours' in noisy 'brains'.

Small enough that planning, preprocessing and a few training iterations run in seconds on a CPU,
structured enough that a network must look at the image to segment them (labels are visible as
intensity changes in every modality, with noise).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _write(array: np.ndarray, path: Path, spacing: tuple[float, float, float]) -> None:
    image = sitk.GetImageFromArray(array)  # array is (z, y, x)
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    sitk.WriteImage(image, str(path), useCompression=True)


def synthetic_case(rng: np.random.Generator, shape: tuple[int, int, int], n_modalities: int,
                   n_labels: int) -> tuple[list[np.ndarray], np.ndarray]:
    """One case: images (float32) and a label map with nested ellipsoids 1..n_labels (0 = background)."""
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    centre = [rng.uniform(0.35, 0.65) * s for s in shape]
    radii = [rng.uniform(0.15, 0.25) * s for s in shape]
    dist = ((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 + ((xx - centre[2]) / radii[2]) ** 2
    brain = (((zz - shape[0] / 2) / (0.45 * shape[0])) ** 2 + ((yy - shape[1] / 2) / (0.45 * shape[1])) ** 2
             + ((xx - shape[2] / 2) / (0.45 * shape[2])) ** 2) <= 1
    seg = np.zeros(shape, dtype=np.uint8)
    for label in range(1, n_labels + 1):
        # label 1 is the outermost shell, higher labels sit inside it
        seg[dist <= 1.0 - 0.6 * (label - 1) / max(n_labels, 1)] = label
    seg[~brain] = 0
    images = []
    for m in range(n_modalities):
        img = brain.astype(np.float32) * 100 + rng.normal(0, 8, shape).astype(np.float32)
        for label in range(1, n_labels + 1):
            img[seg == label] += 40 * ((label + m) % 3 + 1)
        img[~brain] = 0
        images.append(img.astype(np.float32))
    return images, seg


def make_raw_dataset(raw_root: Path, dataset_id: int = 501, name: str = "Tiny", n_cases: int = 4,
                     shape: tuple[int, int, int] = (24, 40, 40), n_modalities: int = 2, n_labels: int = 2,
                     regions: bool = False, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                     n_test: int = 0, seed: int = 0) -> Path:
    """Write ``DatasetXXX_Name`` under ``raw_root`` in nnU-Net raw layout and return its folder.

    With ``regions=True`` the labels are declared as nested regions (1,2,...) -> (2,...) -> ... the way
    BraTS whole tumour / tumour core are, with ``regions_class_order``.
    """
    rng = np.random.default_rng(seed)
    folder = raw_root / f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_cases + n_test):
        images, seg = synthetic_case(rng, shape, n_modalities, n_labels)
        split = "Tr" if i < n_cases else "Ts"
        case = f"case_{i:03d}"
        for m, img in enumerate(images):
            _write(img, folder / f"images{split}" / f"{case}_{m:04d}.nii.gz", spacing)
        _write(seg, folder / f"labels{split}" / f"{case}.nii.gz", spacing)
    if regions:
        labels = {"background": 0}
        for label in range(1, n_labels + 1):
            labels[f"region_{label}"] = list(range(label, n_labels + 1))
        extra = {"regions_class_order": list(range(1, n_labels + 1))}
    else:
        labels = {"background": 0, **{f"label_{label}": label for label in range(1, n_labels + 1)}}
        extra = {}
    dataset_json = {
        # "MR" names: nnU-Net's per-case z-score normalisation for every channel
        "channel_names": {str(m): f"MR{m}" for m in range(n_modalities)},
        "labels": labels,
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
        **extra,
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder
