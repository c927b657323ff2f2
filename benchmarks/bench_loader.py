"""Data-loading throughput of one worker: SliceRes's balanced 2.5D loader per slicing axis vs stock nnU-Net 2d.

    python benchmarks/bench_loader.py --work /tmp/bench_loader                 # realglio + synthetic BraTS size
    python benchmarks/bench_loader.py --work /tmp/bench_loader --skip-synthetic --batches 3

Why: nnU-Net stores 2d-preprocessed volumes in blosc2 with one chunk per axis-0 plane, so a slice along
axis 1 or 2 needs every chunk of the volume. The loader's cost per example therefore depends on the axis,
and a data worker that is too slow starves the GPU. This script measures it where training runs it.

Datasets (each planned once into ``WORK`` with ``nnunet-ext plan -c 2d``, reused on later runs):

- ``realglio``: ``../shared/data/realglio-train`` linked (never copied); skipped when absent;
- ``synthetic``: generated cases of BraTS size (4 modalities, 140x170x140, ``tests/synthetic.py``), each
  linked ``--replicas`` times under new names in a second preprocessed dataset (symbolic links, no extra
  disk), so that, as on BraTS with ~1250 cases, a batch's slices come from many different cases.

Both loaders are built by their own trainer's ``get_dataloaders`` (``SliceResTrainer`` and stock
``nnUNetTrainer`` on fold ``all``) with ``nnUNet_n_proc_DA=0``, i.e. one in-process worker, and timed on
``--batches`` batches after ``--warmup``: ``load + aug`` is ``next(dataloader)`` as in training; ``load only``
the same loader with its transforms switched off. SliceRes runs once per axis (``axes=[a]``) and once with
all three, at each ``--slices-per-case-load`` and each ``--augmentation`` set (comma-separated names of the
``sliceres.augmentation`` setting, ``all`` for every name). Results: ``WORK/bench_loader.json`` and a table on stdout;
``x stock`` is SliceRes examples/s over stock 2d examples/s (load + aug) on the same dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nnunet_ext.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
REALGLIO = ROOT.parent / "shared" / "data" / "realglio-train"
DATASETS = {"realglio": 991, "synthetic": 992}
REPLICA_ID = 993
SYNTHETIC_SHAPE = (140, 170, 140)  # BraTS volumes cropped to the head, in voxels (z, y, x of the raw image)
AXES_RUNS = ([0], [1], [2], [0, 1, 2])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work folder for nnUNet_raw/preprocessed/results (default: temp)")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per loader")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first")
    parser.add_argument("--slices-per-case-load", type=int, nargs="+", default=None,
                        help="SliceRes settings to compare (default: the plans' value)")
    parser.add_argument("--augmentation", nargs="+", default=None, metavar="NAMES",
                        help="augmentation sets to compare, e.g. d4 all d4,spatial (default: the plans' value)")
    parser.add_argument("--realglio", type=Path, default=REALGLIO, help="raw realglio-train folder")
    parser.add_argument("--synthetic-cases", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=16, help="links per synthetic case (1: use them as is)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-realglio", action="store_true")
    return parser.parse_args()


def environment(work: Path) -> None:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    os.environ.setdefault("nnUNet_compile", "f")
    sys.path.insert(0, str(ROOT))
    from nnunet_ext.discovery import environment_with_trainers

    os.environ.update(environment_with_trainers())


def prepare(name: str, args: argparse.Namespace) -> str | None:
    """Raw dataset (linked or generated) planned and preprocessed for 2d; its folder name, or None to skip."""
    dataset_id = DATASETS[name]
    raw = args.work / "nnUNet_raw"
    if name == "realglio":
        if not args.realglio.is_dir():
            print(f"skipping realglio: {args.realglio} not found")
            return None
        folder = raw / f"Dataset{dataset_id}_Realglio"
        if not folder.exists():
            folder.symlink_to(args.realglio.resolve(), target_is_directory=True)
    else:
        from tests.helpers.synthetic import make_raw_dataset

        folder = raw / f"Dataset{dataset_id}_Synthetic"
        if not (folder / "dataset.json").exists():
            make_raw_dataset(raw, dataset_id, "Synthetic", n_cases=args.synthetic_cases, shape=SYNTHETIC_SHAPE,
                             n_modalities=4, n_labels=3, n_test=0)
    if not (args.work / "nnUNet_preprocessed" / folder.name / "nnUNetPlans.json").exists():
        subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "plan", "-d", str(dataset_id), "-c", "2d",
                        "-np", "2"], check=True)
    if name == "synthetic" and args.replicas > 1:
        return replicate(args.work / "nnUNet_preprocessed" / folder.name, args.replicas)
    return folder.name


def replicate(source: Path, replicas: int) -> str:
    """A preprocessed dataset whose 2d cases are ``replicas`` symbolic links to each case of ``source``."""
    name = f"Dataset{REPLICA_ID}_SyntheticX{replicas}"
    target = source.parent / name
    if target.exists():
        return name
    tmp = Path(tempfile.mkdtemp(prefix=name, dir=source.parent))
    for file in ("dataset.json", "dataset_fingerprint.json"):
        (tmp / file).write_text((source / file).read_text())
    plans = json.loads((source / "nnUNetPlans.json").read_text())
    plans["dataset_name"] = name
    (tmp / "nnUNetPlans.json").write_text(json.dumps(plans, indent=2))
    data = source / plans["configurations"]["2d"]["data_identifier"]
    (tmp / data.name).mkdir()
    for file in sorted(data.iterdir()):
        for r in range(replicas):
            (tmp / data.name / f"r{r:03d}_{file.name}").symlink_to(file.resolve())
    os.replace(tmp, target)
    return name


def time_batches(loader, warmup: int, batches: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process: the one in-process worker) per batch of ``next(loader)`` after
    ``warmup`` untimed batches. CPU time barely moves when other jobs share the machine; wall clock does."""
    for _ in range(warmup):
        next(loader)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(loader)
    return (time.perf_counter() - start) / batches, (time.process_time() - cpu) / batches


