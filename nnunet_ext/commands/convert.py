"""``nnunet-ext convert brats-gli|brats-2021|men-rt SRC -d ID``: challenge downloads -> nnU-Net raw datasets."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from nnunet_ext.commands._options import add_num_processes, example, subcommand_parser
from nnunet_ext.errors import RunFailed, UsageError

NAME = "convert"
HELP = "convert a BraTS-GLI 2024, BraTS 2021 or BraTS-MEN-RT 2024 download into an nnU-Net raw dataset"
EXAMPLES = {
    "brats-gli": example("convert", "nnunet-ext convert brats-gli gli_src -d 502 -n GliRegions --regions  # regions"),
    "brats-2021": example(None, "# demo-data writes the 2024 naming only. A BraTS 2021 download: folders "
                                "BraTS2021_XXXXX with _flair, _t1,",
                          "# _t1ce, _t2 and _seg .nii.gz files, labels 1/2/4; converted to the GLI channels and "
                          "labels:",
                          "nnunet-ext convert brats-2021 /data/BraTS2021-train -d 503 --symlink"),
    "men-rt": example(None, "nnunet-ext demo-data men_src --task men-rt -n 10 --shape 64 64 40",
                      "nnunet-ext convert men-rt men_src -d 504                                  # native space",
                      "nnunet-ext convert men-rt men_src -d 505 -n MenIso --resample-iso 1.0     # 1 mm isotropic"),
}
EXAMPLE = example("convert", "nnunet-ext convert brats-gli --help    # the options of one task")

def _common(parser: argparse.ArgumentParser, default_name: str) -> None:
    parser.add_argument("src", type=Path, help="folder with the challenge download (searched recursively)")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset ID (1..999)")
    parser.add_argument("-n", "--name", default=default_name, help=f"dataset name (default {default_name})")
    parser.add_argument("--strict", action="store_true", help="fail on any bad case instead of skipping it")
    parser.add_argument("--symlink", action="store_true", help="symlink .nii.gz sources instead of copying")
    add_num_processes(parser, max(1, min(8, (os.cpu_count() or 2) - 1)),
                      "parallel worker processes (default: CPUs - 1, at most 8)")
    parser.add_argument("--raw-root", type=Path, default=None,
                        help="nnUNet_raw folder to write into (default: $nnUNet_raw)")
    parser.add_argument("--take-over", action="store_true",
                        help="convert into an existing dataset folder that another conversion (other task or "
                             "source folder) or another tool created")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    gli = subcommand_parser(sub, "brats-gli", "BraTS-GLI 2024: 4 channels, NETC/SNFH/ET/RC, patient-grouped splits",
                            EXAMPLES["brats-gli"])
    _common(gli, "BraTS2024GLI")
    gli.add_argument("--regions", action="store_true",
                     help="region-based labels WT (1,2,3), TC (1,3), ET (3), RC (4) as BraTS scores them")
    gli.add_argument("--preprocessed-root", type=Path, default=None,
                     help="nnUNet_preprocessed folder for splits_final.json (default: $nnUNet_preprocessed)")
    b21 = subcommand_parser(sub, "brats-2021", "BraTS 2021 (BraTS2021_XXXXX_{flair,t1,t1ce,t2,seg}): the GLI "
                            "channels and labels (ET 4 -> 3), so GLI models and rules apply",
                            EXAMPLES["brats-2021"])
    _common(b21, "BraTS2021")
    b21.add_argument("--regions", action="store_true",
                     help="region-based labels WT (1,2,3), TC (1,3), ET (3) as BraTS scores them")
    men = subcommand_parser(sub, "men-rt", "BraTS-MEN-RT 2024: 1 channel (T1C), GTV; optional preprocessing",
                            EXAMPLES["men-rt"])
    _common(men, "BraTS2024MENRT")
    men.add_argument("--resample-iso", type=float, metavar="MM", default=None,
                     help="resample to MM isotropic spacing (off by default)")
    men.add_argument("--register-to", type=Path, metavar="TEMPLATE", default=None,
                     help="rigidly register every case to this template image (off by default)")
    men.add_argument("--affine", action="store_true", help="with --register-to: affine instead of rigid")
    men.add_argument("--skull-strip", action="store_true",
                     help="skull-strip with HD-BET (must be installed with its weights; off by default, "
                          "the study found it hurts meningioma Dice)")


def _root(explicit: Path | None, env: str) -> Path:
    if explicit is not None:
        return explicit
    value = os.environ.get(env)
    if not value:
        raise SystemExit(f"error: ${env} is not set; set it or pass --{env.split('_')[1]}-root")
    return Path(value)


def run(args: argparse.Namespace) -> int:
    from nnunet_ext.case_checks import CaseCheckError, format_summary
    from nnunet_ext.dataset_conversion import brats_2021, brats_gli, men_rt
    from nnunet_ext.dataset_conversion.raw_dataset import convert
    from nnunet_ext.dataset_conversion.splits import grouped_splits, write_splits

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    if not 1 <= args.dataset_id <= 999:
        raise UsageError(f"dataset ID must be in 1..999, got {args.dataset_id}")
    if not args.src.is_dir():
        raise UsageError(f"{args.src} is not a folder")
    raw_root = _root(args.raw_root, "nnUNet_raw")
    try:
        if args.task == "brats-gli":
            preprocessed_root = _root(args.preprocessed_root, "nnUNet_preprocessed")
            spec = brats_gli.dataset_spec(args.dataset_id, args.name, args.regions)
            result = convert(brats_gli.find_cases(args.src), spec, raw_root, symlink=args.symlink,
                             strict=args.strict, num_workers=args.num_processes, task=args.task, source=args.src,
                             take_over=args.take_over)
            patients = {brats_gli.patient_of(case_id) for case_id in result.training}
            if len(patients) < 2:
                print(f"warning: only {len(patients)} patient(s): no splits_final.json written", file=sys.stderr)
            else:
                splits = grouped_splits(result.training, brats_gli.patient_of)
                path = write_splits(splits, preprocessed_root, spec.folder_name)
                print(f"wrote {len(splits)}-fold patient-grouped splits to {path}")
        elif args.task == "brats-2021":  # one scan per patient: nnU-Net's own split is patient-grouped already
            spec = brats_2021.dataset_spec(args.dataset_id, args.name, args.regions)
            result = convert(brats_2021.find_cases(args.src), spec, raw_root, symlink=args.symlink,
                             strict=args.strict, num_workers=args.num_processes, task=args.task, source=args.src,
                             take_over=args.take_over)
        else:
            steps = men_rt.MenRtPreprocessing(args.resample_iso, args.register_to, args.affine, args.skull_strip)
            steps.check_available()
            spec = men_rt.dataset_spec(args.dataset_id, args.name)
            active = steps if steps.active else None
            result = convert(men_rt.find_cases(args.src), spec, raw_root, symlink=args.symlink,
                             strict=args.strict, num_workers=args.num_processes, preprocessor=active,
                             preprocessor_recipe=steps.recipe() if active else None,
                             extra_sources=[args.register_to] if args.register_to else [],
                             task=args.task, source=args.src, take_over=args.take_over)
    except CaseCheckError as error:
        raise UsageError(f"--strict and some cases are bad\n{error}") from None
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    except RuntimeError as error:  # HD-BET missing or failing
        raise RunFailed(str(error)) from None
    print(f"{result.dataset_dir}: {len(result.training)} training cases, {len(result.test)} test cases "
          f"({result.written} written, {result.unchanged} already up to date)")
    if result.skipped:
        print("skipped:\n" + format_summary(result.skipped), file=sys.stderr)
    return 0
