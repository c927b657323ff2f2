"""Converters and export: demo downloads -> nnU-Net raw datasets -> (predictions) -> challenge files.

The nnU-Net side is checked with nnU-Net itself: its integrity check (CLI), its label manager for regions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.dataset_conversion import brats_2021, brats_gli
from nnunet_ext.dataset_conversion.demo_data import make_gli_case, write_demo_dataset
from nnunet_ext.dataset_conversion.splits import grouped_splits
from tests.helpers.environment import subprocess_env

SHAPE = (48, 48, 32)
GLI_CASES, GLI_UNLABELLED = 7, 1


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunet_ext.cli", *args], capture_output=True, text=True,
                          env=subprocess_env())


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def verify_with_nnunet(*folders: Path) -> None:
    """nnU-Net's own integrity check (the function behind ``nnUNetv2_plan_and_preprocess
    --verify_dataset_integrity``), run in a subprocess for all folders at once: the full CLI also extracts
    fingerprints and takes ~4x longer on a busy 2-core box. Errors and geometry warnings both fail the test.
    """
    code = ("import sys\n"
            "from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity\n"
            "for folder in sys.argv[1:]:\n"
            "    verify_dataset_integrity(folder, 1)\n")
    done = subprocess.run([sys.executable, "-c", code, *map(str, folders)], capture_output=True, text=True,
                          env=subprocess_env())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert output.count("verify_dataset_integrity Done") == len(folders)
    assert "Warning" not in output and "Error" not in output, output[-3000:]


@pytest.fixture(scope="module")
def gli_source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gli_download")
    write_demo_dataset(out, "gli", GLI_CASES, SHAPE, seed=1, n_unlabelled=GLI_UNLABELLED)
    return out


#: BraTS 2021 file key of each GLI modality, in the GLI channel order
B21_KEYS = dict(zip(("t1n", "t1c", "t2w", "t2f"), brats_2021.MODALITIES))


def write_brats_2021_download(out: Path, n: int, shape: tuple[int, int, int], seed: int, first: int = 0
                              ) -> list[str]:
    """Synthetic BraTS 2021 cases in the challenge's layout: ``BraTS2021_XXXXX/BraTS2021_XXXXX_{t1,...,seg}``,
    no resection cavity, enhancing tumour written as 4 (as BraTS 2021 ships it)."""
    cases = []
    for i in range(first, first + n):
        case, images = f"BraTS2021_{i:05d}", make_gli_case(seed + i, shape, cavity=False)
        (out / case).mkdir(parents=True)
        for modality, key in B21_KEYS.items():
            sitk.WriteImage(images[modality], str(out / case / f"{case}_{key}.nii.gz"), useCompression=True)
        seg = sitk.GetArrayFromImage(images["seg"])
        as_2021 = sitk.GetImageFromArray(np.where(seg == 3, 4, seg).astype(np.uint8))
        as_2021.CopyInformation(images["seg"])
        sitk.WriteImage(as_2021, str(out / case / f"{case}_seg.nii.gz"), useCompression=True)
        cases.append(case)
    return cases


@pytest.fixture(scope="module")
def b21_source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("b21_download")
    write_brats_2021_download(out, 4, SHAPE, seed=5)
    return out


@pytest.fixture(scope="module")
def men_source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("men_download")
    write_demo_dataset(out, "men-rt", 3, SHAPE, seed=2)
    return out


def test_gli_convert_regions_layout_and_patient_splits(nnunet_dirs, gli_source, men_source):
    before = tree_hash(gli_source), tree_hash(men_source)
    done = cli("convert", "brats-gli", str(gli_source), "-d", "311", "--regions", "-j", "2")
    assert done.returncode == 0, done.stderr
    done = cli("convert", "men-rt", str(men_source), "-d", "312", "-j", "2")
    assert done.returncode == 0, done.stderr
    assert (tree_hash(gli_source), tree_hash(men_source)) == before  # sources untouched

    gli = nnunet_dirs["nnUNet_raw"] / "Dataset311_BraTS2024GLI"
    meta = json.loads((gli / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T1C", "2": "T2W", "3": "T2F"}
    assert meta["labels"] == {"background": 0, "WT": [1, 2, 3], "TC": [1, 3], "ET": [3], "RC": [4]}
    assert meta["regions_class_order"] == [2, 1, 3, 4]
    assert meta["numTraining"] == GLI_CASES - GLI_UNLABELLED
    assert len(list((gli / "imagesTs").glob("*_000[0-3].nii.gz"))) == 4 * GLI_UNLABELLED
    men = nnunet_dirs["nnUNet_raw"] / "Dataset312_BraTS2024MENRT"
    assert json.loads((men / "dataset.json").read_text())["labels"] == {"background": 0, "GTV": 1}
    # channel files are byte copies of the modalities, in nnU-Net's Dataset226 order
    case = "BraTS-GLI-00000-001"
    for channel, modality in enumerate(brats_gli.MODALITIES):
        assert (gli / "imagesTr" / f"{case}_{channel:04d}.nii.gz").read_bytes() == \
            (gli_source / case / f"{case}-{modality}.nii.gz").read_bytes()

    splits = json.loads((nnunet_dirs["nnUNet_preprocessed"] / gli.name / "splits_final.json").read_text())
    training = sorted(p.name[: -len(".nii.gz")] for p in (gli / "labelsTr").iterdir())
    assert sorted(c for fold in splits for c in fold["val"]) == training  # every case validated once
    for fold in splits:
        assert sorted(fold["train"] + fold["val"]) == training
        assert not {brats_gli.patient_of(c) for c in fold["train"]} & {brats_gli.patient_of(c) for c in fold["val"]}


@pytest.mark.e2e
def test_converted_datasets_pass_nnunet_integrity_check(nnunet_dirs, gli_source, men_source, b21_source, request):
    """GLI and BraTS 2021 (region-based), MEN-RT demo and, when ../shared is there, the real MEN-RT-like case."""
    raw = nnunet_dirs["nnUNet_raw"]
    folders = [raw / "Dataset321_BraTS2024GLI", raw / "Dataset322_BraTS2024MENRT", raw / "Dataset324_BraTS2021"]
    assert cli("convert", "brats-gli", str(gli_source), "-d", "321", "--regions").returncode == 0
    assert cli("convert", "men-rt", str(men_source), "-d", "322").returncode == 0
    assert cli("convert", "brats-2021", str(b21_source), "-d", "324", "--regions").returncode == 0
    try:
        real = request.getfixturevalue("shared_data") / "men-rt-like"
    except pytest.skip.Exception:
        real = None
    if real is not None:
        assert cli("convert", "men-rt", str(real), "-d", "323", "--symlink").returncode == 0
        folders.append(raw / "Dataset323_BraTS2024MENRT")
    verify_with_nnunet(*folders)


@pytest.mark.parametrize("converter", [brats_gli, brats_2021], ids=["gli", "brats-2021"])
def test_region_order_turns_reference_regions_back_into_labels(converter):
    """The documented label map: nnU-Net's own LabelManager with our regions and regions_class_order."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    manager = LabelManager(converter.REGIONS, converter.REGIONS_CLASS_ORDER)
    seg = np.random.default_rng(0).integers(0, len(converter.LABELS), (6, 7, 8))
    regions = np.stack([np.isin(seg, r) for r in manager.foreground_regions]).astype(np.float32)
    assert np.array_equal(manager.convert_probabilities_to_segmentation(regions), seg)
    # contradicting predictions: with every region on, the last in the order wins (GLI: RC over any tumour
    # region, BraTS 2021: ET); TC outside WT still becomes NETC
    overlap = np.zeros((len(manager.foreground_regions), 1, 1, 2), np.float32)
    overlap[:, 0, 0, 0] = 1
    overlap[1, 0, 0, 1] = 1
    assert manager.convert_probabilities_to_segmentation(overlap).ravel().tolist() == \
        [converter.REGIONS_CLASS_ORDER[-1], 1]


