"""SliceRes settings in the plans: derivation rules, --set/presets, materialisation, and `nnunet-ext plan`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_ext.planning import settings
from nnunet_ext.planning.sliceres_settings import DEFAULTS, SettingsError, SliceResSettings, check_known_keys
from nnunet_ext.training.materialise import sliceres_plans
from tests.helpers.synthetic import make_raw_dataset


def plan_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "plan", *args], capture_output=True, text=True,
                          timeout=300)


def test_parse_set_builds_nested_json_overrides():
    overrides = settings.parse_set(["loss.focal_gamma=1.5", "axes=[0, 2]", "epoch.mode=iterations", "seed=3"])
    assert overrides == {"loss": {"focal_gamma": 1.5}, "axes": [0, 2], "epoch": {"mode": "iterations"}, "seed": 3}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        settings.parse_set(["neighbours"])
    with pytest.raises(ValueError, match="unknown SliceRes setting 'loss.gama'"):
        check_known_keys(settings.parse_set(["loss.gama=1"]))


@pytest.mark.parametrize("spacing, axes", [([1.0, 1.0, 1.0], [0, 1, 2]), ([2.5, 1.0, 1.0], [0, 1, 2]),
                                           ([5.0, 1.0, 1.0], [0]), ([1.0, 1.0, 4.0], [0, 2])])
def test_axes_follow_nnunet_anisotropy_threshold(spacing, axes):
    assert settings.auto_axes(spacing) == axes


def test_derived_neighbours_and_window_depth():
    one = settings.build({}, num_modalities=1, spacing=[1, 1, 1], min_depth=140)
    four = settings.build({}, num_modalities=4, spacing=[1, 1, 1], min_depth=10)
    assert (one["neighbours"], one["inference_window_depth"]) == (3, 32)
    assert (four["neighbours"], four["inference_window_depth"]) == (2, 10)
    assert settings.build({}, 4, [1, 1, 1], min_depth=3)["inference_window_depth"] == 5  # never below 2k+1
    explicit = settings.build({"neighbours": 1, "axes": [1]}, 4, [1, 1, 1], 50)
    assert (explicit["neighbours"], explicit["axes"]) == (1, [1])


@pytest.mark.parametrize("override, key", [({"crop_size": [90, 90]}, "crop_size"), ({"crop_size": [96, 64]},
                                           "crop_size"), ({"axes": [3]}, "axes"), ({"epoch": {"mode": "x"}},
                                           "epoch.mode"), ({"inference_window_depth": 3}, "inference_window_depth")])
def test_invalid_settings_name_the_key(override, key):
    with pytest.raises(ValueError, match=f"sliceres.{key}"):
        settings.build(override, 4, [1, 1, 1], 100)


@pytest.mark.parametrize("overrides", [{}, {"loss": {"focal_alpha": "inverse_frequency", "focal_gamma": 2},
                                        "foreground_fraction": 1, "seed": 3, "augmentation": []},
                                       settings.load_preset("paper")])
def test_typed_settings_round_trip_the_plans_block_exactly(overrides):
    block = settings.build(overrides, 4, [1, 1, 1], 140)
    typed = SliceResSettings.from_dict(block)
    assert typed.to_dict() == block and json.dumps(typed.to_dict()) == json.dumps(block)  # same keys, order, values
    assert SliceResSettings.from_dict(typed.to_dict()) == typed
    assert typed.loss.focal_gamma == block["loss"]["focal_gamma"] and typed.crop_size == (96, 96)
    assert typed.schedule.warmup_start_lr == block["schedule"]["initial_lr"] == 4e-5  # the plans key stays
    assert SliceResSettings().to_dict() == DEFAULTS and SliceResSettings.from_dict({}, resolved=False) == \
        SliceResSettings()
    with pytest.raises(AttributeError):
        typed.batch_size = 1  # frozen: changed copies come from dataclasses.replace
    with pytest.raises(TypeError):
        typed.network.kwargs["widths"] = [8]


@pytest.mark.parametrize("override, line", [
    ({"neighbours": 1.5}, "sliceres.neighbours = 1.5: must be an integer >= 0 (slices per side)"),
    ({"epoch": {"val_iterations_per_epoch": 0}},
     "sliceres.epoch.val_iterations_per_epoch = 0: must be an integer >= 1"),
    ({"network": {"class_name": "SliceResNet"}}, 'sliceres.network.class_name = "SliceResNet": must be an importable '
                                                 "class path such as 'nnunet_ext.network.sliceres_net.SliceResNet'"),
    ({"loss": {"focal_gamma": -1}}, "sliceres.loss.focal_gamma = -1: must be a number >= 0"),
    ({"optimizer": {"weight_decay": None}}, "sliceres.optimizer.weight_decay = null: must be a number >= 0"),
    ({"schedule": {"initial_lr": 0}}, "sliceres.schedule.initial_lr = 0: must be a number > 0"),
    ({"seed": "x"}, 'sliceres.seed = "x": must be an integer or null')])
def test_typed_settings_name_key_value_and_what_is_allowed(override, line):
    block = settings.build({}, 4, [1, 1, 1], 140)
    with pytest.raises(SettingsError) as error:
        SliceResSettings.from_dict(settings.deep_merge(block, override))
    assert error.value.problems == [line]


def test_typed_settings_report_every_problem_in_the_order_of_the_plans():
    with pytest.raises(SettingsError) as error:
        SliceResSettings.from_dict({"batch_size": 0, "loss": {"dice_eps": 0}, "seed": 1.5}, resolved=False)
    assert [p.split(" = ")[0] for p in error.value.problems] == ["sliceres.batch_size", "sliceres.loss.dice_eps",
                                                                 "sliceres.seed"]
    with pytest.raises(SettingsError, match="sliceres.neighbours = null: must be an integer"):
        SliceResSettings.from_dict({})  # a trainer's settings have the derived keys set


@pytest.mark.parametrize("preset, modalities, channels", [("brats_gli", 4, 20), ("men_rt", 1, 7)])
def test_presets_resolve_to_published_input_channels(preset, modalities, channels):
    block = settings.build(settings.load_preset(preset), modalities, [1, 1, 1], 140)
    assert modalities * (2 * block["neighbours"] + 1) == channels
    assert block["epoch"]["mode"] == "all_slices" and block["num_epochs"] == 100


def test_materialised_plans_build_a_slice_block_network():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    block = settings.build({"network": {"kwargs": {"widths": [8, 16, 32, 64]}}}, 2, [1, 1, 1], 12)
    plans = {"configurations": {"2d": {"batch_size": 12, "patch_size": [64, 64], "sliceres": block,
                                       "architecture": {"network_class_name": "stock", "arch_kwargs": {},
                                                        "_kw_requires_import": []}}}}
    materialised = sliceres_plans(plans, "2d")
    assert plans["configurations"]["2d"]["patch_size"] == [64, 64]  # the input plans are not modified
    conf = PlansManager(materialised).get_configuration("2d")
    assert conf.patch_size == [12, 96, 96] and conf.batch_size == 32
    net = get_network_from_plans(conf.network_arch_class_name, conf.network_arch_init_kwargs,
                                 conf.network_arch_init_kwargs_req_import, 2, 3, deep_supervision=False)
    assert net(torch.randn(1, 2, 12, 96, 96)).shape == (1, 3, 12, 96, 96)
    with pytest.raises(KeyError, match="nnunet-ext plan"):
        sliceres_plans({"configurations": {"3d_fullres": {}}}, "3d_fullres")


@pytest.mark.e2e
def test_plan_cli_writes_block_beside_stock_configurations(nnunet_dirs):
    make_raw_dataset(nnunet_dirs["nnUNet_raw"], 511, "Aniso", n_cases=2, shape=(8, 16, 16), n_modalities=1,
                     spacing=(4.0, 1.0, 1.0))
    result = plan_cli("-d", "511", "-np", "1", "--no-preprocess", "--preset", "men_rt",
                      "--set", "batch_size=8", "--set", "loss.focal_gamma=1.5")
    assert result.returncode == 0, result.stderr[-3000:]
    plans = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset511_Aniso" / "nnUNetPlans.json").read_text())
    block = plans["configurations"]["2d"]["sliceres"]
    assert block["neighbours"] == 3 and block["batch_size"] == 8 and block["loss"]["focal_gamma"] == 1.5
    assert block["axes"] == [0]  # 4 mm slices: only nnU-Net's 2d plane is near-isotropic
    assert block["inference_window_depth"] == 7  # volumes are 8 slices deep, >= 2k+1
    stock_2d = plans["configurations"]["2d"]
    assert len(stock_2d["patch_size"]) == 2 and stock_2d["architecture"]["network_class_name"].endswith("UNet")
    assert "3d_fullres" in plans["configurations"]


def _corrupt_label(folder, value):
    path = folder / "labelsTr" / "case_001.nii.gz"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = value
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def _nan_image(folder, _):
    path = folder / "imagesTr" / "case_001_0000.nii.gz"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[1, 2, 3] = np.nan
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


@pytest.mark.parametrize("corrupt, expected", [(_corrupt_label, "case_001"), (_nan_image, "case_001")])
def test_plan_rejects_bad_cases_naming_them(nnunet_dirs, corrupt, expected):
    folder = make_raw_dataset(nnunet_dirs["nnUNet_raw"], 512, "Bad", n_cases=2, shape=(6, 8, 8), n_modalities=1)
    corrupt(folder, 7)
    result = plan_cli("-d", "512", "-np", "1")
    assert result.returncode != 0
    assert expected in result.stderr
    assert not (nnunet_dirs["nnUNet_preprocessed"] / "Dataset512_Bad" / "nnUNetPlans.json").exists()


def test_plan_rejects_empty_dataset(nnunet_dirs):
    folder = make_raw_dataset(nnunet_dirs["nnUNet_raw"], 513, "Empty", n_cases=0, shape=(6, 8, 8))
    result = plan_cli("-d", "513")
    assert result.returncode != 0
    assert "no training cases" in result.stderr and str(folder) in result.stderr
