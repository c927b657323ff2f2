"""Training throughput and peak memory: SliceRes vs stock nnU-Net 2d and 3d_fullres, in one run.

    python benchmarks/bench_training.py --raw ../shared/data/realglio-train --work /tmp/bench   # GPU
    python benchmarks/bench_training.py --tiny                                                  # CPU smoke

The raw dataset is linked (never copied or modified) into ``WORK/nnUNet_raw`` and planned with
``nnunet-ext plan`` (2d + 3d_fullres, SliceRes settings from the plans or ``--preset``/``--set``). Then,
in this process, each trainer is built through nnU-Net's own ``get_trainer_from_args`` and timed on
``--iterations`` training steps after ``--warmup`` steps:

- ``pipeline it/s``: ``train_step(next(dataloader_train))``, i.e. with nnU-Net's multi-process data loading
  (``nnUNet_n_proc_DA`` workers) as in real training;
- ``compute it/s``: the same batch repeated, i.e. what the device alone sustains;
- ``peak MiB``: ``torch.cuda.max_memory_allocated`` during that trainer's steps (GPU only).

SliceRes examples are 2.5D slices, so ``slices/s = it/s x batch``; stock 2d batches are slices too; 3d
batches are patches. Results go to ``WORK/bench_training.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nnunet_ext.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DATASET_ID = 990
TINY_SETTINGS = ["crop_size=[32,32]", "batch_size=4", "epoch.mode=iterations", "network.kwargs.widths=[8,16,32,64]"]
RUNS = (("SliceResTrainer", "2d"), ("nnUNetTrainerBudget", "2d"), ("nnUNetTrainerBudget", "3d_fullres"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="nnU-Net raw dataset folder (with dataset.json)")
    parser.add_argument("--work", type=Path, help="work folder for nnUNet_raw/preprocessed/results (default: temp)")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test on generated data with tiny settings")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--iterations", type=int, default=50, help="timed training steps per trainer")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN autotune, caches)")
    parser.add_argument("--preset", help="SliceRes preset for planning (plans/ name or JSON file)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="SliceRes setting for planning, as in `nnunet-ext plan --set`")
    parser.add_argument("-np", type=int, default=4, help="processes for fingerprinting/preprocessing")
    args = parser.parse_args()
    if args.tiny:
        args.device = args.device or "cpu"
        args.iterations, args.warmup = min(args.iterations, 3), min(args.warmup, 1)
        args.overrides = TINY_SETTINGS + args.overrides
        args.np = 1
    elif args.raw is None:
        parser.error("give --raw DATASET_FOLDER or --tiny")
    return args


def prepare(args: argparse.Namespace) -> str:
    """Environment, linked raw data and `nnunet-ext plan`; returns the dataset name."""
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_training_"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    os.environ.setdefault("nnUNet_compile", "f")  # torch.compile adds minutes of warm-up; opt in with =t
    args.work = work
    sys.path.insert(0, str(ROOT))
    from nnunet_ext.discovery import environment_with_trainers

    os.environ.update(environment_with_trainers())
    if args.tiny:
        from tests.helpers.synthetic import make_raw_dataset

        folder = work / "nnUNet_raw" / f"Dataset{DATASET_ID}_Tiny"
        if not folder.exists():
            make_raw_dataset(work / "nnUNet_raw", DATASET_ID, "Tiny", n_cases=5, shape=(16, 32, 32))
    else:
        folder = work / "nnUNet_raw" / f"Dataset{DATASET_ID}_Bench"
        if not folder.exists():
            folder.symlink_to(args.raw.resolve(), target_is_directory=True)
    plans = work / "nnUNet_preprocessed" / folder.name / "nnUNetPlans.json"
    if not plans.exists():
        cmd = [sys.executable, "-m", "nnunet_ext.cli", "plan", "-d", str(DATASET_ID), "-c", "2d", "3d_fullres",
               "-np", str(args.np)]
        cmd += ["--preset", args.preset] if args.preset else []
        for item in args.overrides:
            cmd += ["--set", item]
        subprocess.run(cmd, check=True)
    return folder.name


def steps_per_second(trainer, batches, warmup: int, iterations: int, cuda: bool) -> float:
    """Training steps per second on ``batches`` after ``warmup`` untimed steps."""
    import torch

    for _ in range(warmup):
        trainer.train_step(next(batches))
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        trainer.train_step(next(batches))
    if cuda:
        torch.cuda.synchronize()
    return iterations / (time.perf_counter() - start)


def bench_trainer(trainer_name: str, configuration: str, args: argparse.Namespace) -> dict:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    trainer = get_trainer_from_args(str(DATASET_ID), configuration, 0, trainer_name, device=device)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.on_train_start()
    trainer.on_train_epoch_start()

    pipeline = steps_per_second(trainer, trainer.dataloader_train, args.warmup, args.iterations, cuda)
    fixed = next(trainer.dataloader_train)
    compute = steps_per_second(trainer, iter(lambda: fixed, None), args.warmup, args.iterations, cuda)
    result = {
        "trainer": trainer_name, "configuration": configuration, "batch_size": trainer.batch_size,
        "patch_size": list(trainer.configuration_manager.patch_size),
        "input_shape": list(fixed["data"].shape), "pipeline_it_s": pipeline, "compute_it_s": compute,
        "pipeline_examples_s": pipeline * trainer.batch_size, "compute_examples_s": compute * trainer.batch_size,
        "peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2 ** 20 if cuda else None,
        "data_workers": getattr(trainer.dataloader_train, "num_processes", 0),
    }
    trainer.disable_checkpointing = True
    trainer.on_train_end()  # nnU-Net's own shutdown of the augmentation workers
    if cuda:
        torch.cuda.empty_cache()
    return result


def table(results: list[dict]) -> str:
    head = (f"{'trainer':<22}{'config':<12}{'batch':>6}  {'network input':<22}{'pipeline it/s':>14}"
            f"{'compute it/s':>14}{'examples/s':>12}{'peak MiB':>10}")
    lines = [head, "-" * len(head)]
    for r in results:
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        lines.append(f"{r['trainer']:<22}{r['configuration']:<12}{r['batch_size']:>6}  "
                     f"{'x'.join(map(str, r['input_shape'][1:])):<22}{r['pipeline_it_s']:>14.2f}"
                     f"{r['compute_it_s']:>14.2f}{r['pipeline_examples_s']:>12.1f}{peak:>10}")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    dataset = prepare(args)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = [bench_trainer(trainer, configuration, args) for trainer, configuration in RUNS]
    meta = {"dataset": dataset, "device": args.device, "iterations": args.iterations, "warmup": args.warmup,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "torch": torch.__version__, "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA"),
            "nnUNet_compile": os.environ.get("nnUNet_compile")}
    out = args.work / "bench_training.json"
    atomic_write_text(out, json.dumps({"meta": meta, "results": results}, indent=2))
    print(json.dumps(meta))
    print(table(results))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
