"""Validation of one case's files: the single place that decides whether a case can go through nnU-Net.

Used by the dataset converters (before anything is written), by the planner (raw dataset checks before
planning) and by the predictor (input checks before prediction). nnU-Net itself only notices most of these
defects deep inside preprocessing, one case at a time, or only prints warnings; here every problem of every
case is collected and reported at once, each naming the file and what is wrong.

Geometry is compared from the image headers (SimpleITK ``ReadImageInformation``, no voxel data), with the
same tolerance nnU-Net uses (``np.allclose`` defaults, see ``BaseReaderWriter._check_all_same``). Voxels are
read only for the NaN/inf, empty-image and label-value checks, through :func:`nnunet_ext.nifti_io.read_voxels`,
which also fails on truncated or corrupt files (nnU-Net's SimpleITK reader would silently read a partial volume).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_ext.nifti_io import ImageReadError, read_voxels
from nnunet_ext.utils.pool import map_cases

PathLike = str | Path


@dataclass(frozen=True)
class Problem:
    """One defect: the file (or case) it concerns and a human-readable description."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: one image per channel (in channel order) and an optional label file.

    Callers that know which files a case should have pass the expected paths even when they do not exist,
    so a missing channel is reported under the exact file name the user has to provide.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None


class CaseCheckError(ValueError):
    """Raised in strict mode; carries every problem found and a summary listing all of them."""

    def __init__(self, problems: dict[str, list[Problem]], n_cases: int | None = None):
        self.problems = problems
        super().__init__(format_summary(problems, n_cases))


@dataclass(frozen=True)
class _Header:
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    components: int


def _read_header(path: Path) -> _Header:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return _Header(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                   tuple(reader.GetDirection()), reader.GetNumberOfComponents())


def _shape_problems(path: Path, header: _Header) -> list[Problem]:
    """A file that is not one scalar volume (a 4D stack of channels, vector voxels)."""
    problems = []
    if len(header.size) > 3:
        problems.append(Problem(str(path), f"is a {len(header.size)}D image (size {header.size}); expected one 3D "
                                           "volume per file (split the channels into separate files)"))
    if header.components != 1:
        problems.append(Problem(str(path), f"has {header.components} components per voxel; expected a scalar image"))
    return problems


def _geometry_problems(path: Path, header: _Header, ref_path: Path, ref: _Header) -> list[Problem]:
    """Differences between ``header`` and the reference header, with nnU-Net's tolerance."""
    problems = []
    if header.size != ref.size:
        problems.append(Problem(str(path), f"size {header.size} differs from {ref.size} of {ref_path.name}"))
        return problems  # spacing etc. of a different grid are not informative
    for name in ("spacing", "origin", "direction"):
        mine, theirs = getattr(header, name), getattr(ref, name)
        if len(mine) != len(theirs) or not np.allclose(mine, theirs):
            fmt = ", ".join(f"{v:.6g}" for v in mine)
            ref_fmt = ", ".join(f"{v:.6g}" for v in theirs)
            problems.append(Problem(str(path), f"{name} ({fmt}) differs from ({ref_fmt}) of {ref_path.name}"))
    return problems


def _image_voxel_problems(path: Path) -> list[Problem]:
    array = read_voxels(path)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            n_nan = int(np.isnan(array).sum())
            n_inf = int((~finite).sum()) - n_nan
            return [Problem(str(path), f"contains {n_nan} NaN and {n_inf} inf voxels")]
    lo, hi = array.min(), array.max()
    if lo == hi:
        return [Problem(str(path), f"is empty: every voxel equals {lo.item():g}")]
    return []


def _label_voxel_problems(path: Path, allowed_labels: Sequence[int] | None) -> list[Problem]:
    array = read_voxels(path)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            return [Problem(str(path), "label map contains NaN/inf voxels")]
        values = np.unique(array)
        if not np.array_equal(values, np.round(values)):
            bad = values[values != np.round(values)][:5]
            return [Problem(str(path), f"label map has non-integer values, e.g. {bad.tolist()}")]
    else:
        values = np.unique(array)
    if allowed_labels is not None:
        unknown = sorted(set(values.astype(np.int64).tolist()) - set(int(v) for v in allowed_labels))
        if unknown:
            return [Problem(str(path), f"unexpected label values {unknown}; allowed are {sorted(allowed_labels)}")]
    return []


