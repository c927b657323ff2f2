"""nnU-Net's 2D augmentation on the 2.5D stack: one spatial transform for every neighbour slice and the label,
one intensity change per modality, reproducible under the loader's seed; unknown names rejected at `plan`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from nnunet_ext.discovery import environment_with_trainers
from nnunet_ext.planning import settings
from nnunet_ext.planning.sliceres_settings import AUGMENTATIONS, SliceResSettings
from nnunet_ext.sampling.loader import BalancedSliceLoader
from nnunet_ext.sampling.slice_index import build_slice_index
from nnunet_ext.sampling.transforms import spatial_context, training_augmentation
from nnunet_ext.slicing import neighbour_indices
from tests.helpers.synthetic import make_raw_dataset

SHAPE = (5, 40, 44)  # X (sliced along), Y, Z
K = 1  # neighbours per side: 3 slices per modality
CROP = 24
SCALE = 1000  # coordinate channels hold SCALE * x + y (or z): x is the integer part, y the rest


def label_volume() -> np.ndarray:
    """Labels that depend on x, y and z: a rectangle moving with x (1) and a band at large z (2)."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    seg = np.zeros(SHAPE, np.int16)
    seg[(y >= 10 + 2 * x) & (y < 26 + 2 * x) & (z >= 8) & (z < 30)] = 1
    seg[z >= 34] = 2
    return seg[None]


def save(folder, data: np.ndarray, seg: np.ndarray, n_cases: int = 2) -> nnUNetDatasetBlosc2:
    for i in range(n_cases):
        nnUNetDatasetBlosc2.save_case(data, seg, {"case": i}, str(folder / f"case_{i}"),
                                      chunks=(1, 1, *SHAPE[1:]), blocks=(1, 1, *SHAPE[1:]))
    return nnUNetDatasetBlosc2(str(folder))


@pytest.fixture
def coordinates(tmp_path):
    """Modalities: 1 inside the volume (0 is the loader's padding), SCALE * x + y, SCALE * x + z (+1)."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    data = np.stack([np.ones(SHAPE), 1 + SCALE * x + y, 1 + SCALE * x + z]).astype(np.float32)
    return save(tmp_path, data, label_volume())


def block(names: list[str], **overrides) -> SliceResSettings:
    return SliceResSettings.from_dict(settings.build(
        {"augmentation": names, "neighbours": K, "crop_size": [CROP, CROP], **overrides},
        num_modalities=3, spacing=[1, 1, 1], min_depth=SHAPE[0]))


def loader(dataset, tmp_path, names: list[str], seed: int = 5) -> BalancedSliceLoader:
    augmentation = training_augmentation(block(names), regions=None, ignore_label=None)
    index = build_slice_index(dataset, [0], None, tmp_path / "index.pkl")
    return BalancedSliceLoader(dataset, index, batch_size=16, neighbours=K, crop_size=(CROP, CROP),
                               foreground_fraction=0.5, iterations_per_epoch=4, transforms=augmentation.transforms,
                               seed=seed, context=augmentation.context)


def test_spatial_and_d4_move_every_channel_and_the_label_together(coordinates, tmp_path):
    """Each output pixel's source position, decoded from the coordinate channels, is the same in every
    neighbour slice, and the label there is the centre slice's label at that position."""
    seg = label_volume()[0]
    slices = 2 * K + 1
    checked, resampled = 0, 0
    for b in range(3):
        batch = loader(coordinates, tmp_path, ["spatial", "d4"]).make_batch(b)
        assert batch["data"].shape == (16, 3 * slices, CROP, CROP) and batch["target"].shape == (16, 1, CROP, CROP)
        for image, label, key in zip(batch["data"].double().numpy(), batch["target"].numpy(), batch["keys"]):
            centre = int(key.split("/")[-1])
            inside = (np.abs(image[:slices] - 1) < 1e-4).all(0)  # every interpolation tap inside the volume
            positions = []
            for m in (1, 2):
                stack = image[m * slices:(m + 1) * slices] - 1
                x = np.floor(stack / SCALE + 1e-9)
                expected = neighbour_indices(centre, SHAPE[0], K)
                assert (x[:, inside] == expected[:, None]).all(), key  # neighbour order kept
                coordinate = stack - SCALE * x
                np.testing.assert_allclose(coordinate[:, inside], coordinate[:1, inside].repeat(slices, 0), atol=1e-3)
                positions.append(coordinate[K])
            y, z = positions
            resampled += bool(np.abs(y[inside] - np.round(y[inside])).max() > 0.01)
            taps = [seg[centre][np.clip(np.floor(y[inside] + dy), 0, SHAPE[1] - 1).astype(int),
                                np.clip(np.floor(z[inside] + dz), 0, SHAPE[2] - 1).astype(int)]
                    for dy in (0, 1) for dz in (0, 1)]
            clear = (taps[0] == taps[1]) & (taps[0] == taps[2]) & (taps[0] == taps[3])  # not on a label edge
            np.testing.assert_array_equal(label[0][inside][clear], taps[0][clear], err_msg=key)
            checked += clear.sum()
    assert checked > 0.5 * 48 * CROP * CROP  # most pixels are inside and away from label edges
    assert resampled >= 3  # rotation/scaling happened (not only crops and D4)


