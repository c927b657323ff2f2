"""BraTS 2021 cases cropped to the brain, same layout and names, so they fit the GPU machine's 64 MiB travel limit.

    python benchmarks/crop_brats21.py ../shared/data/brats21-train data/brats21-crop

Why: the six real cases of ``../shared/data/brats21-train`` are 57 MB of 240x240x155 volumes, the device kit
another ~34 MB, and a call to the GPU machine carries at most 64 MiB. Cropping each case to the bounding box of
its brain (every voxel where any modality is non-zero; the tumour lies inside) keeps every brain voxel, its raw
intensity and label, and the physical position (the origin moves with the crop), and drops zeros only.
The cropped copy is the ``SRC`` of ``nnunet-ext convert brats-2021`` on the GPU machine (see
``benchmarks/README.md``); predictions there refer to the cropped grid.

The output folder is written beside its final name and renamed into place when complete; an existing one is
left alone (delete it to crop again). The sources are only read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion import brats_2021
from nnunet_ext.dataset_conversion.raw_dataset import SourceCase


def brain_box(images: list[sitk.Image]) -> tuple[list[int], list[int]]:
    """Lower corner and size (x, y, z) of the box holding every voxel that is non-zero in any image."""
    brain = np.any([sitk.GetArrayViewFromImage(image) != 0 for image in images], axis=0)
    corners = np.argwhere(brain)
    if not len(corners):
        raise ValueError("every modality is empty")
    low, high = corners.min(0), corners.max(0) + 1  # (z, y, x)
    return [int(v) for v in low[::-1]], [int(v) for v in (high - low)[::-1]]


def crop_case(case: SourceCase, out: Path) -> tuple[list[int], int]:
    """Write the cropped files of ``case`` into ``out``; returns the crop size and label voxels outside the box."""
    images = [sitk.ReadImage(str(path)) for path in case.images]
    low, size = brain_box(images)
    out.mkdir(parents=True)
    lost = 0
    for path in (*case.images, *([case.label] if case.label is not None else [])):
        image = sitk.ReadImage(str(path))
        cropped = sitk.RegionOfInterest(image, size, low)
        if path == case.label:
            lost = int(np.count_nonzero(sitk.GetArrayViewFromImage(image))
                       - np.count_nonzero(sitk.GetArrayViewFromImage(cropped)))
        sitk.WriteImage(cropped, str(out / path.name), useCompression=True)
    return size, lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="BraTS 2021 download (BraTS2021_XXXXX/BraTS2021_XXXXX_*.nii.gz)")
    parser.add_argument("dest", type=Path, help="folder for the cropped copy (must not exist)")
    args = parser.parse_args(argv)
    if args.dest.exists():
        print(f"{args.dest} exists: left as it is (delete it to crop again)")
        return 0
    cases = brats_2021.find_cases(args.src)
    if not cases:
        raise SystemExit(f"error: no BraTS2021_XXXXX cases below {args.src}")
    partial = args.dest.with_name(args.dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for case in cases:
        try:
            size, lost = crop_case(case, partial / case.case_id)
        except (ValueError, RuntimeError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise SystemExit(f"error: {case.case_id}: {error}") from None
        if lost:
            shutil.rmtree(partial, ignore_errors=True)
            raise SystemExit(f"error: {case.label}: {lost} labelled voxels lie outside the brain's bounding box")
        print(f"{case.case_id}: cropped to {size[0]}x{size[1]}x{size[2]}")
    os.replace(partial, args.dest)
    megabytes = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file()) / 1e6
    print(f"{args.dest}: {len(cases)} cases, {megabytes:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
