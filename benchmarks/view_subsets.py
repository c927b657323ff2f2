"""Which views pay for themselves: Dice of view subsets (and whole slices vs tiles) from saved per-view probabilities.

For each held-out case of the given folds, every view (3 axes x the 8 in-plane transforms) is predicted once with
the fold's own checkpoint, its probabilities kept and its time taken; then any subset of views is an average of
saved probabilities, so "Dice lost vs time saved" against the full 24-view ensemble costs no extra inference.
With ``--whole`` every view is also predicted with whole-slice inference, on the same checkpoints.

Dice is voxel Dice per BraTS region (WT = every tumour label, TC = all but oedema, ET = enhancing) on nnU-Net's
preprocessed grid, against the preprocessed reference: the right measure for comparing inference variants of one
model (the lesion-wise BraTS scores belong to ``nnunet-ext evaluate``).

    python benchmarks/view_subsets.py -m MODEL_FOLDER -f 0 1 2 --device cpu --whole --out view_subsets.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.inference.views import VIEW_SUBSETS, View, make_views

REGION_NAMES = {"WT": ("NETC", "SNFH", "ET", "NCR_NET", "ED", "NCR", "NET"),
                "TC": ("NETC", "ET", "NCR_NET", "NCR", "NET"), "ET": ("ET",)}


def brats_regions(labels: dict) -> dict[str, list[int]]:
    """Region name -> label values, from the dataset's label names (GLI-converted or BRATS-2015-named data)."""
    regions = {}
    for region, names in REGION_NAMES.items():
        values = [int(v) for name, v in labels.items() if name in names and not isinstance(v, list)]
        if values:
            regions[region] = values
    if not regions:
        raise ValueError(f"no BraTS region can be formed from the labels {sorted(labels)}")
    return regions


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    both = prediction.sum() + reference.sum()
    return 1.0 if both == 0 else float(2 * np.logical_and(prediction, reference).sum() / both)


def region_dice(probabilities: torch.Tensor, reference: np.ndarray, regions: dict[str, list[int]]) -> dict:
    labels = probabilities.argmax(0).numpy()
    return {name: dice(np.isin(labels, values), np.isin(reference, values)) for name, values in regions.items()}


def _validation_cases(preprocessed: Path, fold: int) -> list[str]:
    splits = json.loads((preprocessed / "splits_final.json").read_text())
    return sorted(splits[fold]["val"])


def _per_view(predictor, data: torch.Tensor, tiles: bool) -> tuple[dict[View, torch.Tensor], dict[View, float]]:
    predictor.tiles = tiles
    probabilities, seconds = {}, {}
    for view in make_views():
        predictor.views = (view,)
        start = time.perf_counter()
        probabilities[view] = predictor.predict_probabilities(data).to("cpu")
        seconds[view] = time.perf_counter() - start
    return probabilities, seconds


def main(argv: list[str] | None = None) -> int:
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from nnunet_ext.inference.predictor import SliceResPredictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", type=Path, required=True, help="trained SliceRes model folder")
    parser.add_argument("-f", nargs="+", type=int, required=True, help="folds (each predicts its own held-out cases)")
    parser.add_argument("-chk", default="checkpoint_final.pth")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--whole", action="store_true", help="also predict every view as whole slices (vs tiles)")
    parser.add_argument("--max-cases", type=int, help="at most this many held-out cases per fold")
    parser.add_argument("--out", type=Path, default=Path("view_subsets.json"))
    args = parser.parse_args(argv)

    plans = json.loads((args.m / "plans.json").read_text())
    dataset_json = json.loads((args.m / "dataset.json").read_text())
    regions = brats_regions(dataset_json["labels"])
    preprocessed = Path(nnUNet_preprocessed) / plans["dataset_name"]
    modes = ["tiles", "whole"] if args.whole else ["tiles"]
    rows = []
    for fold in args.f:
        predictor = SliceResPredictor(device=torch.device(args.device), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(args.m), (fold,), args.chk)
        predictor.network.load_state_dict(predictor.list_of_parameters[0])
        folder = preprocessed / predictor.configuration_manager.data_identifier
        cases = _validation_cases(preprocessed, fold)[:args.max_cases]
        dataset = infer_dataset_class(str(folder))(str(folder), cases)
        for case in cases:
            data, seg, _, _ = dataset.load_case(case)
            data, reference = torch.from_numpy(np.asarray(data)).float(), np.asarray(seg)[0]
            for mode in modes:
                probabilities, seconds = _per_view(predictor, data, mode == "tiles")
                for subset, views in VIEW_SUBSETS.items():
                    mean = sum(probabilities[v] for v in views) / len(views)
                    rows.append({"fold": fold, "case": case, "mode": mode, "subset": subset,
                                 "seconds": sum(seconds[v] for v in views),
                                 "dice": region_dice(mean, reference, regions)})
                print(f"fold {fold} {case} {mode}: "
                      + ", ".join(f"{r['subset'].split(':')[0]} views {r['dice']}" for r in rows[-2:]), flush=True)
    record = {"model_folder": str(args.m), "folds": args.f, "device": args.device, "regions": regions, "rows": rows}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print_table(record)
    return 0


def print_table(record: dict) -> None:
    """Per mode and subset: mean Dice per region over cases, its change vs 24 tiled views, time share."""
    rows = record["rows"]
    names = list(record["regions"])
    full = [r for r in rows if r["mode"] == "tiles" and r["subset"].startswith("24")]
    full_dice = {n: np.mean([r["dice"][n] for r in full]) for n in names}
    full_time = np.mean([r["seconds"] for r in full])
    print(f"\n{len(full)} held-out cases, folds {record['folds']}, {record['device']}; "
          f"Dice change and time relative to 24 tiled views")
    print(f"{'mode':<6} {'views':<36} " + " ".join(f"{n:>14}" for n in names) + f" {'time':>7}")
    for mode in dict.fromkeys(r["mode"] for r in rows):
        for subset in VIEW_SUBSETS:
            chosen = [r for r in rows if r["mode"] == mode and r["subset"] == subset]
            cells = []
            for n in names:
                values = [r["dice"][n] for r in chosen]
                cells.append(f"{np.mean(values):.3f} ({np.mean(values) - full_dice[n]:+.3f})")
            share = np.mean([r["seconds"] for r in chosen]) / full_time
            print(f"{mode:<6} {subset:<36} " + " ".join(f"{c:>14}" for c in cells) + f" {share:>6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