def test_export_round_trips_labels_and_geometry_exactly(nnunet_dirs, gli_source, men_source, tmp_path):
    assert cli("convert", "brats-gli", str(gli_source), "-d", "313").returncode == 0
    assert cli("convert", "men-rt", str(men_source), "-d", "314").returncode == 0
    for task, dataset, source, suffix in (("gli", "Dataset313_BraTS2024GLI", gli_source, "-seg"),
                                          ("men-rt", "Dataset314_BraTS2024MENRT", men_source, "_gtv")):
        labels = nnunet_dirs["nnUNet_raw"] / dataset / "labelsTr"  # stand-ins for nnU-Net predictions
        out = tmp_path / task
        done = cli("export-brats", str(labels), str(out), "--task", task, "--raw", str(source))
        assert done.returncode == 0, done.stderr
        exported = sorted(out.iterdir())
        assert [p.name for p in exported] == sorted(p.name for p in labels.iterdir())
        for path in exported:
            case = path.name[: -len(".nii.gz")]
            original = sitk.ReadImage(str(source / case / f"{case}{suffix}.nii.gz"))
            result = sitk.ReadImage(str(path))
            assert result.GetPixelID() == sitk.sitkUInt8
            assert np.array_equal(sitk.GetArrayFromImage(result), sitk.GetArrayFromImage(original))
            assert result.GetSpacing() == original.GetSpacing() and result.GetOrigin() == original.GetOrigin()
            # NIfTI stores the direction as a float32 quaternion: oblique directions survive a re-write to ~1e-9
            assert np.allclose(result.GetDirection(), original.GetDirection(), rtol=0, atol=1e-6)


