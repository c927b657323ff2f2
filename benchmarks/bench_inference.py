"""Inference speed and memory: SliceRes with 1, 6, 8 and 24 views beside stock nnU-Net 3d_fullres and 2d.

Times the network part of prediction for one preprocessed case (``predict_logits_from_preprocessed_data``:
sliding window, views or mirroring, fold loop; nnU-Net's preprocessing and export are the same code for all
methods and are left out), warm (one untimed run first), with randomly initialised networks: speed does not
depend on the weights. Stock networks come from nnU-Net's own planner run on a synthetic fingerprint of the
benchmark shape (so patch sizes and architectures are what nnU-Net would pick for such data); SliceRes uses
the published network (widths 32-256, 2 neighbours for 4 modalities, 96x96 crop).

    python benchmarks/bench_inference.py                 # BraTS size 4 x 155 x 240 x 240 on CUDA if present
    python benchmarks/bench_inference.py --tiny          # CPU smoke test at 4 x 24 x 48 x 48, 32x32 crop
    python benchmarks/bench_inference.py --device cpu --shape 4 140 170 140 --views 1 24   # brain-cropped case
    python benchmarks/bench_inference.py --inference tiles whole --no-stock                # tiles vs whole slices

SliceRes views: 1 (axis 0), 6 (3 axes x identity and one flip), 8 (axis 0 x D4), 24 (3 axes x D4); in-plane
tiles of the training crop (the product's default) and/or whole slices (``--inference tiles whole``).

Writes a JSON record (``--out``) and prints a table with each method's time as a ratio to stock 3d_fullres in the
same run. Peak GPU memory is ``torch.cuda.max_memory_allocated`` during the timed run (none on CPU). On CUDA the
untimed warm-up run is the full case (cudnn autotuning is per shape); on CPU, where nothing is tuned, it is a
small slab of the case, so that a CPU benchmark does not pay every method twice.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.inference.backends import BACKENDS, PRECISIONS
from nnunet_ext.inference.views import VIEW_SUBSETS
from nnunet_ext.planning.sliceres_settings import INFERENCE_MODES

N_CLASSES = 5  # BraTS-GLI: background, NETC, SNFH, ET, RC


#: the benchmark's view sets by number of views (one table with benchmarks/view_subsets.py)
VIEW_SETS = {int(name.split(":")[0]): views for name, views in VIEW_SUBSETS.items()}


def _stock_plans(shape: tuple[int, int, int], n_modalities: int) -> dict:
    """nnU-Net's plans for a dataset of volumes of ``shape`` (z, y, x), 1 mm, from its own ExperimentPlanner."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            os.environ[name] = str(Path(tmp) / name)
            (Path(tmp) / name).mkdir()
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.helpers.synthetic import make_raw_dataset  # one tiny case: the planner only reads its file type

        make_raw_dataset(Path(tmp) / "nnUNet_raw", 990, "Bench", n_cases=1, shape=(8, 8, 8),
                         n_modalities=n_modalities, n_labels=N_CLASSES - 1)
        intensity = {"max": 5.0, "mean": 0.0, "median": 0.0, "min": -5.0, "percentile_00_5": -3.0,
                     "percentile_99_5": 3.0, "std": 1.0}
        fingerprint = {"foreground_intensity_properties_per_channel": {str(c): intensity for c in range(n_modalities)},
                       "median_relative_size_after_cropping": 1.0, "shapes_after_crop": [list(shape)] * 10,
                       "spacings": [[1.0, 1.0, 1.0]] * 10}
        folder = Path(tmp) / "nnUNet_preprocessed" / "Dataset990_Bench"
        folder.mkdir()
        (folder / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
        import nnunetv2.paths as paths

        paths.nnUNet_raw, paths.nnUNet_preprocessed = os.environ["nnUNet_raw"], os.environ["nnUNet_preprocessed"]
        from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner as planner_module

        planner_module.nnUNet_raw = paths.nnUNet_raw
        planner_module.nnUNet_preprocessed = paths.nnUNet_preprocessed
        planner = planner_module.ExperimentPlanner("Dataset990_Bench")
        planner.plan_experiment()
        return json.loads((folder / "nnUNetPlans.json").read_text())


def _dataset_json(n_modalities: int) -> dict:
    return {"channel_names": {str(c): f"MR{c}" for c in range(n_modalities)},
            "labels": {"background": 0, **{f"label_{i}": i for i in range(1, N_CLASSES)}}, "file_ending": ".nii.gz"}


def _stock_predictor(plans: dict, configuration: str, n_modalities: int, device: torch.device):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    conf = manager.get_configuration(configuration)
    network = get_network_from_plans(conf.network_arch_class_name, conf.network_arch_init_kwargs,
                                     conf.network_arch_init_kwargs_req_import, n_modalities, N_CLASSES,
                                     deep_supervision=False)
    predictor = nnUNetPredictor(device=device, allow_tqdm=False)
    mirror_axes = tuple(range(len(conf.patch_size)))  # nnU-Net's default: every spatial axis
    predictor.manual_initialization(network, manager, conf, [network.state_dict()], _dataset_json(n_modalities),
                                    "nnUNetTrainer", mirror_axes)
    return predictor, f"patch {conf.patch_size}, {2 ** len(mirror_axes)} mirrorings"


def _sliceres_predictor(views, crop: int, widths: list[int], n_modalities: int, device: torch.device,
                        slices_per_batch: int | None = None, step_size: float = 0.5, tiles: bool = True,
                        precision: str = "auto", backend: str = "torch"):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_ext.inference.predictor import SliceResPredictor
    from nnunet_ext.network.sliceres_net import SliceResNet, count_parameters

    network = SliceResNet(n_modalities, N_CLASSES, neighbours=2, widths=widths)
    manager = PlansManager({"configurations": {"2d": {"patch_size": [32, crop, crop], "architecture": {}}}})
    predictor = SliceResPredictor(views=views, device=device, allow_tqdm=False, slices_per_batch=slices_per_batch,
                                  tile_step_size=step_size, tiles=tiles, precision=precision, backend=backend)
    predictor.manual_initialization(network, manager, manager.get_configuration("2d"), [network.state_dict()],
                                    _dataset_json(n_modalities), "SliceResTrainer", (1, 2))
    inference = f"tiles {crop}x{crop} step {step_size}" if tiles else "whole slices"
    return predictor, (f"{len(views)} views, {inference}, {count_parameters(network):,} parameters, "
                       f"{slices_per_batch or network.slices_per_forward} slices per forward, {backend} {precision}")


def _time(predictor, data: torch.Tensor, device: torch.device, repeats: int) -> dict:
    # warm-up: cudnn autotuning and the allocator on CUDA need the real shapes; a CPU tunes nothing
    start = time.perf_counter()  # warm-up time includes the one-off conversion of the openvino backend
    predictor.predict_logits_from_preprocessed_data(data if device.type == "cuda" else data[:, :8, :32, :32])
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict_logits_from_preprocessed_data(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    return {"seconds": float(np.median(times)), "all_seconds": times, "warmup_seconds": warmup, "peak_gpu_mib": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: 4 x 24 x 48 x 48, crop 32, small nets")
    parser.add_argument("--shape", nargs=4, type=int, metavar=("C", "Z", "Y", "X"), help="default 4 155 240 240")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda if available")
    parser.add_argument("--views", nargs="+", type=int, default=[1, 6, 24], choices=sorted(VIEW_SETS),
                        help="SliceRes view counts: 1 (axis 0), 6 (3 axes x identity + flip), 8 (axis 0 x D4), "
                             "24 (3 axes x D4)")
    parser.add_argument("--inference", nargs="+", choices=INFERENCE_MODES, default=["tiles"],
                        help="SliceRes in-plane inference: tiles of the crop size (default) and/or whole slices")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["auto"],
                        help="SliceRes network precision(s): auto (nnU-Net's: bf16/fp16 on CUDA, fp32 on CPU), fp32, "
                             "bf16 (also on the CPU)")
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=["torch"],
                        help="SliceRes backend(s): torch, openvino (CPU, optional extra)")
    parser.add_argument("--no-stock", action="store_true", help="skip stock nnU-Net 3d_fullres and 2d")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method (median is reported)")
    parser.add_argument("--slices-per-batch", type=int,
                        help="SliceRes 2D inputs (slices x transforms) per forward pass (default: the network's)")
    parser.add_argument("--step-size", type=float, default=0.5, help="SliceRes in-plane tile step (nnU-Net's 0.5)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("bench_inference.json"), help="JSON output file")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(args.shape or ((4, 24, 48, 48) if args.tiny else (4, 155, 240, 240)))
    crop, widths = (32, [8, 16, 32, 64]) if args.tiny else (96, [32, 64, 128, 256])
    data = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    methods = {}
    for n in args.views:
        for inference in args.inference:
            for backend in args.backend:
                for precision in args.precision:
                    name = (f"sliceres_{n}_views" + ("_whole" if inference == "whole" else "")
                            + ("" if backend == "torch" else f"_{backend}")
                            + ("" if precision == "auto" else f"_{precision}"))
                    methods[name] = lambda n=n, tiles=inference == "tiles", b=backend, p=precision: _sliceres_predictor(
                        VIEW_SETS[n], crop, widths, shape[0], device, args.slices_per_batch, args.step_size, tiles,
                        p, b)
    if not args.no_stock:
        plans = _stock_plans(shape[1:], shape[0])
        if args.tiny:  # shrink stock networks like ours so the smoke test stays quick
            for conf in plans["configurations"].values():
                kwargs = conf.get("architecture", {}).get("arch_kwargs", {})
                if "features_per_stage" in kwargs:
                    n_stages = len(kwargs["features_per_stage"])
                    kwargs["features_per_stage"] = [min(8 * 2 ** i, 64) for i in range(n_stages)]
        for configuration in ("3d_fullres", "2d"):
            methods[f"stock_{configuration}"] = lambda c=configuration: _stock_predictor(plans, c, shape[0], device)

    results = []
    for name, build in methods.items():
        predictor, detail = build()
        print(f"{name}: {detail} ...", flush=True)
        results.append({"method": name, "detail": detail, **_time(predictor, data, device, args.repeats)})
        print(f"{name}: {results[-1]['seconds']:.2f} s (warm-up {results[-1]['warmup_seconds']:.1f} s)", flush=True)
        del predictor
        if device.type == "cuda":
            torch.cuda.empty_cache()

    record = {"shape": list(shape), "device": str(device),
              "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
              "torch_threads": torch.get_num_threads(), "tiny": args.tiny, "results": results}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"\nshape {list(shape)} on {record['device_name'] or device} ({record['torch_threads']} threads)")
    reference = next((r["seconds"] for r in results if r["method"] == "stock_3d_fullres"), None)
    print(f"{'method':<38} {'s/case':>9} {'x 3d_fullres':>13} {'peak GPU MiB':>13}  detail")
    for r in results:
        peak = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        ratio = f"{r['seconds'] / reference:.2f}" if reference else "-"
        print(f"{r['method']:<38} {r['seconds']:>9.2f} {ratio:>13} {peak:>13}  {r['detail']}")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
