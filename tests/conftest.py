"""Shared fixtures: an isolated nnU-Net folder triple per test, the ../shared data and a stub SliceRes model.

Helpers that tests import (generated datasets, the CLI environment) live in ``tests/helpers``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nnunet_ext.discovery import ENV_VAR as TRAINER_PATH_VAR
from tests.helpers.environment import CPU_LIMITS, NNUNET_FOLDERS, SHARED, cli_env
from tests.helpers.synthetic import make_raw_dataset, write_sliceres_model_folder

# before any test module imports torch: OpenMP reads it once, and spinning idle threads slow this process's
# own CPU work on a machine shared with the CLI subprocesses
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """nnUNet_raw / nnUNet_preprocessed / nnUNet_results under ``tmp_path``, exported for subprocesses.

    Also exports the trainer discovery path and :data:`~tests.helpers.environment.CPU_LIMITS` (one worker
    process and thread), so the CLIs behave on a 2-core CI machine.
    """
    dirs = {name: tmp_path / name for name in NNUNET_FOLDERS}
    for path in dirs.values():
        path.mkdir()
    env = cli_env(dirs)
    for key in (TRAINER_PATH_VAR, *CPU_LIMITS, *dirs):
        monkeypatch.setenv(key, env[key])
    return dirs


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` or skip when this checkout has no shared folder beside it."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is not present")
    return data


@pytest.fixture(scope="session")
def stub_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A SliceRes model folder with two randomly initialised folds (no training) and 3 test cases.

    Returns ``env`` (for CLI subprocesses: nnU-Net folders, trainer discovery, one thread), ``raw`` (the raw
    dataset folder, test images in ``imagesTs``), ``model`` (the model folder) and ``dataset`` (its id).
    """
    root = tmp_path_factory.mktemp("stub_model")
    dirs = {name: root / name for name in NNUNET_FOLDERS}
    for path in dirs.values():
        path.mkdir()
    raw = make_raw_dataset(dirs["nnUNet_raw"], 778, "StubPredict", n_cases=1, shape=(12, 40, 40), n_modalities=2,
                           n_labels=2, n_test=3, seed=3)
    model = write_sliceres_model_folder(dirs["nnUNet_results"], raw, folds=(0, 1))
    return {"env": cli_env(dirs), "raw": raw, "model": model, "dataset": "778"}
