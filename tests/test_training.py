"""End to end through the real CLIs: `nnunet-ext plan`, then `nnUNetv2_train ... -tr SliceResTrainer -device cpu`.

Tiny data and a shrunken network (set through the plans' `sliceres` block with --set) keep each run short;
the budget variables cap epochs and iterations.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnunet_ext.discovery import environment_with_trainers
from nnunet_ext.training.budget import ENV_NAMES, Budget, read_record
from nnunet_ext.training.budget_mixin import VAL_PER_TRAIN_ITERATION, planned_epochs, rank0_decides
from nnunet_ext.training.one_cycle import OneCycleSchedule
from tests.helpers.synthetic import make_raw_dataset

SMALL = ["--set", "crop_size=[32,32]", "--set", "batch_size=8", "--set", "epoch.mode=iterations",
         "--set", "network.kwargs.widths=[8,16,32,64]", "--set", "network.kwargs.blocks_down=[1,1,1,1]"]


def _env(root: Path, **budget: float) -> dict[str, str]:
    env = environment_with_trainers()
    env.update({"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "pre"),
                "nnUNet_results": str(root / "res"), "nnUNet_n_proc_DA": "1", "nnUNet_def_n_proc": "1",
                "nnUNet_compile": "f", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    for name in ENV_NAMES.values():
        env.pop(name, None)
    env.update(Budget(**budget).to_env())
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


def _train(root: Path, dataset_id: int, fold: int, trainer: str = "SliceResTrainer", *extra: str, **budget: float):
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
                    minutes=0.0001)
    resumed = _logging(final)["train_losses"]
    assert len(resumed) == 4 and resumed[:3] == pytest.approx(losses)
    assert "time limit" in result.stdout.lower()
    assert (model / "fold_0" / "validation" / "summary.json").is_file()
    record = read_record(model / "fold_0")  # the resumed run adds to the first run's accounting
    assert record["runs"] == 2 and record["epochs_trained"] == 4 and record["stopped_by_time_limit"]
    assert record["examples_seen"] == 4 * 6 * plans["batch_size"]
    assert record["budget"] == Budget(epochs=50, iterations=6, val_iterations=1, minutes=0.0001).as_dict()


@pytest.mark.e2e
def test_time_limited_run_spends_most_of_its_wall_clock_in_train_steps(planned):
    """The issue's SliceRes run spent half its clock outside train steps and stopped mid-schedule: now the
    epochs are planned from whole epochs, validation is capped and the plot throttled."""
    _train(planned, 521, 1, iterations=4, minutes=0.25)  # validation iterations: the plans' own, capped
    fold = _model(planned, "Dataset521_Tiny") / "fold_1"
    record = read_record(fold)
    plans = json.loads((fold.parent / "plans.json").read_text())["configurations"]["2d"]
    assert record["train_step_share"] > 0.5, record
    parts = sum(record[f"{part}_seconds"] for part in ("startup", "train_loop", "validation", "epoch_end"))
    assert 0.95 * record["wall_seconds"] <= parts <= record["wall_seconds"]  # every second is in a bucket
    assert record["effective"]["val_iterations_per_epoch"] == math.ceil(VAL_PER_TRAIN_ITERATION * 4) < \
        plans["sliceres"]["epoch"]["val_iterations_per_epoch"]
    assert record["examples_seen"] == record["epochs_trained"] * 4 * plans["batch_size"]
    assert record["stopped_by_time_limit"] and record["epochs_trained"] == record["effective"]["epochs"]
    assert "Budget spent:" in (next(fold.glob("training_log_*.txt"))).read_text()


@pytest.mark.e2e
def test_stock_budget_trainer_still_trains_2d_on_the_same_plans(planned):
    _train(planned, 521, 0, "nnUNetTrainerBudget", epochs=1, iterations=2, val_iterations=1)
    model = _model(planned, "Dataset521_Tiny", "nnUNetTrainerBudget")
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    assert len(_logging(model / "fold_0" / "checkpoint_final.pth")["train_losses"]) == 1
    plans = json.loads((model / "plans.json").read_text())["configurations"]["2d"]
    assert len(plans["patch_size"]) == 2 and "PlainConvUNet" in plans["architecture"]["network_class_name"]
    record = read_record(model / "fold_0")  # the same accounting as SliceRes
    assert record["examples_seen"] == 1 * 2 * plans["batch_size"] and record["epochs_trained"] == 1
    assert 0 < record["train_step_seconds"] < record["wall_seconds"] and not record["stopped_by_time_limit"]


@pytest.mark.e2e
def test_region_based_dataset_trains_with_sigmoid(tmp_path):
    _plan(tmp_path, 522, name="Regions", n_modalities=1, n_labels=2, regions=True)
    _train(tmp_path, 522, 0, epochs=1, iterations=1, val_iterations=1)
    fold = _model(tmp_path, "Dataset522_Regions") / "fold_0"
    assert "FocalDiceLoss(use_sigmoid=True" in json.loads((fold / "debug.json").read_text())["loss"]
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"(1, 2)", "(2,)"}  # Dice per region, as nnU-Net evaluates regions


def test_budget_reads_environment_and_names_bad_values(monkeypatch):
    for name in ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ENV_NAMES["epochs"], "3")
    monkeypatch.setenv(ENV_NAMES["minutes"], "1.5")
    assert Budget.from_env() == Budget(epochs=3, minutes=1.5)
    monkeypatch.setenv(ENV_NAMES["epochs"], "many")
    with pytest.raises(ValueError, match="NNUNET_EXT_EPOCHS='many'"):
        Budget.from_env()
    monkeypatch.setenv(ENV_NAMES["epochs"], "0")
    with pytest.raises(ValueError, match="must be >= 1"):
        Budget.from_env()
    with pytest.raises(ValueError, match="NNUNET_EXT_TIME_LIMIT_MIN='-1'"):
        Budget.from_env({ENV_NAMES["minutes"]: "-1"})
    full = Budget(epochs=4, iterations=5, val_iterations=2, minutes=0.25)  # the writer and the readers agree
    assert Budget.from_env(full.to_env()) == full and Budget.from_env({}) == Budget()


def test_planned_epochs_count_whole_epochs_and_stop_when_the_next_would_not_fit():
    # 30 s left, epochs of 10 s (the first, with its start-up, is not typical): 3 more
    assert planned_epochs(done=2, configured=100, elapsed=30.0, limit=60.0, epoch_seconds=[20.0, 10.0]) == 5
    assert planned_epochs(done=2, configured=100, elapsed=55.0, limit=60.0, epoch_seconds=[20.0, 10.0]) == 2
    assert planned_epochs(done=1, configured=100, elapsed=70.0, limit=60.0, epoch_seconds=[20.0]) == 1
    assert planned_epochs(done=1, configured=100, elapsed=20.0, limit=60.0, epoch_seconds=[20.0]) == 3
    assert planned_epochs(done=2, configured=4, elapsed=30.0, limit=600.0, epoch_seconds=[20.0, 10.0]) == 4


def _lr_gap_to_ideal_schedule(counted_seconds: float) -> tuple[int, float]:
    """Simulated time-limited run: 2 s start-up, epochs of 10 s (6 s of train steps, 4 s of validation,
    checkpoint and plot), 100 s limit, re-planned after every epoch from ``counted_seconds`` per epoch.
    Returns the epochs trained and the largest gap (relative to the peak rate) between the learning rate each
    epoch started with and the one-cycle schedule fitted to exactly those epochs."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    schedule = OneCycleSchedule(optimizer, num_epochs=1000, iterations_per_epoch=10)
    elapsed, done, planned, used = 2.0, 0, 1000, []
    while done < planned:
        used.append(schedule.step_iteration(done, 0))
        elapsed, done = elapsed + 10.0, done + 1
        planned = planned_epochs(done, 1000, elapsed, 100.0, [counted_seconds] * done)
        schedule.num_epochs = planned
    ideal = OneCycleSchedule(optimizer, num_epochs=done, iterations_per_epoch=10)
    return done, max(abs(lr - ideal.lr(10 * epoch)) for epoch, lr in enumerate(used)) / ideal.max_lr


