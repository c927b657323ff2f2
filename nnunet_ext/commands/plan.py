"""``nnunet-ext plan``: check the raw dataset, fingerprint, plan with SliceResPlanner, preprocess.

Equivalent to ``nnUNetv2_plan_and_preprocess`` with the default planner and plans name ``nnUNetPlans``,
plus the ``sliceres`` block in the 2d configuration, so that afterwards both
``nnUNetv2_train D 2d 0 -tr SliceResTrainer`` and stock ``nnUNetv2_train D 2d|3d_fullres 0`` work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nnunet_ext.commands._options import add_num_processes, example
from nnunet_ext.errors import UsageError
from nnunet_ext.utils.processes import workers_exit_with_parent

NAME = "plan"
HELP = "check, fingerprint, plan (nnU-Net plans + SliceRes settings) and preprocess a raw nnU-Net dataset"
EXAMPLE = example("plan", "nnunet-ext plan -d 501 --preset brats_gli --no-preprocess  # published settings, plans only")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (DatasetXXX_Name) in nnUNet_raw")
    parser.add_argument("-c", "--configurations", nargs="+", default=["2d", "3d_fullres"],
                        help="configurations to preprocess (default: 2d 3d_fullres; SliceRes trains on 2d)")
    parser.add_argument("--preset",
                        help="SliceRes preset: a shipped preset name (paper, brats_gli, men_rt) or a JSON file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a SliceRes setting, dotted key and JSON value, e.g. "
                             "--set loss.focal_gamma=1.5 --set axes=[0] (repeatable; applied after --preset)")
    add_num_processes(parser, None, "worker processes (default: nnU-Net's, i.e. $nnUNet_def_n_proc or 8)")
    parser.add_argument("--no-preprocess", action="store_true", help="only check, fingerprint and plan")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the per-case raw data checks (geometry, NaN/inf, label values)")
    parser.add_argument("--clean", action="store_true", help="recompute an existing dataset fingerprint")


def _dataset_json(raw_folder: Path) -> dict:
    """``dataset.json`` of a raw dataset, or ``ValueError`` naming the file and what is wrong with it."""
    path = raw_folder / "dataset.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing; a raw dataset needs a dataset.json (nnU-Net's dataset format)")
    try:
        dataset_json = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno} column {error.colno})") from None
    required = ("channel_names", "labels", "numTraining", "file_ending")
    missing = [key for key in required if not isinstance(dataset_json, dict) or key not in dataset_json]
    if missing:
        raise ValueError(f"{path}: lacks {', '.join(missing)} (needed: {', '.join(required)})")
    if not isinstance(dataset_json["channel_names"], dict) or not dataset_json["channel_names"]:
        raise ValueError(f"{path}: channel_names must map channel indices to names, e.g. {{\"0\": \"T1\"}}")
    return dataset_json


def _num_outputs(dataset_json: dict, where: Path) -> int:
    """Output channels of the network (nnU-Net's label manager: labels, or regions for region-based data)."""
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    try:
        manager = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
        return manager.num_segmentation_heads
    except (AssertionError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{where}: its labels cannot be used by nnU-Net ({type(error).__name__}: {error})") from None


@workers_exit_with_parent()  # nnU-Net's fingerprint and preprocessing pools exit with a killed plan
def run(args: argparse.Namespace) -> int:
    from nnunetv2.configuration import default_num_processes
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        preprocess_dataset,
    )
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import (
        convert_dataset_name_to_id,
        maybe_convert_to_dataset_name,
    )

    from nnunet_ext import case_checks
    from nnunet_ext.planning import settings
    from nnunet_ext.planning.planner import SliceResPlanner

    if not nnUNet_raw or not nnUNet_preprocessed:  # nnU-Net's lazy path objects are falsy when unset
        raise SystemExit("nnUNet_raw and nnUNet_preprocessed must be set (see nnU-Net's set_environment_variables)")
    # everything that can be checked without the data's fingerprint is checked before any work
    try:
        dataset_name = maybe_convert_to_dataset_name(args.dataset)
        raw_folder = Path(nnUNet_raw) / dataset_name
        dataset_json = _dataset_json(raw_folder)
        overrides = settings.load_preset(args.preset) if args.preset else {}
        overrides = settings.deep_merge(overrides, settings.parse_set(args.overrides))
        settings.check_overrides(overrides, len(dataset_json["channel_names"]),
                                 _num_outputs(dataset_json, raw_folder / "dataset.json"))
    except settings.SettingsError as error:
        lines = "\n  ".join(error.problems)
        raise UsageError(f"invalid SliceRes settings, nothing was done:\n  {lines}") from None
    except (ValueError, RuntimeError, OSError) as error:  # nnU-Net's unknown-ID error is a RuntimeError
        raise UsageError(str(error).splitlines()[0] if isinstance(error, RuntimeError) else str(error)) from None
    dataset_id = convert_dataset_name_to_id(dataset_name)

    args.num_processes = args.num_processes or default_num_processes
    found = case_checks.raw_dataset_cases(raw_folder)
    cases = found[0]
    if not cases:
        raise UsageError(f"{raw_folder}: the dataset has no training cases (imagesTr/labelsTr are empty)")
    if not args.no_check:
        problems = case_checks.check_raw_dataset(raw_folder, num_workers=args.num_processes, found=found)
        if problems:
            raise UsageError(f"{raw_folder}: fix these problems before planning:\n"
                             f"{case_checks.format_summary(problems, len(cases))}")

    extract_fingerprint_dataset(dataset_id, num_processes=args.num_processes, check_dataset_integrity=False,
                                clean=args.clean)
    planner = SliceResPlanner(dataset_id, overrides=overrides)
    plans = planner.plan_experiment()
    block = plans["configurations"][settings.SLICERES_CONFIGURATION][settings.SLICERES_KEY]
    print(f"SliceRes settings (plans['configurations']['2d']['sliceres'] in "
          f"{Path(nnUNet_preprocessed) / dataset_name / 'nnUNetPlans.json'}):\n{json.dumps(block, indent=2)}")

    if not args.no_preprocess:
        missing = [c for c in args.configurations if c not in plans["configurations"]]
        if missing:
            print(f"INFO: configurations {missing} are not planned for {dataset_name} and are skipped")
        wanted = [c for c in args.configurations if c in plans["configurations"]]
        preprocess_dataset(dataset_id, planner.plans_identifier, wanted, [args.num_processes] * len(wanted))
    return 0
