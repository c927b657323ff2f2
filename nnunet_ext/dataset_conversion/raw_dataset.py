"""Shared core of the converters: validate source cases, then write an nnU-Net raw dataset from them.

The challenge-specific modules (:mod:`brats_gli`, :mod:`brats_2021`, :mod:`men_rt`) only find the source files
and declare channels and labels (and a label mapping where the challenge's values differ); everything that
makes a conversion safe lives here once:

* every case is checked with :mod:`nnunet_ext.case_checks` *before* anything is written; all problems are
  reported in one summary; ``strict`` raises, otherwise bad cases are skipped with a warning;
* source files are only read (copied, symlinked, or read and re-written when they must change);
* a dataset folder belongs to the conversion (task and source folder) that created it, recorded in
  ``conversion_owner.json``: another conversion refuses to write into it unless told to take it over;
* outputs are written atomically and recorded in a manifest, so a re-run skips what is already correct and
  removes only outputs of earlier runs that this run no longer produces, and only while they are exactly what
  was written (never anything else);
* cases are written by parallel workers behind a tqdm bar (:mod:`nnunet_ext.utils.pool`), and a log file is kept
  in the dataset folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from nnunet_ext.case_checks import CaseFiles, Problem, check_cases, format_summary, raise_if_problems
from nnunet_ext.dataset_conversion.files import (
    PARTIAL,
    Manifest,
    copy_file,
    fingerprint,
    remove_partials,
    symlink_file,
    write_image,
    write_json,
)
from nnunet_ext.nifti_io import read_image
from nnunet_ext.utils.pool import map_cases

FILE_ENDING = ".nii.gz"
MANIFEST = "conversion_manifest.json"
OWNER = "conversion_owner.json"
RECORDS = "conversion_records"
log = logging.getLogger("nnunet_ext.dataset_conversion")


@dataclass(frozen=True)
class SourceCase:
    """One case as found in the download: expected image paths per channel (may not exist) and its label."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    problems: tuple[Problem, ...] = ()  # found while discovering (e.g. a file present twice)


def find_source_cases(src: Path, glob: str, pattern: re.Pattern[str], modalities: Sequence[str], label_key: str,
                      separator: str, case_id: Callable[[re.Match[str]], str] | None = None) -> list[SourceCase]:
    """Every case below ``src`` among the files matching ``glob`` whose names match ``pattern``.

    ``pattern`` names the file's ``key`` (a modality or ``label_key``) and its ``case`` (or ``case_id`` builds the
    id from the match). A missing modality is kept as the path the download would have
    (``<folder>/<case><separator><modality>.nii.gz``) so that the checks report it; a file present twice is a
    problem of its case.
    """
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(Path(src).rglob(glob)):
        match = pattern.match(path.name)
        if match and path.is_file():
            name = case_id(match) if case_id is not None else match["case"]
            found.setdefault(name, {}).setdefault(match["key"], []).append(path)
    cases = []
    for name, files in sorted(found.items()):
        folder = next(iter(files.values()))[0].parent
        problems = tuple(Problem(str(paths[1]), f"{key} of {name} found more than once (also {paths[0]})")
                         for key, paths in files.items() if len(paths) > 1)
        images = tuple(files[m][0] if m in files else folder / f"{name}{separator}{m}.nii.gz" for m in modalities)
        label = files[label_key][0] if label_key in files else None
        cases.append(SourceCase(name, images, label, problems))
    return cases


@dataclass(frozen=True)
class DatasetSpec:
    """What ``dataset.json`` declares, plus the label values allowed in the *source* label files."""

    dataset_id: int
    name: str
    channel_names: dict[int, str]
    labels: dict[str, int | list[int]]
    source_labels: tuple[int, ...]
    regions_class_order: tuple[int, ...] | None = None
    description: str = ""
    reference: str = ""
    licence: str = ""
    #: source label -> stored label where the challenge's values differ from the dataset's (BraTS 2021: ET 4 -> 3);
    #: label files are then rewritten instead of copied (images still are)
    label_mapping: dict[int, int] = field(default_factory=dict)

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"


# transforms a case's source files into (images, label, record); must be picklable (runs in workers)
CasePreprocessor = Callable[[SourceCase, Path], tuple[list[sitk.Image], sitk.Image | None, dict[str, Any]]]


