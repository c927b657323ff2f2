"""``nnunet-ext predict``: ``nnUNetv2_predict`` for SliceRes models with the multi-view ensemble and post-processing.

Same flags as ``nnUNetv2_predict`` (plus ``-m MODEL_FOLDER`` as in ``nnUNetv2_predict_from_modelfolder``),
and the same outputs: nnU-Net preprocesses, exports in original geometry with its file naming, writes
``--save_probabilities`` files (mean probabilities, before post-processing), resumes with
``--continue_prediction`` and splits jobs with ``-num_parts/-part_id``. Added: the views (``--axes``,
``--transforms``), tiled or whole-slice inference (``--inference``), post-processing of the exported segmentations
(``--postprocess``, ``--min-size``), outputs that reach their final name only when post-processed, resumes that
check the recorded settings (:mod:`nnunet_ext.inference.folder_prediction`) and a log file in the output folder.
All of it is :func:`nnunet_ext.inference.predict_folder`; this module parses the command line.
"""

from __future__ import annotations

import argparse

from nnunet_ext.commands._options import EXAMPLE_RAW, example, non_negative_int, positive_int
from nnunet_ext.inference.backends import BACKENDS, PRECISIONS
from nnunet_ext.planning.sliceres_settings import INFERENCE_MODES

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
    parser.add_argument("--inference", choices=INFERENCE_MODES,
                        help="in-plane: tiles of the training crop with nnU-Net's Gaussian-weighted sliding window "
                             "(as published) or whole slices in one pass (faster; see the README for how it "
                             "compares); default: the model's plans (sliceres.inference, tiles unless planned "
                             "otherwise)")
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
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="network arithmetic: auto (nnU-Net's: bfloat16/float16 autocast on CUDA, float32 on the "
                             "CPU), fp32, or bf16 (also on the CPU: several times faster on CPUs with AVX-512 BF16 or "
                             "AMX; see the README for accuracy); probabilities are averaged in float32 either way")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="torch (default) or openvino (CPU only, optional: pip install 'nnunet_ext[openvino]'; "
                             "the network is converted once per fold)")
    parser.add_argument("--save_probabilities", action="store_true", help="also write .npz/.pkl like nnU-Net")
    parser.add_argument("--continue_prediction", action="store_true", help="skip cases already predicted")
    parser.add_argument("-npp", type=non_negative_int, default=3,
                        help="preprocessing processes (default: 3; -npp 0 -nps 0: sequential, as in nnU-Net)")
    parser.add_argument("-nps", type=non_negative_int, default=3, help="export processes (default: 3)")
    parser.add_argument("-num_parts", type=int, default=1, help="split the cases into this many jobs")
    parser.add_argument("-part_id", type=int, default=0, help="which job this is (0 .. num_parts-1)")
    parser.add_argument("-device", default="cuda", choices=("cuda", "cpu", "mps"), help="device (default: cuda)")
    parser.add_argument("--not_on_device", action="store_true",
                        help="keep image and results on the CPU, only the network on the device")
    parser.add_argument("--disable_progress_bar", action="store_true", help="no tqdm bars")
    parser.add_argument("--verbose", action="store_true", help="nnU-Net's verbose output")


def run(args: argparse.Namespace) -> int:
    from nnunet_ext.errors import UsageError
    from nnunet_ext.inference.model_folder import ModelFolderError, resolve_model_folder
    from nnunet_ext.inference.predict import predict_folder

    try:
        model_folder = resolve_model_folder(args.m, args.d, args.tr, args.p, args.c)
    except ModelFolderError as error:
        raise UsageError(str(error)) from None
    predict_folder(args.i, args.o, model_folder, folds=args.f,
                   checkpoint=args.chk, axes=args.axes, transforms=args.transforms, inference=args.inference,
                   tile_step_size=args.step_size, postprocess=args.postprocess, min_size=args.min_size,
                   slices_per_batch=args.slices_per_batch, save_probabilities=args.save_probabilities,
                   continue_prediction=args.continue_prediction, num_processes_preprocessing=args.npp,
                   num_processes_export=args.nps, num_parts=args.num_parts, part_id=args.part_id, device=args.device,
                   perform_everything_on_device=not args.not_on_device, precision=args.precision,
                   backend=args.backend, verbose=args.verbose,
                   progress=not args.disable_progress_bar)
    return 0