def measure(trainer, label: str, args: argparse.Namespace) -> dict:
    """``load + aug`` and ``load only`` timings of the trainer's training loader (one worker)."""
    augmenter, _ = trainer.get_dataloaders()
    loader = augmenter.data_loader
    with_aug, with_aug_cpu = time_batches(augmenter, args.warmup, args.batches)
    transforms, loader.transforms = loader.transforms, None
    load_only, load_only_cpu = time_batches(augmenter, args.warmup, args.batches)
    loader.transforms = transforms
    batch = trainer.batch_size
    return {"loader": label, "batch_size": batch, "s_per_batch": with_aug, "examples_s": batch / with_aug,
            "cpu_s_per_batch": with_aug_cpu, "load_only_s_per_batch": load_only,
            "load_only_examples_s": batch / load_only, "load_only_cpu_s_per_batch": load_only_cpu}


def bench_dataset(dataset: str, args: argparse.Namespace) -> list[dict]:
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    cpu = torch.device("cpu")
    stock = get_trainer_from_args(dataset, "2d", "all", "nnUNetTrainer", device=cpu)
    stock.initialize()  # sets the batch size get_dataloaders uses
    results = [measure(stock, "stock nnU-Net 2d", args)]
    sliceres = get_trainer_from_args(dataset, "2d", "all", "SliceResTrainer", device=cpu)
    sliceres.initialize()  # get_dataloaders also sets the one-cycle schedule's iterations
    from nnunet_ext.planning.sliceres_settings import AUGMENTATIONS

    settings = sliceres.sliceres
    augmentations = [list(AUGMENTATIONS) if a == "all" else a.split(",") for a in args.augmentation or []]
    for names in augmentations or [list(settings.augmentation)]:
        for per_load in args.slices_per_case_load or [settings.slices_per_case_load]:
            for axes in AXES_RUNS:
                sliceres.sliceres = dataclasses.replace(settings, axes=tuple(axes), slices_per_case_load=per_load,
                                                        augmentation=tuple(names))
                aug = "all" if set(names) == set(AUGMENTATIONS) else "+".join(names) or "none"
                label = f"SliceRes axes {','.join(map(str, axes))} per-load {per_load} aug {aug}"
                results.append({**measure(sliceres, label, args), "axes": axes, "slices_per_case_load": per_load,
                                "augmentation": names})
    stock_rate = results[0]["examples_s"]
    for r in results:
        r.update(dataset=dataset, ratio_vs_stock=r["examples_s"] / stock_rate)
    return results


def table(results: list[dict]) -> str:
    head = (f"{'dataset':<28}{'loader':<48}{'s/batch':>9}{'examples/s':>12}{'load-only ex/s':>16}"
            f"{'x stock':>9}{'CPU s/batch':>13}{'load-only CPU':>15}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['dataset']:<28}{r['loader']:<48}{r['s_per_batch']:>9.3f}{r['examples_s']:>12.1f}"
                     f"{r['load_only_examples_s']:>16.1f}{r['ratio_vs_stock']:>9.2f}{r['cpu_s_per_batch']:>13.3f}"
                     f"{r['load_only_cpu_s_per_batch']:>15.3f}")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    args.work = args.work or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    environment(args.work)
    names = [n for n in DATASETS if not getattr(args, f"skip_{n}")]
    datasets = [d for d in (prepare(n, args) for n in names) if d is not None]
    import torch

    os.environ["nnUNet_n_proc_DA"] = "0"  # one in-process worker (SingleThreadedAugmenter); not while planning
    torch.set_num_threads(1)  # a data worker's share of the CPU
    results = [r for d in datasets for r in bench_dataset(d, args)]
    meta = {"batches": args.batches, "warmup": args.warmup, "workers": 1, "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg()}
    out = args.work / "bench_loader.json"
    atomic_write_text(out, json.dumps({"meta": meta, "results": results}, indent=2))
    print(json.dumps(meta))
    print(table(results))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
