"""The training budget: one type for the side that chooses it (``compare``, the demo, a user's shell) and the
trainers that honour it (``SliceResTrainer``, ``nnUNetTrainerBudget``), handed over as environment variables:

    NNUNET_EXT_EPOCHS           number of epochs
    NNUNET_EXT_ITERATIONS       training iterations per epoch
    NNUNET_EXT_VAL_ITERATIONS   validation iterations per epoch
    NNUNET_EXT_TIME_LIMIT_MIN   wall-clock limit in minutes for the training of one fold

:meth:`Budget.to_env` and :meth:`Budget.from_env` are the only places that spell the variable names, so the
writer and the readers cannot drift apart. How a trainer spends a time limit is in
:mod:`nnunet_ext.training.budget_mixin`; what it spent is written to :data:`RECORD_NAME` in the fold folder.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

#: field -> environment variable
ENV_NAMES = {"epochs": "NNUNET_EXT_EPOCHS", "iterations": "NNUNET_EXT_ITERATIONS",
             "val_iterations": "NNUNET_EXT_VAL_ITERATIONS", "minutes": "NNUNET_EXT_TIME_LIMIT_MIN"}

#: the record a budgeted training writes beside nnU-Net's log in ``fold_X`` (see ``BudgetMixin``)
RECORD_NAME = "budget.json"


@dataclass(frozen=True)
class Budget:
    """Budget overrides; ``None`` keeps the trainer's own value (all ``None``: train as configured)."""

    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"budget {name} must be positive, got {value}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Budget:
        """The budget in ``environ`` (default ``os.environ``); a bad value raises naming the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, int | float] = {}
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            kind = float if f.name == "minutes" else int
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None
            if kind is int and value < 1:
                raise ValueError(f"environment variable {name}={raw!r} must be >= 1")
            if kind is float and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"environment variable {name}={raw!r} must be a positive number of minutes")
            values[f.name] = value
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ``NNUNET_EXT_*`` variables of this budget (unset fields are left out)."""
        return {ENV_NAMES[k]: str(v) for k, v in asdict(self).items() if v is not None}

    def bounded(self) -> Budget:
        """``self`` if it bounds training (epochs or minutes), as a comparison needs; else ValueError."""
        if self.epochs is None and self.minutes is None:
            raise ValueError("give a budget: epochs (and optionally iterations per epoch) or wall-clock minutes")
        return self

    def describe(self) -> str:
        parts = []
        if self.epochs is not None:
            parts.append(f"{self.epochs} epochs")
        if self.iterations is not None:
            parts.append(f"{self.iterations} iterations per epoch")
        if self.val_iterations is not None:
            parts.append(f"{self.val_iterations} validation iterations per epoch")
        if self.minutes is not None:
            parts.append(f"at most {self.minutes:g} minutes of training")
        return ", ".join(parts) if parts else "none (trainer defaults)"

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def read_record(fold_dir: Path) -> dict[str, Any]:
    """The budget record of a finished training in ``fold_dir``; clear error when it is missing."""
    path = Path(fold_dir) / RECORD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no budget record (was the fold trained with a budgeted trainer?)")
    return json.loads(path.read_text())
