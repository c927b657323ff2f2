"""The environment tests give the nnU-Net and nnunet-ext CLIs they run as subprocesses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nnunet_ext.discovery import environment_with_trainers

#: ``../shared`` beside the checkout (real data; tests that need it skip without it)
SHARED = Path(__file__).resolve().parents[3] / "shared"

#: nnU-Net on one CPU worker of a small shared machine: no torch.compile; one thread; one augmentation and one
#: default worker process (nnU-Net's default is 8 spawned workers, each importing torch: more work than a tiny
#: case); OpenMP threads that sleep while idle instead of spinning on cores the other processes need.
CPU_LIMITS = {"nnUNet_compile": "f", "nnUNet_n_proc_DA": "1", "nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def cli_env(folders: Mapping[str, Path] | None = None, **extra: str) -> dict[str, str]:
    """This process's environment with the SliceRes trainers findable, :data:`CPU_LIMITS`, the nnU-Net
    ``folders`` (keys from :data:`NNUNET_FOLDERS`) and ``extra`` variables."""
    env = environment_with_trainers()
    env.update(CPU_LIMITS)
    env.update({name: str(path) for name, path in (folders or {}).items()})
    env.update(extra)
    return env


def subprocess_env() -> dict[str, str]:
    """The current environment (after fixtures such as ``nnunet_dirs`` set theirs) for CLI subprocesses."""
    return dict(os.environ)
