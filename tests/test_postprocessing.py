"""Post-processing on hand-built label maps: per-label removal, the region cascade that keeps the core, records,
and the per-region selection on hand-built cross-validation predictions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.evaluation.legacy import Overlap, dice
from nnunet_ext.inference import postprocessing as pp
from nnunet_ext.inference import postprocessing_selection as sel

NETC, SNFH, ET, RC = 1, 2, 3, 4
BRATS_JSON = {"labels": {"background": 0, "NETC": NETC, "SNFH": SNFH, "ET": ET, "RC": RC}, "file_ending": ".nii.gz"}
TC, WT = (NETC, ET), (NETC, SNFH, ET)


def _cube(seg: np.ndarray, corner: tuple[int, int, int], size: tuple[int, int, int], label: int) -> None:
    seg[tuple(slice(c, c + s) for c, s in zip(corner, size))] = label


def _region_dice(reference: np.ndarray, prediction: np.ndarray, region: tuple[int, ...]) -> float:
    """Dice of one region with the evaluation package (independent of the selection's component statistics)."""
    return dice(Overlap.of(np.isin(reference, region), np.isin(prediction, region)))


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
    _cube(seg, (2, 30, 30), (2, 2, 2), RC)  # small cavity: removed on its own
    _cube(seg, (24, 30, 30), (5, 5, 5), RC)  # large cavity: kept
    return seg


def test_brats_cascade_refills_with_the_next_region_label() -> None:
    regions = pp.layout(BRATS_JSON)
    assert regions.cascade == (((ET,), NETC), (TC, SNFH), (WT, 0)) and regions.separate == ((RC,),)
    assert [regions.name(r) for r in regions.scored()] == ["ET", "TC", "WT", "NETC", "SNFH", "RC"]
    seg = _brats_case()
    out = pp.apply(seg, pp.cascade_setting(BRATS_JSON, 20))
    assert (out[8:10, 8:10, 8:10] == NETC).all(), "small ET inside the core becomes NETC"
    assert (out[16:18, 16:18, 16:19] == SNFH).all(), "small core island inside the oedema becomes SNFH"
    assert out[30:32, 30:32, 30:32].max() == 0, "small whole-tumour island is removed"
    assert (out[30:35, 2:7, 2:7] == ET).all()
    assert out[2:4, 30:32, 30:32].max() == 0 and (out[24:29, 30:35, 30:35] == RC).all()
    changed = out != seg
    assert changed.sum() == 8 + 12 + 8 + 8, "nothing else changed"


def test_auto_default_keeps_the_core_where_labels_nest() -> None:
    """Per-label removal turns a large core of small NETC and ET pieces into a hole; auto acts on regions."""
    seg = np.zeros((30, 30, 30), np.uint8)
    _cube(seg, (2, 2, 2), (16, 16, 16), SNFH)
    _cube(seg, (6, 6, 6), (5, 4, 2), NETC)  # 40 NETC voxels ...
    _cube(seg, (6, 6, 8), (5, 4, 2), ET)  # ... and 40 ET voxels: an 80-voxel core, each label under 64
    _cube(seg, (6, 12, 12), (2, 2, 2), ET)  # an 8-voxel ET speck inside ...
    _cube(seg, (5, 11, 11), (4, 4, 1), NETC)  # ... a second core piece, touching it
    core = np.isin(seg, TC)
    per_label = pp.apply(seg, pp.Setting("components", 64))
    assert not np.isin(per_label, TC)[core].any() and (per_label[core] == 0).all(), "per-label removal: a hole"
    auto = pp.resolve_setting("auto", BRATS_JSON)
    assert auto.mode == "cascade"
    out = pp.apply(seg, auto)
    assert np.isin(out, WT)[np.isin(seg, WT)].all(), "the whole tumour keeps every voxel"
    assert (out[6:8, 12:14, 12:14] == SNFH).all(), "the speck's small core piece (24 voxels) stays tumour"
    assert (out[6:11, 6:10, 6:10] == NETC).all(), "the 80-voxel core stays core; its small ET part becomes NETC"
    # datasets without nested labels keep per-label removal
    assert pp.resolve_setting("auto", {"labels": {"background": 0, "tumour": 1}}).mode == "components"


def test_resolve_setting_uses_the_record_and_refuses_one_size_for_selected_rules() -> None:
    recorded = pp.Setting("selected", 0, 26, (pp.Rule((ET,), NETC, min_fraction=0.2, name="ET"),))
    assert pp.resolve_setting("auto", BRATS_JSON, recorded) is recorded
    assert pp.resolve_setting("components", BRATS_JSON, recorded, 32) == pp.Setting("components", 32)
    with pytest.raises(ValueError, match="selected per region"):
        pp.resolve_setting("auto", BRATS_JSON, recorded, min_size=32)
    cascade = pp.resolve_setting("auto", BRATS_JSON, pp.cascade_setting(BRATS_JSON, 20), min_size=40)
    assert cascade.mode == "cascade" and {r.min_size for r in cascade.rules} == {40}
    with pytest.raises(ValueError, match="nested regions"):
        pp.resolve_setting("cascade", {"labels": {"background": 0, "tumour": 1}})


def test_fraction_rule_removes_components_relative_to_the_largest() -> None:
    seg = np.zeros((20, 20, 20), np.uint8)
    _cube(seg, (0, 0, 0), (4, 4, 4), 1)  # 64 voxels, the largest
    _cube(seg, (10, 0, 0), (4, 4, 2), 1)  # 32 = 0.5 x largest: kept at fraction 0.5
    _cube(seg, (0, 10, 0), (3, 3, 3), 1)  # 27 < 32: removed
    out = pp.apply_rule(seg, pp.Rule((1,), 0, min_fraction=0.5))
    assert out[1, 11, 1] == 0 and (out[10:14, :4, :2] == 1).all() and (out[:4, :4, :4] == 1).all()
    assert pp.apply_rule(seg, pp.Rule((1,), 0, min_fraction=1.0)).sum() == 64, "fraction 1 keeps the largest"


def test_postprocessing_is_idempotent() -> None:
    seg = _brats_case()
    selected = pp.Setting("selected", 0, 26, (pp.Rule((ET,), NETC, min_fraction=0.5), pp.Rule(TC, SNFH, 16),
                                              pp.Rule(WT, 0, min_fraction=0.1), pp.Rule((RC,), 0, 9)))
    for setting in (pp.Setting("components", 20), pp.cascade_setting(BRATS_JSON, 20), selected):
        once = pp.apply(seg, setting)
        assert (pp.apply(once, setting) == once).all()


def test_layout_of_region_models_and_bad_regions() -> None:
    regions_json = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing": 3,
                               "cavity": [4]}, "regions_class_order": [1, 2, 3, 4]}
    regions = pp.layout(regions_json)
    assert regions.cascade == (((3,), 2), ((2, 3), 1), ((1, 2, 3), 0)) and regions.separate == ((4,),)
    assert regions.name((2, 3)) == "tumor core"
    with pytest.raises(ValueError, match="overlap without nesting"):
        pp.layout({"labels": {"background": 0, "a": [1, 2], "b": [2, 3, 4]}, "regions_class_order": [1, 2]})
    with pytest.raises(ValueError, match="nested"):
        pp.cascade_steps([(1,), (2, 3)])
    assert pp.layout({"labels": {"background": 0, "a": 1, "b": 2}}) == pp.Layout((), ((1,), (2,)),
                                                                                  {(1,): "a", (2,): "b"})


