"""nnunet_ext.case_checks: every kind of broken case is reported, naming the file and the defect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.case_checks import (
    CaseCheckError,
    CaseFiles,
    channel_files_in_folder,
    check_case,
    check_cases,
    check_input_folder,
    check_raw_dataset,
    format_summary,
    raise_if_problems,
)
from tests.helpers.synthetic import make_raw_dataset

SHAPE = (6, 8, 10)  # (z, y, x)


def _write(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
           direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def _good_case(folder: Path, name: str = "case") -> tuple[list[Path], Path]:
    rng = np.random.default_rng(0)
    images = [_write(folder / f"{name}_{c:04d}.nii.gz", rng.normal(size=SHAPE).astype(np.float32)) for c in range(2)]
    label = np.zeros(SHAPE, np.uint8)
    label[2:4, 3:5, 4:6] = 2
    return images, _write(folder / f"{name}.nii.gz", label)


def _only(problems, path: Path, words: str):
    """Assert exactly one problem, for ``path``, whose message contains ``words``."""
    assert len(problems) == 1, problems
    assert problems[0].file == str(path)
    assert words in problems[0].message, problems[0].message


def test_good_case_has_no_problems(tmp_path):
    images, label = _good_case(tmp_path)
    assert check_case(images, label, [0, 1, 2]) == []


@pytest.mark.parametrize("defect, words", [
    ("missing", "file is missing"),
    ("unreadable", "cannot be read"),
    ("size", "size"),
    ("spacing", "spacing"),
    ("origin", "origin"),
    ("direction", "direction"),
    ("nan", "NaN"),
    ("inf", "inf"),
    ("empty", "empty"),
])
def test_image_defects_are_named(tmp_path, defect, words):
    images, label = _good_case(tmp_path)
    bad = images[1]
    data = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
    if defect == "missing":
        bad.unlink()
    elif defect == "unreadable":
        bad.write_bytes(b"not a nifti file at all")
    elif defect == "size":
        _write(bad, data[:-1])
    elif defect == "spacing":
        _write(bad, data, spacing=(1.0, 1.0, 1.2))
    elif defect == "origin":
        _write(bad, data, origin=(0.0, 0.5, 0.0))
    elif defect == "direction":
        _write(bad, data, direction=(0.0, 1, 0, 1, 0, 0, 0, 0, 1))
    elif defect in ("nan", "inf"):
        data[1, 2, 3] = np.nan if defect == "nan" else np.inf
        _write(bad, data)
    elif defect == "empty":
        _write(bad, np.zeros(SHAPE, np.int16))
    _only(check_case(images, label, [0, 1, 2]), bad, words)


def test_geometry_tolerance_is_nnunets(tmp_path):
    """np.allclose defaults (rtol 1e-5, atol 1e-8), as nnU-Net's reader/writer compares geometry."""
    images, label = _good_case(tmp_path)
    data = np.random.default_rng(2).normal(size=SHAPE).astype(np.float32)
    for path in (*images, label):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        _write(path, array, origin=(100.0, 100.0, 100.0))
    _write(images[1], data, origin=(100.0, 100.0005, 100.0))
    assert check_case(images, label, [0, 1, 2]) == []
    _write(images[1], data, origin=(100.0, 100.01, 100.0))
    _only(check_case(images, label, [0, 1, 2]), images[1], "origin")


@pytest.mark.parametrize("values, words", [([7], "unexpected label values [7]"), ([0.5], "non-integer")])
def test_label_defects_are_named(tmp_path, values, words):
    images, label = _good_case(tmp_path)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(label))).astype(np.float32)
    array[0, 0, 0] = values[0]
    _write(label, array)
    _only(check_case(images, label, [0, 1, 2]), label, words)


def test_label_geometry_checked_and_header_only_mode_skips_voxels(tmp_path):
    images, label = _good_case(tmp_path)
    _write(label, np.full(SHAPE, 9, np.uint8), spacing=(2.0, 1.0, 1.0))
    _only(check_case(images, label, [0, 1, 2], check_voxels=False), label, "spacing")
    assert len(check_case(images, label, [0, 1, 2])) == 2  # + the unknown label 9


def test_many_cases_parallel_summary_and_strict(tmp_path):
    cases = []
    for i in range(3):
        images, label = _good_case(tmp_path, f"c{i}")
        cases.append(CaseFiles(f"c{i}", tuple(images), label))
    cases[1].images[0].unlink()
    _write(cases[2].label, np.full(SHAPE, 5, np.uint8))
    problems = check_cases(cases, [0, 1, 2], num_workers=2)
    assert sorted(problems) == ["c1", "c2"]
    summary = format_summary(problems, len(cases))
    assert "2 of 3 cases" in summary and str(cases[1].images[0]) in summary and str(cases[2].label) in summary
    with pytest.raises(CaseCheckError) as error:
        raise_if_problems(problems, len(cases))
    assert str(cases[1].images[0]) in str(error.value) and error.value.problems == problems
    raise_if_problems({}, 3)  # nothing to complain about: no exception


def test_input_folder_missing_extra_and_misnamed_channels(tmp_path):
    _good_case(tmp_path, "a")
    _good_case(tmp_path, "b")
    (tmp_path / "a.nii.gz").unlink()  # the label files are not inputs
    (tmp_path / "b.nii.gz").unlink()
    (tmp_path / "b_0001.nii.gz").rename(tmp_path / "b_0002.nii.gz")
    (tmp_path / "stray.nii.gz").write_bytes(b"")
    cases, problems = channel_files_in_folder(tmp_path, 2)
    assert [c.case_id for c in cases] == ["a", "b"]
    messages = [str(p) for p in problems["b"]]
    assert any("b_0001.nii.gz: channel 1 is missing" in m for m in messages)
    assert any("b_0002.nii.gz: unexpected channel 2" in m for m in messages)
    assert "CASE_XXXX" in str(problems["stray.nii.gz"][0])
    assert "a" not in problems
    full = check_input_folder(tmp_path, 2)
    assert sorted(full) == ["b", "stray.nii.gz"]


def test_empty_input_folder_is_a_problem(tmp_path):
    problems = check_input_folder(tmp_path, 1)
    assert "no *_XXXX.nii.gz input files" in format_summary(problems)


def test_raw_dataset_check_uses_dataset_json(tmp_path):
    folder = make_raw_dataset(tmp_path, n_cases=2, shape=(8, 12, 12), n_labels=2, regions=True)
    assert check_raw_dataset(folder) == {}
    label = folder / "labelsTr" / "case_001.nii.gz"
    image = sitk.ReadImage(str(label))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 3
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(label))
    (folder / "imagesTr" / "case_000_0001.nii.gz").unlink()
    problems = check_raw_dataset(folder)
    assert sorted(problems) == ["case_000", "case_001"]
    assert "unexpected label values [3]" in format_summary(problems)
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 2