@dataclass
class ConversionResult:
    dataset_dir: Path
    training: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    skipped: dict[str, list[Problem]] = field(default_factory=dict)
    written: int = 0
    unchanged: int = 0


def check_dataset_id(raw_root: Path, spec: DatasetSpec) -> None:
    """nnU-Net cannot resolve an ID that two differently named datasets share: refuse before writing."""
    others = [p.name for p in raw_root.glob(f"Dataset{spec.dataset_id:03d}_*") if p.name != spec.folder_name]
    if others:
        raise ValueError(f"dataset ID {spec.dataset_id} is already used by {', '.join(others)} in {raw_root}; "
                         f"choose another -d or remove that dataset")


def check_owner(dataset_dir: Path, owner: dict[str, str | None], take_over: bool) -> None:
    """Refuse to write into a dataset folder that another conversion (or anything else) created.

    A conversion owns a folder it created, identified by ``owner`` (task and resolved source folder); a
    folder that does not exist or holds no file is free. ``take_over`` lets the conversion adopt any folder.
    """
    if not dataset_dir.exists() or not any(p.is_file() or p.is_symlink() for p in dataset_dir.rglob("*")):
        return
    record = dataset_dir / OWNER
    recorded = json.loads(record.read_text()) if record.is_file() else None
    if recorded == owner or take_over:
        if recorded != owner:
            log.warning("taking over %s (was: %s)", dataset_dir, _describe_owner(dataset_dir, recorded))
        return
    raise ValueError(
        f"{dataset_dir} {_describe_owner(dataset_dir, recorded)}; this run converts {owner['task']} cases from "
        f"{owner['source']}. Nothing was written. Choose another dataset ID/name, delete that folder (and its "
        f"nnUNet_preprocessed folder), or pass --take-over to convert into it anyway (its outputs then replace "
        f"same-named files; of the others, only outputs recorded in {MANIFEST} are removed)")


def _describe_owner(dataset_dir: Path, recorded: dict[str, str | None] | None) -> str:
    if recorded is not None:
        return f"was created by `nnunet-ext convert {recorded.get('task')}` from {recorded.get('source')}"
    if (dataset_dir / MANIFEST).is_file():
        return f"was converted without a {OWNER} (by an earlier nnunet-ext version)"
    return "exists and was not created by `nnunet-ext convert`"


def validate_cases(cases: Sequence[SourceCase], spec: DatasetSpec, strict: bool, num_workers: int
                   ) -> tuple[list[SourceCase], dict[str, list[Problem]]]:
    """The good cases and ``{case_id: problems}`` of the bad ones; in strict mode any problem raises."""
    problems = check_cases([CaseFiles(c.case_id, c.images, c.label) for c in cases], spec.source_labels,
                           num_workers, desc="checking source cases")
    for case in cases:
        if case.problems:
            problems[case.case_id] = list(case.problems) + problems.get(case.case_id, [])
    if strict:
        raise_if_problems(problems, len(cases))
    elif problems:
        log.warning("skipping bad cases (use --strict to fail instead)\n%s", format_summary(problems, len(cases)))
    return [c for c in cases if c.case_id not in problems], problems


def _destinations(case: SourceCase, dataset_dir: Path) -> tuple[list[Path], Path | None]:
    split = "Tr" if case.label is not None else "Ts"
    images = [dataset_dir / f"images{split}" / f"{case.case_id}_{c:04d}{FILE_ENDING}" for c in range(len(case.images))]
    label = dataset_dir / "labelsTr" / f"{case.case_id}{FILE_ENDING}" if case.label is not None else None
    return images, label


def _place(src: Path, dst: Path, symlink: bool) -> None:
    """Copy or link a source file unchanged; files that are not .nii.gz are re-encoded (lossless)."""
    if not src.name.endswith(FILE_ENDING):
        write_image(read_image(src), dst)
    elif symlink:
        symlink_file(src, dst)
    else:
        copy_file(src, dst)


