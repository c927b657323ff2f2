"""Shared fixtures: an isolated nnU-Net folder triple per test and the path to ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nnunet_ext.discovery import environment_with_trainers

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """nnUNet_raw / nnUNet_preprocessed / nnUNet_results under ``tmp_path``, exported for subprocesses.

    Also limits nnU-Net's worker processes and threads so tests behave on a 2-core CI machine.
    """
    dirs = {name: tmp_path / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for name, path in dirs.items():
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    for key, value in environment_with_trainers().items():
        if key == "nnUNet_extTrainer":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_n_proc_DA", "1")
    monkeypatch.setenv("nnUNet_compile", "f")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    return dirs


def subprocess_env() -> dict[str, str]:
    """The current environment (after fixtures) for CLI subprocesses."""
    return dict(os.environ)


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
    from synthetic import make_raw_dataset, write_sliceres_model_folder

    root = tmp_path_factory.mktemp("stub_model")
    dirs = {name: root / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for path in dirs.values():
        path.mkdir()
    raw = make_raw_dataset(dirs["nnUNet_raw"], 778, "StubPredict", n_cases=1, shape=(12, 40, 40), n_modalities=2,
                           n_labels=2, n_test=3, seed=3)
    model = write_sliceres_model_folder(dirs["nnUNet_results"], raw, folds=(0, 1))
    env = environment_with_trainers()
    env.update({name: str(path) for name, path in dirs.items()})
    env.update({"nnUNet_compile": "f", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "nnUNet_n_proc_DA": "1"})
    return {"env": env, "raw": raw, "model": model, "dataset": "778"}
