"""Stock ``nnUNetv2_predict -tr SliceResTrainer -c 2d`` gives true 2.5D predictions for a trained SliceRes model.

The model folder's 3D patch of whole slices makes nnU-Net's sliding window hand SliceResNet (1, C, depth, h, w)
blocks, each slice predicted with its neighbours inside the block. Against ``nnunet-ext predict`` restricted
to the corresponding single view (axis 0, identity; exact neighbours from the whole volume) the remaining
differences are blending details: nnU-Net averages logits in float16 with a 3D Gaussian whose float16
underflow flattens the in-plane weights at the window's first/last slices, we average probabilities in float32.

Trains one tiny model per session through the real CLIs (``nnunet-ext plan``, ``nnUNetv2_train``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.discovery import environment_with_trainers
from tests.synthetic import make_raw_dataset

pytestmark = pytest.mark.e2e

SMALL = ["--set", "crop_size=[32,32]", "--set", "batch_size=8", "--set", "epoch.mode=iterations",
         "--set", "network.kwargs.widths=[8,16,32,64]", "--set", "network.kwargs.blocks_down=[1,1,1,1]",
         # seeded sampling and initialisation: a barely trained model has many near-tie voxels, and unseeded runs
         # scattered the single-view agreement between Dice 0.985 and 0.999 (see README)
         "--set", "seed=0"]


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A SliceRes model trained for 3 x 25 iterations (enough for confident, structured predictions)."""
    root = tmp_path_factory.mktemp("stock_predict")
    env = environment_with_trainers()
    env.update({name: str(root / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    env.update({"nnUNet_n_proc_DA": "1", "nnUNet_def_n_proc": "1", "nnUNet_compile": "f", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "NNUNET_EXT_EPOCHS": "3", "NNUNET_EXT_ITERATIONS": "25",
                "NNUNET_EXT_VAL_ITERATIONS": "1"})
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
    raw = make_raw_dataset(root / "nnUNet_raw", 523, "Stock", n_cases=5, shape=(16, 40, 40), n_modalities=2,
                           n_labels=2, n_test=2, seed=5)
    _run([sys.executable, "-m", "nnunet_ext.cli", "plan", "-d", "523", "-c", "2d", "-np", "1", *SMALL], env)
    _run(["nnUNetv2_train", "523", "2d", "0", "-tr", "SliceResTrainer", "-device", "cpu"], env)
    return {"env": env, "images": raw / "imagesTs", "root": root}


def _stock(trained: dict, images: Path, output: Path, *extra: str) -> Path:
    _run(["nnUNetv2_predict", "-i", str(images), "-o", str(output), "-d", "523", "-c", "2d", "-tr", "SliceResTrainer",
          "-f", "0", "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_progress_bar", *extra], trained["env"])
    return output


def _ours(trained: dict, images: Path, output: Path, transforms: str) -> Path:
    _run(["nnunet-ext", "predict", "-i", str(images), "-o", str(output), "-d", "523", "-f", "0", "--axes", "0",
          "--transforms", transforms, "--postprocess", "none", "-device", "cpu", "-npp", "0", "-nps", "0",
          "--disable_progress_bar"], trained["env"])
    return output


@pytest.fixture(scope="module")
def predictions(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stock (with and without mirroring) and our axis-0 predictions of the test cases and of thin copies.

    The thin copies keep 9 of 16 slices, fewer than the 15-slice inference window: nnU-Net zero-pads them
    along the slicing axis, so their edge slices reach the network with zero neighbours.
    """
    root = tmp_path_factory.mktemp("stock_vs_ours")
    images = root / "images"
    images.mkdir()
    for path in trained["images"].glob("*.nii.gz"):
        image = sitk.ReadImage(str(path))
        sitk.WriteImage(image, str(images / path.name))
        sitk.WriteImage(image[:, :, 3:12], str(images / f"thin{path.name}"))
    return {"stock": _stock(trained, images, root / "stock", "--disable_tta"),
            "stock_mirroring": _stock(trained, images, root / "stock_mirroring"),
            "identity": _ours(trained, images, root / "identity", "identity"),
            "mirror": _ours(trained, images, root / "mirror", "mirror")}


def _dice_per_label(a: Path, b: Path, thin: bool) -> dict[str, float]:
    """Dice of every foreground label present in either segmentation, per case (thin copies or full cases)."""
    scores = {}
    for path in sorted(a.glob("*.nii.gz")):
        if path.name.startswith("thin") != thin:
            continue
        x = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        y = sitk.GetArrayFromImage(sitk.ReadImage(str(b / path.name)))
        for label in np.union1d(np.unique(x), np.unique(y)):
            if label:
                overlap = ((x == label) & (y == label)).sum()
                scores[f"{path.name}:{label}"] = 2 * overlap / ((x == label).sum() + (y == label).sum())
    assert scores, "the model predicted no foreground at all: nothing to compare"
    return scores


def test_stock_without_tta_agrees_with_the_single_exact_view(predictions: dict[str, Path]) -> None:
    scores = _dice_per_label(predictions["stock"], predictions["identity"], thin=False)
    print("stock --disable_tta vs axis 0 identity:", scores)
    assert min(scores.values()) >= 0.99, scores


def test_stock_mirroring_agrees_with_axis0_mirror_views(predictions: dict[str, Path]) -> None:
    scores = _dice_per_label(predictions["stock_mirroring"], predictions["mirror"], thin=False)
    print("stock mirroring vs axis 0 x 4 mirrors:", scores)
    # measured 0.975-0.996 on this barely trained model: nnU-Net averages logits over the 4 mirrorings,
    # we average probabilities (the method's view ensemble); the views themselves are the same
    assert min(scores.values()) >= 0.95, scores


def test_volume_thinner_than_the_inference_window(predictions: dict[str, Path]) -> None:
    scores = _dice_per_label(predictions["stock"], predictions["identity"], thin=True)
    print("thin volume, stock --disable_tta vs axis 0 identity:", scores)
    assert min(scores.values()) >= 0.99, scores