def test_setting_record_round_trip_and_bad_record(tmp_path: Path) -> None:
    assert pp.load_setting(tmp_path) is None
    for setting in (pp.Setting("cascade", 32, 18, pp.layout(BRATS_JSON).rules(32)),
                    pp.Setting("selected", 0, 6, (pp.Rule((ET,), NETC, 0, 0.25, "ET"),))):
        path = pp.save_setting(tmp_path, setting, {"cases": 3})
        assert path.name == pp.RECORD_NAME and pp.load_setting(tmp_path) == setting
        assert json.loads(path.read_text())["selection"] == {"cases": 3}
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


def _model_folder(root: Path, name: str = "Dataset901_PP") -> Path:
    model = root / "model"
    model.mkdir()
    (model / "plans.json").write_text(json.dumps({"dataset_name": name, "image_reader_writer": "SimpleITKIO"}))
    (model / "dataset.json").write_text(json.dumps(BRATS_JSON))
    return model


def test_cli_default_keeps_the_core_and_records_a_setting(tmp_path: Path) -> None:
    model, predictions, output = _model_folder(tmp_path), tmp_path / "pred", tmp_path / "post"
    predictions.mkdir()
    (predictions / "dataset.json").write_text(json.dumps(BRATS_JSON))  # as nnU-Net's prediction folders have
    sitk.WriteImage(sitk.GetImageFromArray(_brats_case()), str(predictions / "case_a.nii.gz"))
    default = subprocess.run(["nnunet-ext", "postprocess", "-i", str(predictions), "-o", str(output)],
                             capture_output=True, text=True)
    assert default.returncode == 0, default.stderr
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(output / "case_a.nii.gz")))[8, 8, 8] == NETC, "speck -> NETC"
    record = subprocess.run(["nnunet-ext", "postprocess", "-m", str(model), "--record", "--mode", "components",
                             "--min-size", "20"], capture_output=True, text=True)
    assert record.returncode == 0, record.stderr
    assert pp.load_setting(model) == pp.Setting("components", 20)
    applied = subprocess.run(["nnunet-ext", "postprocess", "-i", str(predictions), "-o", str(output), "-m",
                              str(model)], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(output / "case_a.nii.gz")))
    assert (result == pp.remove_small_components(_brats_case(), 20)).all(), "the recorded setting, not the default"


