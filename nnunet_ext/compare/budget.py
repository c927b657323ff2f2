"""The training budget every method of a comparison gets, passed to the trainers as environment variables.

``nnUNetTrainerBudget`` (stock nnU-Net with a budget) and ``SliceResTrainer`` both read the same variables
(:mod:`nnunet_ext.training.budget`), so "same budget" holds by construction rather than by per-trainer
settings. This side only validates the user's choice and turns it into those variables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nnunet_ext.training.budget import ENV_EPOCHS, ENV_ITERATIONS, ENV_TIME_LIMIT, ENV_VAL_ITERATIONS


@dataclass(frozen=True)
class Budget:
    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and value <= 0:
                raise ValueError(f"budget {name} must be positive, got {value}")
        if self.epochs is None and self.minutes is None:
            raise ValueError("give a budget: epochs (and optionally iterations per epoch) or wall-clock minutes")

    def env(self) -> dict[str, str]:
        """``NNUNET_EXT_*`` variables for the training processes."""
        names = {"epochs": ENV_EPOCHS, "iterations": ENV_ITERATIONS, "val_iterations": ENV_VAL_ITERATIONS,
                 "minutes": ENV_TIME_LIMIT}
        return {names[k]: str(v) for k, v in asdict(self).items() if v is not None}

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
        return ", ".join(parts)

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)
