"""Training budget from environment variables, for tests, the demo and like-for-like comparisons.

Honoured by ``SliceResTrainer`` and by ``nnUNetTrainerBudget`` (stock nnU-Net under the same budget):

    NNUNET_EXT_EPOCHS           number of epochs
    NNUNET_EXT_ITERATIONS       training iterations per epoch
    NNUNET_EXT_VAL_ITERATIONS   validation iterations per epoch
    NNUNET_EXT_TIME_LIMIT_MIN   wall-clock limit in minutes for the training loop of this run

With a time limit, the planned number of epochs is re-estimated after every epoch from the last epoch's
duration (so learning-rate schedules still finish annealing inside the limit), and training stops after the
epoch in which the limit is reached; then the final checkpoint and nnU-Net's validation follow as usual
(they are not counted against the limit).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from time import time

ENV_EPOCHS = "NNUNET_EXT_EPOCHS"
ENV_ITERATIONS = "NNUNET_EXT_ITERATIONS"
ENV_VAL_ITERATIONS = "NNUNET_EXT_VAL_ITERATIONS"
ENV_TIME_LIMIT = "NNUNET_EXT_TIME_LIMIT_MIN"


def _read(name: str, kind: type, minimum: float) -> int | float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None
    if value < minimum or (kind is float and not math.isfinite(value)):
        raise ValueError(f"environment variable {name}={raw!r} must be >= {minimum}")
    return value


@dataclass(frozen=True)
class Budget:
    """Overrides from the environment; ``None`` means "keep the trainer's own value"."""

    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    time_limit_min: float | None = None

    @classmethod
    def from_env(cls) -> Budget:
        return cls(_read(ENV_EPOCHS, int, 1), _read(ENV_ITERATIONS, int, 1), _read(ENV_VAL_ITERATIONS, int, 1),
                   _read(ENV_TIME_LIMIT, float, 0.0))

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in (
            (ENV_EPOCHS, self.epochs), (ENV_ITERATIONS, self.iterations),
            (ENV_VAL_ITERATIONS, self.val_iterations), (ENV_TIME_LIMIT, self.time_limit_min)) if value is not None]
        return ", ".join(parts) if parts else "none (trainer defaults)"


class BudgetReached(Exception):
    """Raised after the epoch in which the time limit was reached, to leave nnU-Net's epoch loop early."""


class BudgetMixin:
    """Applies a :class:`Budget` to an ``nnUNetTrainer`` subclass (put it first in the bases).

    Call :meth:`apply_budget` at the end of ``__init__``, after the trainer has set its own epochs and
    iterations. Subclasses whose learning-rate schedule depends on the epoch count react in
    :meth:`on_planned_epochs_changed`.
    """

    budget: Budget
    _budget_start: float | None = None
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

    def log_budget(self) -> None:
        self.print_to_log_file(f"Budget: {self.budget.describe()}; effective: {self.num_epochs} epochs x "
                               f"{self.num_iterations_per_epoch} iterations, {self.num_val_iterations_per_epoch} "
                               f"validation iterations per epoch")

    def on_planned_epochs_changed(self) -> None:
        """Hook: ``self.num_epochs`` was re-estimated under the time limit."""

    def on_train_start(self) -> None:
        super().on_train_start()
        self.log_budget()
        self._budget_start = time()

    def on_epoch_end(self) -> None:
        super().on_epoch_end()  # increments current_epoch
        limit = self.budget.time_limit_min
        if limit is None:
            return
        elapsed = time() - self._budget_start
        remaining = 60.0 * limit - elapsed
        if remaining <= 0:
            planned = self.current_epoch
        else:
            last = self.logger.get_value("epoch_end_timestamps", -1) - self.logger.get_value("epoch_start_timestamps",
                                                                                          -1)
            planned = self.current_epoch + max(1, int(remaining // max(last, 1e-6)))
        planned = min(self._configured_epochs, planned)
        if planned != self.num_epochs:
            self.num_epochs = planned
            self.print_to_log_file(f"Time limit {limit} min: {elapsed / 60:.2f} min used, training now planned for "
                                   f"{self.num_epochs} epochs")
            self.on_planned_epochs_changed()
        if self.current_epoch >= self.num_epochs and self.num_epochs < self._configured_epochs:
            raise BudgetReached

    def run_training(self) -> None:
        try:
            super().run_training()
        except BudgetReached:
            self.print_to_log_file(f"Stopping after epoch {self.current_epoch - 1}: time limit reached")
            self.on_train_end()
