"""``nnunet-ext demo``: the whole pipeline on synthetic data at the tiny ``--quick`` size (e2e, with the time cap
triggered on purpose), its guards, and the progress and time-cap messages read from a trainer's budget record."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from nnunet_ext.compare.demo import PROFILES, demo_environment
from nnunet_ext.compare.demo_timing import TIME_CAP_WARNING, TrainingProgress, time_cap_verdict
from nnunet_ext.training.budget import RECORD_NAME
from tests.helpers.environment import subprocess_env


def write_record(fold: Path, trained: int, planned: int, configured: int, wall: float, stopped: bool) -> None:
    """A budget record with the keys the trainer writes after every epoch (``BudgetMixin``)."""
    fold.mkdir(parents=True, exist_ok=True)
    (fold / RECORD_NAME).write_text(json.dumps({
        "budget": {"epochs": configured, "iterations": 25, "val_iterations": 2, "minutes": 20.0},
        "effective": {"epochs": planned, "configured_epochs": configured}, "epochs_trained": trained,
        "stopped_by_time_limit": stopped, "wall_seconds": wall}))


def test_progress_and_time_cap_verdict_follow_the_budget_record(tmp_path):
    fold, stream = tmp_path / "fold_0", io.StringIO()
    progress = TrainingProgress(fold, epochs=40, iterations=25, gap=3600, stream=stream)
    assert progress.check() is None  # nothing trained yet
    write_record(fold, trained=10, planned=40, configured=40, wall=60.0, stopped=False)
    assert progress.check() == "[demo] training: epoch 10/40 (250/1000 iterations), 1.0 min so far, about 3.0 min left"
    write_record(fold, trained=11, planned=40, configured=40, wall=66.0, stopped=False)
    assert progress.check() is None  # within the gap between lines
    write_record(fold, trained=12, planned=12, configured=40, wall=1200.0, stopped=True)
    assert progress.check().endswith("done -- the time cap cut the plan to 12 epochs")  # the last line always
    assert stream.getvalue().count("[demo] training:") == 2
    verdict = time_cap_verdict(fold)
    assert (verdict.stopped, verdict.epochs, verdict.of) == (True, 12, 40)
    assert TIME_CAP_WARNING in verdict.lines()[0] and "12 of 40 epochs before the 20-minute cap" in verdict.lines()[1]
    write_record(fold, trained=40, planned=40, configured=40, wall=240.0, stopped=False)
    assert time_cap_verdict(fold).lines() == []


def test_demo_environment_stays_inside_out(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", "/users/own/raw")
    env = demo_environment(tmp_path, "cpu")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        assert Path(env[name]).parent == tmp_path
    assert "trainer_discovery" in env["nnUNet_extTrainer"] and env["nnUNet_compile"] == "f"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_demo_rejects_too_few_cases(tmp_path):
    done = subprocess.run(["nnunet-ext", "demo", "--cases", "4", "--out", str(tmp_path / "d")],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "--cases must be at least 10" in done.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.e2e
def test_demo_quick_end_to_end_with_the_time_cap_triggered(nnunet_dirs, tmp_path):
    """Two epochs budgeted, a 0.6-second cap: one epoch is trained and the output and report say so loudly."""
    out = tmp_path / "demo"
    done = subprocess.run(["nnunet-ext", "demo", "--quick", "--out", str(out), "--device", "cpu", "-np", "1",
                           "--quiet", "--budget-epochs", "2", "--budget-minutes", "0.01"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    quick = PROFILES["quick"]
    assert f"[demo] budget: 2 epochs x {quick.iterations} iterations = {2 * quick.iterations} training " \
           "iterations, seed 0; safety cap 0.01 min of training" in done.stdout
    assert "[demo] estimated time: about" in done.stdout
    assert f"[demo] training: epoch 1/2 ({quick.iterations}/{2 * quick.iterations} iterations)" in done.stdout
    assert done.stdout.count(f"WARNING: {TIME_CAP_WARNING}") == 2  # above and below the Dice table
    assert f"WARNING: {TIME_CAP_WARNING} (sliceres trained 1 of 2 epochs)." in (out / "report.md").read_text()
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