def relabel(label: sitk.Image, mapping: dict[int, int]) -> sitk.Image:
    """``label`` with the values in ``mapping`` replaced (others kept), same grid and pixel type.

    (NumPy rather than ``sitk.ChangeLabel``, which rejects the float label files some downloads ship.)
    """
    if not mapping:
        return label
    source = sitk.GetArrayViewFromImage(label)
    values = source.copy()
    for old, new in mapping.items():
        values[source == old] = new
    result = sitk.GetImageFromArray(values)
    result.CopyInformation(label)
    return result


def _convert_case(case: SourceCase, dataset_dir: Path, symlink: bool,
                  preprocessor: CasePreprocessor | None, label_mapping: dict[int, int]) -> None:
    dst_images, dst_label = _destinations(case, dataset_dir)
    if preprocessor is None:
        for src, dst in zip(case.images, dst_images):
            _place(src, dst, symlink)
        if dst_label is not None and label_mapping:
            write_image(relabel(read_image(case.label), label_mapping), dst_label)
        elif dst_label is not None:
            _place(case.label, dst_label, symlink)
        return
    records = dataset_dir / RECORDS
    records.mkdir(exist_ok=True)
    images, label, record = preprocessor(case, records)
    for image, dst in zip(images, dst_images):
        write_image(image, dst)
    if dst_label is not None:
        write_image(relabel(label, label_mapping), dst_label)
    write_json(record, records / f"{case.case_id}.json")


