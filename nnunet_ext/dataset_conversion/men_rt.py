"""BraTS-MEN-RT 2024 (meningioma radiotherapy) download -> nnU-Net raw dataset, with optional preprocessing.

Source: ``BraTS-MEN-RT-XXXX-Y_t1c.nii.gz`` (+ ``_gtv.nii.gz`` when labelled), usually one folder per case,
found anywhere below SRC; ``-``/``_`` separators and ``.nii``/``.nii.gz`` are accepted. One channel (T1C),
label GTV 1. The nnU-Net case identifier is the canonical ``BraTS-MEN-RT-XXXX-Y``.

The images are in native scanner space with the skull. Optional steps, all off by default because the
study found skull stripping hurts (it cuts tumour at the dura): resampling to isotropic spacing,
rigid/affine registration to a user-supplied template (SimpleITK, Mattes mutual information), skull
stripping with HD-BET. Each preprocessed case gets a record (original grid, transform file) under
``conversion_records/`` in the dataset folder, which ``export-brats`` uses to bring predictions back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from nnunet_ext.dataset_conversion.raw_dataset import DatasetSpec, SourceCase, find_source_cases
from nnunet_ext.nifti_io import read_image
from nnunet_ext.utils.processes import program_exits_with_parent

CASE_PATTERN = re.compile(r"^BraTS[-_]MEN[-_]RT[-_](?P<patient>\d+)[-_](?P<scan>\d+)[-_](?P<key>t1c|gtv)"
                          r"\.nii(?:\.gz)?$")
DEFAULT_NAME = "BraTS2024MENRT"


def find_cases(src: Path) -> list[SourceCase]:
    """All MEN-RT cases below ``src`` (a case without ``_t1c`` is kept so that the check reports it)."""
    return find_source_cases(src, "BraTS*", CASE_PATTERN, ("t1c",), "gtv", "_", _case_id)


def _case_id(match: re.Match[str]) -> str:
    return f"BraTS-MEN-RT-{match['patient']}-{match['scan']}"


def dataset_spec(dataset_id: int, name: str = DEFAULT_NAME) -> DatasetSpec:
    return DatasetSpec(
        dataset_id=dataset_id, name=name, channel_names={0: "T1C"}, labels={"background": 0, "GTV": 1},
        source_labels=(0, 1),
        description="BraTS 2024 meningioma radiotherapy planning (BraTS-MEN-RT), converted by nnunet-ext",
        reference="https://www.synapse.org/Synapse:syn53708249",
        licence="see the BraTS 2024 MEN-RT data terms on Synapse",
    )


def grid_of(image: sitk.Image) -> dict[str, list[float]]:
    """The image grid as JSON-friendly lists (what export needs to rebuild it)."""
    return {"size": list(image.GetSize()), "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()), "direction": list(image.GetDirection())}


def resample_isotropic(image: sitk.Image, spacing_mm: float, interpolator: int) -> sitk.Image:
    """Same physical extent, origin and direction, ``spacing_mm`` in every direction."""
    size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), [spacing_mm] * 3,
                         image.GetDirection(), 0.0, image.GetPixelID())


def register(fixed: sitk.Image, moving: sitk.Image, affine: bool, seed: int = 1) -> sitk.Transform:
    """Rigid (or affine) transform mapping template (fixed) points to case (moving) points.

    Mattes mutual information works across contrasts (a T1 template, a T1c case); centred geometric
    initialisation and a three-level pyramid make it robust to the large offsets of native scans.
    """
    fixed_f, moving_f = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(fixed_f, moving_f,
                                                sitk.AffineTransform(3) if affine else sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.05, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=100,
                                         convergenceMinimumValue=1e-6, convergenceWindowSize=10)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    return method.Execute(fixed_f, moving_f)


def hd_bet_command() -> str:
    """Path of the ``hd-bet`` executable, or a clear error: nothing can be downloaded here."""
    executable = shutil.which("hd-bet")
    if executable is None:
        raise RuntimeError("--skull-strip needs HD-BET, which is not installed: install the 'hd-bet' package "
                           "together with its model weights on a machine with internet access (HD-BET downloads "
                           "them on first use), then run again; skull stripping is optional and off by default")
    return executable


def skull_strip(image: sitk.Image) -> sitk.Image:
    """Brain-extracted copy of ``image`` computed by HD-BET on the CPU (input and output via temp files)."""
    executable = hd_bet_command()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "input.nii.gz", Path(tmp) / "brain.nii.gz"
        sitk.WriteImage(image, str(src))
        done = subprocess.run([executable, "-i", str(src), "-o", str(dst), "-device", "cpu"], capture_output=True,
                              text=True, preexec_fn=partial(program_exits_with_parent, os.getpid()))
        if done.returncode != 0 or not dst.is_file():
            raise RuntimeError(f"HD-BET failed (exit {done.returncode}); are its weights installed?\n"
                               f"{done.stderr[-2000:]}")
        stripped = read_image(dst)
    stripped.CopyInformation(image)
    return sitk.Cast(stripped, image.GetPixelID())


@dataclass(frozen=True)
class MenRtPreprocessing:
    """Optional steps in the order they run: skull strip (native space), then register or resample."""

    resample_iso: float | None = None
    template: Path | None = None
    affine: bool = False
    skull_strip: bool = False

    @property
    def active(self) -> bool:
        return self.resample_iso is not None or self.template is not None or self.skull_strip

    def recipe(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def check_available(self) -> None:
        """Fail before any work when a requested step cannot run."""
        if self.skull_strip:
            hd_bet_command()
        if self.template is not None and not Path(self.template).is_file():
            raise FileNotFoundError(f"registration template {self.template} does not exist")
        if self.resample_iso is not None and self.resample_iso <= 0:
            raise ValueError(f"--resample-iso must be positive, got {self.resample_iso}")

    def __call__(self, case: SourceCase, records: Path) -> tuple[list[sitk.Image], sitk.Image | None, dict]:
        image = read_image(case.images[0])
        label = read_image(case.label) if case.label is not None else None
        record: dict[str, Any] = {"case": case.case_id, "source_grid": grid_of(image), "steps": self.recipe()}
        if self.skull_strip:
            image = skull_strip(image)
        if self.template is not None:
            template = read_image(self.template)
            transform = register(template, image, self.affine)
            transform_file = records / f"{case.case_id}.tfm"
            sitk.WriteTransform(transform, str(transform_file))
            record["transform"] = transform_file.name
            image = sitk.Resample(image, template, transform, sitk.sitkLinear, 0.0, image.GetPixelID())
            if label is not None:
                label = sitk.Resample(label, template, transform, sitk.sitkNearestNeighbor, 0, label.GetPixelID())
        elif self.resample_iso is not None:
            image = resample_isotropic(image, self.resample_iso, sitk.sitkLinear)
            if label is not None:
                label = resample_isotropic(label, self.resample_iso, sitk.sitkNearestNeighbor)
        record["converted_grid"] = grid_of(image)
        return [image], label, record


def to_source_grid(prediction: sitk.Image, record: dict[str, Any], records: Path) -> sitk.Image:
    """Nearest-neighbour resampling of a prediction from the converted grid back onto the source grid."""
    grid = record["source_grid"]
    reference = sitk.Image([int(n) for n in grid["size"]], prediction.GetPixelID())
    reference.SetSpacing(grid["spacing"])
    reference.SetOrigin(grid["origin"])
    reference.SetDirection(grid["direction"])
    transform = sitk.Transform()
    if "transform" in record:
        # registration maps template -> case points; to sample the template-space prediction at case points
        # we need case -> template, the inverse
        transform = sitk.ReadTransform(str(records / record["transform"])).GetInverse()
    return sitk.Resample(prediction, reference, transform, sitk.sitkNearestNeighbor, 0, prediction.GetPixelID())
