"""Bad input, command by command: one clear message naming the file or setting, no traceback, no data touched.

Every scenario prepares tiny data, runs the real command in-process (``nnunet_ext.cli.main``) and asserts the
exit code, that the output names the file or key (and does not blame an innocent one), that the sources and
earlier outputs are byte-identical afterwards and that nothing half-done was left behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.cli import main
from nnunet_ext.dataset_conversion.demo_data import write_demo_dataset
from tests.helpers.synthetic import make_raw_dataset

GLI_SHAPE = (16, 16, 12)
GLI_DATASET = "Dataset501_GliBase"
PLAN_DATASET = "Dataset502_Tiny"


@dataclass
class Scenario:
    """A command line and what must (``expect``) and must not (``forbid``) appear in its output."""

    args: list
    rc: int
    expect: list[str]
    watched: list[Path] = field(default_factory=list)  # byte-identical afterwards
    absent: list[Path] = field(default_factory=list)  # must not exist afterwards
    forbid: list[str] = field(default_factory=list)


def digest(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def truncate(path: Path, keep: float = 0.6) -> Path:
    """Cut a file short, as an interrupted download or copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt(path: Path) -> Path:
    """Flip one byte in the middle of the compressed stream (length unchanged)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny downloads (GLI: 2 patients x 2 time points; MEN-RT: 2 cases), their GLI conversion and a raw dataset."""
    root = tmp_path_factory.mktemp("bad_input")
    write_demo_dataset(root / "gli", "gli", 4, GLI_SHAPE, seed=1)
    write_demo_dataset(root / "men", "men-rt", 2, (40, 40, 28), seed=2)
    assert main(["convert", "brats-gli", str(root / "gli"), "-d", "501", "-n", "GliBase", "-j", "1",
                 "--raw-root", str(root / "raw"), "--preprocessed-root", str(root / "pre")]) == 0
    make_raw_dataset(root / "plan_raw", 502, "Tiny", n_cases=2, shape=(6, 8, 8), n_modalities=2)
    return root


@pytest.fixture
def work(base: Path, tmp_path: Path) -> Path:
    """A private copy of the base data: every scenario may break its copy."""
    shutil.copytree(base, tmp_path / "w", symlinks=True)
    return tmp_path / "w"


# --- scenarios: each takes the private copy and returns what to run and what to check -----------------------------

def _gli_labels(w: Path) -> Path:
    return w / "raw" / GLI_DATASET / "labelsTr"


def _predictions(w: Path) -> Path:
    """A prediction folder: copies of the reference labels under their BraTS names."""
    pred = w / "pred"
    shutil.copytree(_gli_labels(w), pred)
    return pred


def _evaluate(w: Path, pred: Path) -> list:
    return ["evaluate", "--pred", pred, "--ref", _gli_labels(w), "--rules", "brats-gli-2024", "-o", w / "eval",
            "-j", "1", "--no-cache"]


def evaluate_truncated_reference(w: Path) -> Scenario:
    pred = _predictions(w)
    bad = truncate(sorted(_gli_labels(w).iterdir())[0])
    return Scenario(_evaluate(w, pred), 2, [str(bad), "truncated"], [pred, _gli_labels(w)], [w / "eval"])


def evaluate_truncated_prediction(w: Path) -> Scenario:
    pred = _predictions(w)
    bad = truncate(sorted(pred.iterdir())[-1])
    return Scenario(_evaluate(w, pred), 2, [str(bad), "truncated"], [pred, _gli_labels(w)], [w / "eval"])


def evaluate_corrupt_prediction(w: Path) -> Scenario:
    pred = _predictions(w)
    bad = corrupt(sorted(pred.iterdir())[0])
    return Scenario(_evaluate(w, pred), 2, [str(bad)], [pred, _gli_labels(w)], [w / "eval"])


