"""``nnunet_ext.inference.predict_folder`` called from Python on the stub model (two random folds, 3 test cases).

The same function is behind ``nnunet-ext predict`` (tested as a command in ``test_predictor.py``); here it is
called directly: outputs, the record, the trained axes as the default views, continuing, and refused input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.inference import PredictionSetupError, predict_folder
from nnunet_ext.inference.folder_prediction import RECORD_NAME
from nnunet_ext.inference.postprocessing import remove_small_components


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def model_trained_on_axis_2(stub_model: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the stub model whose plans say it was trained on slices along axis 2 only."""
    model = tmp_path_factory.mktemp("axis2") / stub_model["model"].name
    shutil.copytree(stub_model["model"], model)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["2d"].setdefault("sliceres", {})["axes"] = [2]
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    return model


def _predict(model: Path, inputs: Path, output: Path, **options):
    return predict_folder(inputs, output, model, device="cpu", num_processes_preprocessing=0,
                          num_processes_export=0, set_threads=False, progress=False, **options)


def test_predict_folder_writes_postprocessed_outputs_and_the_record(stub_model: dict, model_trained_on_axis_2: Path,
                                                                    tmp_path: Path) -> None:
    inputs, output = stub_model["raw"] / "imagesTs", tmp_path / "out"
    done = _predict(model_trained_on_axis_2, inputs, output, transforms="0,5", inference="whole",
                    postprocess="components", min_size=20, save_probabilities=True)
    cases = sorted(p.name[:-len("_0000.nii.gz")] for p in inputs.glob("*_0000.nii.gz"))
    assert done.cases == done.predicted == cases and done.output_folder == output
    # views: the given transforms on the axis the plans name (no axes given)
    assert done.record["axes"] == [2] and done.record["transforms"] == [0, 5] and done.record["folds"] == [0, 1]
    assert done.record["inference"] == "whole"
    assert done.record["postprocessing"]["mode"] == "components" and done.record["postprocessing"]["min_size"] == 20
    assert json.loads((output / RECORD_NAME).read_text()) == done.record
    assert done.record["model_folder"] == str(model_trained_on_axis_2.resolve())
    assert done.log.parent == output and "SliceRes prediction: 2 views (axes [2] x transforms [0, 5])" in \
        done.log.read_text()
    assert not list(output.glob(".sliceres_staging*"))
    for case in cases:
        image = sitk.ReadImage(str(inputs / f"{case}_0000.nii.gz"))
        seg = sitk.ReadImage(str(output / f"{case}.nii.gz"))
        assert seg.GetSize() == image.GetSize() and seg.GetSpacing() == image.GetSpacing()
        probabilities = np.load(output / f"{case}.npz")["probabilities"]
        np.testing.assert_allclose(probabilities.sum(0), 1, atol=1e-4)
        # the final segmentation is the post-processed argmax of the saved mean probabilities
        expected = remove_small_components(probabilities.argmax(0).astype(np.uint8), 20)
        assert (sitk.GetArrayFromImage(seg) == expected).mean() > 0.999

    # continuing with the same settings predicts nothing again; other settings are refused, nothing changed
    segs = {p.name: p.stat().st_mtime_ns for p in output.glob("*.nii.gz")}
    again = _predict(model_trained_on_axis_2, inputs, output, transforms="0,5", inference="whole",
                     postprocess="components", min_size=20, save_probabilities=True, continue_prediction=True)
    assert again.cases == cases and again.predicted == []
    before = {p.name: p.read_bytes() for p in output.iterdir() if p.is_file() and p.suffix != ".txt"}
    with pytest.raises(PredictionSetupError, match="transforms: recorded \\[0, 5\\], now \\[0\\]"):
        _predict(model_trained_on_axis_2, inputs, output, transforms="identity", inference="whole",
                 postprocess="components", min_size=20, continue_prediction=True)
    assert {p.name: p.read_bytes() for p in output.iterdir() if p.is_file() and p.suffix != ".txt"} == before
    assert {p.name: p.stat().st_mtime_ns for p in output.glob("*.nii.gz")} == segs

    # a segmentation cut off by an interruption is predicted again, and its log says so
    cut = output / f"{cases[1]}.nii.gz"
    original = _array(cut)
    cut.write_bytes(cut.read_bytes()[:50])
    resumed = _predict(model_trained_on_axis_2, inputs, output, transforms="0,5", inference="whole",
                       postprocess="components", min_size=20, save_probabilities=True, continue_prediction=True)
    assert resumed.predicted == [cases[1]] and np.array_equal(_array(cut), original)
    assert f"{cut.name}" in resumed.log.read_text() and "predicting it again" in resumed.log.read_text()


def test_explicit_axes_and_no_postprocessing(stub_model: dict, model_trained_on_axis_2: Path, tmp_path: Path) -> None:
    done = _predict(model_trained_on_axis_2, stub_model["raw"] / "imagesTs", tmp_path / "out", axes=[0, 1],
                    transforms="identity", postprocess="none", folds=[1])
    assert done.record["axes"] == [0, 1] and done.record["folds"] == [1]
    assert done.record["postprocessing"]["mode"] == "none"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == [f"{c}.nii.gz" for c in done.cases]


@pytest.mark.parametrize(("options", "words"), [
    ({"part_id": 2, "num_parts": 2}, "part_id"),
    ({"transforms": "0,9"}, "transform indices"),
    ({"folds": [0, 4]}, "fold_4"),
    ({"axes": [0, 0]}, "axes must be distinct"),
    ({"inference": "sliding"}, "inference must be one of"),
])
def test_bad_settings_are_refused_before_anything_is_written(stub_model: dict, tmp_path: Path, options: dict,
                                                             words: str) -> None:
    with pytest.raises(PredictionSetupError, match=words):
        _predict(stub_model["model"], stub_model["raw"] / "imagesTs", tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("planned", "given", "used"), [
    (None, None, "tiles"), ("whole", None, "whole"), ("whole", "tiles", "tiles"), ("tiles", "whole", "whole")])
def test_the_model_plans_choose_tiles_or_whole_slices_unless_told(stub_model: dict, tmp_path: Path,
                                                                  planned: str | None, given: str | None,
                                                                  used: str) -> None:
    """``sliceres.inference`` in the model's plans (absent: the default, tiles) is what predict does without
    ``inference``; the argument wins. The record and the log say which ran."""
    model = tmp_path / stub_model["model"].name
    shutil.copytree(stub_model["model"], model)
    plans = json.loads((model / "plans.json").read_text())
    block = plans["configurations"]["2d"]["sliceres"]
    block.pop("inference", None)
    if planned:
        block["inference"] = planned
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    done = _predict(model, stub_model["raw"] / "imagesTs", tmp_path / "out", folds=[0], axes=[0],
                    transforms="identity", inference=given, postprocess="none")
    assert done.record["inference"] == used
    assert ("tiles (step 0.5)" if used == "tiles" else "whole slices") in done.log.read_text()


def test_a_bad_inference_setting_in_the_plans_is_named(stub_model: dict, tmp_path: Path) -> None:
    model = tmp_path / stub_model["model"].name
    shutil.copytree(stub_model["model"], model)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["2d"]["sliceres"]["inference"] = "sliding"
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    with pytest.raises(PredictionSetupError, match='sliceres.inference = "sliding"'):
        _predict(model, stub_model["raw"] / "imagesTs", tmp_path / "out", folds=[0], postprocess="none")