def check_case(images: Sequence[PathLike], label: PathLike | None = None,
               allowed_labels: Sequence[int] | None = None, check_voxels: bool = True) -> list[Problem]:
    """All problems of one case: missing/unreadable files, geometry mismatches, NaN/inf, empty images, labels.

    ``images`` are the channel files in order; the first readable one is the geometry reference. Every
    other image and the label must match its size, spacing, origin and direction. With
    ``check_voxels=False`` only headers are read (fast, e.g. for a pre-flight of a large dataset).
    """
    files = [Path(p) for p in images] + ([Path(label)] if label is not None else [])
    problems: list[Problem] = []
    headers: dict[Path, _Header] = {}
    for path in files:
        if not path.is_file():
            problems.append(Problem(str(path), "file is missing"))
            continue
        try:
            headers[path] = _read_header(path)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
            problems.append(Problem(str(path), f"cannot be read as an image ({first_line})"))
    readable = [p for p in files if p in headers]
    shape_problems = {p: _shape_problems(p, headers[p]) for p in readable}
    for path in readable:
        problems.extend(shape_problems[path])
    usable = [p for p in readable if not shape_problems[p]]  # a 4D file must not become the reference
    if not usable:
        return problems
    ref_path = usable[0]
    for path in usable[1:]:
        problems.extend(_geometry_problems(path, headers[path], ref_path, headers[ref_path]))
    if check_voxels:
        label_path = Path(label) if label is not None else None
        for path in usable:
            try:
                if path == label_path:
                    problems.extend(_label_voxel_problems(path, allowed_labels))
                else:
                    problems.extend(_image_voxel_problems(path))
            except ImageReadError as error:
                problems.append(Problem(str(path), error.reason))
            except (RuntimeError, OSError, ValueError) as error:
                problems.append(Problem(str(path), f"voxel data cannot be read ({str(error).strip()[-200:]})"))
    return problems


def _check_case_files(case: CaseFiles, allowed_labels: Sequence[int] | None, check_voxels: bool) -> list[Problem]:
    return check_case(case.images, case.label, allowed_labels, check_voxels)


def check_cases(cases: Sequence[CaseFiles], allowed_labels: Sequence[int] | None = None, num_workers: int = 1,
                check_voxels: bool = True, desc: str = "checking cases") -> dict[str, list[Problem]]:
    """Check many cases (in ``num_workers`` processes) and return ``{case_id: problems}`` for the bad ones."""
    check = partial(_check_case_files, allowed_labels=allowed_labels, check_voxels=check_voxels)
    results = map_cases(check, cases, num_workers, desc, progress=len(cases) >= 2)
    return {case.case_id: problems for case, problems in zip(cases, results) if problems}


def format_summary(problems: dict[str, list[Problem]], n_cases: int | None = None) -> str:
    """One readable block listing every problem, grouped by case."""
    if not problems:
        return "all cases passed the checks" if n_cases is None else f"all {n_cases} cases passed the checks"
    n_problems = sum(len(p) for p in problems.values())
    of = f" of {n_cases}" if n_cases is not None else ""
    lines = [f"{len(problems)}{of} cases have problems ({n_problems} in total):"]
    for case_id in sorted(problems):
        lines.append(f"  {case_id}:")
        lines.extend(f"    - {problem}" for problem in problems[case_id])
    return "\n".join(lines)


def raise_if_problems(problems: dict[str, list[Problem]], n_cases: int | None = None) -> None:
    """Strict mode: one :class:`CaseCheckError` listing everything, or nothing when all cases are fine."""
    if problems:
        raise CaseCheckError(problems, n_cases)


def channel_files_in_folder(folder: PathLike, num_channels: int, file_ending: str = ".nii.gz",
                            ) -> tuple[list[CaseFiles], dict[str, list[Problem]]]:
    """Group nnU-Net-named inputs (``CASE_XXXX<file_ending>``) into cases and flag naming problems.

    Returns the cases (their existing channel files in order) and ``{case_id: problems}`` for missing
    channels, channels beyond ``num_channels`` and files that do not follow the naming scheme.
    """
    folder = Path(folder)
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(file_ending) + "$")
    channels: dict[str, dict[int, Path]] = {}
    problems: dict[str, list[Problem]] = {}
    for path in sorted(folder.iterdir()):
        if not path.name.endswith(file_ending):
            continue
        match = pattern.match(path.name)
        if match is None:
            problems.setdefault(path.name, []).append(
                Problem(str(path), f"name does not follow CASE_XXXX{file_ending} (XXXX = 4-digit channel index)"))
            continue
        channels.setdefault(match["case"], {})[int(match["channel"])] = path
    cases = []
    for case_id, found in sorted(channels.items()):
        for channel in range(num_channels):
            if channel not in found:
                problems.setdefault(case_id, []).append(
                    Problem(str(folder / f"{case_id}_{channel:04d}{file_ending}"),
                            f"channel {channel} is missing (expected {num_channels} channels)"))
        for channel in sorted(set(found) - set(range(num_channels))):
            problems.setdefault(case_id, []).append(
                Problem(str(found[channel]), f"unexpected channel {channel} (expected {num_channels} channels, "
                                             f"0..{num_channels - 1})"))
        cases.append(CaseFiles(case_id, tuple(found[c] for c in range(num_channels) if c in found)))
    return cases, problems