@pytest.fixture
def repeated_slices(tmp_path):
    """Every modality and every slice along x holds the same in-plane image: stacks of identical slices."""
    rng = np.random.default_rng(0)
    plane = rng.uniform(0.5, 2.0, SHAPE[1:]).astype(np.float32)
    data = np.broadcast_to(plane, (3, *SHAPE)).copy()
    return save(tmp_path, data, label_volume())


def test_intensity_changes_are_shared_by_the_slices_of_a_modality(repeated_slices, tmp_path):
    """The 2k+1 slices of one modality stay identical (one change per modality image); modalities differ
    (drawn independently, like nnU-Net's channels) and the images do change."""
    names = ["blur", "brightness", "contrast", "lowres", "gamma"]
    slices = 2 * K + 1
    plain = loader(repeated_slices, tmp_path, []).make_batch(0)["data"]
    data = loader(repeated_slices, tmp_path, names).make_batch(0)["data"]
    stacks = data.reshape(len(data), 3, slices, CROP, CROP)
    for j in range(1, slices):
        torch.testing.assert_close(stacks[:, :, j], stacks[:, :, 0], rtol=0, atol=1e-5)
    changed = (stacks[:, :, 0] - plain.reshape(stacks.shape)[:, :, 0]).abs().flatten(2).amax(2) > 1e-3
    assert changed.any(1).float().mean() > 0.3  # nnU-Net's probabilities: many examples get something
    apart = (stacks[:, 0, 0] - stacks[:, 1, 0]).abs().flatten(1).amax(1) > 1e-3
    assert apart.any()  # identical modality images, changed differently: one draw per modality


