"""SliceResPredictor with a stand-in network whose output is a known function of its 2.5D input.

The stand-in echoes one slice of the stack (the centre, or a neighbour at a fixed offset) of every modality
as the class logits, so the exact expected probability volume is known for every view: any error in
neighbour stacking, edge repetition, in-plane tiling/padding, the dihedral inversion or the axis move shows
up as a mismatch.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_ext import cli
from nnunet_ext.inference.postprocessing import remove_small_components
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
               parameters: list[dict] | None = None, tiles: bool = False) -> SliceResPredictor:
    """A predictor around a stand-in network; whole slices unless ``tiles`` (tiles are the product's default)."""
    n = network.n_modalities
    if regions:
        labels = {"background": 0, **{f"r{i}": list(range(i, n + 1)) for i in range(1, n + 1)}}
        dataset_json = {"labels": labels, "regions_class_order": list(range(1, n + 1)), "file_ending": ".nii.gz"}
    else:
        dataset_json = {"labels": {"background": 0, **{f"l{i}": i for i in range(1, n)}}, "file_ending": ".nii.gz"}
    plans = {"configurations": {"2d": {"patch_size": [4, *patch], "architecture": {}}}}
    plans_manager = PlansManager(plans)
    predictor = SliceResPredictor(views=views, device=torch.device("cpu"), allow_tqdm=False, tiles=tiles)
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


@pytest.mark.parametrize("tiles", [False, True], ids=["whole_slices", "tiles"])
@pytest.mark.parametrize("view", make_views(), ids=str)
@pytest.mark.parametrize("offset", [0, 2], ids=["centre", "neighbour+2"])
def test_every_view_maps_back_to_the_input(volume: torch.Tensor, view: View, offset: int, tiles: bool) -> None:
    predictor = _predictor(EchoNet(3, offset), [view], tiles=tiles)
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


class BoxNet(EchoNet):
    """A local function: logits = 3x3 box sum (zero outside the input) of the echoed slice; needs planes divisible
    by ``downsampling``, like SliceResNet, and optionally runs out of memory above ``max_pixels`` per call."""

    downsampling = 8

    def __init__(self, n_modalities: int, offset: int = 0, max_pixels: int | None = None):
        super().__init__(n_modalities, offset)
        self.max_pixels = max_pixels
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % self.downsampling == 0 and x.shape[-1] % self.downsampling == 0, x.shape
        self.calls.append(tuple(x.shape))
        if self.max_pixels is not None and x.shape[0] * x.shape[-2] * x.shape[-1] > self.max_pixels:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        echoed = super().forward(x)
        box = torch.ones((echoed.shape[1], 1, 3, 3), dtype=echoed.dtype)
        return torch.nn.functional.conv2d(echoed, box, padding=1, groups=echoed.shape[1])


def _box_reference(volume: torch.Tensor, view: View, offset: int) -> torch.Tensor:
    """Softmax of the 3x3 box sum over each slice plane of ``view``, computed directly on the unpadded volume."""
    from nnunet_ext.inference.views import from_view, to_view

    planes = to_view(_shifted(volume, view.axis, offset), view).transpose(0, 1)  # (D, C, H, W)
    box = torch.ones((planes.shape[1], 1, 3, 3))
    summed = torch.nn.functional.conv2d(planes, box, padding=1, groups=planes.shape[1]).transpose(0, 1)
    return torch.softmax(from_view(summed, view), dim=0)


@pytest.mark.parametrize("view", make_views([0, 1, 2], [0, 1, 6]), ids=str)
def test_whole_slices_equal_the_direct_plane_function_on_odd_planes(volume: torch.Tensor, view: View) -> None:
    network = BoxNet(3, offset=1)
    probabilities = _predictor(network, [view]).predict_probabilities(volume)
    assert probabilities.shape == (3, *volume.shape[1:])
    torch.testing.assert_close(probabilities, _box_reference(volume, view, 1), rtol=0, atol=1e-5)
    assert all(shape[-2] % 8 == 0 and shape[-1] % 8 == 0 for shape in network.calls)


def test_tiles_agree_with_whole_slices_inside_each_tile(volume: torch.Tensor) -> None:
    """A 3x3 function differs only where a tile border cuts its support; whole slices are exact everywhere."""
    view = View(0, 0)
    whole = _predictor(BoxNet(3), [view]).predict_probabilities(volume)
    tiled = _predictor(BoxNet(3), [view], tiles=True, patch=(16, 16)).predict_probabilities(volume)
    # one 16x16 tile covers the whole (13, 11) plane: no tile border inside the volume
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


def test_batched_views_equal_one_view_at_a_time(volume: torch.Tensor) -> None:
    views = make_views()
    together = _predictor(BoxNet(3, offset=-2), views).predict_probabilities(volume)
    one_by_one = sum(_predictor(BoxNet(3, offset=-2), [v]).predict_probabilities(volume) for v in views) / len(views)
    torch.testing.assert_close(together, one_by_one, rtol=0, atol=1e-5)


def test_transforms_of_an_axis_share_network_calls(volume: torch.Tensor) -> None:
    network = BoxNet(3)
    predictor = _predictor(network, make_views([0], range(8)))
    predictor.slices_per_batch = 64
    predictor.predict_probabilities(volume)
    # plane 13x11 pads to 16x16 (square): the 8 transforms of 6 slices fit one call of 48 inputs
    assert network.calls == [(48, 15, 16, 16)]


def test_all_zero_inputs_are_predicted_once_and_exactly() -> None:
    volume = torch.zeros((3, 12, 9, 10))
    volume[:, 5:7] = torch.randn((3, 2, 9, 10), generator=torch.Generator().manual_seed(1))
    network = BoxNet(3)
    predictor = _predictor(network, [View(0, 0)])
    predictor.slices_per_batch = 64
    probabilities = predictor.predict_probabilities(volume)
    torch.testing.assert_close(probabilities, _box_reference(volume, View(0, 0), 0), rtol=0, atol=1e-5)
    # slices 3..8 see the data within 2 neighbours; the other 6 slices share one all-zero call
    assert sorted(shape[0] for shape in network.calls) == [1, 6]


def test_out_of_memory_halves_the_batch_then_falls_back_to_tiles(volume: torch.Tensor,
                                                                 capsys: pytest.CaptureFixture) -> None:
    view = View(1, 0)  # planes of 6 x 11 pixels, padded to 8 x 16 = 128
    expected = _box_reference(volume, view, 0)
    # 13 slices in one call fail, 2 fit: the batch halves until it fits and the result is unchanged
    halved = _predictor(BoxNet(3, max_pixels=2 * 128), [view])
    halved.slices_per_batch = 64
    torch.testing.assert_close(halved.predict_probabilities(volume), expected, rtol=0, atol=1e-5)
    assert "Out of memory" in capsys.readouterr().out and halved.slices_per_batch == 2
    # not even one whole slice fits: 8x8 tiles (64 pixels) are used instead, with a message
    tiled = _predictor(BoxNet(3, max_pixels=64), [view])
    probabilities = tiled.predict_probabilities(volume)
    assert "predicting this axis in tiles" in capsys.readouterr().out
    assert probabilities.shape == expected.shape and torch.isfinite(probabilities).all()


@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_slices_per_batch_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="slices per batch must be a positive integer"):
        SliceResPredictor(views=make_views([0], [0]), device=torch.device("cpu"), slices_per_batch=bad)