def check_input_folder(folder: PathLike, num_channels: int, file_ending: str = ".nii.gz", num_workers: int = 1,
                       check_voxels: bool = True) -> dict[str, list[Problem]]:
    """Everything wrong with a folder of prediction inputs: naming/channel problems plus per-case checks."""
    cases, problems = channel_files_in_folder(folder, num_channels, file_ending)
    if not cases and not problems:
        problems[str(folder)] = [Problem(str(folder), f"no *_XXXX{file_ending} input files found")]
    for case_id, case_problems in check_cases(cases, None, num_workers, check_voxels, "checking inputs").items():
        problems.setdefault(case_id, []).extend(case_problems)
    return problems


def raw_dataset_cases(dataset_folder: PathLike) -> tuple[list[CaseFiles], list[int], int]:
    """Training cases of an nnU-Net raw dataset, its allowed label values and its channel count.

    Uses nnU-Net's own file discovery (``get_filenames_of_train_images_and_targets``) and label handling
    (``LabelManager``), so region-based datasets and ``dataset.json`` file lists work as in nnU-Net.
    """
    import json

    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    dataset_folder = Path(dataset_folder)
    dataset_json = json.loads((dataset_folder / "dataset.json").read_text())
    found = get_filenames_of_train_images_and_targets(str(dataset_folder), dataset_json)
    manager = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    allowed = list(manager.all_labels) + ([manager.ignore_label] if manager.has_ignore_label else [])
    cases = [CaseFiles(case_id, tuple(Path(p) for p in entry["images"]), Path(entry["label"]))
             for case_id, entry in found.items()]
    return cases, allowed, len(dataset_json["channel_names"])


def _orphan_labels(dataset_folder: Path, case_ids: set[str]) -> dict[str, list[Problem]]:
    """Label files in ``labelsTr`` without images: nnU-Net lists cases by their images and skips them silently."""
    import json

    dataset_json = json.loads((dataset_folder / "dataset.json").read_text())
    labels = dataset_folder / "labelsTr"
    if "dataset" in dataset_json or not labels.is_dir():
        return {}
    ending = dataset_json["file_ending"]
    problems: dict[str, list[Problem]] = {}
    for path in sorted(labels.glob(f"*{ending}")):
        case_id = path.name[: -len(ending)]
        if case_id not in case_ids and not path.name.startswith("."):
            problems[case_id] = [Problem(str(path), f"label without images: no {case_id}_XXXX{ending} in "
                                                    f"{dataset_folder / 'imagesTr'} (nnU-Net would ignore it)")]
    return problems


def check_raw_dataset(dataset_folder: PathLike, num_workers: int = 1, check_voxels: bool = True,
                      found: tuple[list[CaseFiles], list[int], int] | None = None) -> dict[str, list[Problem]]:
    """Every problem of a raw dataset's training cases (for the planner, before planning).

    ``found`` is :func:`raw_dataset_cases` of the folder when the caller has it already (nnU-Net's file
    listing starts a process pool, seconds for a tiny dataset).
    """
    cases, allowed, num_channels = found or raw_dataset_cases(dataset_folder)
    problems = _orphan_labels(Path(dataset_folder), {case.case_id for case in cases})
    for case in cases:
        if len(case.images) != num_channels:
            problems.setdefault(case.case_id, []).append(
                Problem(case.case_id, f"has {len(case.images)} channel files, dataset.json declares {num_channels}"))
    for case_id, case_problems in check_cases(cases, allowed, num_workers, check_voxels, "checking dataset").items():
        problems.setdefault(case_id, []).extend(case_problems)
    return problems

