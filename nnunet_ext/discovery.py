"""Make nnU-Net find SliceRes trainers.

nnU-Net 2.8 looks for trainers outside its own package only in the folders listed in the
``nnUNet_extTrainer`` environment variable, importing each ``.py`` file there as a top-level module.
We ship such a folder (``trainer_discovery/``) whose single module re-exports our trainers by absolute
import, so the installed package stays the only copy of the code.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "nnUNet_extTrainer"
TRAINER_FOLDER = Path(__file__).resolve().parent / "trainer_discovery"


def trainer_search_path(existing: str | None = None) -> str:
    """``nnUNet_extTrainer`` value with our folder first and any user folders kept after it."""
    parts = [p for p in (existing or "").split(os.pathsep) if p and Path(p).resolve() != TRAINER_FOLDER]
    return os.pathsep.join([str(TRAINER_FOLDER), *parts])


def environment_with_trainers(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: this process's) in which nnU-Net finds the SliceRes trainers."""
    env = dict(os.environ if env is None else env)
    env[ENV_VAR] = trainer_search_path(env.get(ENV_VAR))
    return env
