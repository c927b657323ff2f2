"""nnU-Net predictions -> BraTS 2024 (and BraTS 2021) submission files (names, label values, geometry).

nnU-Net always writes label maps, also for region-based models (it applies ``regions_class_order``), so no
region decoding is needed here; what is checked and fixed:

* names: ``BraTS-GLI-XXXXX-YYY.nii.gz`` (GLI, the challenge's submission naming) and
  ``BraTS-MEN-RT-XXXX-Y.nii.gz`` for MEN-RT. The MEN-RT submission name is an assumption: the case name
  without the ``_t1c``/``_gtv`` suffix, the same convention as GLI; rename if the challenge asks otherwise.
  BraTS 2021: ``BraTS2021_XXXXX.nii.gz``.
* labels: GLI 0..4 (NETC 1, SNFH 2, ET 3, RC 4), MEN-RT 0/1 (GTV), stored as uint8. Any other value
  (or a multi-channel image) is an error naming the file. BraTS 2021 models (``convert brats-2021``) predict
  the GLI labels 0..3; the files get BraTS 2021's own values back (ET 3 -> 4: 0, 1, 2, 4).
* geometry: with ``raw`` (the challenge download) the prediction must lie on the source image's grid (same
  size; spacing/origin/direction within nnU-Net's tolerance) and the source's header geometry is copied
  exactly. With ``dataset`` (an nnU-Net raw dataset written by ``convert men-rt`` with resampling or
  registration) predictions are first resampled back to the scanner grid recorded at conversion.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion import brats_2021, brats_gli, men_rt
from nnunet_ext.dataset_conversion.files import PARTIAL, remove_partials, write_image
from nnunet_ext.dataset_conversion.raw_dataset import RECORDS, relabel
from nnunet_ext.nifti_io import ImageReadError, read_label_image
from nnunet_ext.utils.pool import map_cases

TASKS = ("gli", "men-rt", "brats-2021")
#: label values a prediction of each task may hold (what its converted dataset stores)
CHALLENGE_LABELS = {"gli": (0, 1, 2, 3, 4), "men-rt": (0, 1), "brats-2021": (0, 1, 2, 3)}
#: predicted label -> submitted label where the challenge's files differ from the converted dataset
TO_CHALLENGE = {"brats-2021": {v: k for k, v in brats_2021.TO_GLI.items()}}
_NAME = {"gli": re.compile(r"^BraTS-GLI-\d{5}-\d{3}$"),
         "men-rt": re.compile(r"^BraTS[-_]MEN[-_]RT[-_](?P<patient>\d+)[-_](?P<scan>\d+)$"),
         "brats-2021": brats_2021.CASE_NAME}
_EXPECTED = {"gli": "BraTS-GLI-XXXXX-YYY", "men-rt": "BraTS-MEN-RT-XXXX-Y", "brats-2021": "BraTS2021_XXXXX"}
_FINDERS = {"gli": brats_gli.find_cases, "men-rt": men_rt.find_cases, "brats-2021": brats_2021.find_cases}


class ExportError(ValueError):
    """A prediction that cannot become a valid submission file; the message names the file."""


@dataclass(frozen=True)
class ExportJob:
    prediction: Path
    destination: Path
    source_image: Path | None
    record: Path | None


def challenge_name(task: str, case_id: str) -> str:
    """Submission file name for an nnU-Net case identifier (error for names that are not challenge cases)."""
    match = _NAME[task].match(case_id)
    if match is None:
        raise ExportError(f"{case_id}: not a {task} case name ({_EXPECTED[task]})")
    if task == "men-rt":
        case_id = f"BraTS-MEN-RT-{match['patient']}-{match['scan']}"
    return f"{case_id}.nii.gz"


def _source_images(task: str, raw: Path) -> dict[str, Path]:
    """Case id -> one source image whose grid the submission must have (t1n / t1 for gliomas, t1c for MEN-RT)."""
    return {case.case_id: case.images[0] for case in _FINDERS[task](raw) if case.images[0].is_file()}


def _header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


def _copy_geometry(prediction: sitk.Image, source: Path, name: str) -> sitk.Image:
    """Check that the prediction lies on the source grid and give it the source's exact header geometry."""
    ref = _header(source)
    if tuple(prediction.GetSize()) != tuple(ref.GetSize()):
        raise ExportError(f"{name}: size {prediction.GetSize()} differs from {ref.GetSize()} of source {source}")
    for attr in ("Spacing", "Origin", "Direction"):
        mine, theirs = getattr(prediction, f"Get{attr}")(), getattr(ref, f"Get{attr}")()
        if not np.allclose(mine, theirs):
            raise ExportError(f"{name}: {attr.lower()} {mine} differs from {theirs} of source {source}")
    prediction.SetSpacing(ref.GetSpacing())
    prediction.SetOrigin(ref.GetOrigin())
    prediction.SetDirection(ref.GetDirection())
    return prediction