def test_planning_from_whole_epochs_follows_the_one_cycle_schedule():
    epochs, gap = _lr_gap_to_ideal_schedule(counted_seconds=10.0)  # whole epochs, as the trainers measure them
    assert epochs == 9 and gap < 1e-9  # 9 x 10 s fit in 100 - 2 s, on the schedule of 9 epochs throughout
    epochs, gap = _lr_gap_to_ideal_schedule(counted_seconds=6.0)  # train time only: plans too many epochs
    assert 2.0 + 10.0 * epochs > 100.0 and gap > 0.2  # overruns the limit, far off the schedule on the way


def _decide_on_rank(rank: int, init_file: str, decisions) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:  # each rank proposes its own value (its own clock); all must take rank 0's
        decisions.put((rank, rank0_decides(10 + rank, is_ddp=True, device=torch.device("cpu"))))
    finally:
        torch.distributed.destroy_process_group()


def test_rank0_stop_decision_is_broadcast_to_every_rank(tmp_path):
    assert rank0_decides(7, is_ddp=False, device=torch.device("cpu")) == 7
    context = multiprocessing.get_context("fork")  # no re-import of torch in the children: about a second
    decisions = context.Queue()
    ranks = [context.Process(target=_decide_on_rank, args=(rank, str(tmp_path / "init"), decisions))
             for rank in range(2)]
    for process in ranks:
        process.start()
    results = dict(decisions.get(timeout=60) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
    assert results == {0: 10, 1: 10} and all(process.exitcode == 0 for process in ranks)


def test_one_cycle_warms_up_then_anneals():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    schedule = OneCycleSchedule(optimizer, num_epochs=10, iterations_per_epoch=100)
    lrs = [schedule.lr(step) for step in range(1000)]
    assert lrs[0] == pytest.approx(4e-5) and lrs[100] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-8)
    assert all(a < b for a, b in zip(lrs[:100], lrs[1:101]))
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))
    schedule.step_iteration(epoch=3, iteration=7)  # stateless: any step can be set directly (resume)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lrs[307])
