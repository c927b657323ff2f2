"""How a trainer spends its :class:`~nnunet_ext.training.budget.Budget`: one accounting for ``SliceResTrainer``
and stock nnU-Net's ``nnUNetTrainerBudget``, so "the same wall clock" means the same thing for every method.

The time limit counts the whole wall clock of training one fold: from ``on_train_start`` (network, data
loaders and their workers) through every epoch's training, validation and epoch-end work (checkpoints,
progress plot), summed over ``--c`` resumptions. Not counted: the final checkpoint and nnU-Net's
end-of-training validation after the last epoch. Under a time limit:

- after every epoch the number of epochs is re-planned from the mean wall-clock duration of a whole epoch
  (validation and epoch-end work included), so the learning-rate schedule has annealed when the clock runs
  out; training stops when one more epoch would not fit;
- validation iterations are capped at nnU-Net's own ratio to training iterations (unless the budget sets
  them), so a method with short epochs does not spend as long validating as training;
- nnU-Net's progress plot (about a second per epoch) is redrawn only while plotting stays under
  ``PLOT_SHARE`` of the wall clock, and once more at the end.

What was spent goes to the training log and, atomically after every epoch, to ``fold_X/budget.json``: wall
clock, the sum of ``train_step`` durations (optimiser steps: forward, backward, update), waiting for batches,
validation, epoch-end work, start-up, and the training examples seen (slices or patches). Under
``-num_gpus`` rank 0 takes the stop decision and broadcasts it: ranks deciding on their own clocks could
stop at different epochs and hang DDP.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from statistics import fmean
from time import perf_counter
from typing import Any

import torch
import torch.distributed as dist

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.training.budget import RECORD_NAME, Budget

#: nnU-Net's default ratio of validation to training iterations per epoch (50 to 250)
VAL_PER_TRAIN_ITERATION = 50 / 250
#: largest share of the wall clock the progress plot may take under a time limit
PLOT_SHARE = 0.02


def planned_epochs(done: int, configured: int, elapsed: float, limit: float, epoch_seconds: Sequence[float]) -> int:
    """Epochs to train in total: the ``done`` ones plus as many more as fit in ``limit - elapsed`` seconds.

    An epoch is expected to last the mean of ``epoch_seconds`` (whole epochs of this run, epoch-end work
    included), without the first when there are others: it carries worker start-up and warm-up. Never more
    than ``configured``; ``done`` when not one more epoch fits.
    """
    typical = fmean(epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds)
    fits = max(0, math.floor((limit - elapsed) / max(typical, 1e-9)))
    return min(configured, done + fits)


def rank0_decides(value: int, is_ddp: bool, device: torch.device) -> int:
    """``value`` as rank 0 computed it, on every rank (a broadcast under DDP, else ``value`` itself)."""
    if not is_ddp:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


@dataclass
class Spent:
    """Seconds and examples one fold's training spent, summed over its runs (``--c`` resumptions)."""

    wall_seconds: float = 0.0
    startup_seconds: float = 0.0
    train_step_seconds: float = 0.0
    train_loop_seconds: float = 0.0  # train steps + waiting for batches
    validation_seconds: float = 0.0
    epoch_end_seconds: float = 0.0
    examples_seen: int = 0
    runs: int = 0

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Spent:
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def share(self, seconds: float) -> float:
        return seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def describe(self) -> str:
        parts = [("train steps", self.train_step_seconds),
                 ("waiting for batches", self.train_loop_seconds - self.train_step_seconds),
                 ("validation", self.validation_seconds), ("epoch end (checkpoints, plot)", self.epoch_end_seconds),
                 ("start-up", self.startup_seconds)]
        shares = ", ".join(f"{name} {s:.1f} s ({100 * self.share(s):.0f} %)" for name, s in parts)
        return f"{self.wall_seconds:.1f} s of wall clock: {shares}; {self.examples_seen} training examples seen"


class BudgetReached(Exception):
    """Raised after the last epoch that fits the time limit, to leave nnU-Net's epoch loop early."""


