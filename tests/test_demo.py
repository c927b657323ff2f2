"""``nnunet-ext demo``: the whole pipeline on synthetic data at the tiny ``--quick`` size (e2e) and its guards."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import subprocess_env

from nnunet_ext.demo import PROFILES, demo_environment


def test_demo_environment_stays_inside_out(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", "/users/own/raw")
    env = demo_environment(tmp_path, "cpu")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        assert Path(env[name]).parent == tmp_path
    assert "trainer_discovery" in env["nnUNet_extTrainer"] and env["nnUNet_compile"] == "f"


def test_demo_rejects_too_few_cases(tmp_path):
    done = subprocess.run(["nnunet-ext", "demo", "--cases", "4", "--out", str(tmp_path / "d")],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "--cases must be at least 10" in done.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.e2e
def test_demo_quick_end_to_end(nnunet_dirs, tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run(["nnunet-ext", "demo", "--quick", "--out", str(out), "--device", "cpu", "-np", "1",
                           "--quiet"], env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    quick = PROFILES["quick"]
    # the user's nnU-Net folders (exported by the fixture) were left alone
    assert all(not any(path.iterdir()) for path in nnunet_dirs.values())
    assert len(list((out / "source").iterdir())) == quick.cases
    model = out / "nnUNet_results" / "Dataset990_DemoGLI" / "SliceResTrainer__nnUNetPlans__2d" / "fold_0"
    assert (model / "checkpoint_final.pth").is_file()
    splits = json.loads((out / "nnUNet_preprocessed" / "Dataset990_DemoGLI" / "splits_final.json").read_text())
    held_out = splits[0]["val"]
    predictions = sorted(p.name for p in (out / "predictions" / "sliceres_24view" / "fold_0").glob("*.nii.gz"))
    assert predictions == sorted(f"{c}.nii.gz" for c in held_out)
    summary = json.loads((out / "evaluation" / "sliceres_24view" / "summary.json").read_text())
    assert summary["rules"] == "brats-gli-2024" and set(summary["regions"]) == {"WT", "TC", "NETC", "SNFH", "ET", "RC"}
    report = (out / "report.md").read_text()
    assert "| WT | sliceres_24view |" in report
    overlays = sorted((out / "figures").glob("overlay_*.png"))
    assert 1 <= len(overlays) <= min(3, len(held_out)) and all(f"figures/{p.name}" in report for p in overlays)
    # the closing summary tells the user the Dice reached and where everything is
    assert "WT:" in done.stdout and str(out / "report.md") in done.stdout
