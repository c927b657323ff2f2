"""``nnunet-ext postprocess``: post-process predictions, select post-processing per region, record it in a model.

    nnunet-ext postprocess -i PRED -o OUT                         # auto: recorded (-m), else by the labels
    nnunet-ext postprocess -i PRED -o OUT --mode components --min-size 64
    nnunet-ext postprocess --select -m MODEL_FOLDER               # choose rules on fold_*/validation, record them
    nnunet-ext postprocess -m MODEL_FOLDER --record --mode cascade --min-size 32

A recorded setting is what ``nnunet-ext predict`` applies by default for that model.
"""

from __future__ import annotations

import argparse

from nnunet_ext.commands._options import EXAMPLE_RAW, add_num_processes, example

NAME = "postprocess"
HELP = ("remove small connected components from predicted segmentations (per label, or per nested region as a "
        "cascade), or choose the rules per region on the cross-validation predictions")
EXAMPLE = example("train", f"nnunet-ext predict -d 501 -i {EXAMPLE_RAW}/imagesTr -o pred_tr -device cpu "
                  "--postprocess none",
                  "nnunet-ext postprocess -i pred_tr -o pred_tr_pp --mode components --min-size 32",
                  "nnunet-ext postprocess --select -d 501 -f 0    # choose per region on fold 0's validation, record",
                  "nnunet-ext postprocess -i pred_tr -o pred_tr_pp -d 501    # apply the recorded choice")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", help="folder of predicted segmentations (nnU-Net output folder)")
    parser.add_argument("-o", help="output folder (may equal -i: files are replaced atomically)")
    parser.add_argument("-m", help="model folder: its recorded setting is the default; where --record/--select "
                                   "write")
    parser.add_argument("-d", help="dataset name or id, for the model folder in nnUNet_results (with -tr/-p/-c)")
    parser.add_argument("-tr", default="SliceResTrainer", help="trainer (with -d; default: SliceResTrainer)")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier (with -d; default: nnUNetPlans)")
    parser.add_argument("-c", default="2d", help="configuration (with -d; default: 2d)")
    parser.add_argument("--mode", choices=("auto", "components", "cascade", "none"), default="auto",
                        help="auto (default): the model folder's record, else cascade where the labels nest (BraTS "
                             "ET/NETC/SNFH or nested dataset.json regions), else components; components: per-label "
                             "removal; cascade: per nested region, innermost first, removed voxels take the next "
                             "region's label; none")
    parser.add_argument("--min-size", type=int, help="smallest component kept, in voxels (default: recorded, else 64)")
    parser.add_argument("--connectivity", type=int, choices=(6, 18, 26), help="voxel connectivity (default 26)")
    parser.add_argument("--record", action="store_true", help="write the setting into the model folder (-m/-d)")
    parser.add_argument("--select", action="store_true",
                        help="choose a rule per region on the model's fold_*/validation predictions (kept where it "
                             "raises that region's mean Dice) and record it in the model folder (-m/-d)")
    parser.add_argument("--ref", help="with --select: reference segmentations (default: "
                                      "nnUNet_preprocessed/<dataset>/gt_segmentations)")
    parser.add_argument("-f", nargs="+", help="with --select: folds whose validation to use (default: all but 'all')")
    parser.add_argument("--min-sizes", type=int, nargs="*",
                        help="with --select: candidate minimum sizes in voxels (default: 8 16 32 64 128 256 512)")
    parser.add_argument("--fractions", type=float, nargs="*",
                        help="with --select: candidate fractions of the largest component (default: 0.05 0.1 0.2 0.5 "
                             "1)")
    add_num_processes(parser, 1, "worker processes (default 1)")


def _print_selection(setting, evidence: dict) -> None:
    print(f"post-processing selected on {evidence['cases']} validation cases (folds {' '.join(evidence['folds'])}),"
          f" references {evidence['reference_folder']}")
    print(f"{'region':<8} {'best candidate':<44} {'Dice before':>11} {'after':>8}  kept")
    for d in evidence["decisions"]:
        rule = d["best_rule"]
        what = (f"< {rule['min_size']} voxels" if rule["min_size"] else f"< {rule['min_fraction']:g} x largest")
        print(f"{d['region']:<8} {'components ' + what + ' -> label ' + str(rule['fill']):<44} "
              f"{d['dice_before']:>11.4f} {d['dice_after']:>8.4f}  {'yes' if d['kept'] else 'no'}")
    print("mean Dice per region, none -> selected: " + ", ".join(
        f"{name} {v['none']:.4f} -> {v['selected']:.4f}" for name, v in evidence["mean_dice"].items()))
    print(f"selected: {setting.describe()}")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from nnunet_ext.inference import postprocessing as pp
    from nnunet_ext.inference.model_folder import resolve_model_folder

    writes_model = args.record or args.select
    if args.record and args.select:
        raise SystemExit("nnunet-ext postprocess: --record and --select both write the model folder; give one")
    if writes_model and not (args.m or args.d):
        raise SystemExit(f"nnunet-ext postprocess: {'--select' if args.select else '--record'} needs -m MODEL_FOLDER "
                         f"or -d DATASET")
    if not writes_model and not (args.i and args.o):
        raise SystemExit("nnunet-ext postprocess: give -i and -o to post-process predictions, or -m/-d with "
                         "--select or --record")
    try:
        model = resolve_model_folder(args.m, args.d, args.tr, args.p, args.c) if (args.m or args.d) else None
        if args.select:
            from nnunet_ext.inference import postprocessing_selection as selection

            setting, evidence = selection.select_for_model(
                model, Path(args.ref) if args.ref else None, args.f,
                selection.MIN_SIZES if args.min_sizes is None else args.min_sizes,
                selection.FRACTIONS if args.fractions is None else args.fractions,
                args.connectivity or 26, args.num_processes)
            _print_selection(setting, evidence)
            print(f"recorded in {pp.save_setting(model, setting, evidence)}")
        else:
            dataset_json = Path(model or args.i) / "dataset.json"
            labels = json.loads(dataset_json.read_text()) if dataset_json.is_file() else None
            setting = pp.resolve_setting(args.mode, labels, pp.load_setting(model) if model else None,
                                         args.min_size, args.connectivity)
            if args.record:
                print(f"recorded {setting.describe()} in {pp.save_setting(model, setting)}")
        if args.i and args.o:
            written = pp.postprocess_folder(args.i, args.o, setting, num_processes=args.num_processes)
            print(f"post-processed {len(written)} segmentations into {args.o} ({setting.describe()})")
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"nnunet-ext postprocess: {error}") from None
    return 0
