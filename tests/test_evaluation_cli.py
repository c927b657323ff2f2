"""``nnunet-ext evaluate`` as a subprocess on small generated label maps: files, contents, resume and bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.evaluation.evaluate import PER_CASE_COLUMNS

SPACING = (1.0, 1.0, 2.0)


def _write(path: Path, labels_xyz: np.ndarray, spacing=SPACING) -> None:
    image = sitk.GetImageFromArray(labels_xyz.transpose(2, 1, 0).astype(np.uint8))
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def _tumour(shift: int = 0) -> np.ndarray:
    labels = np.zeros((32, 32, 12), np.uint8)
    labels[8 + shift:22 + shift, 8:22, 3:9] = 2  # oedema
    labels[11 + shift:19 + shift, 11:19, 4:8] = 3  # enhancing
    labels[13 + shift:17 + shift, 13:17, 5:7] = 1  # necrosis
    return labels


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    _write(ref / "case_a.nii.gz", _tumour())
    _write(pred / "case_a.nii.gz", _tumour())  # perfect
    _write(ref / "case_b.nii.gz", _tumour())
    _write(pred / "case_b.nii.gz", _tumour(shift=2))  # shifted by 2 voxels
    return ref, pred


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nnunet-ext", "evaluate", *args], capture_output=True, text=True, timeout=300)


def test_evaluate_cli_writes_per_case_and_summary(folders: tuple[Path, Path], tmp_path: Path):
    ref, pred = folders
    out = tmp_path / "out"
    result = _evaluate("--pred", str(pred), "--ref", str(ref), "--rules", "brats-gli-2024", "-o", str(out), "-j", "2")
    assert result.returncode == 0, result.stderr
    assert "LW Dice" in result.stdout and "ET" in result.stdout

    with open(out / "per_case.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == PER_CASE_COLUMNS
    assert [(r["case"], r["region"]) for r in rows] == [
        (c, r) for c in ("case_a", "case_b") for r in ("WT", "TC", "NETC", "SNFH", "ET", "RC")]
    by_key = {(r["case"], r["region"]): r for r in rows}
    perfect, shifted = by_key[("case_a", "WT")], by_key[("case_b", "WT")]
    assert float(perfect["lesionwise_dice"]) == 1.0 and float(perfect["legacy_hd95"]) == 0.0
    assert float(perfect["ref_volume_ml"]) == pytest.approx(14 * 14 * 6 * 2 / 1000)  # spacing-aware
    assert 0.5 < float(shifted["legacy_dice"]) < 1.0 and float(shifted["legacy_hd95"]) == pytest.approx(2.0)
    assert (shifted["num_tp"], shifted["num_fp"], shifted["num_fn"]) == ("1", "0", "0")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["rules"] == "brats-gli-2024" and summary["num_cases"] == 2
    wt = summary["regions"]["WT"]
    dices = [float(perfect["lesionwise_dice"]), float(shifted["lesionwise_dice"])]
    assert wt["metrics"]["lesionwise_dice"]["mean"] == pytest.approx(np.mean(dices))
    low, high = wt["metrics"]["lesionwise_dice"]["ci95"]
    assert min(dices) <= low <= high <= max(dices)
    assert wt["counts"] == {"num_tp": 2, "num_fp": 0, "num_fn": 0}
    assert wt["volume_icc_a1"] is None  # every volume is the same (a shift keeps it): ICC undefined, JSON null
    assert summary["regions"]["RC"]["metrics"]["legacy_dice"]["mean"] == 1.0  # absent in both: Dice 1

    # A second run resumes from the per-case cache and gives identical files.
    before = (out / "per_case.csv").read_text()
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["case_a.json", "case_b.json"]
    again = _evaluate("--pred", str(pred), "--ref", str(ref), "--rules", "brats-gli-2024", "-o", str(out), "-j", "1")
    assert again.returncode == 0 and (out / "per_case.csv").read_text() == before


def test_evaluate_cli_voxel_rules_on_generic_labels(tmp_path: Path):
    ref_labels = np.zeros((16, 16, 8), np.uint8)
    ref_labels[2:8, 2:8, 2:6] = 1
    ref_labels[10:14, 10:14, 2:6] = 5
    pred_labels = ref_labels.copy()
    pred_labels[10:14, 10:14, 2:6] = 0  # label 5 missed
    _write(tmp_path / "ref" / "x.nii.gz", ref_labels)
    _write(tmp_path / "pred" / "x.nii.gz", pred_labels)
    out = tmp_path / "out"
    result = _evaluate("--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--rules", "voxel",
                       "-o", str(out), "-j", "1")
    assert result.returncode == 0, result.stderr
    rows = {r["region"]: r for r in csv.DictReader(open(out / "per_case.csv"))}
    assert set(rows) == {"1", "5"}
    assert float(rows["1"]["legacy_dice"]) == 1.0 and float(rows["5"]["legacy_dice"]) == 0.0
    assert rows["5"]["lesionwise_dice"] == "" and rows["5"]["num_tp"] == ""


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing", "no prediction for reference case(s) case_b.nii.gz"),
        ("shape", "case_b.nii.gz: shape"),
        ("spacing", "case_b.nii.gz: spacing"),
        ("label", "case_b.nii.gz: labels [7] are not used by the brats-gli-2024 rules"),
    ],
)
def test_evaluate_cli_rejects_bad_input_naming_the_file(folders: tuple[Path, Path], tmp_path: Path, problem, message):
    ref, pred = folders
    target = pred / "case_b.nii.gz"
    if problem == "missing":
        target.unlink()
    elif problem == "shape":
        _write(target, np.zeros((30, 32, 12), np.uint8))
    elif problem == "spacing":
        _write(target, _tumour(), spacing=(1.0, 1.0, 1.0))
    else:
        labels = _tumour()
        labels[0, 0, 0] = 7
        _write(target, labels)
    result = _evaluate("--pred", str(pred), "--ref", str(ref), "--rules", "brats-gli-2024", "-o", str(tmp_path / "o"),
                       "-j", "1", "--no-cache")
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "o" / "per_case.csv").exists()
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