def export_case(job: ExportJob, task: str) -> Path:
    """Write one submission file; raises :class:`ExportError` naming the prediction when it is invalid."""
    name = str(job.prediction)
    try:
        prediction = read_label_image(name)
    except ImageReadError as error:
        raise ExportError(str(error)) from None
    values = np.unique(sitk.GetArrayViewFromImage(prediction))
    unexpected = sorted(set(values.tolist()) - set(CHALLENGE_LABELS[task]))
    if unexpected:
        raise ExportError(f"{name}: label values {unexpected} are not {task} prediction labels "
                          f"{list(CHALLENGE_LABELS[task])}")
    prediction = relabel(sitk.Cast(prediction, sitk.sitkUInt8), TO_CHALLENGE.get(task, {}))
    if job.record is not None:
        record = json.loads(job.record.read_text())
        prediction = men_rt.to_source_grid(prediction, record, job.record.parent)
    if job.source_image is not None:
        prediction = _copy_geometry(prediction, job.source_image, name)
    write_image(prediction, job.destination)
    return job.destination


def plan_export(pred_dir: Path, out_dir: Path, task: str, raw: Path | None = None,
                dataset: Path | None = None) -> list[ExportJob]:
    """One job per prediction file in ``pred_dir``; every problem found up front is raised together."""
    if task not in TASKS:
        raise ExportError(f"unknown task {task!r}; expected one of {TASKS}")
    predictions = sorted(p for p in Path(pred_dir).glob("*.nii.gz") if p.is_file())
    if not predictions:
        raise ExportError(f"{pred_dir}: no .nii.gz predictions found")
    sources = _source_images(task, Path(raw)) if raw is not None else {}
    records = Path(dataset) / RECORDS if dataset is not None else None
    jobs, problems = [], []
    for prediction in predictions:
        case_id = prediction.name[: -len(".nii.gz")]
        try:
            destination = Path(out_dir) / challenge_name(task, case_id)
        except ExportError as error:
            problems.append(f"{prediction}: {error}")
            continue
        canonical = destination.name[: -len(".nii.gz")]
        source = sources.get(canonical)
        if raw is not None and source is None:
            problems.append(f"{prediction}: no source image for {canonical} below {raw}")
        record = records / f"{canonical}.json" if records is not None else None
        jobs.append(ExportJob(prediction, destination, source,
                              record if record is not None and record.is_file() else None))
    if problems:
        raise ExportError("cannot export:\n  " + "\n  ".join(problems))
    return jobs


def export_predictions(pred_dir: Path, out_dir: Path, task: str, raw: Path | None = None,
                       dataset: Path | None = None, num_workers: int = 1) -> list[Path]:
    """Export every prediction of ``pred_dir`` into ``out_dir``; returns the written files.

    All or nothing: the files are written into a scratch folder and moved to ``out_dir`` only once every case
    has been exported, so a bad prediction leaves ``out_dir`` as it was (and no folder it did not have).
    """
    out_dir = Path(out_dir)
    jobs = plan_export(pred_dir, out_dir, task, raw, dataset)
    created = not out_dir.exists()
    staging = out_dir / PARTIAL / f"export-{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    staged = [replace(job, destination=staging / job.destination.name) for job in jobs]
    try:
        list(map_cases(partial(export_case, task=task), staged, num_workers, "exporting"))
        for job, final in zip(staged, jobs):
            os.replace(job.destination, final.destination)
    finally:
        remove_partials([out_dir])
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
    return [job.destination for job in jobs]