def test_rerun_is_idempotent_and_follows_source_changes(nnunet_dirs, gli_source, tmp_path):
    source = tmp_path / "download"
    shutil.copytree(gli_source, source)
    assert cli("convert", "brats-gli", str(source), "-d", "315", "--symlink").returncode == 0
    dataset = nnunet_dirs["nnUNet_raw"] / "Dataset315_BraTS2024GLI"
    link = dataset / "imagesTr" / "BraTS-GLI-00000-000_0001.nii.gz"
    assert link.is_symlink() and link.resolve() == (source / "BraTS-GLI-00000-000" /
                                                    "BraTS-GLI-00000-000-t1c.nii.gz").resolve()
    state = {p: os.lstat(p).st_mtime_ns for p in dataset.rglob("*.nii.gz")}
    done = cli("convert", "brats-gli", str(source), "-d", "315", "--symlink")
    assert done.returncode == 0 and "(0 written, 7 already up to date)" in done.stdout, done.stdout
    assert {p: os.lstat(p).st_mtime_ns for p in dataset.rglob("*.nii.gz")} == state
    # copying instead of linking rewrites everything; dropping a case removes exactly its outputs
    shutil.rmtree(source / "BraTS-GLI-00002-001")
    done = cli("convert", "brats-gli", str(source), "-d", "315")
    assert done.returncode == 0 and "(6 written, 0 already up to date)" in done.stdout, done.stdout
    assert not link.is_symlink() and link.is_file()
    assert not list(dataset.rglob("BraTS-GLI-00002-001*"))
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == GLI_CASES - GLI_UNLABELLED - 1
    assert not list(dataset.rglob(".partial"))