def evaluate_extra_prediction_warns(w: Path) -> Scenario:
    pred = _predictions(w)
    shutil.copy(sorted(pred.iterdir())[0], pred / "BraTS-GLI-00099-000.nii.gz")
    return Scenario(_evaluate(w, pred), 0, ["BraTS-GLI-00099-000.nii.gz", "no reference"], [pred, _gli_labels(w)])


def postprocess_truncated_in_place(w: Path) -> Scenario:
    pred = _predictions(w)
    bad = truncate(sorted(pred.iterdir())[1])
    return Scenario(["postprocess", "-i", pred, "-o", pred], 2, [str(bad), "truncated"], [pred])


def postprocess_junk_file_writes_nothing(w: Path) -> Scenario:
    pred = _predictions(w)
    (pred / "zz_notes.nii.gz").write_text("not an image")
    return Scenario(["postprocess", "-i", pred, "-o", w / "pp"], 2, [str(pred / "zz_notes.nii.gz")], [pred],
                    [w / "pp"])


def export_truncated_prediction(w: Path) -> Scenario:
    pred = _predictions(w)
    bad = truncate(sorted(pred.iterdir())[0])
    return Scenario(["export-brats", pred, w / "sub", "--task", "gli"], 2, [str(bad), "truncated"], [pred],
                    [w / "sub"])


def export_last_case_fails_leaves_nothing(w: Path) -> Scenario:
    pred = _predictions(w)
    last = sorted(pred.iterdir())[-1]
    image = sitk.ReadImage(str(last))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 7
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    sitk.WriteImage(bad, str(last))
    return Scenario(["export-brats", pred, w / "sub", "--task", "gli"], 2, [str(last), "[7]"], [pred], [w / "sub"])


def _convert_gli(src: Path, w: Path, *extra: str) -> list:
    return ["convert", "brats-gli", src, *extra, "-j", "1", "--raw-root", w / "raw", "--preprocessed-root", w / "pre"]


