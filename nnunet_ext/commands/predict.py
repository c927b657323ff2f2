"""``nnunet-ext predict``: ``nnUNetv2_predict`` for SliceRes models with the multi-view ensemble and post-processing.

Same flags as ``nnUNetv2_predict`` (plus ``-m MODEL_FOLDER`` as in ``nnUNetv2_predict_from_modelfolder``),
and the same outputs: nnU-Net preprocesses, exports in original geometry with its file naming, writes
``--save_probabilities`` files (mean probabilities, before post-processing), resumes with
``--continue_prediction`` and splits jobs with ``-num_parts/-part_id``. Added: the views (``--axes``,
``--transforms``), tiled or whole-slice inference (``--inference``), post-processing of the exported segmentations
(``--postprocess``, ``--min-size``), outputs that reach their final name only when post-processed, resumes that
check the recorded settings (:mod:`nnunet_ext.inference.folder_prediction`) and a log file in the output folder.
"""

from __future__ import annotations

import argparse
import os

from nnunet_ext.commands._options import EXAMPLE_RAW, example
from nnunet_ext.run_log import stdout_logged_to

NAME = "predict"
HELP = "predict with a SliceRes model: 2.5D slices along several axes x in-plane transforms, averaged"
EXAMPLE = example("train", f"nnunet-ext predict -d 501 -i {EXAMPLE_RAW}/imagesTs -o pred_ts -device cpu  # 24 views",
                  f"nnunet-ext predict -d 501 -i {EXAMPLE_RAW}/imagesTs -o pred_fast -device cpu --transforms fast"
                  "  # 6 views")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", required=True, help="input folder of CASE_XXXX<file_ending> images")
    parser.add_argument("-o", required=True, help="output folder (created if missing)")
    parser.add_argument("-d", help="dataset name or id (with -tr/-p/-c), or use -m")
    parser.add_argument("-m", help="model folder (instead of -d/-tr/-p/-c)")
    parser.add_argument("-c", default="2d", help="configuration (default: 2d)")
    parser.add_argument("-tr", default="SliceResTrainer", help="trainer (default: SliceResTrainer)")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier (default: nnUNetPlans)")
    parser.add_argument("-f", nargs="+", help="folds to ensemble (default: every fold with a checkpoint)")
    parser.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default: checkpoint_final.pth)")
    parser.add_argument("--inference", choices=("tiles", "whole"), default="tiles",
                        help="in-plane: tiles of the training crop with nnU-Net's Gaussian-weighted sliding window "
                             "(default, as published and as trained) or whole slices in one pass (faster; see the "
                             "README for how it compares)")
    parser.add_argument("-step_size", type=float, default=0.5,
                        help="with --inference tiles: in-plane sliding-window step (default: 0.5)")
    parser.add_argument("--axes", nargs="+", type=int, choices=(0, 1, 2),
                        help="slicing axes of the preprocessed array (default: the axes the model was trained on, "
                             "else 0 1 2)")
    parser.add_argument("--transforms", default="all",
                        help="in-plane transforms per axis: all (8, dihedral group), mirror (4 flips, like "
                             "nnU-Net's mirroring), fast (identity + left-right flip: 6 views on 3 axes), identity, "
                             "or indices 0..7 like 0,4 (default: all)")
    parser.add_argument("--postprocess", choices=("auto", "none", "components", "cascade"), default="auto",
                        help="auto: the setting recorded in the model folder (see postprocess --select), else the "
                             "cascade where labels nest (BraTS: ET->TC->WT removal with refill) and per-label removal "
                             "of components smaller than --min-size otherwise; components: per-label removal; "
                             "cascade: the region cascade; none")
    parser.add_argument("--min-size", type=int, help="minimum component size in voxels (default: recorded, else 64)")
    parser.add_argument("--slices-per-batch", type=positive_int,
                        help="2D inputs (slices x transforms) per network call (default: the network's "
                             "slices_per_forward); halved automatically when out of memory")
    parser.add_argument("--save_probabilities", action="store_true", help="also write .npz/.pkl like nnU-Net")
    parser.add_argument("--continue_prediction", action="store_true", help="skip cases already predicted")
    parser.add_argument("-npp", type=int, default=3, help="preprocessing processes (default: 3)")
    parser.add_argument("-nps", type=int, default=3, help="export processes (default: 3)")
    parser.add_argument("-num_parts", type=int, default=1, help="split the cases into this many jobs")
    parser.add_argument("-part_id", type=int, default=0, help="which job this is (0 .. num_parts-1)")
    parser.add_argument("-device", default="cuda", choices=("cuda", "cpu", "mps"), help="device (default: cuda)")
    parser.add_argument("--not_on_device", action="store_true",
                        help="keep image and results on the CPU, only the network on the device")
    parser.add_argument("--disable_progress_bar", action="store_true", help="no tqdm bars")
    parser.add_argument("--verbose", action="store_true", help="nnU-Net's verbose output")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _device(name: str):
    """The torch device, with nnU-Net's thread settings for it."""
    import multiprocessing

    import torch

    if name == "cpu":
        # nnU-Net takes every core; an explicit OMP_NUM_THREADS wins (oversubscribed threads are far slower)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or multiprocessing.cpu_count()))
    elif name == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("-device cuda: no CUDA device is available; use -device cpu")
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    return torch.device(name)


def _prediction_threads() -> int:
    """Torch threads while predicting: nnU-Net's cap (default_num_processes) on the current setting."""
    import torch
    from nnunetv2.configuration import default_num_processes

    return min(default_num_processes, torch.get_num_threads())


