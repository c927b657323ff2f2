"""Synthetic challenge cases: naming, geometry conventions and MRI-like contrasts a model has to learn."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.demo_data import GLI_MODALITIES, make_gli_case, make_men_rt_case

SMALL = (48, 48, 32)


def _arrays(case: dict[str, sitk.Image]) -> dict[str, np.ndarray]:
    return {key: sitk.GetArrayFromImage(image) for key, image in case.items()}


def test_gli_case_conventions_and_contrasts():
    case = make_gli_case(3, SMALL, cavity=True)
    assert set(case) == {*GLI_MODALITIES, "seg"}
    for image in case.values():
        assert image.GetSize() == SMALL and image.GetSpacing() == (1.0, 1.0, 1.0)
        assert image.GetOrigin() == case["seg"].GetOrigin() and image.GetDirection() == case["seg"].GetDirection()
    arrays = _arrays(case)
    seg = arrays["seg"]
    assert arrays["t1n"].dtype == np.int16 and seg.dtype == np.uint8
    assert set(np.unique(seg)) == {0, 1, 2, 3, 4}

    def mean(modality: str, label: int) -> float:
        return float(arrays[modality][seg == label].mean())

    brain = arrays["t1n"] > 0
    wm_like = brain & (seg == 0)
    assert mean("t1c", 3) > 1.3 * arrays["t1c"][wm_like].mean()  # enhancing rim bright on T1c
    enhancement = {m: mean(m, 3) / arrays[m][wm_like].mean() for m in ("t1n", "t1c")}
    assert enhancement["t1c"] > 1.4 * enhancement["t1n"]  # the rim enhances on T1c only
    assert mean("t2f", 2) > 1.3 * arrays["t2f"][wm_like].mean()  # oedema bright on FLAIR
    assert mean("t2w", 4) > mean("t2w", 2) and mean("t2f", 4) < mean("t2f", 2)  # cavity: fluid
    assert mean("t1c", 1) < mean("t1c", 3)  # necrosis dark inside the rim
    assert (arrays["t1n"][seg == 0] == 0).mean() > 0.3  # skull-stripped background


def test_gli_cavity_optional_and_seeded():
    a, b = _arrays(make_gli_case(5, SMALL, cavity=False)), _arrays(make_gli_case(5, SMALL, cavity=False))
    assert 4 not in np.unique(a["seg"])
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["t1c"], _arrays(make_gli_case(6, SMALL, cavity=False))["t1c"])


def test_men_rt_case_native_grid_skull_and_mass():
    case = make_men_rt_case(2, (64, 64, 40))
    image, gtv = case["t1c"], case["gtv"]
    assert image.GetSize() == (64, 64, 40) and image.GetSpacing() == (0.9375, 0.9375, 1.5)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    assert not np.allclose(direction, np.eye(3)) and np.allclose(direction @ direction.T, np.eye(3))
    assert gtv.GetOrigin() == image.GetOrigin() and gtv.GetDirection() == image.GetDirection()
    t1c, mask = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(gtv)
    assert set(np.unique(mask)) == {0, 1} and mask.sum() > 50
    head = t1c > 300
    assert t1c[mask == 1].mean() > 1.3 * np.median(t1c[head & (mask == 0)])
    # the skull's fatty marrow is about as bright as the tumour: intensity alone does not segment it
    assert (head & (mask == 0) & (t1c > 0.85 * t1c[mask == 1].mean())).sum() > mask.sum() / 4


def test_demo_data_cli_layout(tmp_path):
    out = tmp_path / "gli"
    done = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "demo-data", str(out), "--task", "gli", "-n", "3",
                           "--shape", "32", "32", "24", "--unlabelled", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(names) == 5 + 5 + 4
    assert all(re.fullmatch(r"(BraTS-GLI-\d{5}-\d{3})/\1-(t1n|t1c|t2w|t2f|seg)\.nii\.gz", n) for n in names)
    assert not list((out / "BraTS-GLI-00001-000").glob("*-seg.nii.gz"))  # the unlabelled one
    men = tmp_path / "men"
    done = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "demo-data", str(men), "--task", "men-rt",
                           "-n", "2", "--shape", "32", "32", "20"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = sorted(p.relative_to(men).as_posix() for p in men.rglob("*") if p.is_file())
    assert names == [f"BraTS-MEN-RT-000{i}-1/BraTS-MEN-RT-000{i}-1_{k}.nii.gz" for i in (1, 2) for k in ("gtv", "t1c")]
