"""Post-processing on hand-built label maps: component sizes, connectivity, the BraTS cascade refill, records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.inference import postprocessing as pp

NETC, SNFH, ET, RC = 1, 2, 3, 4
BRATS_JSON = {"labels": {"background": 0, "NETC": NETC, "SNFH": SNFH, "ET": ET, "RC": RC}, "file_ending": ".nii.gz"}


def _cube(seg: np.ndarray, corner: tuple[int, int, int], size: tuple[int, int, int], label: int) -> None:
    seg[tuple(slice(c, c + s) for c, s in zip(corner, size))] = label


def test_components_are_removed_per_label_at_the_threshold() -> None:
    seg = np.zeros((20, 20, 20), np.uint8)
    _cube(seg, (0, 0, 0), (4, 4, 4), 1)  # 64 voxels: kept at min size 64
    _cube(seg, (10, 10, 10), (3, 3, 7), 1)  # 63 voxels: removed
    _cube(seg, (4, 0, 0), (1, 2, 2), 2)  # 4 voxels of label 2 touching the big label-1 cube: removed
    out = pp.remove_small_components(seg, 64)
    assert (out[:4, :4, :4] == 1).all()
    assert out[10:13, 10:13, 10:17].max() == 0
    assert out[4, :2, :2].max() == 0
    assert seg[10, 10, 10] == 1, "the input must not be modified"


def test_connectivity_decides_what_a_component_is() -> None:
    seg = np.zeros((6, 6, 6), np.uint8)
    seg[1, 1, 1] = seg[2, 2, 2] = 1  # corner neighbours
    assert (pp.remove_small_components(seg, 2, connectivity=26) == seg).all()
    assert pp.remove_small_components(seg, 2, connectivity=6).max() == 0


def _brats_case() -> np.ndarray:
    seg = np.zeros((40, 40, 40), np.uint8)
    _cube(seg, (2, 2, 2), (20, 20, 20), SNFH)  # large whole tumour
    _cube(seg, (6, 6, 6), (8, 8, 8), NETC)  # large core inside it
    _cube(seg, (8, 8, 8), (2, 2, 2), ET)  # 8-voxel ET speck inside the core
    _cube(seg, (16, 16, 16), (2, 2, 2), NETC)  # small core island (8 NETC + 4 ET = 12) inside the oedema
    _cube(seg, (16, 16, 18), (2, 2, 1), ET)
    _cube(seg, (30, 30, 30), (2, 2, 2), SNFH)  # small whole-tumour island elsewhere
    _cube(seg, (30, 2, 2), (5, 5, 5), ET)  # large ET component of its own: kept as ET
    _cube(seg, (2, 30, 30), (2, 2, 2), RC)  # small cavity: removed per label
    _cube(seg, (24, 30, 30), (5, 5, 5), RC)  # large cavity: kept
    return seg


def test_brats_cascade_refills_with_the_next_region_label() -> None:
    steps = pp.cascade_steps(pp.cascade_regions(BRATS_JSON))
    assert steps == (((ET,), NETC), ((NETC, ET), SNFH), ((NETC, SNFH, ET), 0))
    seg = _brats_case()
    out = pp.apply(seg, pp.Setting("cascade", 20, cascade=steps))
    assert (out[8:10, 8:10, 8:10] == NETC).all(), "small ET inside the core becomes NETC"
    assert (out[16:18, 16:18, 16:19] == SNFH).all(), "small core island inside the oedema becomes SNFH"
    assert out[30:32, 30:32, 30:32].max() == 0, "small whole-tumour island is removed"
    assert (out[30:35, 2:7, 2:7] == ET).all()
    assert out[2:4, 30:32, 30:32].max() == 0 and (out[24:29, 30:35, 30:35] == RC).all()
    # nothing else changed
    changed = out != seg
    assert changed.sum() == 8 + 12 + 8 + 8
    # per-label removal instead would punch holes: the ET speck becomes background inside the core
    plain = pp.apply(seg, pp.Setting("components", 20))
    assert plain[8, 8, 8] == 0


def test_postprocessing_is_idempotent() -> None:
    seg = _brats_case()
    for setting in (pp.Setting("components", 20), pp.Setting("cascade", 20, cascade=pp.cascade_steps(
            pp.cascade_regions(BRATS_JSON)))):
        once = pp.apply(seg, setting)
        assert (pp.apply(once, setting) == once).all()


def test_cascade_regions_of_region_models_and_bad_regions() -> None:
    regions_json = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing": 3}}
    assert pp.cascade_steps(pp.cascade_regions(regions_json)) == (((3,), 2), ((2, 3), 1), ((1, 2, 3), 0))
    with pytest.raises(ValueError, match="lack"):
        pp.cascade_regions({"labels": {"background": 0, "tumour": 1}})
    with pytest.raises(ValueError, match="nested"):
        pp.cascade_steps([(1,), (2, 3)])


def test_setting_record_round_trip_and_bad_record(tmp_path: Path) -> None:
    assert pp.load_setting(tmp_path) is None
    setting = pp.Setting("cascade", 32, 18, pp.cascade_steps(pp.cascade_regions(BRATS_JSON)))
    path = pp.save_setting(tmp_path, setting)
    assert path.name == pp.RECORD_NAME and pp.load_setting(tmp_path) == setting
    path.write_text(json.dumps({"mode": "shrink", "min_size": 3}))
    with pytest.raises(ValueError, match=pp.RECORD_NAME):
        pp.load_setting(tmp_path)


def test_postprocess_folder_keeps_geometry_and_writes_atomically(tmp_path: Path) -> None:
    source, target = tmp_path / "pred", tmp_path / "post"
    source.mkdir()
    seg = _brats_case()
    image = sitk.GetImageFromArray(seg)
    image.SetSpacing((1.0, 1.5, 2.0))
    image.SetOrigin((10.0, -3.0, 7.0))
    sitk.WriteImage(image, str(source / "case_a.nii.gz"))
    written = pp.postprocess_folder(source, target, pp.Setting("components", 20))
    assert [p.name for p in written] == ["case_a.nii.gz"]
    result = sitk.ReadImage(str(written[0]))
    assert result.GetSpacing() == image.GetSpacing() and result.GetOrigin() == image.GetOrigin()
    assert (sitk.GetArrayFromImage(result) == pp.remove_small_components(seg, 20)).all()
    assert sorted(p.name for p in target.iterdir()) == ["case_a.nii.gz"], "no temporary files left behind"
    with pytest.raises(FileNotFoundError, match="case_b"):
        pp.postprocess_folder(source, target, pp.Setting("components", 20), case_ids=["case_b"])


def test_cli_records_a_setting_and_predictions_get_it(tmp_path: Path) -> None:
    model, predictions, output = tmp_path / "model", tmp_path / "pred", tmp_path / "post"
    model.mkdir()
    predictions.mkdir()
    (model / "plans.json").write_text("{}")
    (model / "dataset.json").write_text(json.dumps(BRATS_JSON))
    sitk.WriteImage(sitk.GetImageFromArray(_brats_case()), str(predictions / "case_a.nii.gz"))
    record = subprocess.run(["nnunet-ext", "postprocess", "-m", str(model), "--record", "--mode", "cascade",
                             "--min-size", "20"], capture_output=True, text=True)
    assert record.returncode == 0, record.stderr
    assert pp.load_setting(model).mode == "cascade"
    applied = subprocess.run(["nnunet-ext", "postprocess", "-i", str(predictions), "-o", str(output), "-m",
                              str(model)], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(output / "case_a.nii.gz")))
    assert (result == pp.apply(_brats_case(), pp.load_setting(model))).all()
    assert result[8, 8, 8] == NETC  # refilled by the cascade, not removed
    bad = subprocess.run(["nnunet-ext", "postprocess", "-m", str(predictions), "--record", "--mode", "cascade"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "dataset.json" in bad.stderr