def convert_truncated_source(w: Path) -> Scenario:
    bad = truncate(w / "gli" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1c.nii.gz")
    return Scenario(_convert_gli(w / "gli", w, "-d", "503", "--strict"), 2, [str(bad), "truncated"],
                    [w / "gli"], [w / "raw" / "Dataset503_BraTS2024GLI"])


def convert_other_task_into_used_id(w: Path) -> Scenario:
    args = ["convert", "men-rt", w / "men", "-d", "501", "-n", "GliBase", "-j", "1", "--raw-root", w / "raw"]
    return Scenario(args, 2, [str(w / "raw" / GLI_DATASET), "brats-gli", "--take-over"],
                    [w / "raw", w / "pre", w / "men"])


def convert_other_source_into_used_id(w: Path) -> Scenario:
    shutil.copytree(w / "gli", w / "gli_copy")
    return Scenario(_convert_gli(w / "gli_copy", w, "-d", "501", "-n", "GliBase"), 2,
                    [str(w / "raw" / GLI_DATASET), str((w / "gli_copy").resolve()), "--take-over"],
                    [w / "raw", w / "pre", w / "gli_copy"])


def convert_into_foreign_folder(w: Path) -> Scenario:
    mine = make_raw_dataset(w / "raw", 504, "Mine", n_cases=1, shape=(6, 8, 8))
    return Scenario(_convert_gli(w / "gli", w, "-d", "504", "-n", "Mine"), 2,
                    [str(mine), "not created by `nnunet-ext convert`", "--take-over"], [mine, w / "gli"])


def convert_take_over_keeps_foreign_files(w: Path) -> Scenario:
    mine = make_raw_dataset(w / "raw", 504, "Mine", n_cases=1, shape=(6, 8, 8))
    theirs = sorted((mine / "imagesTr").iterdir()) + sorted((mine / "labelsTr").iterdir())
    return Scenario(_convert_gli(w / "gli", w, "-d", "504", "-n", "Mine", "--take-over"), 0, ["taking over"],
                    [*theirs, w / "gli"])


def convert_validation_only_download(w: Path) -> Scenario:
    write_demo_dataset(w / "val", "gli", 2, GLI_SHAPE, seed=5, n_unlabelled=2)
    return Scenario(_convert_gli(w / "val", w, "-d", "505"), 2, ["none of the 2 cases is labelled"], [w / "val"],
                    [w / "raw" / "Dataset505_BraTS2024GLI"])


def convert_missing_label_warns(w: Path) -> Scenario:
    (w / "gli" / "BraTS-GLI-00001-001" / "BraTS-GLI-00001-001-seg.nii.gz").unlink()
    return Scenario(_convert_gli(w / "gli", w, "-d", "506"), 0, ["BraTS-GLI-00001-001", "no label file"],
                    [w / "gli"])


def convert_leaves_no_partial_folders(w: Path) -> Scenario:
    dataset = "Dataset507_BraTS2024GLI"
    return Scenario(_convert_gli(w / "gli", w, "-d", "507"), 0, ["4 training cases"], [w / "gli"],
                    [w / "raw" / dataset / ".partial", w / "pre" / dataset / ".partial"])


def demo_data_grid_too_small_warns(w: Path) -> Scenario:
    return Scenario(["demo-data", w / "demo", "--task", "men-rt", "-n", "2", "--shape", "32", "32", "24"], 0,
                    ["2 of 2 labelled cases have an empty label map", "--shape"])


def _plan(w: Path, *extra: str) -> list:
    return ["plan", "-d", PLAN_DATASET, "-np", "1", "--no-preprocess", *extra]


def _plan_scenario(w: Path, expect: list[str], *extra: str, forbid: list[str] | None = None) -> Scenario:
    return Scenario(_plan(w, *extra), 2, expect, [w / "plan_raw"], [w / "pre" / PLAN_DATASET], forbid or [])


BAD_SETTINGS = {  # --set value -> what the message must contain
    "schedule.max_lr=-1": ["sliceres.schedule.max_lr = -1", "> 0"],
    "loss.focal_gamma=banana": ['sliceres.loss.focal_gamma = "banana"', "number"],
    "batch_size=true": ["sliceres.batch_size = true", "integer"],
    "batch_size=0": ["sliceres.batch_size = 0", ">= 1"],
    "network.class_name=does.not.Exist": ['sliceres.network.class_name = "does.not.Exist"', "imported"],
    "network.kwargs.widths=[8,16]": ["sliceres.network", "cannot be built"],
    "crop_size=[95,95]": ["sliceres.crop_size = [95, 95]", "divisible by 8"],
    "neighbours=-1": ["sliceres.neighbours = -1", ">= 0"],
    "foreground_fraction=abc": ['sliceres.foreground_fraction = "abc"', "[0, 1]"],
    "optimizer.betas=[0.9]": ["sliceres.optimizer.betas = [0.9]", "two numbers"],
}


def _bad_setting(item: str) -> Callable[[Path], Scenario]:
    return lambda w: _plan_scenario(w, BAD_SETTINGS[item], "--set", item)


def plan_every_bad_setting_one_line_each(w: Path) -> Scenario:
    items = ["schedule.max_lr=-1", "batch_size=true", "network.class_name=does.not.Exist"]
    return _plan_scenario(w, [BAD_SETTINGS[i][0] for i in items], *(a for i in items for a in ("--set", i)))


def plan_malformed_preset(w: Path) -> Scenario:
    preset = w / "preset.json"
    preset.write_text('{"batch_size": 16,}')
    return _plan_scenario(w, [str(preset), "not valid JSON"], "--preset", str(preset))


def plan_truncated_image(w: Path) -> Scenario:
    bad = truncate(w / "plan_raw" / PLAN_DATASET / "imagesTr" / "case_001_0001.nii.gz")
    return _plan_scenario(w, [str(bad), "truncated"])


def plan_4d_first_channel(w: Path) -> Scenario:
    first = w / "plan_raw" / PLAN_DATASET / "imagesTr" / "case_000_0000.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 6, 8, 8), np.float32), isVector=False), str(first))
    return _plan_scenario(w, [f"{first}: is a 4D image"], forbid=["case_000_0001.nii.gz", "labelsTr"])


def plan_missing_dataset_json(w: Path) -> Scenario:
    path = w / "plan_raw" / PLAN_DATASET / "dataset.json"
    path.unlink()
    return _plan_scenario(w, [str(path), "missing"])


def plan_malformed_dataset_json(w: Path) -> Scenario:
    path = w / "plan_raw" / PLAN_DATASET / "dataset.json"
    path.write_text(path.read_text()[:-5])
    return _plan_scenario(w, [str(path), "not valid JSON"])


def plan_label_without_images(w: Path) -> Scenario:
    labels = w / "plan_raw" / PLAN_DATASET / "labelsTr"
    shutil.copy(labels / "case_000.nii.gz", labels / "orphan.nii.gz")
    return _plan_scenario(w, [str(labels / "orphan.nii.gz"), "label without images"])


def predict_truncated_input(w: Path, model: dict) -> Scenario:
    inputs = w / "inputs"
    shutil.copytree(model["raw"] / "imagesTs", inputs)
    bad = truncate(sorted(inputs.iterdir())[2])
    args = ["predict", "-m", model["model"], "-i", inputs, "-o", w / "out", "-device", "cpu", "-npp", "1",
            "-nps", "1"]
    return Scenario(args, 2, [str(bad), "truncated"], [inputs], [w / "out"])


SCENARIOS: dict[str, Callable[[Path], Scenario]] = {
    **{name: function for name, function in globals().items()
       if callable(function) and name.split("_")[0] in ("evaluate", "postprocess", "export", "convert", "demo",
                                                        "plan") and not name.startswith("_")},
    **{f"plan_set_{item}": _bad_setting(item) for item in BAD_SETTINGS},
}


def _run(args: list, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    """Exit code and all output (stdout, stderr, log records) of one in-process command."""
    message = ""
    with caplog.at_level(logging.INFO):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as stop:  # argparse's exit (main returns the code of every other end)
            rc = stop.code if isinstance(stop.code, int) else (1 if stop.code else 0)
            message = stop.code if isinstance(stop.code, str) else ""
    captured = capsys.readouterr()
    return rc, "\n".join([captured.out, captured.err, caplog.text, message])


def _check(scenario: Scenario, capsys, caplog) -> None:
    before = {path: digest(path) for path in scenario.watched}
    rc, output = _run(scenario.args, capsys, caplog)
    assert rc == scenario.rc, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for words in scenario.expect:
        assert words in output, (words, output[-3000:])
    for words in scenario.forbid:
        assert words not in output, (words, output[-3000:])
    for path, state in before.items():
        assert digest(path) == state, f"{path} changed"
    for path in scenario.absent:
        assert not path.exists(), f"{path} was left behind"


@pytest.fixture
def nnunet_paths(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's folders for ``plan`` (nnU-Net reads the variables when it uses them)."""
    for name, folder in (("nnUNet_raw", "plan_raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "results")):
        monkeypatch.setenv(name, str(work / folder))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_bad_input(name: str, work: Path, nnunet_paths: None, capsys, caplog) -> None:
    _check(SCENARIOS[name](work), capsys, caplog)


def test_bad_input_predict(work: Path, stub_model: dict, capsys, caplog) -> None:
    _check(predict_truncated_input(work, stub_model), capsys, caplog)


def test_converted_owner_record_and_no_partials(base: Path) -> None:
    """The base conversion recorded who owns the folder and left no scratch folder anywhere."""
    owner = json.loads((base / "raw" / GLI_DATASET / "conversion_owner.json").read_text())
    assert owner == {"task": "brats-gli", "source": str((base / "gli").resolve())}
    assert not list(base.rglob(".partial"))