def test_blur_and_lowres_stay_in_plane():
    """Changing the first neighbour slice of every modality changes only those slices' outputs: nothing mixes
    across slices (nnU-Net's 3D blur would, and fails outright on a stack of 3 slices)."""
    modalities, slices = 8, 2 * K + 1
    transforms = training_augmentation(block(["blur", "lowres"]), None, None).transforms
    image = torch.rand(modalities * slices, CROP, CROP)
    impulse = torch.zeros(CROP, CROP)
    impulse[CROP // 2, CROP // 3] = 5
    other = image.clone()
    other[::slices] += impulse
    seg = torch.zeros(1, CROP, CROP, dtype=torch.int16)
    neighbours = torch.arange(len(image)) % slices != 0
    filtered = 0
    for seed in range(20):
        outputs = []
        for x in (image, other):
            torch.manual_seed(seed)
            np.random.seed(seed)
            outputs.append(transforms(image=x.clone(), segmentation=seg.clone())["image"])
        torch.testing.assert_close(outputs[0][neighbours], outputs[1][neighbours], rtol=0, atol=0)
        filtered += int(((outputs[1] - outputs[0])[~neighbours] - impulse).abs().amax((1, 2)).gt(1e-3).sum())
    assert filtered >= 4  # the changed slices themselves were filtered in some draws


def test_full_pipeline_is_reproducible_and_keeps_regions(coordinates, tmp_path):
    names = list(AUGMENTATIONS)
    regions = [[1, 2], [2]]
    augmentation = training_augmentation(block(names), regions, None)
    index = build_slice_index(coordinates, [0, 1, 2], None, tmp_path / "index.pkl")

    def make(seed: int, workers: int = 1) -> BalancedSliceLoader:
        return BalancedSliceLoader(coordinates, index, batch_size=8, neighbours=K, crop_size=(CROP, CROP),
                                   foreground_fraction=0.5, iterations_per_epoch=4, seed=seed, num_workers=workers,
                                   transforms=augmentation.transforms, context=augmentation.context)

    first = make(3).make_batch(1)
    streamed = make(3)
    next(streamed)
    worker_1_of_2 = make(3, workers=2)
    worker_1_of_2.set_thread_id(1)  # its first batch is batch 1
    state = np.random.get_state()[1].copy()
    for other in (next(streamed), next(worker_1_of_2)):
        assert torch.equal(first["data"], other["data"]) and torch.equal(first["target"], other["target"])
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global generator is restored
    assert not torch.equal(first["data"], make(4).make_batch(1)["data"])
    assert first["target"].dtype == torch.bool and first["target"].shape == (8, 2, CROP, CROP)
    assert (first["target"][:, 1] <= first["target"][:, 0]).all()  # region 2 lies inside region 1|2


def test_context_follows_nnunet_initial_patch_size():
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

    for crop in (24, 96, 128):
        initial = get_patch_size([crop, crop], (-np.pi, np.pi), (-np.pi, np.pi), (-np.pi, np.pi), (0.85, 1.25))
        assert crop + 2 * spatial_context([crop, crop]) >= max(initial) > crop
    assert training_augmentation(block(["d4", "gamma"]), None, None).context == 0  # no spatial transform: no margin


def test_unknown_augmentation_names_list_the_known_ones():
    with pytest.raises(settings.SettingsError, match="unknown 'elastic'; known: d4, spatial, noise"):
        block(["d4", "elastic"])
    with pytest.raises(settings.SettingsError, match="sliceres.augmentation"):
        block("d4")
    assert settings.build({}, 4, [1, 1, 1], 100)["augmentation"] == ["d4"]  # the study's, until measured otherwise


@pytest.mark.parametrize("modalities, channels", [(4, 20), (1, 7)])
def test_paper_preset_is_the_published_setting_for_either_task(modalities, channels):
    paper = settings.build(settings.load_preset("paper"), modalities, [1, 1, 1], 140)
    assert modalities * (2 * paper["neighbours"] + 1) == channels
    assert (paper["augmentation"], paper["augmentation_probability"], paper["crop_size"]) == (["d4"], 0.75, [96, 96])
    assert paper["inference"] == "tiles"  # "sliding window over every slice", also the default (README: evidence)
    for preset in ("brats_gli", "men_rt"):  # the task presets name the study's augmentation too
        assert settings.load_preset(preset)["augmentation"] == ["d4"]


@pytest.mark.e2e
def test_plan_rejects_unknown_names_and_sliceres_trains_with_every_augmentation(tmp_path):
    """`plan` names the known augmentations for a preset with an unknown one; with all of them (regions, so
    nnU-Net's label transforms run after them), nnUNetv2_train runs its multi-process augmenter."""
    env = dict(environment_with_trainers(), nnUNet_n_proc_DA="2", nnUNet_def_n_proc="1", nnUNet_compile="f",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NNUNET_EXT_EPOCHS="1", NNUNET_EXT_ITERATIONS="2",
               NNUNET_EXT_VAL_ITERATIONS="1")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(tmp_path / name)
        (tmp_path / name).mkdir()
    make_raw_dataset(tmp_path / "nnUNet_raw", 523, "Aug", n_cases=5, shape=(12, 24, 24), n_modalities=2,
                     n_labels=2, regions=True)
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps({**settings.load_preset("paper"), "augmentation": ["d4", "rotate"]}))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)

    plan = [sys.executable, "-m", "nnunet_ext.cli", "plan", "-d", "523", "-c", "2d", "-np", "1"]
    rejected = run(*plan, "--preset", str(preset))
    assert rejected.returncode != 0
    assert "sliceres.augmentation" in rejected.stderr and "unknown 'rotate'; known: d4, spatial" in rejected.stderr
    assert "Traceback" not in rejected.stderr
    assert not (tmp_path / "nnUNet_preprocessed" / "Dataset523_Aug").exists()

    every = json.dumps(list(AUGMENTATIONS))
    small = ["--set", "crop_size=[16,16]", "--set", "batch_size=4", "--set", "epoch.mode=iterations",
             "--set", "network.kwargs.widths=[4,8,16,32]", "--set", "network.kwargs.blocks_down=[1,1,1,1]"]
    planned = run(*plan, "--set", f"augmentation={every}", *small)
    assert planned.returncode == 0, planned.stderr[-3000:]
    trained = run("nnUNetv2_train", "523", "2d", "0", "-tr", "SliceResTrainer", "-device", "cpu")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert f"augmentation {', '.join(AUGMENTATIONS)}" in trained.stdout