def _random_brats(rng: np.random.Generator, shape: tuple[int, int, int] = (24, 24, 24)) -> np.ndarray:
    """Blobby nested labels: random WT blobs, TC blobs inside them, ET blobs inside the core, some RC."""
    from scipy import ndimage

    def blobs(threshold: float) -> np.ndarray:
        return ndimage.gaussian_filter(rng.standard_normal(shape), 1.2) > threshold

    wt, tc, et = blobs(0.12), blobs(0.05), blobs(0.08)
    seg = np.zeros(shape, np.uint8)
    seg[wt] = SNFH
    seg[wt & tc] = NETC
    seg[wt & tc & et] = ET
    seg[~wt & blobs(0.2)] = RC
    return seg


def test_selection_scores_match_the_applied_rules() -> None:
    """Dice from the component statistics equals Dice of the post-processed maps, for any mix of rules."""
    rng = np.random.default_rng(0)
    regions = pp.layout(BRATS_JSON)
    pairs = [(_random_brats(rng), _random_brats(rng)) for _ in range(3)]
    stats = [sel.case_stats(f"case{i}", p, r, regions) for i, (p, r) in enumerate(pairs)]
    assert sum(s.cascade[0].sizes.size for s in stats) > 6, "the random maps have several ET components"
    combos = [{}, {(ET,): pp.Rule((ET,), NETC, 10)}, {TC: pp.Rule(TC, SNFH, min_fraction=0.3)},
              {(ET,): pp.Rule((ET,), NETC, min_fraction=0.6), TC: pp.Rule(TC, SNFH, 30),
               WT: pp.Rule(WT, 0, min_fraction=0.2), (RC,): pp.Rule((RC,), 0, 12)}]
    for rules in combos:
        setting = pp.Setting("selected", 0, 26, tuple(rules.values()))
        for (prediction, reference), case in zip(pairs, stats):
            processed = pp.apply(prediction, setting)
            scores = sel.case_dice(case, regions, rules)
            for region in regions.scored():
                assert scores[region] == pytest.approx(_region_dice(reference, processed, region), abs=1e-12)
        if rules:
            assert any((pp.apply(p, setting) != p).any() for p, _ in pairs), "each mix removes something"


def test_selection_picks_the_rule_that_raises_dice_where_sizes_vary() -> None:
    """A false positive of 80 voxels beside a large ET and one of 2 beside a 27-voxel ET: no minimum size removes
    both and keeps the small true ET, a fraction of the largest does."""
    regions = pp.layout(BRATS_JSON)
    cases = []
    for true_size, fp_size in ((8, (4, 4, 5)), (3, (1, 1, 2))):
        reference = np.zeros((30, 30, 30), np.uint8)
        _cube(reference, (1, 1, 1), (true_size,) * 3, ET)
        prediction = reference.copy()
        _cube(prediction, (15, 15, 15), fp_size, ET)
        cases.append(sel.case_stats(f"c{true_size}", prediction, reference, regions))
    rules, decisions = sel.select(cases, regions)
    et = decisions[0]
    assert et.rule.region == (ET,) and et.kept and et.rule.min_fraction > 0 and et.dice_after == 1.0
    for rule in sel.candidates((ET,), NETC, "ET", sel.MIN_SIZES, ()):
        assert sel.mean_dice(cases, regions, {(ET,): rule})[(ET,)] < et.dice_after
    # the false positives lie outside any tumour: as NETC they are false core, as SNFH false whole tumour
    assert [r.region for r in rules] == [(ET,), TC, WT], "RC has nothing to gain"
    assert set(sel.mean_dice(cases, regions, {r.region: r for r in rules}).values()) == {1.0}


