"""Inference precision and backends: the same probabilities from torch fp32, torch bf16 and OpenVINO.

A small real SliceResNet with random weights predicts a random volume whole-slice and in tiles over a few views;
bf16 (CPU autocast) must stay within bfloat16's rounding of fp32, OpenVINO in float32 within float rounding.
"""

from __future__ import annotations

import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_ext.inference import backends
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
