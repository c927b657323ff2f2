"""Outputs of ``nnunet-ext predict`` that are final only when complete, and resumes that check their settings.

nnU-Net exports each segmentation straight to its final name, and our post-processing used to run over the
folder afterwards: a run killed in between left files that looked finished but were not post-processed, and
``--continue_prediction`` kept them. Here nnU-Net writes into a staging folder inside the output folder
(:data:`STAGING`); a case reaches its final name only after post-processing, by an atomic replace, its
probability files first and the segmentation last (the segmentation marks the case as done).

The settings that change results (model, folds, checkpoint, views, tiling, post-processing) are recorded in
:data:`RECORD_NAME` before the first case is predicted. Continuing into a folder whose record differs, or that
holds outputs but no record, is refused: mixing cases predicted two ways in one folder is a silent wrong result.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.inference import postprocessing as pp
from nnunet_ext.nifti_io import ImageReadError, check_complete

RECORD_NAME = "sliceres_prediction.json"
STAGING = ".sliceres_staging"
PROBABILITY_SUFFIXES = (".npz", ".pkl")
COPIED_FILES = ("dataset.json", "plans.json")  # nnU-Net writes them beside its outputs


def check_continuation(output_folder: Path, record: dict, file_ending: str) -> None:
    """Raise ``ValueError`` unless continuing into ``output_folder`` with ``record``'s settings is safe."""
    path = output_folder / RECORD_NAME
    if not path.is_file():
        outputs = [p.name for p in output_folder.glob(f"*{file_ending}") if not p.name.startswith(".")]
        if outputs:
            raise ValueError(f"{output_folder} holds {len(outputs)} segmentations but no {RECORD_NAME}: it cannot be "
                             f"checked that they were predicted with these settings; predict into a new folder or "
                             f"drop --continue_prediction to predict every case again")
        return
    recorded = json.loads(path.read_text())
    differing = sorted(key for key in record if recorded.get(key) != record[key])
    if differing:
        details = "; ".join(f"{key}: recorded {recorded.get(key)!r}, now {record[key]!r}" for key in differing)
        raise ValueError(f"--continue_prediction into {output_folder}: its cases were predicted with other settings "
                         f"({details}); predict into a new folder or drop --continue_prediction")


def write_record(output_folder: Path, record: dict) -> None:
    atomic_write_text(output_folder / RECORD_NAME, json.dumps(record, indent=2) + "\n")


def finished_cases(output_folder: Path, case_ids: Sequence[str], file_ending: str) -> list[str]:
    """Cases whose final segmentation exists and is complete (a cut-off file is predicted again)."""
    done = []
    for case_id in case_ids:
        path = output_folder / f"{case_id}{file_ending}"
        if not path.exists():
            continue
        try:
            check_complete(path)
        except ImageReadError as error:
            print(f"{error}; predicting it again")
            continue
        done.append(case_id)
    return done


def staging_folder(output_folder: Path, part_id: int = 0) -> Path:
    """The (emptied) folder nnU-Net exports into, one per ``-part_id`` (parts may run at once).

    It holds only what this module had nnU-Net write there, so emptying it loses nothing of the user's.
    """
    staging = output_folder / f"{STAGING}_part{part_id}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def finalise(staging: Path, output_folder: Path, case_ids: Sequence[str], file_ending: str, setting: pp.Setting,
             num_processes: int) -> None:
    """Post-process the staged segmentations into ``output_folder`` and move their companions there."""
    for name in COPIED_FILES:
        if (staging / name).is_file():
            atomic_write_text(output_folder / name, (staging / name).read_text())
    for case_id in case_ids:  # probabilities first: a final segmentation means the case is complete
        for suffix in PROBABILITY_SUFFIXES:
            source = staging / f"{case_id}{suffix}"
            if source.is_file():
                os.replace(source, output_folder / source.name)
    if setting.mode == "none":
        for case_id in case_ids:
            os.replace(staging / f"{case_id}{file_ending}", output_folder / f"{case_id}{file_ending}")
    elif case_ids:
        pp.postprocess_folder(staging, output_folder, setting, case_ids, num_processes)
    shutil.rmtree(staging)
