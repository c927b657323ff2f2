"""nnUNetTrainerBudget: stock nnU-Net training under a :class:`~nnunet_ext.training.budget.Budget`, with the
same wall-clock accounting as ``SliceResTrainer`` (:mod:`nnunet_ext.training.budget_mixin`), so stock 2d /
3d_fullres baselines can be compared with SliceRes at equal epochs, iterations or time."""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.training.budget_mixin import BudgetMixin


class nnUNetTrainerBudget(BudgetMixin, nnUNetTrainer):
    """``nnUNetTrainer`` with epochs / iterations / time limit taken from the environment."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.apply_budget()

    def on_planned_epochs_changed(self) -> None:
        self.lr_scheduler.max_steps = self.num_epochs  # PolyLR decays to 0 at the re-planned end
