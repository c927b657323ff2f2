"""Inference precision and backends: the same probabilities from torch fp32, torch bf16 and OpenVINO.

A small real SliceResNet with random weights predicts a random volume whole-slice and in tiles over a few views;
bf16 (CPU autocast) must stay within bfloat16's rounding of fp32, OpenVINO in float32 within float rounding.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_ext.inference import PredictionSetupError, backends, predict_folder
from nnunet_ext.inference.predictor import SliceResPredictor
from nnunet_ext.inference.views import make_views
from nnunet_ext.network.sliceres_net import SliceResNet

N_MODALITIES, N_CLASSES = 2, 3


def _predictor(tiles: bool, **kwargs) -> SliceResPredictor:
    torch.manual_seed(0)
    network = SliceResNet(N_MODALITIES, N_CLASSES, neighbours=1, widths=(4, 8, 8, 8), slices_per_forward=8)
    plans = PlansManager({"configurations": {"2d": {"patch_size": [4, 16, 16], "architecture": {}}}})
    dataset_json = {"labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz"}
    predictor = SliceResPredictor(views=make_views((0, 2), (0, 3)), device=torch.device("cpu"), allow_tqdm=False,
                                  tiles=tiles, **kwargs)
    predictor.manual_initialization(network, plans, plans.get_configuration("2d"), [network.state_dict()] * 2,
                                    dataset_json, "SliceResTrainer", (1, 2))
    return predictor


@pytest.fixture(scope="module")
def volume() -> torch.Tensor:
    return torch.randn((N_MODALITIES, 6, 21, 19), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("tiles", [False, True], ids=["whole", "tiles"])
def test_cpu_bf16_matches_fp32_within_bfloat16_rounding(volume, tiles):
    fp32 = _predictor(tiles, precision="fp32").predict_probabilities(volume)
    bf16 = _predictor(tiles, precision="bf16").predict_probabilities(volume)
    assert bf16.dtype == torch.float32  # averaged in float32 whatever the arithmetic
    difference = (bf16 - fp32).abs().max().item()
    assert 0 < difference < 0.05  # bf16 did run (not bit-identical) and stays close
    assert torch.equal(_predictor(tiles, precision="auto").predict_probabilities(volume), fp32)  # auto = fp32 on CPU


@pytest.mark.parametrize("tiles", [False, True], ids=["whole", "tiles"])
def test_openvino_matches_torch(volume, tiles):
    pytest.importorskip("openvino")
    reference = _predictor(tiles, precision="fp32").predict_logits_from_preprocessed_data(volume)
    predictor = _predictor(tiles, backend="openvino")
    converted = predictor.predict_logits_from_preprocessed_data(volume)
    assert torch.allclose(converted, reference, atol=1e-4)
    assert len(predictor._converted) == 2  # one converted model per fold's parameters, kept for the next case
    predictor.predict_logits_from_preprocessed_data(volume)
    assert len(predictor._converted) == 2


def test_bad_precision_and_backend_are_refused_before_work():
    with pytest.raises(ValueError, match="precision 'fp8'"):
        SliceResPredictor(device=torch.device("cpu"), precision="fp8")
    with pytest.raises(backends.BackendUnavailable, match="backend 'tensorrt'"):
        SliceResPredictor(device=torch.device("cpu"), backend="tensorrt")
    with pytest.raises(backends.BackendUnavailable, match="CPU only"):
        SliceResPredictor(device=torch.device("cuda"), backend="openvino")


def _segmentations(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


def test_predict_folder_records_precision_and_backend_and_agrees_with_fp32(stub_model: dict, tmp_path: Path):
    inputs = stub_model["raw"] / "imagesTs"
    options = dict(device="cpu", num_processes_preprocessing=0, num_processes_export=0, set_threads=False,
                   progress=False, transforms="identity", inference="whole", postprocess="none")
    reference = predict_folder(inputs, tmp_path / "fp32", stub_model["model"], precision="fp32", **options)
    variants = [("bf16", "torch")] + ([("auto", "openvino")] if importlib.util.find_spec("openvino") else [])
    for precision, backend in variants:
        done = predict_folder(inputs, tmp_path / backend, stub_model["model"], precision=precision, backend=backend,
                              **options)
        assert (done.record["precision"], done.record["backend"]) == (precision, backend)
        assert f"whole slices, {backend} {precision}" in done.log.read_text()
        ours, theirs = _segmentations(done.output_folder), _segmentations(reference.output_folder)
        assert ours.keys() == theirs.keys() and len(ours) == 3
        agreement = np.mean([(ours[name] == theirs[name]).mean() for name in ours])
        assert agreement > 0.99, f"{backend} {precision}: {agreement:.4f} of voxels as with fp32"
    # a folder predicted at one precision is not continued at another
    with pytest.raises(PredictionSetupError, match="precision: recorded 'fp32', now 'bf16'"):
        predict_folder(inputs, tmp_path / "fp32", stub_model["model"], precision="bf16", continue_prediction=True,
                       **options)


def test_cli_without_openvino_installed_says_how_to_get_it(stub_model: dict, tmp_path: Path):
    hidden = tmp_path / "site"
    (hidden / "openvino").mkdir(parents=True)
    (hidden / "openvino" / "__init__.py").write_text("raise ImportError('openvino is not installed here')\n")
    env = {**stub_model["env"], "PYTHONPATH": str(hidden)}
    command = [sys.executable, "-m", "nnunet_ext.cli", "predict", "-i", str(stub_model["raw"] / "imagesTs"), "-o",
               str(tmp_path / "out"), "-m", str(stub_model["model"]), "-device", "cpu", "--backend", "openvino",
               "--disable_progress_bar"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "nnunet-ext predict: error: backend 'openvino' needs the openvino package: pip install 'nnunet_ext[openvino]'")
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("out/*.nii.gz"))