def _validation_case(fp_et: bool, fp_rc: bool) -> tuple[np.ndarray, np.ndarray]:
    """A reference with a small true whole-tumour island, and a prediction adding false-positive specks."""
    reference = np.zeros((24, 24, 24), np.uint8)
    _cube(reference, (1, 1, 1), (13, 13, 13), SNFH)
    _cube(reference, (3, 3, 3), (8, 8, 8), NETC)
    _cube(reference, (4, 4, 4), (4, 4, 4), ET)  # 64 voxels of true ET
    _cube(reference, (18, 18, 18), (3, 3, 3), SNFH)  # 27 voxels of true whole tumour, alone
    _cube(reference, (18, 1, 1), (4, 4, 4), RC)
    prediction = reference.copy()
    if fp_et:
        _cube(prediction, (9, 9, 9), (2, 2, 2), ET)  # inside the core, not touching the true ET
    if fp_rc:
        _cube(prediction, (1, 18, 18), (2, 2, 2), RC)
    return prediction, reference


def test_cli_selects_on_validation_predictions_and_predict_applies_it(nnunet_dirs: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    model = _model_folder(tmp_path)
    references = nnunet_dirs["nnUNet_preprocessed"] / "Dataset901_PP" / "gt_segmentations"
    references.mkdir(parents=True)
    no_validation = subprocess.run(["nnunet-ext", "postprocess", "--select", "-m", str(model)],
                                   capture_output=True, text=True)
    assert no_validation.returncode != 0 and "fold_*/validation" in no_validation.stderr
    assert "Traceback" not in no_validation.stderr and not (model / pp.RECORD_NAME).exists()
    specks = {"a": (True, False), "b": (True, True), "c": (False, True), "d": (True, False)}
    for i, (case, (fp_et, fp_rc)) in enumerate(specks.items()):
        prediction, reference = _validation_case(fp_et, fp_rc)
        folder = model / f"fold_{i % 2}" / "validation"
        folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(prediction), str(folder / f"{case}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(reference), str(references / f"{case}.nii.gz"))
    result = subprocess.run(["nnunet-ext", "postprocess", "--select", "-m", str(model)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "ET " in result.stdout and "kept" in result.stdout
    record = json.loads((model / pp.RECORD_NAME).read_text())
    kept = {d["region"]: d["kept"] for d in record["selection"]["decisions"]}
    assert kept == {"ET": True, "TC": False, "WT": False, "RC": True}, "WT removal would drop the true island"
    assert record["selection"]["folds"] == ["0", "1"] and record["selection"]["cases"] == len(specks)
    setting = pp.load_setting(model)
    assert setting.mode == "selected" and pp.resolve_setting("auto", BRATS_JSON, setting) == setting
    # the recorded Dice is what the applied setting scores, computed independently on the written files
    for fold in ("0", "1"):
        pp.postprocess_folder(model / f"fold_{fold}" / "validation", tmp_path / "pp", setting)
    for name, region in (("ET", (ET,)), ("RC", (RC,)), ("NETC", (NETC,)), ("WT", WT)):
        scores = {"none": [], "selected": []}
        for case in specks:
            reference = sitk.GetArrayFromImage(sitk.ReadImage(str(references / f"{case}.nii.gz")))
            fold = next(model.glob(f"fold_*/validation/{case}.nii.gz"))
            for key, path in (("none", fold), ("selected", tmp_path / "pp" / f"{case}.nii.gz")):
                scores[key].append(_region_dice(reference, sitk.GetArrayFromImage(sitk.ReadImage(str(path))), region))
        recorded = record["selection"]["mean_dice"][name]
        assert recorded == pytest.approx({k: float(np.mean(v)) for k, v in scores.items()}, abs=1e-9)
    assert record["selection"]["mean_dice"]["ET"]["selected"] > record["selection"]["mean_dice"]["ET"]["none"]
