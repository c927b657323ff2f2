"""How long the demo takes: an estimate before it starts, progress while it trains, the time cap's verdict.

The demo is budgeted in training iterations and seeded, so every machine trains the same network on the same
batches and should reach the same Dice; only the time differs. Hence:

* :func:`estimate` measures, before anything else runs, a few optimiser steps of the demo's own network
  (same widths, input channels, batch and crop, as many CPU threads as training gets, in a child process with
  the training's environment: :func:`measure_step`) and scales the result by ratios taken from two whole
  default demo runs on the project's 2-core box (README, The demo): the training's wall clock (a fixed part for
  start-up and nnU-Net's final validation, a part per iteration for data loading, validation and checkpoints
  besides the step itself) and the other steps' time (data, conversion, planning, preprocessing, 24-view
  prediction, evaluation, report: a fixed part and a part per voxel of synthetic data), all in units of the
  measured step. A busy machine is slower during the measurement too, so the estimate follows its state when
  the demo starts.
* :class:`TrainingProgress` prints epochs, iterations and time left while nnU-Net trains, read from the budget
  record (``fold_X/budget.json``) the trainer rewrites atomically after every epoch, so it works the same
  whether nnU-Net's own output is shown or not.
* :func:`time_cap_verdict` reads the same record after training: the wall-clock cap is only a safety net, and
  when it stopped training the numbers are not the demo's, which the output and the report must say.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from nnunet_ext.training.budget import RECORD_NAME, read_record

#: the training step's wall clock in units of the measured optimiser step: fixed (process start-up, final
#: validation) and per iteration (the step, waiting for batches, validation and checkpoints)
TRAINING_FIXED = 70.0
TRAINING_PER_ITERATION = 1.2
#: every other step of the demo, in the same units: fixed (process start-ups, nnU-Net's fingerprint) and per
#: megavoxel of synthetic data (preprocessing, the 24-view prediction of the held-out cases)
OTHER_FIXED = 140.0
OTHER_PER_MEGAVOXEL = 32.0
TIME_CAP_WARNING = "training stopped early by the time cap: the numbers below are not the demo's"


@dataclass(frozen=True)
class Estimate:
    step_seconds: float
    iterations: int
    training_seconds: float
    other_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.training_seconds + self.other_seconds

    def describe(self) -> str:
        minutes = self.total_seconds / 60
        return (f"estimated time: about {minutes:.{0 if minutes >= 10 else 1}f} min (training {self.iterations} "
                f"iterations ~{self.training_seconds / 60:.1f} min at {self.step_seconds:.2f} s per optimiser step "
                f"measured just now, everything else ~{self.other_seconds / 60:.1f} min)")


def time_training_step(num_modalities: int, num_outputs: int, plan_set: Sequence[str], depth: int, device: str,
                       steps: int = 3) -> float:
    """Median seconds of one optimiser step (forward, backward, Adam) of the network the demo will train.

    The network is built from the demo's own ``--set`` values with the planner's rules, on random input of
    the training batch's shape; the first step (allocation, warm-up) is not counted.
    """
    import torch

    from nnunet_ext.network.sliceres_net import SliceResNet
    from nnunet_ext.planning import settings

    block = settings.resolve(settings.check_overrides(settings.parse_set(plan_set), num_modalities, num_outputs),
                             num_modalities, [1.0, 1.0, 1.0], depth)
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)  # as nnU-Net's training entry point does on the CPU
    try:
        torch.manual_seed(0)
        network = SliceResNet(num_modalities, num_outputs, block["neighbours"], **block["network"]["kwargs"])
        network = network.to(device)
        optimiser = torch.optim.Adam(network.parameters())
        channels = num_modalities * (2 * block["neighbours"] + 1)
        x = torch.randn(block["batch_size"], channels, *block["crop_size"], device=device)
        y = torch.randint(0, num_outputs, (block["batch_size"], *block["crop_size"]), device=device)
        seconds = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(network(x), y).backward()
            optimiser.step()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return sorted(seconds[1:])[len(seconds[1:]) // 2]


def measure_step(env: Mapping[str, str], **kwargs: object) -> float:
    """:func:`time_training_step` in a child process with ``env``, the environment training will get.

    A child because OpenMP reads its settings (the demo's ``OMP_WAIT_POLICY``) once, when torch is loaded.
    """
    done = subprocess.run([sys.executable, "-m", __name__, json.dumps(kwargs)], env=dict(env), capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def estimate(step_seconds: float, iterations: int, megavoxels: float) -> Estimate:
    """The demo's time from one measured optimiser step, the iteration budget and the data's size."""
    return Estimate(step_seconds, iterations, (TRAINING_FIXED + TRAINING_PER_ITERATION * iterations) * step_seconds,
                    (OTHER_FIXED + OTHER_PER_MEGAVOXEL * megavoxels) * step_seconds)


class TrainingProgress:
    """Prints a progress line whenever the trainer finishes an epoch (at most every ``gap`` seconds, and the
    last one always), from ``fold_dir/budget.json``; use as a context manager around training."""

    def __init__(self, fold_dir: Path, epochs: int, iterations: int, gap: float = 30.0, poll: float = 1.0,
                 stream: TextIO = sys.stdout):
        self.record = Path(fold_dir) / RECORD_NAME
        self.epochs, self.iterations, self.gap, self.poll, self.stream = epochs, iterations, gap, poll, stream
        self._earlier = self._stamp()  # the record as an earlier run left it (cached or resumed training)
        self._seen, self._printed = 0, -math.inf
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="demo-progress", daemon=True)

    def _stamp(self) -> int | None:
        try:
            return self.record.stat().st_mtime_ns
        except OSError:
            return None

    def __enter__(self) -> TrainingProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.check(final=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            self.check()

    def check(self, final: bool = False) -> str | None:
        """Print (and return) a progress line if an epoch finished since the last one; else None."""
        stamp = self._stamp()
        if stamp is None or stamp == self._earlier:
            return None
        try:
            record = json.loads(self.record.read_text())
        except (OSError, json.JSONDecodeError):  # not written yet, or removed by a fresh start
            return None
        done, planned = int(record["epochs_trained"]), int(record["effective"]["epochs"])
        last = done >= planned
        if done <= self._seen or not (last or final or time.monotonic() - self._printed >= self.gap):
            return None
        self._seen, self._printed = done, time.monotonic()
        wall = float(record["wall_seconds"])
        left = wall / max(done, 1) * (planned - done)
        line = (f"[demo] training: epoch {done}/{self.epochs} ({done * self.iterations}/"
                f"{self.epochs * self.iterations} iterations), {wall / 60:.1f} min so far, "
                f"{'done' if last else f'about {left / 60:.1f} min left'}")
        if planned < self.epochs:
            line += f" -- the time cap cut the plan to {planned} epochs"
        print(line, file=self.stream, flush=True)
        return line


@dataclass(frozen=True)
class TimeCapVerdict:
    stopped: bool
    epochs: int
    of: int
    minutes: float | None

    def lines(self) -> list[str]:
        """The loud warning (empty when the budget was trained in full)."""
        if not self.stopped:
            return []
        return [f"!!! WARNING: {TIME_CAP_WARNING} !!!",
                f"!!! trained {self.epochs} of {self.of} epochs before the {self.minutes:g}-minute cap (this machine "
                f"is slower or busier than the demo assumes); re-run with a larger --budget-minutes !!!"]


def time_cap_verdict(fold_dir: Path) -> TimeCapVerdict:
    """Whether the wall-clock cap stopped the training in ``fold_dir`` before its epoch budget was done."""
    record = read_record(fold_dir)
    return TimeCapVerdict(bool(record["stopped_by_time_limit"]), int(record["epochs_trained"]),
                          int(record["effective"]["configured_epochs"]), record["budget"]["minutes"])


if __name__ == "__main__":  # measure_step's child: the keyword arguments of time_training_step as JSON
    print(time_training_step(**json.loads(sys.argv[1])))
