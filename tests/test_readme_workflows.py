"""The README's two end-to-end workflows (BraTS-GLI 2024 and BraTS-MEN-RT 2024), executed as written.

The command lines are read from the README sections, so the documented workflow is what runs. The only
changes are the ones a CPU box without the challenge downloads forces:

- ``/data/...`` paths point at synthetic challenge-named cases from ``nnunet-ext demo-data`` (a training
  download, a validation download with labels, and that validation set in nnU-Net naming);
- the 5-fold training loop runs fold 0 (folds 1-4 are the same command with another number);
- ``nnUNetv2_train`` and ``nnunet-ext predict`` get ``-device cpu``, training gets a tiny budget through the
  documented ``NNUNET_EXT_*`` variables, and ``plan`` gets a small network, crop and batch (``--set``) and one
  worker process (``nnUNet_def_n_proc=1``): the published network on one CPU thread would take minutes.

Every other README command is checked against the real parsers in ``tests/test_readme.py``.
"""

from __future__ import annotations

import csv
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.evaluation.rules import RULES
from tests.helpers.environment import subprocess_env
from tests.helpers.readme_blocks import readme_commands

pytestmark = pytest.mark.e2e

SHAPE = ["40", "40", "24"]
BUDGET = {"NNUNET_EXT_EPOCHS": "1", "NNUNET_EXT_ITERATIONS": "2", "NNUNET_EXT_VAL_ITERATIONS": "1",
          "nnUNet_def_n_proc": "1"}
SMALL = ["--set", "network.kwargs.widths=[8,16,32,64]", "--set", "crop_size=[32,32]", "--set", "batch_size=8"]
WORKFLOWS = {
    "gli": {"heading": "BraTS-GLI 2024, end to end", "train": "BraTS2024-GLI-train", "val": "BraTS2024-GLI-val",
            "val_nnunet": "gli-val-nnunet", "val_labels": "gli-val-labels", "convert": "brats-gli",
            "regions": {"WT", "TC", "NETC", "SNFH", "ET", "RC"}, "submission": "BraTS-GLI-"},
    "men-rt": {"heading": "BraTS-MEN-RT 2024, end to end", "train": "BraTS2024-MEN-RT-train",
               "val": "BraTS2024-MEN-RT-val", "val_nnunet": "men-val-nnunet", "val_labels": "men-val-labels",
               "convert": "men-rt", "regions": {"GTV"}, "submission": "BraTS-MEN-RT-"},
}


def cli(*args: str, cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, \
        f"nnunet-ext {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def make_downloads(task: str, data: Path, scratch_raw: Path, env: dict[str, str]) -> None:
    """Synthetic stand-ins for the challenge downloads under ``data`` (the README's ``/data``)."""
    w = WORKFLOWS[task]
    cli("demo-data", str(data / w["train"]), "--task", task, "-n", "6", "--shape", *SHAPE, cwd=data, env=env)
    cli("demo-data", str(data / w["val"]), "--task", task, "-n", "1", "--shape", *SHAPE, "--seed", "100",
        cwd=data, env=env)
    # the validation cases in nnU-Net naming (what `predict -i` reads) and their labels, via a scratch dataset
    cli("convert", w["convert"], str(data / w["val"]), "-d", "998", "-n", "ValScratch", cwd=data,
        env={**env, "nnUNet_raw": str(scratch_raw)})
    scratch = scratch_raw / "Dataset998_ValScratch"
    (data / w["val_nnunet"]).symlink_to(scratch / "imagesTr", target_is_directory=True)
    (data / w["val_labels"]).symlink_to(scratch / "labelsTr", target_is_directory=True)


def as_run_here(command: str, data: Path) -> list[str]:
    """The README command with ``/data`` moved to ``data`` and the CPU flags added."""
    tokens = [t.replace("/data/", f"{data}/", 1) if t.startswith("/data/") else t for t in shlex.split(command)]
    if tokens[0] == "nnUNetv2_train" or tokens[:2] == ["nnunet-ext", "predict"]:
        tokens += ["-device", "cpu"]
    if tokens[:2] == ["nnunet-ext", "plan"]:
        tokens += SMALL
    if tokens[0] == "nnunet-ext":
        return [sys.executable, "-m", "nnunet_ext.cli", *tokens[1:]]
    return tokens


@pytest.mark.parametrize("task", list(WORKFLOWS))
def test_readme_workflow_runs(task: str, nnunet_dirs: dict[str, Path], tmp_path: Path):
    w = WORKFLOWS[task]
    commands = readme_commands(w["heading"])
    programs = [shlex.split(c)[0] + " " + shlex.split(c)[1] for c in commands]
    assert programs == ["nnunet-ext convert", "nnunet-ext plan", "nnUNetv2_train 22" + ("6" if task == "gli" else "7"),
                        "nnunet-ext predict", "nnunet-ext evaluate", "nnunet-ext export-brats"], \
        f"the README's {task} workflow changed; update this test to run the new commands: {commands}"

    data = tmp_path / "data"
    data.mkdir()
    env = {**subprocess_env(), **BUDGET}
    make_downloads(task, data, tmp_path / "scratch_raw", env)
    work = tmp_path / "work"
    work.mkdir()
    for command in commands:
        argv = as_run_here(command, data)
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, \
            f"README command failed: {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        print(f"{time.perf_counter() - start:6.1f} s  {command}")

    # what the workflow promises: a prediction per validation case, BraTS scores per region, a submission
    cases = sorted(p.name for p in (data / w["val_labels"]).iterdir())
    evaluate = next(shlex.split(c) for c in commands if " evaluate " in f" {c} ")
    pred_dir = work / evaluate[evaluate.index("--pred") + 1]
    assert sorted(p.name for p in pred_dir.glob("*.nii.gz")) == cases
    eval_dir = work / evaluate[evaluate.index("-o") + 1]
    with open(eval_dir / "per_case.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["region"] for r in rows} == w["regions"]
    # each region's Dice is the one counted here on the files the workflow wrote, with the rules' label sets
    rules = RULES[evaluate[evaluate.index("--rules") + 1]]
    for row in rows:
        labels = next(region.labels for region in rules.regions if region.name == row["region"])
        reference, prediction = (np.isin(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{row['case']}.nii.gz"))),
                                         labels) for folder in (data / w["val_labels"], pred_dir))
        overlap, total = int((reference & prediction).sum()), int(reference.sum() + prediction.sum())
        assert float(row["legacy_dice"]) == pytest.approx(2 * overlap / total if total else 1.0), row

    export = next(shlex.split(c) for c in commands if "export-brats" in c)
    submission = sorted((work / export[3]).glob("*.nii.gz"))
    assert [p.name.startswith(w["submission"]) for p in submission] == [True] * len(cases)
    source = sorted((data / w["val"]).rglob("*.nii.gz"))[0]
    written, original = sitk.ReadImage(str(submission[0])), sitk.ReadImage(str(source))
    assert written.GetSize() == original.GetSize()
    assert written.GetOrigin() == pytest.approx(original.GetOrigin(), abs=1e-4)
