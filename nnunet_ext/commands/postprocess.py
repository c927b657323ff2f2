"""``nnunet-ext postprocess``: post-process a folder of predictions, and/or record the setting in a model folder.

    nnunet-ext postprocess -i PRED -o OUT [--mode components|cascade|none] [--min-size 64]
    nnunet-ext postprocess -i PRED -o OUT -m MODEL_FOLDER        # apply what the model folder records
    nnunet-ext postprocess -m MODEL_FOLDER --record --mode cascade --min-size 32

A recorded setting is what ``nnunet-ext predict`` applies by default for that model.
"""

from __future__ import annotations

import argparse

NAME = "postprocess"
HELP = "remove small connected components (per label, or the BraTS ET/TC/WT cascade) from predicted segmentations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", help="folder of predicted segmentations (nnU-Net output folder)")
    parser.add_argument("-o", help="output folder (may equal -i: files are replaced atomically)")
    parser.add_argument("-m", help="model folder: its recorded setting is the default; with --record, where to "
                                   "record")
    parser.add_argument("--mode", choices=("components", "cascade", "none"),
                        help="components: per-label removal; cascade: BraTS ET->TC->WT removal with refill (needs "
                             "ET/NETC/SNFH labels or nested regions); none (default: recorded, else components)")
    parser.add_argument("--min-size", type=int, help="smallest component kept, in voxels (default: recorded, else 64)")
    parser.add_argument("--connectivity", type=int, choices=(6, 18, 26), help="voxel connectivity (default 26)")
    parser.add_argument("--record", action="store_true", help="write the setting into the model folder (-m)")
    parser.add_argument("-np", type=int, default=1, help="worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from nnunet_ext.inference import postprocessing as pp

    if args.record and not args.m:
        raise SystemExit("--record needs -m MODEL_FOLDER")
    if not args.record and not (args.i and args.o):
        raise SystemExit("give -i and -o to post-process predictions, or -m with --record to record a setting")
    try:
        recorded = pp.load_setting(args.m) if args.m else None
        base = recorded or pp.Setting()
        mode = args.mode or base.mode
        steps = base.cascade
        if mode == "cascade" and not steps:
            dataset_json = Path(args.m or args.i) / "dataset.json"
            if not dataset_json.is_file():
                raise ValueError(f"{dataset_json} is missing: the cascade needs the model's labels")
            steps = pp.cascade_steps(pp.cascade_regions(json.loads(dataset_json.read_text())))
        setting = pp.Setting(mode, base.min_size if args.min_size is None else args.min_size,
                             args.connectivity or base.connectivity, steps if mode == "cascade" else ())
        if args.record:
            if not (Path(args.m) / "plans.json").is_file():
                raise ValueError(f"{args.m} is not a model folder (no plans.json)")
            print(f"recorded {setting.to_json()} in {pp.save_setting(args.m, setting)}")
        if args.i and args.o:
            written = pp.postprocess_folder(args.i, args.o, setting, num_processes=args.np)
            print(f"post-processed {len(written)} segmentations into {args.o} ({setting.mode}, min size "
                  f"{setting.min_size})")
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"nnunet-ext postprocess: {error}") from None
    return 0
