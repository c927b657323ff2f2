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
                   n_labels: int, brain: tuple[float, float, float] = (0.45, 0.45, 0.45),
                   tilt: float = 0.0) -> tuple[list[np.ndarray], np.ndarray]:
    """One case: images (float32) and a label map with nested ellipsoids 1..n_labels (0 = background).

    ``brain`` gives the brain's radii as fractions of the axes; ``tilt`` shears the case along axis 1, by that
    fraction of the axis from the first to the last slice of axis 0, so that the brain's two ends lie on
    opposite sides of the plane (in-plane windows at one end see only background).
    """
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    yy = yy - tilt * shape[1] * (zz / max(shape[0] - 1, 1) - 0.5)
    # the tumour's place and size scale with the brain's radii (the default brain: 0.15 - 0.25 of each axis)
    scale = [b / 0.45 for b in brain]
    centre = [s / 2 + (rng.uniform(0.35, 0.65) - 0.5) * s * k for s, k in zip(shape, scale)]
    radii = [rng.uniform(0.15, 0.25) * s * k for s, k in zip(shape, scale)]
    dist = ((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 + ((xx - centre[2]) / radii[2]) ** 2
    inside = (((zz - shape[0] / 2) / (brain[0] * shape[0])) ** 2 + ((yy - shape[1] / 2) / (brain[1] * shape[1])) ** 2
              + ((xx - shape[2] / 2) / (brain[2] * shape[2])) ** 2) <= 1
    seg = np.zeros(shape, dtype=np.uint8)
    for label in range(1, n_labels + 1):
        # label 1 is the outermost shell, higher labels sit inside it
        seg[dist <= 1.0 - 0.6 * (label - 1) / max(n_labels, 1)] = label
    seg[~inside] = 0
    images = []
    for m in range(n_modalities):
        img = inside.astype(np.float32) * 100 + rng.normal(0, 8, shape).astype(np.float32)
        for label in range(1, n_labels + 1):
            img[seg == label] += 40 * ((label + m) % 3 + 1)
        img[~inside] = 0
        images.append(img.astype(np.float32))
    return images, seg


def make_raw_dataset(raw_root: Path, dataset_id: int = 501, name: str = "Tiny", n_cases: int = 4,
                     shape: tuple[int, int, int] = (24, 40, 40), n_modalities: int = 2, n_labels: int = 2,
                     regions: bool = False, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                     n_test: int = 0, seed: int = 0, brain: tuple[float, float, float] = (0.45, 0.45, 0.45),
                     tilt: float = 0.0) -> Path:
    """Write ``DatasetXXX_Name`` under ``raw_root`` in nnU-Net raw layout and return its folder.

    ``brain`` and ``tilt`` shape the zero-background brain (see :func:`synthetic_case`).

    With ``regions=True`` the labels are declared as nested regions (1,2,...) -> (2,...) -> ... the way
    BraTS whole tumour / tumour core are, with ``regions_class_order``.
    """
    rng = np.random.default_rng(seed)
    folder = raw_root / f"Dataset{dataset_id:03d}_{name}"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_cases + n_test):
        images, seg = synthetic_case(rng, shape, n_modalities, n_labels, brain, tilt)
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


def write_sliceres_model_folder(results_root: Path, raw_dataset_folder: Path, trainer: str = "nnUNetTrainer",
                                window_depth: int = 8, crop: int = 32, neighbours: int = 1,
                                folds: tuple[int, ...] = (0,), seed: int = 0) -> Path:
    """A SliceRes model folder without training: the plans as ``SliceResTrainer`` saves them, random weights.

    The ``sliceres`` block is built by the planner's own ``settings.build`` (a small network, whole-slice
    windows of ``window_depth`` slices, ``crop`` x ``crop`` in-plane) and turned into the network, patch and
    batch entries by ``sliceres_plans``, the trainer's own step; the weights of each fold come from the network
    those plans describe, built by nnU-Net's ``get_network_from_plans``. Only the stock nnU-Net entries of the 2d
    configuration (z-score normalisation and resampling, what nnU-Net's planner writes for these "MR" channels
    at 1 mm) are written here, with no fingerprint or planning run: fast. For the stock ``nnUNetTrainer``, so
    that prediction tests run before (and independently of) any training.
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.planning import settings
    from nnunet_ext.training.materialise import sliceres_plans

    dataset_json = json.loads((raw_dataset_folder / "dataset.json").read_text())
    n_modalities = len(dataset_json["channel_names"])
    has_regions = any(isinstance(v, list) for v in dataset_json["labels"].values())
    heads = len(dataset_json["labels"]) - 1 if has_regions else len(dataset_json["labels"])
    first_case = sitk.ReadImage(str(sorted((raw_dataset_folder / "imagesTr").glob("*.nii.gz"))[0]))
    shape, spacing = list(first_case.GetSize()[::-1]), [float(s) for s in first_case.GetSpacing()[::-1]]
    block = settings.build({"neighbours": neighbours, "crop_size": [crop, crop], "inference_window_depth": window_depth,
                            "network": {"kwargs": {"widths": [8, 16, 32, 64], "blocks_down": [1, 1, 1, 1],
                                                   "blocks_up": [1, 1, 1], "slices_per_forward": 16}}},
                           n_modalities, spacing, min_depth=shape[0])
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    stock_plans = {
        "dataset_name": raw_dataset_folder.name, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing, "original_median_shape_after_transp": shape,
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "SliceResPlanner", "label_manager": "LabelManager",
        # used only by CT normalisation; the z-score scheme of these "MR" channels ignores the values
        "foreground_intensity_properties_per_channel": {str(m): {} for m in range(n_modalities)},
        "configurations": {"2d": {
            "data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor",
            "spacing": spacing[1:],
            "normalization_schemes": ["ZScoreNormalization"] * n_modalities,
            "use_mask_for_norm": [False] * n_modalities,
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
            "batch_dice": True,
            settings.SLICERES_KEY: block,
        }},
    }
    plans = sliceres_plans(stock_plans, "2d")
    configuration = PlansManager(plans).get_configuration("2d")
    folder = results_root / raw_dataset_folder.name / f"{trainer}__nnUNetPlans__2d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    for fold in folds:
        torch.manual_seed(seed + fold)
        network = get_network_from_plans(configuration.network_arch_class_name,
                                         configuration.network_arch_init_kwargs,
                                         configuration.network_arch_init_kwargs_req_import, n_modalities, heads,
                                         deep_supervision=False)
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save({"trainer_name": trainer, "init_args": {"configuration": "2d"},
                    "network_weights": network.state_dict(), "inference_allowed_mirroring_axes": (1, 2)},
                   folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder
