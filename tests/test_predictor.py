"""SliceResPredictor with a stand-in network whose output is a known function of its 2.5D input.

The stand-in echoes one slice of the stack (the centre, or a neighbour at a fixed offset) of every modality
as the class logits, so the exact expected probability volume is known for every view: any error in
neighbour stacking, edge repetition, in-plane tiling/padding, the dihedral inversion or the axis move shows
up as a mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_ext.inference.predictor import SliceResPredictor
from nnunet_ext.inference.views import View, make_views

K = 2  # neighbours on each side


class EchoNet(nn.Module):
    """Logits of class ``m`` = ``scale`` x slice ``centre + offset`` of modality ``m`` (one class per modality)."""

    def __init__(self, n_modalities: int, offset: int = 0, scale: float = 1.0):
        super().__init__()
        self.neighbours = K
        self.slices_per_forward = 3  # several batches per tile: exercises neighbours across batch borders
        self.n_modalities = n_modalities
        self.offset = offset
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == self.n_modalities * (2 * K + 1)
        channels = [m * (2 * K + 1) + K + self.offset for m in range(self.n_modalities)]
        return self.scale * x[:, channels]


def _predictor(network: nn.Module, views, regions: bool = False, patch=(8, 8),
               parameters: list[dict] | None = None) -> SliceResPredictor:
    n = network.n_modalities
    if regions:
        labels = {"background": 0, **{f"r{i}": list(range(i, n + 1)) for i in range(1, n + 1)}}
        dataset_json = {"labels": labels, "regions_class_order": list(range(1, n + 1)), "file_ending": ".nii.gz"}
    else:
        dataset_json = {"labels": {"background": 0, **{f"l{i}": i for i in range(1, n)}}, "file_ending": ".nii.gz"}
    plans = {"configurations": {"2d": {"patch_size": [4, *patch], "architecture": {}}}}
    plans_manager = PlansManager(plans)
    predictor = SliceResPredictor(views=views, device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration("2d"),
                                    parameters or [network.state_dict()], dataset_json, "EchoTrainer", (1, 2))
    return predictor


def _shifted(volume: torch.Tensor, axis: int, offset: int) -> torch.Tensor:
    """The volume whose slice i along ``axis`` is slice clip(i + offset) (edge slices repeated)."""
    depth = volume.shape[axis + 1]
    index = torch.from_numpy(np.clip(np.arange(depth) + offset, 0, depth - 1))
    return volume.index_select(axis + 1, index)


@pytest.fixture
def volume() -> torch.Tensor:
    # one axis shorter than the 8x8 patch (in-plane padding), others give several overlapping tiles
    return torch.randn((3, 6, 13, 11), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("view", make_views(), ids=str)
@pytest.mark.parametrize("offset", [0, 2], ids=["centre", "neighbour+2"])
def test_every_view_maps_back_to_the_input(volume: torch.Tensor, view: View, offset: int) -> None:
    predictor = _predictor(EchoNet(3, offset), [view])
    probabilities = predictor.predict_probabilities(volume)
    expected = torch.softmax(_shifted(volume, view.axis, offset), dim=0)
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-5)


def test_views_are_averaged_as_probabilities(volume: torch.Tensor) -> None:
    predictor = _predictor(EchoNet(3, offset=-1, scale=2.0), make_views())
    probabilities = predictor.predict_probabilities(volume)
    expected = sum(torch.softmax(2 * _shifted(volume, axis, -1), dim=0) for axis in range(3)) / 3
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-5)


def test_folds_are_averaged_as_probabilities_and_returned_as_log_probabilities(volume: torch.Tensor) -> None:
    network = EchoNet(3)
    folds = [{"scale": torch.tensor(1.0)}, {"scale": torch.tensor(4.0)}]
    predictor = _predictor(network, make_views([0, 2], [0, 5]), parameters=folds)
    logits = predictor.predict_logits_from_preprocessed_data(volume)
    expected = (torch.softmax(volume, 0) + torch.softmax(4 * volume, 0)) / 2
    # nnU-Net's export applies softmax to what we return: that must give the mean probability back
    torch.testing.assert_close(torch.softmax(logits, 0), expected, rtol=0, atol=1e-5)
    # and the argmax nnU-Net takes for the segmentation is that of the mean probability
    assert torch.equal(logits.argmax(0), expected.argmax(0))


def test_region_models_return_logits_of_the_mean_sigmoid(volume: torch.Tensor) -> None:
    predictor = _predictor(EchoNet(3, offset=1), make_views([1], [0, 3]), regions=True)
    logits = predictor.predict_sliding_window_return_logits(volume)
    torch.testing.assert_close(torch.sigmoid(logits), torch.sigmoid(_shifted(volume, 1, 1)), rtol=0, atol=1e-5)


def test_non_slice_network_is_refused(volume: torch.Tensor) -> None:
    network = EchoNet(3)
    del network.neighbours
    with pytest.raises(TypeError, match="not a 2.5D SliceRes network"):
        _predictor(network, make_views([0], [0])).predict_probabilities(volume)