def _setup_log(dataset_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(dataset_dir / f"conversion_{time.strftime('%Y_%m_%d_%H_%M_%S')}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def convert(cases: Sequence[SourceCase], spec: DatasetSpec, raw_root: Path, *, symlink: bool = False,
            strict: bool = False, num_workers: int = 1, preprocessor: CasePreprocessor | None = None,
            preprocessor_recipe: dict[str, Any] | None = None, extra_sources: Sequence[Path] = (),
            task: str | None = None, source: Path | None = None, take_over: bool = False) -> ConversionResult:
    """Validate ``cases`` and write ``raw_root/DatasetXXX_NAME``; labelled cases go to imagesTr/labelsTr,
    unlabelled ones to imagesTs. ``preprocessor`` (with its ``preprocessor_recipe`` for the manifest and the
    ``extra_sources`` it reads, e.g. a template) replaces plain copying when images must change.
    ``task`` (the converter's name, default: the channel names) and ``source`` (the download folder) identify
    the conversion that owns the dataset folder (see :func:`check_owner`; ``take_over`` overrides it).
    """
    if symlink and preprocessor is not None:
        raise ValueError("--symlink cannot be combined with resampling, registration or skull stripping "
                         "(the outputs differ from the sources)")
    raw_root = Path(raw_root)
    check_dataset_id(raw_root, spec)
    dataset_dir = raw_root / spec.folder_name
    owner = {"task": task or "/".join(spec.channel_names.values()),
             "source": str(Path(source).resolve()) if source is not None else None}
    check_owner(dataset_dir, owner, take_over)
    if not cases:
        raise ValueError("no cases found")
    good, problems = validate_cases(cases, spec, strict, num_workers)
    if not any(c.label is not None for c in good):
        if not problems:
            raise ValueError(f"none of the {len(cases)} cases is labelled (all passed the checks): a dataset needs "
                             "labelled training cases; to add unlabelled (validation) cases, convert a folder "
                             "holding both downloads (it is searched recursively)")
        raise ValueError("no valid labelled case left to convert\n" + format_summary(problems, len(cases)))
    unlabelled = [c.case_id for c in good if c.label is None]
    if unlabelled:
        log.warning("%d of %d cases have no label file and go to imagesTs as test cases (if they are training "
                    "cases, their label file is missing): %s", len(unlabelled), len(good),
                    ", ".join(unlabelled[:5]) + (f" and {len(unlabelled) - 5} more" if len(unlabelled) > 5 else ""))
    for sub in ("imagesTr", "labelsTr"):
        (dataset_dir / sub).mkdir(parents=True, exist_ok=True)
    write_json(owner, dataset_dir / OWNER)
    if any(c.label is None for c in good):
        (dataset_dir / "imagesTs").mkdir(exist_ok=True)
    handler = _setup_log(dataset_dir)
    try:
        result = _write_cases(good, spec, dataset_dir, symlink, num_workers, preprocessor,
                              preprocessor_recipe, extra_sources)
        result.skipped = problems
        log.info("%s: %d training and %d test cases (%d written, %d unchanged, %d skipped)", spec.folder_name,
                 len(result.training), len(result.test), result.written, result.unchanged, len(problems))
    finally:
        remove_partials([dataset_dir, *(dataset_dir / sub for sub in ("imagesTr", "labelsTr", "imagesTs", RECORDS))])
        log.removeHandler(handler)
        handler.close()
    return result


def _write_cases(good: Sequence[SourceCase], spec: DatasetSpec, dataset_dir: Path, symlink: bool, num_workers: int,
                 preprocessor: CasePreprocessor | None, preprocessor_recipe: dict[str, Any] | None,
                 extra_sources: Sequence[Path]) -> ConversionResult:
    result = ConversionResult(dataset_dir)
    manifest = Manifest(dataset_dir / MANIFEST)
    todo: list[tuple[SourceCase, str, list[Path]]] = []
    produced: set[str] = set()
    for case in good:
        dst_images, dst_label = _destinations(case, dataset_dir)
        outputs = dst_images + ([dst_label] if dst_label is not None else [])
        recipe = {"symlink": symlink, "preprocessing": preprocessor_recipe,
                  "outputs": [str(p.relative_to(dataset_dir)) for p in outputs]}
        if spec.label_mapping:  # only here, so outputs of converters without one stay current
            recipe["label_mapping"] = sorted(spec.label_mapping.items())
        sources = list(case.images) + ([case.label] if case.label is not None else []) + list(extra_sources)
        print_ = fingerprint(recipe, sources)
        keys = [str(p.relative_to(dataset_dir)) for p in outputs]
        produced.update(keys)
        (result.training if case.label is not None else result.test).append(case.case_id)
        if all(manifest.is_current(k, print_, p) for k, p in zip(keys, outputs)):
            result.unchanged += 1
        else:
            todo.append((case, print_, outputs))
    _remove_stale(manifest, produced, dataset_dir)

    convert = partial(_convert_case, dataset_dir=dataset_dir, symlink=symlink, preprocessor=preprocessor,
                      label_mapping=spec.label_mapping)
    converted = map_cases(convert, [case for case, _, _ in todo], num_workers, f"writing {spec.folder_name}",
                          progress=bool(todo))
    for (_case, print_, outputs), _ in zip(todo, converted):  # recorded as each case is done: a re-run resumes
        for path in outputs:
            manifest.record(str(path.relative_to(dataset_dir)), print_, path)
        manifest.save()
        result.written += 1
    _write_dataset_json(spec, dataset_dir, len(result.training))
    return result


def _remove_stale(manifest: Manifest, produced: set[str], dataset_dir: Path) -> None:
    """Delete outputs that an earlier run wrote (per the manifest) and this run does not produce any more.

    Only while a file is exactly what was written (same link target, or size and mtime): a file that someone
    replaced or changed since is left in place.
    """
    for key in sorted(set(manifest.entries) - produced):
        path = dataset_dir / key
        if manifest.is_unchanged(key, path):
            path.unlink()
            log.info("removed stale output %s", path)
        elif path.is_symlink() or path.exists():
            log.warning("left %s in place: no case of this run produces it, but it changed since an earlier "
                        "conversion wrote it", path)
        del manifest.entries[key]
        record = dataset_dir / RECORDS / f"{_case_of(key)}.json"
        record.unlink(missing_ok=True)
    manifest.save()


def _case_of(key: str) -> str:
    name = Path(key).name[: -len(FILE_ENDING)]
    return re.sub(r"_\d{4}$", "", name) if not key.startswith("labelsTr") else name


def _write_dataset_json(spec: DatasetSpec, dataset_dir: Path, num_training: int) -> None:
    """nnU-Net's own ``generate_dataset_json`` into a scratch folder, then moved into place atomically."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    scratch = dataset_dir / PARTIAL / f"json-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    generate_dataset_json(str(scratch), spec.channel_names, spec.labels, num_training, FILE_ENDING,
                          regions_class_order=list(spec.regions_class_order) if spec.regions_class_order else None,
                          dataset_name=spec.folder_name, reference=spec.reference or None,
                          description=spec.description or None, license=spec.licence,
                          converted_by="nnunet-ext convert")
    os.replace(scratch / "dataset.json", dataset_dir / "dataset.json")
