"""The method's one-cycle learning rate: linear warm-up over the first 10 % of steps from 4e-5 to 1e-3,
then cosine annealing to 1e-8 over the rest.

Stateless: the rate is a function of the global step (epoch x iterations per epoch + iteration) and of
the planned total, so resuming from a checkpoint (``--c``) or re-planning the number of epochs under a
time limit needs no scheduler state.
"""

from __future__ import annotations

import math

import torch


class OneCycleSchedule:
    """Sets the learning rate of ``optimizer``'s parameter groups per iteration.

    ``num_epochs`` and ``iterations_per_epoch`` are public so the trainer can update them when the budget
    or the epoch definition is known; nnU-Net's ``lr_scheduler.step(epoch)`` call at each epoch start sets
    the rate of that epoch's first iteration.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, num_epochs: int, iterations_per_epoch: int,
                 initial_lr: float = 4e-5, max_lr: float = 1e-3, final_lr: float = 1e-8,
                 warmup_fraction: float = 0.1):
        self.optimizer = optimizer
        self.num_epochs = int(num_epochs)
        self.iterations_per_epoch = int(iterations_per_epoch)
        self.initial_lr = float(initial_lr)
        self.max_lr = float(max_lr)
        self.final_lr = float(final_lr)
        self.warmup_fraction = float(warmup_fraction)

    @property
    def total_steps(self) -> int:
        return max(1, self.num_epochs * self.iterations_per_epoch)

    def lr(self, step: int) -> float:
        """Learning rate at global step ``step`` (clamped to the planned range)."""
        total = self.total_steps
        step = min(max(0, int(step)), total - 1)
        warmup = int(round(self.warmup_fraction * total))
        if step < warmup:
            return self.initial_lr + (self.max_lr - self.initial_lr) * step / warmup
        progress = (step - warmup) / max(1, total - 1 - warmup)
        return self.final_lr + (self.max_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def step_iteration(self, epoch: int, iteration: int) -> float:
        lr = self.lr(epoch * self.iterations_per_epoch + iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, epoch: int) -> None:
        self.step_iteration(epoch, 0)