class BudgetMixin:
    """Applies a :class:`Budget` to an ``nnUNetTrainer`` subclass and accounts for it (put it first in the bases).

    Call :meth:`apply_budget` at the end of ``__init__``, after the trainer has set its own epochs and
    iterations, and :meth:`fit_validation_to_budget` wherever the trainer fixes its iterations per epoch late
    (before building a validation loader that depends on them). Subclasses whose learning-rate schedule
    depends on the epoch count react in :meth:`on_planned_epochs_changed`.
    """

    budget: Budget
    _configured_epochs: int = 0

    def apply_budget(self) -> None:
        self.budget = Budget.from_env()
        if self.budget.epochs is not None:
            self.num_epochs = self.budget.epochs
        if self.budget.iterations is not None:
            self.num_iterations_per_epoch = self.budget.iterations
        if self.budget.val_iterations is not None:
            self.num_val_iterations_per_epoch = self.budget.val_iterations
        self._configured_epochs = self.num_epochs
        self._spent = Spent()
        self._stopped_by_time_limit = False

    def fit_validation_to_budget(self) -> None:
        """Under a time limit, at most nnU-Net's ratio of validation to training iterations (unless budgeted)."""
        if self.budget.minutes is None or self.budget.val_iterations is not None:
            return
        cap = max(1, math.ceil(VAL_PER_TRAIN_ITERATION * self.num_iterations_per_epoch))
        if cap < self.num_val_iterations_per_epoch:
            self.print_to_log_file(f"Time limit: {cap} instead of {self.num_val_iterations_per_epoch} validation "
                                   f"iterations per epoch ({self.num_iterations_per_epoch} training iterations)")
            self.num_val_iterations_per_epoch = cap

    def on_planned_epochs_changed(self) -> None:
        """Hook: ``self.num_epochs`` was re-planned under the time limit."""

    # ------------------------------------------------------------------ nnU-Net hooks
    def on_train_start(self) -> None:
        start = perf_counter()
        super().on_train_start()
        self.fit_validation_to_budget()
        if self.current_epoch > 0 and (Path(self.output_folder) / RECORD_NAME).is_file():  # resumed with --c
            self._spent = Spent.from_record(json.loads((Path(self.output_folder) / RECORD_NAME).read_text()))
        self._spent.runs += 1
        self._run_start, self._wall_before = start, self._spent.wall_seconds
        self._epoch_seconds: list[float] = []
        if self.budget.minutes is not None:
            self._plot_seconds, self._plot_pending = 0.0, False
            self._plot_progress = self.logger.plot_progress_png
            self.logger.plot_progress_png = self._plot_within_share  # nnU-Net's on_epoch_end has no plot hook
        self.print_to_log_file(f"Budget: {self.budget.describe()}; effective: {self.num_epochs} epochs x "
                               f"{self.num_iterations_per_epoch} iterations, {self.num_val_iterations_per_epoch} "
                               f"validation iterations per epoch")
        self._mark = perf_counter()
        self._spent.startup_seconds += self._mark - start

    def on_epoch_start(self) -> None:
        self._epoch_start = perf_counter()
        super().on_epoch_start()

    def train_step(self, batch: dict) -> dict:
        start = perf_counter()
        result = super().train_step(batch)  # ends by copying the loss to the CPU: GPU work is finished
        self._spent.train_step_seconds += perf_counter() - start
        # under DDP each rank holds its part of the global batch; rank 0 records the whole batch
        self._spent.examples_seen += self.configuration_manager.batch_size if self.is_ddp else len(batch["data"])
        return result

    def on_validation_epoch_start(self) -> None:
        self._validation_start = perf_counter()
        self._spent.train_loop_seconds += self._validation_start - self._epoch_start
        super().on_validation_epoch_start()

    def on_epoch_end(self) -> None:
        end_start = perf_counter()
        self._spent.validation_seconds += end_start - self._validation_start
        super().on_epoch_end()  # checkpoints, progress plot; increments current_epoch
        now = perf_counter()
        self._spent.epoch_end_seconds += now - end_start
        self._epoch_seconds.append(now - self._mark)
        self._mark = now
        self._spent.wall_seconds = self._wall_before + now - self._run_start
        if self.budget.minutes is not None:
            self._replan()
        self._write_record()
        if self._stopped_by_time_limit:
            raise BudgetReached

    def run_training(self) -> None:
        try:
            super().run_training()
        except BudgetReached:
            self.print_to_log_file(f"Stopping after epoch {self.current_epoch - 1}: time limit reached")
            self.on_train_end()

    def on_train_end(self) -> None:
        super().on_train_end()
        if self.budget.minutes is not None and self._plot_pending and self.local_rank == 0:
            self._plot_progress(self.output_folder)
        self._write_record()
        self.print_to_log_file(f"Budget spent: {self._spent.describe()}")

    # ------------------------------------------------------------------ helpers
    def _replan(self) -> None:
        limit = 60.0 * self.budget.minutes
        planned = planned_epochs(self.current_epoch, self._configured_epochs, self._spent.wall_seconds, limit,
                                 self._epoch_seconds)
        planned = rank0_decides(planned, self.is_ddp, self.device)
        if planned != self.num_epochs:
            self.num_epochs = planned
            self.print_to_log_file(f"Time limit {self.budget.minutes:g} min: {self._spent.wall_seconds / 60:.2f} "
                                   f"min used, training now planned for {self.num_epochs} epochs")
            self.on_planned_epochs_changed()
        self._stopped_by_time_limit = self.current_epoch >= self.num_epochs and self.num_epochs < \
            self._configured_epochs

    def _plot_within_share(self, output_folder: str) -> None:
        """nnU-Net's progress plot, skipped while drawing it would exceed ``PLOT_SHARE`` of this run's clock."""
        if self._plot_seconds > PLOT_SHARE * (perf_counter() - self._run_start):
            self._plot_pending = True
            return
        start = perf_counter()
        self._plot_progress(output_folder)
        self._plot_seconds += perf_counter() - start
        self._plot_pending = False

    def _write_record(self) -> None:
        if self.local_rank != 0:
            return
        spent = self._spent
        record = {
            "budget": self.budget.as_dict(),
            "effective": {"epochs": self.num_epochs, "configured_epochs": self._configured_epochs,
                          "iterations_per_epoch": self.num_iterations_per_epoch,
                          "val_iterations_per_epoch": self.num_val_iterations_per_epoch,
                          "time_limit_seconds": None if self.budget.minutes is None else 60.0 * self.budget.minutes},
            "epochs_trained": self.current_epoch,
            "stopped_by_time_limit": self._stopped_by_time_limit,
            "last_lr": self.optimizer.param_groups[0]["lr"],
            **asdict(spent),
            "train_step_share": spent.share(spent.train_step_seconds),
            "validation_share": spent.share(spent.validation_seconds),
            "epoch_end_share": spent.share(spent.epoch_end_seconds),
        }
        atomic_write_text(Path(self.output_folder) / RECORD_NAME, json.dumps(record, indent=2) + "\n")