def test_brats_2021_becomes_the_gli_convention_and_exports_back(nnunet_dirs, b21_source, gli_source, tmp_path):
    """Legacy names (also .nii), GLI channel order and labels (ET 4 -> 3), regions, checks, idempotent re-runs,
    sources untouched; export-brats writes 1/2/4 back on the source grid."""
    source = tmp_path / "download"
    shutil.copytree(b21_source, source / "training")
    uncompressed = source / "training" / "BraTS2021_00001"
    for path in sorted(uncompressed.iterdir()):  # one case as uncompressed .nii
        sitk.WriteImage(sitk.ReadImage(str(path)), str(path.with_suffix("")))
        path.unlink()
    bad = write_brats_2021_download(source / "more", 1, SHAPE, seed=9, first=4)[0]
    bad_seg = source / "more" / bad / f"{bad}_seg.nii.gz"
    _write_like(bad_seg, np.where(array(bad_seg) == 4, 3, array(bad_seg)), bad_seg)  # 3 is no BraTS 2021 label
    before = tree_hash(source)
    done = cli("convert", "brats-2021", str(source), "-d", "331", "-j", "2")
    assert done.returncode == 0, done.stderr
    assert any(str(bad_seg) in line and "unexpected label values [3]" in line for line in done.stderr.splitlines())
    regions = cli("convert", "brats-2021", str(source), "-d", "332", "--regions", "--symlink")
    assert regions.returncode == 0, regions.stderr
    assert tree_hash(source) == before

    dataset = nnunet_dirs["nnUNet_raw"] / "Dataset331_BraTS2021"
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["channel_names"] == {str(k): v for k, v in brats_gli.CHANNEL_NAMES.items()}  # the GLI channels
    assert meta["labels"] == {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3} and meta["numTraining"] == 4
    region_meta = json.loads((nnunet_dirs["nnUNet_raw"] / "Dataset332_BraTS2021" / "dataset.json").read_text())
    assert region_meta["labels"] == {"background": 0, "WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
    assert region_meta["regions_class_order"] == [2, 1, 3]
    cases = sorted(p.name[: -len(".nii.gz")] for p in (dataset / "labelsTr").iterdir())
    assert cases == [f"BraTS2021_{i:05d}" for i in range(4)]  # the bad case skipped
    case = "BraTS2021_00000"
    for channel, key in enumerate(("t1", "t1ce", "t2", "flair")):  # t1n, t1c, t2w, t2f of GLI
        assert (dataset / "imagesTr" / f"{case}_{channel:04d}.nii.gz").read_bytes() == \
            (source / "training" / case / f"{case}_{key}.nii.gz").read_bytes()
    linked = nnunet_dirs["nnUNet_raw"] / "Dataset332_BraTS2021"
    assert (linked / "imagesTr" / f"{case}_0000.nii.gz").is_symlink()
    assert not (linked / "labelsTr" / f"{case}.nii.gz").is_symlink()  # relabelled: written, never linked
    for case in cases:
        folder = source / "training" / case
        seg = next(folder.glob(f"{case}_seg.nii*"))
        original = array(seg)
        assert {4} <= set(np.unique(original).tolist()) <= {0, 1, 2, 4}
        assert np.array_equal(array(dataset / "labelsTr" / f"{case}.nii.gz"), np.where(original == 4, 3, original))
        assert np.array_equal(array(dataset / "imagesTr" / f"{case}_0003.nii.gz"), array(next(folder.glob("*_flair*"))))

    again = cli("convert", "brats-2021", str(source), "-d", "331", "-j", "2")
    assert again.returncode == 0 and "(0 written, 4 already up to date)" in again.stdout, again.stdout

    out = tmp_path / "submission"
    done = cli("export-brats", str(dataset / "labelsTr"), str(out), "--task", "brats-2021", "--raw", str(source))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.nii.gz" for c in cases]
    for case in cases:
        seg = next((source / "training" / case).glob(f"{case}_seg.nii*"))
        exported, original = sitk.ReadImage(str(out / f"{case}.nii.gz")), sitk.ReadImage(str(seg))
        assert np.array_equal(sitk.GetArrayFromImage(exported), sitk.GetArrayFromImage(original))
        assert (exported.GetSpacing(), exported.GetOrigin(), exported.GetDirection()) == \
            (original.GetSpacing(), original.GetOrigin(), original.GetDirection())
    # a GLI prediction (RC 4) has no BraTS 2021 meaning: refused, naming the file
    gli_seg = gli_source / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-seg.nii.gz"
    pred = tmp_path / "gli_pred"
    pred.mkdir()
    rc = array(gli_seg)
    rc[0, 0, 0] = 4
    image = sitk.GetImageFromArray(rc)
    image.CopyInformation(sitk.ReadImage(str(gli_seg)))
    sitk.WriteImage(image, str(pred / f"{case}.nii.gz"))
    done = cli("export-brats", str(pred), str(tmp_path / "refused"), "--task", "brats-2021")
    assert done.returncode == 2 and f"{case}.nii.gz" in done.stderr and "[4]" in done.stderr, done.stderr
    assert not (tmp_path / "refused").exists()


def _write_like(path: Path, data: np.ndarray, like: Path, origin_shift: float = 0.0) -> None:
    image = sitk.GetImageFromArray(data)
    image.CopyInformation(sitk.ReadImage(str(like)))
    image.SetOrigin(tuple(o + origin_shift for o in image.GetOrigin()))
    path.unlink()
    sitk.WriteImage(image, str(path))


def test_every_broken_case_is_reported_by_name(nnunet_dirs, tmp_path):
    source = tmp_path / "download"
    write_demo_dataset(source, "gli", 10, (32, 32, 24), seed=3)

    def file(case: str, key: str) -> Path:
        return source / case / f"{case}-{key}.nii.gz"

    broken = {  # case -> (file, words the report must contain)
        "BraTS-GLI-00000-000": (file("BraTS-GLI-00000-000", "t2w"), "file is missing"),
        "BraTS-GLI-00000-001": (file("BraTS-GLI-00000-001", "t1c"), "origin"),
        "BraTS-GLI-00001-000": (file("BraTS-GLI-00001-000", "t2f"), "NaN"),
        "BraTS-GLI-00001-001": (file("BraTS-GLI-00001-001", "seg"), "unexpected label values [7]"),
        "BraTS-GLI-00002-000": (file("BraTS-GLI-00002-000", "t1n"), "empty"),
    }
    broken["BraTS-GLI-00000-000"][0].unlink()
    path = broken["BraTS-GLI-00000-001"][0]
    _write_like(path, array(path), path, origin_shift=2.0)
    path = broken["BraTS-GLI-00001-000"][0]
    data = array(path).astype(np.float32)
    data[5, 5, 5] = np.nan
    _write_like(path, data, path)
    path = broken["BraTS-GLI-00001-001"][0]
    data = array(path)
    data[0, 0, 0] = 7
    _write_like(path, data, path)
    path = broken["BraTS-GLI-00002-000"][0]
    _write_like(path, np.zeros_like(array(path)), path)
    before = tree_hash(source)

    strict = cli("convert", "brats-gli", str(source), "-d", "316", "--strict")
    assert strict.returncode == 2
    assert not list(nnunet_dirs["nnUNet_raw"].glob("Dataset316_*"))  # nothing written
    lenient = cli("convert", "brats-gli", str(source), "-d", "317", "-j", "2")
    assert lenient.returncode == 0, lenient.stderr
    for report in (strict.stderr, lenient.stderr):
        assert "5 of 10 cases have problems" in report
        for case, (path, words) in broken.items():
            assert any(str(path) in line and words in line for line in report.splitlines()), (case, words, report)
    dataset = nnunet_dirs["nnUNet_raw"] / "Dataset317_BraTS2024GLI"
    converted = sorted(p.name[: -len(".nii.gz")] for p in (dataset / "labelsTr").iterdir())
    assert converted == sorted({c.case_id for c in brats_gli.find_cases(source)} - set(broken))
    assert tree_hash(source) == before


def test_men_rt_separators_uncompressed_and_real_case_round_trip(nnunet_dirs, men_source, tmp_path, shared_data):
    source = tmp_path / "download"
    for case in sorted(men_source.iterdir())[:2]:  # '-' separator and uncompressed .nii
        (source / case.name).mkdir(parents=True)
        for key in ("t1c", "gtv"):
            sitk.WriteImage(sitk.ReadImage(str(case / f"{case.name}_{key}.nii.gz")),
                            str(source / case.name / f"{case.name}-{key}.nii"))
    real = shared_data / "men-rt-like"
    shutil.copytree(real, source / "real", symlinks=True)
    before = tree_hash(real)
    done = cli("convert", "men-rt", str(source), "-d", "318")
    assert done.returncode == 0, done.stderr
    dataset = nnunet_dirs["nnUNet_raw"] / "Dataset318_BraTS2024MENRT"
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == [
        "BraTS-MEN-RT-0001-1.nii.gz", "BraTS-MEN-RT-0002-1.nii.gz", "BraTS-MEN-RT-9013-1.nii.gz"]
    assert np.array_equal(array(dataset / "imagesTr" / "BraTS-MEN-RT-0001-1_0000.nii.gz"),
                          array(men_source / "BraTS-MEN-RT-0001-1" / "BraTS-MEN-RT-0001-1_t1c.nii.gz"))
    out = tmp_path / "submission"
    assert cli("export-brats", str(dataset / "labelsTr"), str(out), "--task", "men-rt", "--raw",
               str(source)).returncode == 0
    gtv = real / "BraTS-MEN-RT-9013-1" / "BraTS-MEN-RT-9013-1_gtv.nii.gz"
    exported = sitk.ReadImage(str(out / "BraTS-MEN-RT-9013-1.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(exported), array(gtv))
    original = sitk.ReadImage(str(gtv))
    assert (exported.GetSpacing(), exported.GetOrigin(), exported.GetDirection()) == \
        (original.GetSpacing(), original.GetOrigin(), original.GetDirection())
    assert tree_hash(real) == before


@pytest.mark.parametrize("option", ["--resample-iso", "--register-to"])
def test_men_rt_preprocessing_maps_back_to_the_scanner_grid(nnunet_dirs, men_source, tmp_path, option):
    source = tmp_path / "download"
    for case in sorted(men_source.iterdir())[1:]:
        shutil.copytree(case, source / case.name)
    template = men_source / "BraTS-MEN-RT-0001-1" / "BraTS-MEN-RT-0001-1_t1c.nii.gz"
    value = "1.0" if option == "--resample-iso" else str(template)
    assert cli("convert", "men-rt", str(source), "-d", "319", option, value).returncode == 0
    dataset = nnunet_dirs["nnUNet_raw"] / "Dataset319_BraTS2024MENRT"
    converted = sitk.ReadImage(str(dataset / "imagesTr" / "BraTS-MEN-RT-0002-1_0000.nii.gz"))
    if option == "--resample-iso":
        assert converted.GetSpacing() == (1.0, 1.0, 1.0)
    else:
        assert converted.GetSize() == sitk.ReadImage(str(template)).GetSize()
    out = tmp_path / "submission"
    done = cli("export-brats", str(dataset / "labelsTr"), str(out), "--task", "men-rt", "--raw", str(source),
               "--dataset", str(dataset))
    assert done.returncode == 0, done.stderr
    for case in ("BraTS-MEN-RT-0002-1", "BraTS-MEN-RT-0003-1"):
        reference = array(source / case / f"{case}_gtv.nii.gz") > 0
        back = array(out / f"{case}.nii.gz") > 0
        dice = 2 * (reference & back).sum() / (reference.sum() + back.sum())
        assert dice > 0.85, (case, dice)  # two nearest-neighbour resamplings of a small mass


def test_export_rejects_what_is_not_a_submission(tmp_path, gli_source):
    pred = tmp_path / "pred"
    pred.mkdir()
    seg = gli_source / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-seg.nii.gz"
    data = array(seg)
    data[0, 0, 0] = 5
    bad = sitk.GetImageFromArray(data)
    bad.CopyInformation(sitk.ReadImage(str(seg)))
    sitk.WriteImage(bad, str(pred / "BraTS-GLI-00000-000.nii.gz"))
    done = cli("export-brats", str(pred), str(tmp_path / "out"), "--task", "gli")
    assert done.returncode == 2 and "BraTS-GLI-00000-000.nii.gz" in done.stderr and "[5]" in done.stderr
    shutil.copy(seg, pred / "BraTS-GLI-00000-000.nii.gz")
    shutil.copy(seg, pred / "patient7.nii.gz")
    done = cli("export-brats", str(pred), str(tmp_path / "out"), "--task", "gli", "--raw", str(gli_source))
    assert done.returncode == 2 and "patient7" in done.stderr and "BraTS-GLI-XXXXX-YYY" in done.stderr
    (pred / "patient7.nii.gz").unlink()
    shifted = sitk.ReadImage(str(seg))
    shifted.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(pred / "BraTS-GLI-00001-000.nii.gz"))
    done = cli("export-brats", str(pred), str(tmp_path / "out"), "--task", "gli", "--raw", str(gli_source))
    assert done.returncode == 2 and "origin" in done.stderr and "BraTS-GLI-00001-000" in done.stderr


def test_skull_strip_without_hd_bet_is_a_clear_error(nnunet_dirs, men_source):
    if shutil.which("hd-bet"):
        pytest.skip("HD-BET is installed here")
    done = cli("convert", "men-rt", str(men_source), "-d", "320", "--skull-strip")
    assert done.returncode == 1 and "HD-BET" in done.stderr and "not installed" in done.stderr
    assert not list(nnunet_dirs["nnUNet_raw"].glob("Dataset320_*"))


def test_grouped_splits_never_leak_a_patient():
    rng = np.random.default_rng(0)
    cases = [f"BraTS-GLI-{p:05d}-{t:03d}" for p in range(13) for t in range(rng.integers(1, 4))]
    splits = grouped_splits(cases, brats_gli.patient_of)
    assert len(splits) == 5
    assert sorted(c for s in splits for c in s["val"]) == sorted(cases)
    sizes = [len(s["val"]) for s in splits]
    assert max(sizes) - min(sizes) <= 3
    for s in splits:
        assert not {brats_gli.patient_of(c) for c in s["train"]} & {brats_gli.patient_of(c) for c in s["val"]}
    assert len(grouped_splits(cases[:4], brats_gli.patient_of)) <= 4
    with pytest.raises(ValueError, match="at least 2"):
        grouped_splits(["BraTS-GLI-00001-000", "BraTS-GLI-00001-001"], brats_gli.patient_of)
