"""``nnunet-ext compare``: step cache semantics, the probe, held-out staging, and the whole comparison end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nnunet_ext.compare.heldout import dataset_cases, ensure_splits, held_out, stage_cases
from nnunet_ext.compare.manifest import StepCache
from nnunet_ext.compare.methods import select
from nnunet_ext.compare.process import StepFailed, probe_command, run_logged
from nnunet_ext.reporting.tables import read_per_case
from nnunet_ext.training.budget import Budget
from tests.helpers.environment import subprocess_env
from tests.helpers.synthetic import make_raw_dataset


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_step_cache_runs_once_and_reruns_on_change(tmp_path):
    calls = []

    def work(resume: bool) -> dict:
        calls.append(resume)
        touch(tmp_path / "a.txt")
        return {"n": len(calls)}

    cache = StepCache(tmp_path / "manifest.json")
    first = cache.run("s", {"p": 1}, [tmp_path / "a.txt"], work)
    again = StepCache(tmp_path / "manifest.json").run("s", {"p": 1}, [tmp_path / "a.txt"], work)
    assert calls == [False] and again["token"] == first["token"] and again["result"] == {"n": 1}
    StepCache(tmp_path / "manifest.json").run("s", {"p": 2}, [tmp_path / "a.txt"], work)  # new params
    assert len(calls) == 2
    (tmp_path / "a.txt").unlink()  # output gone: not done any more
    cache = StepCache(tmp_path / "manifest.json")
    assert not cache.is_done("s", {"p": 2})
    cache.run("s", {"p": 2}, [tmp_path / "a.txt"], work)
    assert len(calls) == 3


def test_step_cache_interrupted_step_resumes_and_missing_outputs_fail(tmp_path):
    def interrupted(resume: bool) -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StepCache(tmp_path / "manifest.json").run("train", {"e": 1}, [], interrupted)
    seen = []
    StepCache(tmp_path / "manifest.json").run("train", {"e": 1}, [], lambda resume: seen.append(resume))
    assert seen == [True]  # same parameters: continue the interrupted attempt
    with pytest.raises(KeyboardInterrupt):
        StepCache(tmp_path / "manifest.json").run("other", {"e": 1}, [], interrupted)
    StepCache(tmp_path / "manifest.json").run("other", {"e": 2}, [], lambda resume: seen.append(resume))
    assert seen == [True, False]  # parameters changed: start over

    cache = StepCache(tmp_path / "manifest.json")
    with pytest.raises(RuntimeError, match="without producing .*never.txt"):
        cache.run("lazy", {}, [tmp_path / "never.txt"], lambda resume: None)
    assert cache.record("lazy") is None and StepCache(tmp_path / "manifest.json").record("lazy") is None


def test_step_cache_rejects_corrupt_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json"):
        StepCache(tmp_path / "manifest.json")


def test_probe_records_successful_entry_points_only(tmp_path):
    record = tmp_path / "rec.json"
    start = time.perf_counter()
    run_logged(probe_command(record, "nnunet_ext.cli:main", ["env"]), dict(os.environ),
               tmp_path / "log.txt", echo=False)
    outside = time.perf_counter() - start
    data = json.loads(record.read_text())
    assert data["argv"] == ["env"] and data["peak_gpu_allocated_bytes"] is None
    assert 0 < data["wall_seconds"] < outside  # the entry point's own seconds: inside the child's start and exit
    assert "nnUNet_extTrainer" in (tmp_path / "log.txt").read_text()
    bad = tmp_path / "bad.json"
    with pytest.raises(StepFailed, match="exit code 2(.|\n)*log.txt"):
        run_logged(probe_command(bad, "nnunet_ext.cli:main", ["no-such-command"]), dict(os.environ),
                   tmp_path / "log.txt", echo=False)
    assert not bad.exists()


def test_budget_and_methods_validation():
    # the variable names are the documented interface (README, Training)
    assert Budget(epochs=2, iterations=3).to_env() == {"NNUNET_EXT_EPOCHS": "2", "NNUNET_EXT_ITERATIONS": "3"}
    assert Budget(minutes=1.5).to_env() == {"NNUNET_EXT_TIME_LIMIT_MIN": "1.5"}
    assert Budget(minutes=1.5).bounded() == Budget(minutes=1.5)
    with pytest.raises(ValueError, match="budget"):
        Budget().bounded()  # a comparison needs epochs or minutes
    with pytest.raises(ValueError, match="positive"):
        Budget(epochs=0)
    assert [m.name for m in select(["sliceres", "2d"], resenc=True)] == ["sliceres", "2d", "3d_fullres_resenc"]
    with pytest.raises(ValueError, match="unknown method"):
        select(["4d"], resenc=False)


def test_splits_match_nnunet_and_staging_links_held_out_cases(tmp_path):
    raw = make_raw_dataset(tmp_path / "raw", 501, "Tiny", n_cases=5, shape=(4, 8, 8))
    cases = dataset_cases(raw)
    splits = ensure_splits(tmp_path / "pp", list(cases))
    assert len(splits) == 5 and sorted(c for s in splits for c in s["val"]) == sorted(cases)
    assert json.loads((tmp_path / "pp" / "splits_final.json").read_text()) == splits
    with pytest.raises(ValueError, match="fold 7"):
        held_out(splits, 7, tmp_path / "pp" / "splits_final.json")
    val = held_out(splits, 0, tmp_path / "pp" / "splits_final.json")
    stage_cases(cases, val, ".nii.gz", tmp_path / "img", tmp_path / "lab")
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == sorted(f"{c}_{m:04d}.nii.gz" for c in val
                                                                          for m in range(2))
    assert (tmp_path / "lab" / f"{val[0]}.nii.gz").resolve() == (raw / "labelsTr" / f"{val[0]}.nii.gz").resolve()
    with pytest.raises(ValueError, match="not in the raw dataset"):
        stage_cases(cases, ["ghost"], ".nii.gz", tmp_path / "img", None)
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        dataset_cases(tmp_path)


def _compare(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["nnunet-ext", "compare", "-d", "501", "--methods", "2d", "sliceres", "--budget-epochs", "1",
           "--budget-iterations", "2", "--budget-val-iterations", "1", "--device", "cpu", "-np", "1",
           "--rules", "voxel", "--set", "crop_size=[32,32]", "--set", "batch_size=4",
           "--set", "network.kwargs.widths=[8,16,32,64]", "--quiet", "-o", str(out), *extra]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=900)


@pytest.mark.e2e
def test_compare_end_to_end_and_resume(nnunet_dirs, tmp_path):
    """Stock 2d vs SliceRes (1 and 24 views) on tiny data, then resume after losing a step: nothing redone twice."""
    make_raw_dataset(nnunet_dirs["nnUNet_raw"], 501, "Tiny", n_cases=5, shape=(8, 32, 32))
    out = tmp_path / "cmp"
    done = _compare(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    steps = manifest["steps"]
    variants = ["2d", "sliceres_1view", "sliceres_24view"]
    assert set(steps) == {"plan", "preprocess/nnUNetPlans/2d", "train/2d/fold_0", "train/sliceres/fold_0", "report",
                          *(f"predict/{v}/fold_0" for v in variants), *(f"evaluate/{v}" for v in variants)}
    assert steps["train/2d/fold_0"]["result"]["epochs"] == steps["train/sliceres/fold_0"]["result"]["epochs"] == 1
    # the user's own nnU-Net folders were not used: everything lives in the comparison folder
    assert not any(nnunet_dirs["nnUNet_preprocessed"].iterdir()) and not any(nnunet_dirs["nnUNet_results"].iterdir())
    held_out = json.loads((out / "nnUNet_preprocessed" / "Dataset501_Tiny" / "splits_final.json").read_text())[0]["val"]
    for variant in variants:
        assert sorted(p.name for p in (out / "predictions" / variant / "fold_0").glob("*.nii.gz")) == \
            [f"{c}.nii.gz" for c in held_out]
        rows = read_per_case(out / "evaluation" / variant / "per_case.csv")
        assert {r["case"] for r in rows} == set(held_out) and {r["region"] for r in rows} == {"1", "2"}
    report = (out / "report.md").read_text()
    for variant in variants:
        assert f"| 1 | {variant} |" in report and f"| {variant} | 1 |" in report  # accuracy and cost rows
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["box_legacy_dice.png", "box_legacy_hd95.png", f"overlay_{held_out[0]}.png"]
    assert all(f"figures/{name}" in report for name in figures) and "<table>" in (out / "report.html").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["cost"]["sliceres_24view"]["inference_seconds_per_case"] > 0
    for method, trainer in (("2d", "nnUNetTrainerBudget"), ("sliceres", "SliceResTrainer")):  # same accounting
        batch = json.loads((out / "nnUNet_results" / "Dataset501_Tiny" / f"{trainer}__nnUNetPlans__2d" /
                            "plans.json").read_text())["configurations"]["2d"]["batch_size"]
        cost = results["cost"][method if method == "2d" else "sliceres_1view"]
        assert cost["examples_seen_per_fold"] == 1 * 2 * batch and 0 < cost["train_step_share"] < 1
        assert steps[f"train/{method}/fold_0"]["result"]["effective_budget"]["val_iterations_per_epoch"] == 1

    # interruption: the 24-view prediction's record and files are lost; re-running redoes only what depends on it
    checkpoints = {m: (out / "nnUNet_results" / "Dataset501_Tiny" / f"{t}__nnUNetPlans__2d" / "fold_0" /
                       "checkpoint_final.pth").stat().st_mtime_ns
                   for m, t in (("2d", "nnUNetTrainerBudget"), ("sliceres", "SliceResTrainer"))}
    tokens = {name: record["token"] for name, record in steps.items()}
    del manifest["steps"]["predict/sliceres_24view/fold_0"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(out / "predictions" / "sliceres_24view" / "fold_0")
    again = _compare(out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = json.loads((out / "manifest.json").read_text())["steps"]
    redone = {name for name in after if after[name]["token"] != tokens[name]}
    assert redone == {"predict/sliceres_24view/fold_0", "evaluate/sliceres_24view", "report"}
    assert checkpoints == {m: (out / "nnUNet_results" / "Dataset501_Tiny" / f"{t}__nnUNetPlans__2d" / "fold_0" /
                               "checkpoint_final.pth").stat().st_mtime_ns
                           for m, t in (("2d", "nnUNetTrainerBudget"), ("sliceres", "SliceResTrainer"))}
    assert (out / "predictions" / "sliceres_24view" / "fold_0" / f"{held_out[0]}.nii.gz").is_file()
