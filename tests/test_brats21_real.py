"""The six real BraTS 2021 cases of ``../shared/data/brats21-train``, end to end through the real CLIs.

``nnunet-ext convert brats-2021`` on the download as it is (240x240x155, four modalities, raw intensities,
labels 1/2/4), ``export-brats --task brats-2021`` back to the challenge's labels and grid; then the same
cases cropped to the brain and subsampled (every fourth voxel: real intensities and labels at 4 mm, so that two
CPU cores get through it quickly) are converted region-based, planned, trained briefly with ``SliceResTrainer``,
predicted with the 24-view ensemble and scored with the BraTS rules. Skips without ``../shared``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.dataset_conversion import brats_2021
from tests.helpers.environment import subprocess_env

pytestmark = pytest.mark.e2e

CASES = ["BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00003", "BraTS2021_00005", "BraTS2021_00014",
         "BraTS2021_00019"]
STEP = 4
SMALL = ["--set", "crop_size=[32,32]", "--set", "batch_size=8", "--set", "epoch.mode=iterations",
         "--set", "network.kwargs.widths=[8,16,32,64]", "--set", "network.kwargs.blocks_down=[1,1,1,1]"]
BUDGET = {"NNUNET_EXT_EPOCHS": "1", "NNUNET_EXT_ITERATIONS": "3", "NNUNET_EXT_VAL_ITERATIONS": "1"}


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    """A CLI call with one nnU-Net worker process (its end-of-training validation would otherwise spawn 8 export
    workers) and passive OpenMP waiting (nnU-Net trains with one thread per core beside its data workers, and
    spinning threads then slow a shared 2-core box down several times)."""
    command = [sys.executable, "-m", "nnunet_ext.cli", *args] if args[0] != "nnUNetv2_train" else list(args)
    env = {**subprocess_env(), "nnUNet_def_n_proc": "1", "OMP_WAIT_POLICY": "PASSIVE", **env}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def subsample_download(src: Path, out: Path, step: int = STEP) -> None:
    """Every case of ``src`` cropped to its brain's bounding box, every ``step``-th voxel along each axis, written
    in the same BraTS 2021 layout: the real voxels (no interpolation), with the header geometry that matches."""
    for case in brats_2021.find_cases(src):
        images = [sitk.ReadImage(str(path)) for path in case.images]
        brain = np.any([sitk.GetArrayViewFromImage(image) != 0 for image in images], axis=0)
        corners = np.argwhere(brain)
        (z0, y0, x0), (z1, y1, x1) = corners.min(0), corners.max(0) + 1
        (out / case.case_id).mkdir(parents=True)
        for path in (*case.images, case.label):
            image = sitk.ReadImage(str(path))
            sitk.WriteImage(image[int(x0):int(x1):step, int(y0):int(y1):step, int(z0):int(z1):step],
                            str(out / case.case_id / path.name), useCompression=True)


def test_real_brats_2021_cases_convert_plan_train_predict_evaluate(nnunet_dirs, shared_data, tmp_path):
    real = shared_data / "brats21-train"
    before = tree_hash(real)
    raw = nnunet_dirs["nnUNet_raw"]

    # the download as it is: converted, and its labels exported back exactly
    run("convert", "brats-2021", str(real), "-d", "341", "--symlink", "-j", "2")
    full = raw / "Dataset341_BraTS2021"
    assert sorted(p.name for p in (full / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in CASES]
    assert (full / "imagesTr" / "BraTS2021_00000_0003.nii.gz").resolve() == \
        (real / "BraTS2021_00000" / "BraTS2021_00000_flair.nii.gz").resolve()
    source_seg = array(real / "BraTS2021_00019" / "BraTS2021_00019_seg.nii.gz")  # stored as uint16 there
    assert np.array_equal(array(full / "labelsTr" / "BraTS2021_00019.nii.gz"), np.where(source_seg == 4, 3, source_seg))
    submission = tmp_path / "submission_full"
    run("export-brats", str(full / "labelsTr"), str(submission), "--task", "brats-2021", "--raw", str(real), "-j", "2")
    for case in CASES:
        original = sitk.ReadImage(str(real / case / f"{case}_seg.nii.gz"))
        exported = sitk.ReadImage(str(submission / f"{case}.nii.gz"))
        assert np.array_equal(sitk.GetArrayViewFromImage(exported), sitk.GetArrayViewFromImage(original)), case
        assert (exported.GetOrigin(), exported.GetSpacing(), exported.GetDirection()) == \
            (original.GetOrigin(), original.GetSpacing(), original.GetDirection())

    # the same patients at 4 mm: region-based conversion, plan, a short training, 24-view prediction, BraTS rules
    small = tmp_path / "brats21_4mm"
    subsample_download(real, small)
    run("convert", "brats-2021", str(small), "-d", "342", "--regions")
    run("plan", "-d", "342", "-c", "2d", "-np", "1", *SMALL)
    plans = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset342_BraTS2021" / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["2d"]["sliceres"]["neighbours"] == 2  # 4 modalities x 5 slices
    run("nnUNetv2_train", "342", "2d", "0", "-tr", "SliceResTrainer", "-device", "cpu", **BUDGET)
    splits = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset342_BraTS2021" / "splits_final.json").read_text())
    held_out = splits[0]["val"]
    inputs = tmp_path / "held_out"
    inputs.mkdir()
    for case in held_out:
        for channel in range(4):
            name = f"{case}_{channel:04d}.nii.gz"
            (inputs / name).symlink_to(raw / "Dataset342_BraTS2021" / "imagesTr" / name)
    predictions = tmp_path / "predictions"
    run("predict", "-i", str(inputs), "-o", str(predictions), "-d", "342", "-f", "0", "-device", "cpu",
        "-npp", "1", "-nps", "1")
    references = tmp_path / "references"
    references.mkdir()
    for case in held_out:
        (references / f"{case}.nii.gz").symlink_to(raw / "Dataset342_BraTS2021" / "labelsTr" / f"{case}.nii.gz")
    run("evaluate", "--pred", str(predictions), "--ref", str(references), "--rules", "brats-2023",
        "-o", str(tmp_path / "evaluation"))
    summary = json.loads((tmp_path / "evaluation" / "summary.json").read_text())
    assert summary["num_cases"] == len(held_out) and set(summary["regions"]) == {"WT", "TC", "ET"}
    for case in held_out:
        prediction = sitk.ReadImage(str(predictions / f"{case}.nii.gz"))
        assert set(np.unique(sitk.GetArrayViewFromImage(prediction)).tolist()) <= {0, 1, 2, 3}
        assert prediction.GetSize() == sitk.ReadImage(str(small / case / f"{case}_t1.nii.gz")).GetSize()
    exported = tmp_path / "submission_4mm"
    run("export-brats", str(predictions), str(exported), "--task", "brats-2021", "--raw", str(small))
    for case in held_out:
        assert set(np.unique(array(exported / f"{case}.nii.gz")).tolist()) <= {0, 1, 2, 4}
    assert tree_hash(real) == before
