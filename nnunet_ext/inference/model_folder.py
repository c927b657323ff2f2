"""Locate a trained model folder and check it before any work starts.

nnU-Net resolves ``-d/-tr/-p/-c`` with ``get_output_folder`` and then fails deep inside ``torch.load`` on a
missing checkpoint, or asserts on an unknown fold. Here the same resolution is followed by checks that name
the missing file and list what is there, and inputs are checked against the model's channel count with
:mod:`nnunet_ext.case_checks` (missing channels, extra channels, mismatched geometry, unreadable files).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from nnunet_ext.case_checks import check_input_folder, format_summary


class ModelFolderError(ValueError):
    """The model folder, a fold or a checkpoint is missing or unusable."""


def resolve_model_folder(model_folder: str | None, dataset: str | None, trainer: str, plans: str,
                         configuration: str) -> Path:
    """``-m`` as given, else nnU-Net's ``nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION``."""
    if model_folder is None:
        if dataset is None:
            raise ModelFolderError("give either -d DATASET (with -tr/-p/-c) or -m MODEL_FOLDER")
        from nnunetv2.utilities.file_path_utilities import get_output_folder

        try:
            model_folder = get_output_folder(dataset, trainer, plans, configuration)
        except (RuntimeError, ValueError, TypeError) as error:  # unknown dataset, or nnUNet_results unset
            raise ModelFolderError(f"cannot resolve the model folder of dataset {dataset!r}: {error}") from error
    folder = Path(model_folder)
    for name in ("plans.json", "dataset.json"):
        if not (folder / name).is_file():
            raise ModelFolderError(f"{folder / name} is missing: {folder} is not a trained nnU-Net model folder "
                                   f"(train it with nnUNetv2_train ... -tr {trainer})")
    return folder


def available_folds(folder: Path, checkpoint: str) -> list[str]:
    """Folds (``0``, ``1``, ..., ``all``) whose ``fold_X/<checkpoint>`` exists."""
    return sorted(p.parent.name[len("fold_"):] for p in folder.glob(f"fold_*/{checkpoint}"))


def check_folds(folder: Path, folds: Sequence[str] | None, checkpoint: str) -> list[int | str]:
    """The folds to use (all available ones when ``folds`` is None); every checkpoint must exist."""
    found = available_folds(folder, checkpoint)
    if folds is None:
        folds = [f for f in found if f != "all"] or found
        if not folds:
            raise ModelFolderError(f"{folder} has no fold_*/{checkpoint}: no trained fold to predict with")
    missing = [str(folder / f"fold_{f}" / checkpoint) for f in folds if str(f) not in found]
    if missing:
        raise ModelFolderError(f"checkpoint missing: {', '.join(missing)} (folds with {checkpoint}: "
                               f"{', '.join(found) or 'none'})")
    return [f if f == "all" else int(f) for f in folds]


def check_inputs(input_folder: str, model_folder: Path, num_workers: int = 1) -> None:
    """Raise ``ValueError`` listing every input problem (per file) for the model's channel count."""
    if not Path(input_folder).is_dir():
        raise ValueError(f"input folder {input_folder} does not exist")
    dataset_json = json.loads((model_folder / "dataset.json").read_text())
    num_channels = len(dataset_json["channel_names"])
    problems = check_input_folder(input_folder, num_channels, dataset_json["file_ending"], max(1, num_workers))
    if problems:
        raise ValueError(f"input folder {input_folder} does not fit the model ({num_channels} channels "
                         f"{dataset_json['channel_names']}, files *_XXXX{dataset_json['file_ending']}):\n"
                         + format_summary(problems))
