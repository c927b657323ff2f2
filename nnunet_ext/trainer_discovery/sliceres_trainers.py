"""Re-exports the SliceRes trainers for nnU-Net's ``nnUNet_extTrainer`` lookup.

nnU-Net imports every ``.py`` file of this folder as a top-level module and searches it for the class
named by ``-tr``; absolute imports of the installed package keep a single copy of the code.
"""

from nnunet_ext.training.budget_trainer import nnUNetTrainerBudget
from nnunet_ext.training.sliceres_trainer import SliceResTrainer

__all__ = ["SliceResTrainer", "nnUNetTrainerBudget"]