def test_prediction_runs_with_nnunet_thread_cap(volume: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's fold loop caps torch threads at default_num_processes while predicting and restores them."""
    import nnunet_ext.inference.predictor as predictor_module

    seen = []

    class ThreadProbe(EchoNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return super().forward(x)

    before = torch.get_num_threads()
    monkeypatch.setattr(predictor_module, "default_num_processes", 1)
    _predictor(ThreadProbe(3), [View(0, 0)]).predict_logits_from_preprocessed_data(volume)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------- `nnunet-ext predict` CLI
def _predict_cli(stub_model: dict, output: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    command = ["nnunet-ext", "predict", "-i", str(stub_model["raw"] / "imagesTs"), "-o", str(output),
               "-d", stub_model["dataset"], "-tr", "nnUNetTrainer", "-device", "cpu", "--disable_progress_bar", *extra]
    result = subprocess.run(command, env=stub_model["env"], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


CLI_VIEWS = ("--axes", "0", "2", "--transforms", "0,5")


@pytest.fixture(scope="module")
def predicted(stub_model: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sequential run: 2 folds, 4 views, probabilities saved, default post-processing."""
    output = tmp_path_factory.mktemp("predicted") / "out"
    _predict_cli(stub_model, output, "-npp", "0", "-nps", "0", "--save_probabilities", *CLI_VIEWS)
    return output


@pytest.mark.e2e
def test_cli_writes_nnunet_outputs_with_mean_probabilities_and_postprocessing(stub_model: dict,
                                                                              predicted: Path) -> None:
    cases = sorted(p.name[:-len("_0000.nii.gz")] for p in (stub_model["raw"] / "imagesTs").glob("*_0000.nii.gz"))
    assert sorted(p.name[:-len(".nii.gz")] for p in predicted.glob("*.nii.gz")) == cases
    record = json.loads((predicted / "sliceres_prediction.json").read_text())
    assert record["folds"] == [0, 1] and record["axes"] == [0, 2] and record["transforms"] == [0, 5]
    assert record["postprocessing"]["mode"] == "components" and record["postprocessing"]["min_size"] == 64
    logs = list(predicted.glob("sliceres_predict_log_*.txt"))
    assert len(logs) == 1 and "SliceRes prediction: 4 views" in logs[0].read_text()
    assert not list(predicted.glob(".sliceres_staging*"))
    for case in cases:
        image = sitk.ReadImage(str(stub_model["raw"] / "imagesTs" / f"{case}_0000.nii.gz"))
        seg = sitk.ReadImage(str(predicted / f"{case}.nii.gz"))
        assert seg.GetSize() == image.GetSize() and seg.GetSpacing() == image.GetSpacing()
        assert seg.GetOrigin() == image.GetOrigin() and seg.GetDirection() == image.GetDirection()
        probabilities = np.load(predicted / f"{case}.npz")["probabilities"]
        assert probabilities.shape == (3, *sitk.GetArrayFromImage(image).shape)
        np.testing.assert_allclose(probabilities.sum(0), 1, atol=1e-4)
        assert (predicted / f"{case}.pkl").is_file()
        # the exported segmentation is the post-processed argmax of the saved mean probabilities
        expected = remove_small_components(probabilities.argmax(0).astype(np.uint8), 64)
        assert (sitk.GetArrayFromImage(seg) == expected).mean() > 0.999


def _copy_of(predicted: Path, output: Path) -> tuple[list[Path], dict[str, np.ndarray]]:
    """A copy of a finished prediction folder: its segmentations and their arrays."""
    shutil.copytree(predicted, output)
    segs = sorted(output.glob("*.nii.gz"))
    return segs, {p.name: _read(p) for p in segs}


@pytest.mark.e2e
def test_cli_continue_prediction_redoes_missing_and_truncated_cases_only(stub_model: dict, predicted: Path,
                                                                         tmp_path: Path) -> None:
    output = tmp_path / "resume"
    segs, originals = _copy_of(predicted, output)
    segs[0].unlink()
    segs[1].write_bytes(segs[1].read_bytes()[:50])  # an export cut off by an interruption
    untouched = segs[2].stat().st_mtime_ns
    _predict_cli(stub_model, output, "-npp", "0", "-nps", "0", "--save_probabilities", "--continue_prediction",
                 *CLI_VIEWS)
    assert segs[2].stat().st_mtime_ns == untouched
    for path in segs:
        assert np.array_equal(_read(path), originals[path.name]), path.name


@pytest.mark.e2e
def test_cli_continue_finishes_an_interrupted_run_and_refuses_other_settings(stub_model: dict, predicted: Path,
                                                                             tmp_path: Path) -> None:
    output = tmp_path / "interrupted"
    segs, originals = _copy_of(predicted, output)
    # killed after nnU-Net's export, before post-processing: the case exists only in the staging folder
    staging = output / ".sliceres_staging_part0"
    staging.mkdir()
    segs[0].rename(staging / segs[0].name)
    before = {p.name: p.read_bytes() for p in output.iterdir() if p.is_file()}
    refused = _predict_cli(stub_model, output, "-npp", "0", "-nps", "0", "--save_probabilities",
                           "--continue_prediction", "--axes", "0", "2", "--transforms", "0,4", check=False)
    assert refused.returncode != 0 and "transforms" in refused.stderr and "Traceback" not in refused.stderr
    assert {p.name: p.read_bytes() for p in output.iterdir() if p.is_file()} == before
    _predict_cli(stub_model, output, "-npp", "0", "-nps", "0", "--save_probabilities", "--continue_prediction",
                 *CLI_VIEWS)
    assert not staging.exists()
    for path in segs:
        assert np.array_equal(_read(path), originals[path.name]), path.name


@pytest.mark.e2e
def test_cli_parts_together_equal_one_pass(stub_model: dict, predicted: Path, tmp_path: Path) -> None:
    output = tmp_path / "parts"
    command = ["nnunet-ext", "predict", "-i", str(stub_model["raw"] / "imagesTs"), "-o", str(output), "-d",
               stub_model["dataset"], "-tr", "nnUNetTrainer", "-device", "cpu", "--disable_progress_bar", "-npp", "1",
               "-nps", "1", "--save_probabilities", *CLI_VIEWS, "-num_parts", "2"]
    jobs = [subprocess.Popen([*command, "-part_id", str(part)], env=stub_model["env"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for part in (0, 1)]
    logs = [job.communicate()[0] for job in jobs]
    assert all(job.returncode == 0 for job in jobs), "\n".join(log[-2000:] for log in logs)
    expected = sorted(p.name for p in predicted.glob("*.nii.gz"))
    assert sorted(p.name for p in output.glob("*.nii.gz")) == expected
    for name in expected:
        assert np.array_equal(_read(output / name), _read(predicted / name)), name
        np.testing.assert_allclose(np.load(output / name.replace(".nii.gz", ".npz"))["probabilities"],
                                   np.load(predicted / name.replace(".nii.gz", ".npz"))["probabilities"], atol=1e-6)


# ------------------------------------------------------------------------------------------------ bad input
def _cli_error(stub_model: dict, monkeypatch: pytest.MonkeyPatch, inputs: Path, *extra: str) -> str:
    for key, value in stub_model["env"].items():
        monkeypatch.setenv(key, value)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        rc = cli.main(["predict", "-i", str(inputs), "-o", str(inputs.parent / "out"), "-d", stub_model["dataset"],
                       "-tr", "nnUNetTrainer", "-device", "cpu", *extra])
    assert rc == 2, stderr.getvalue()  # bad input
    return stderr.getvalue()


@pytest.fixture
def inputs(stub_model: dict, tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    shutil.copytree(stub_model["raw"] / "imagesTs", folder)
    return folder


def test_missing_channel_is_named(stub_model: dict, monkeypatch: pytest.MonkeyPatch, inputs: Path) -> None:
    (inputs / "case_002_0001.nii.gz").unlink()
    message = _cli_error(stub_model, monkeypatch, inputs)
    assert "case_002_0001.nii.gz" in message and "channel 1 is missing" in message


def test_extra_channel_is_named(stub_model: dict, monkeypatch: pytest.MonkeyPatch, inputs: Path) -> None:
    shutil.copy(inputs / "case_001_0000.nii.gz", inputs / "case_001_0002.nii.gz")
    message = _cli_error(stub_model, monkeypatch, inputs)
    assert "case_001_0002.nii.gz" in message and "expected 2 channels" in message


def test_mismatched_geometry_is_named(stub_model: dict, monkeypatch: pytest.MonkeyPatch, inputs: Path) -> None:
    image = sitk.ReadImage(str(inputs / "case_003_0001.nii.gz"))
    image.SetSpacing((1.0, 1.0, 2.5))
    sitk.WriteImage(image, str(inputs / "case_003_0001.nii.gz"))
    message = _cli_error(stub_model, monkeypatch, inputs)
    assert "case_003_0001.nii.gz" in message and "spacing" in message


def test_missing_checkpoint_and_model_folder_are_named(stub_model: dict, monkeypatch: pytest.MonkeyPatch,
                                                       inputs: Path) -> None:
    message = _cli_error(stub_model, monkeypatch, inputs, "-f", "0", "3")
    assert str(stub_model["model"] / "fold_3" / "checkpoint_final.pth") in message and "0, 1" in message
    message = _cli_error(stub_model, monkeypatch, inputs, "-c", "3d_fullres")
    assert "nnUNetTrainer__nnUNetPlans__3d_fullres" in message and "plans.json" in message