def _postprocessing_setting(args: argparse.Namespace, model_folder, dataset_json: dict):
    """``--postprocess``: auto is the model folder's record, else region-aware removal where the labels nest."""
    from nnunet_ext.inference import postprocessing as pp

    return pp.resolve_setting(args.postprocess, dataset_json, pp.load_setting(model_folder), args.min_size)


def _part_case_ids(input_folder: str, file_ending: str, num_parts: int, part_id: int) -> list[str]:
    """The cases nnU-Net assigns to this part (its own rule: sorted identifiers, every num_parts-th)."""
    from nnunetv2.utilities.utils import get_identifiers_from_splitted_dataset_folder

    return get_identifiers_from_splitted_dataset_folder(input_folder, file_ending)[part_id::num_parts]


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from nnunet_ext.inference import folder_prediction as fp
    from nnunet_ext.inference.model_folder import check_folds, check_inputs, resolve_model_folder
    from nnunet_ext.inference.predictor import SliceResPredictor
    from nnunet_ext.inference.views import make_views, parse_transforms

    if not 0 <= args.part_id < args.num_parts:
        raise SystemExit(f"-part_id must be in 0..{args.num_parts - 1} for -num_parts {args.num_parts}, "
                         f"got {args.part_id}")
    if args.npp == 0 and args.nps == 0 and args.num_parts > 1:
        raise SystemExit("-npp 0 -nps 0 (sequential mode) does not support -num_parts, as in nnU-Net")
    try:
        transforms = parse_transforms(args.transforms)
        model_folder = resolve_model_folder(args.m, args.d, args.tr, args.p, args.c)
        folds = check_folds(model_folder, args.f, args.chk)
        check_inputs(args.i, model_folder, args.npp)
        dataset_json = json.loads((model_folder / "dataset.json").read_text())
        setting = _postprocessing_setting(args, model_folder, dataset_json)
    except ValueError as error:
        raise SystemExit(f"nnunet-ext predict: {error}") from None

    predictor = SliceResPredictor(views=make_views((0,), transforms), tile_step_size=args.step_size,
                                  perform_everything_on_device=not args.not_on_device, device=_device(args.device),
                                  verbose=args.verbose, verbose_preprocessing=args.verbose,
                                  allow_tqdm=not args.disable_progress_bar, slices_per_batch=args.slices_per_batch,
                                  tiles=args.inference == "tiles")
    predictor.initialize_from_trained_model_folder(str(model_folder), folds, args.chk)
    trained_axes = predictor.configuration_manager.configuration.get("sliceres", {}).get("axes")
    predictor.views = make_views(args.axes or trained_axes or (0, 1, 2), transforms)
    _ = predictor.neighbours  # refuse non-2.5D models before any case is preprocessed

    file_ending = dataset_json["file_ending"]
    case_ids = _part_case_ids(args.i, file_ending, args.num_parts, args.part_id)
    output = Path(args.o)
    output.mkdir(parents=True, exist_ok=True)
    axes = sorted({v.axis for v in predictor.views})
    record = {"model_folder": str(model_folder.resolve()), "folds": folds, "checkpoint": args.chk, "axes": axes,
              "transforms": list(transforms), "inference": args.inference, "tile_step_size": args.step_size,
              "postprocessing": setting.to_json()}
    try:
        if args.continue_prediction:
            fp.check_continuation(output, record, file_ending)
    except ValueError as error:
        raise SystemExit(f"nnunet-ext predict: {error}") from None
    fp.write_record(output, record)  # before any case: an interrupted run can be checked when continued
    log_name = "sliceres_predict_log" + (f"_part{args.part_id}" if args.num_parts > 1 else "")
    with stdout_logged_to(output, log_name) as log:
        print(f"nnunet-ext predict: log {log}")
        return _predict_cases(args, predictor, output, case_ids, file_ending, record, setting)


def _predict_cases(args: argparse.Namespace, predictor, output, case_ids: list[str], file_ending: str, record: dict,
                   setting) -> int:
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    from nnunet_ext.inference import folder_prediction as fp

    done = set(fp.finished_cases(output, case_ids, file_ending)) if args.continue_prediction else set()
    todo = [c for c in case_ids if c not in done]
    inference = f"tiles (step {args.step_size})" if args.inference == "tiles" else "whole slices"
    axes, transforms = record["axes"], record["transforms"]
    print(f"SliceRes prediction: {len(predictor.views)} views (axes {axes} x transforms {transforms}), "
          f"folds {record['folds']}, {inference}, post-processing {setting.describe()}, "
          f"device {args.device} with {_prediction_threads()} torch threads; {len(todo)} of {len(case_ids)} cases "
          f"to predict")
    if not todo:
        return 0
    inputs = create_lists_from_splitted_dataset_folder(args.i, file_ending, todo)
    staging = fp.staging_folder(output, args.part_id)
    staged = [str(staging / case_id) for case_id in todo]
    if args.npp == 0 and args.nps == 0:
        predictor.predict_from_files_sequential(inputs, staged, args.save_probabilities, True, None)
    else:
        predictor.predict_from_files(inputs, staged, save_probabilities=args.save_probabilities, overwrite=True,
                                     num_processes_preprocessing=args.npp,
                                     num_processes_segmentation_export=args.nps)
    fp.finalise(staging, output, todo, file_ending, setting, max(1, args.nps))
    return 0
