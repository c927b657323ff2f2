"""End to end through the real CLIs: `nnunet-ext plan`, then `nnUNetv2_train ... -tr SliceResTrainer -device cpu`.

Tiny data and a shrunken network (set through the plans' `sliceres` block with --set) keep each run short;
the budget variables cap epochs and iterations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnunet_ext.discovery import environment_with_trainers
from nnunet_ext.training.budget import ENV_EPOCHS, ENV_ITERATIONS, ENV_TIME_LIMIT, ENV_VAL_ITERATIONS, Budget
from nnunet_ext.training.one_cycle import OneCycleSchedule
from tests.synthetic import make_raw_dataset

SMALL = ["--set", "crop_size=[32,32]", "--set", "batch_size=8", "--set", "epoch.mode=iterations",
         "--set", "network.kwargs.widths=[8,16,32,64]", "--set", "network.kwargs.blocks_down=[1,1,1,1]"]


def _env(root: Path, **budget: str) -> dict[str, str]:
    env = environment_with_trainers()
    env.update({"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "pre"),
                "nnUNet_results": str(root / "res"), "nnUNet_n_proc_DA": "1", "nnUNet_def_n_proc": "1",
                "nnUNet_compile": "f", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    for key in (ENV_EPOCHS, ENV_ITERATIONS, ENV_VAL_ITERATIONS, ENV_TIME_LIMIT):
        env.pop(key, None)
    env.update({f"NNUNET_EXT_{k.upper()}": str(v) for k, v in budget.items()})
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _plan(root: Path, dataset_id: int, **make_kwargs) -> None:
    for sub in ("raw", "pre", "res"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    make_raw_dataset(root / "raw", dataset_id, n_cases=5, shape=(12, 24, 24), **make_kwargs)
    _run([sys.executable, "-m", "nnunet_ext.cli", "plan", "-d", str(dataset_id), "-c", "2d", "-np", "1", *SMALL],
         _env(root))


def _train(root: Path, dataset_id: int, fold: int, trainer: str = "SliceResTrainer", *extra: str, **budget: str):
    return _run(["nnUNetv2_train", str(dataset_id), "2d", str(fold), "-tr", trainer, "-device", "cpu", *extra],
                _env(root, **budget))


def _model(root: Path, name: str, trainer: str = "SliceResTrainer") -> Path:
    return root / "res" / name / f"{trainer}__nnUNetPlans__2d"


def _logging(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["logging"]


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sliceres_e2e")
    _plan(root, 521, name="Tiny", n_modalities=2, n_labels=2)
    return root


@pytest.mark.e2e
def test_sliceres_trains_validates_resumes_and_honours_time_limit(planned):
    _train(planned, 521, 0, epochs=3, iterations=6, val_iterations=1)
    model = _model(planned, "Dataset521_Tiny")
    final = model / "fold_0" / "checkpoint_final.pth"
    assert final.is_file() and (model / "fold_0" / "validation" / "summary.json").is_file()
    log = _logging(final)
    losses = log["train_losses"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert log["lrs"][0] == pytest.approx(4e-5)  # one-cycle warm-up starts at 4e-5

    plans = json.loads((model / "plans.json").read_text())["configurations"]["2d"]
    block = plans["sliceres"]
    assert plans["patch_size"] == [block["inference_window_depth"], 32, 32]
    assert plans["architecture"]["network_class_name"] == "nnunet_ext.network.sliceres_net.SliceResNet"
    assert plans["architecture"]["arch_kwargs"]["neighbours"] == 2 and plans["batch_size"] == 8
    checkpoint = torch.load(final, map_location="cpu", weights_only=False)
    assert tuple(checkpoint["inference_allowed_mirroring_axes"]) == (1, 2)
    debug = json.loads((model / "fold_0" / "debug.json").read_text())
    assert "FocalDiceLoss(use_sigmoid=False" in debug["loss"]

    # --c resumes from checkpoint_final; the time limit (reached at once) stops after one more epoch of 50
    result = _train(planned, 521, 0, "SliceResTrainer", "--c", epochs=50, iterations=6, val_iterations=1,
                    time_limit_min="0.0001")
    resumed = _logging(final)["train_losses"]
    assert len(resumed) == 4 and resumed[:3] == pytest.approx(losses)
    assert "time limit" in result.stdout.lower()
    assert (model / "fold_0" / "validation" / "summary.json").is_file()


@pytest.mark.e2e
def test_stock_budget_trainer_still_trains_2d_on_the_same_plans(planned):
    _train(planned, 521, 0, "nnUNetTrainerBudget", epochs=1, iterations=2, val_iterations=1)
    model = _model(planned, "Dataset521_Tiny", "nnUNetTrainerBudget")
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    assert len(_logging(model / "fold_0" / "checkpoint_final.pth")["train_losses"]) == 1
    plans = json.loads((model / "plans.json").read_text())["configurations"]["2d"]
    assert len(plans["patch_size"]) == 2 and "PlainConvUNet" in plans["architecture"]["network_class_name"]


@pytest.mark.e2e
def test_region_based_dataset_trains_with_sigmoid(tmp_path):
    _plan(tmp_path, 522, name="Regions", n_modalities=1, n_labels=2, regions=True)
    _train(tmp_path, 522, 0, epochs=1, iterations=1, val_iterations=1)
    fold = _model(tmp_path, "Dataset522_Regions") / "fold_0"
    assert "FocalDiceLoss(use_sigmoid=True" in json.loads((fold / "debug.json").read_text())["loss"]
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"(1, 2)", "(2,)"}  # Dice per region, as nnU-Net evaluates regions


def test_budget_reads_environment_and_names_bad_values(monkeypatch):
    monkeypatch.setenv(ENV_EPOCHS, "3")
    monkeypatch.setenv(ENV_TIME_LIMIT, "1.5")
    monkeypatch.delenv(ENV_ITERATIONS, raising=False)
    monkeypatch.delenv(ENV_VAL_ITERATIONS, raising=False)
    assert Budget.from_env() == Budget(epochs=3, time_limit_min=1.5)
    monkeypatch.setenv(ENV_EPOCHS, "many")
    with pytest.raises(ValueError, match="NNUNET_EXT_EPOCHS='many'"):
        Budget.from_env()
    monkeypatch.setenv(ENV_EPOCHS, "0")
    with pytest.raises(ValueError, match="must be >= 1"):
        Budget.from_env()


def test_one_cycle_warms_up_then_anneals():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    schedule = OneCycleSchedule(optimizer, num_epochs=10, iterations_per_epoch=100)
    lrs = [schedule.lr(step) for step in range(1000)]
    assert lrs[0] == pytest.approx(4e-5) and lrs[100] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-8)
    assert all(a < b for a, b in zip(lrs[:100], lrs[1:101]))
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))
    schedule.step_iteration(epoch=3, iteration=7)  # stateless: any step can be set directly (resume)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lrs[307])
