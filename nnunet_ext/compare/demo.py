"""``nnunet-ext demo``: the whole product on built-in synthetic data, in minutes, on a CPU.

generate (challenge-named synthetic cases) -> ``nnunet-ext convert`` -> ``nnunet-ext plan`` ->
``nnUNetv2_train ... -tr SliceResTrainer`` -> ``nnunet-ext predict`` with the 24-view ensemble on held-out
cases -> ``nnunet-ext evaluate`` with the BraTS 2024 rules -> report with a Dice table and overlays.

It is a :class:`~nnunet_ext.compare.pipeline.Comparison` with SliceRes as the only method, preceded by two
cached steps (data, conversion) in the same manifest, so an interrupted demo resumes too. nnU-Net's folders
live inside ``--out`` and reach the child processes through their environment; the user's own
``nnUNet_raw/preprocessed/results`` are never read or written.

Training is budgeted in iterations and seeded, so the demo trains the same network on the same batches on any
machine and the Dice it reports does not depend on the machine's speed; a slow machine takes longer instead.
The time is estimated before anything runs and training progress is printed
(:mod:`nnunet_ext.compare.demo_timing`).
The wall-clock cap is only a safety net: when it stops training, the output and the report say that the
numbers are not the demo's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nnunet_ext.compare.demo_timing import TIME_CAP_WARNING, TrainingProgress, estimate, measure_step, time_cap_verdict
from nnunet_ext.compare.manifest import StepCache
from nnunet_ext.compare.methods import EXT_ENTRY, METHODS, TWENTY_FOUR_VIEWS, Variant
from nnunet_ext.compare.pipeline import Comparison, Settings
from nnunet_ext.compare.process import probe_command, run_logged
from nnunet_ext.discovery import environment_with_trainers
from nnunet_ext.reporting.tables import read_per_case, regions_of
from nnunet_ext.training.budget import Budget

log = logging.getLogger("nnunet_ext.compare")


@dataclass(frozen=True)
class Task:
    dataset_id: int
    name: str
    converter: str
    rules: str
    description: str
    modalities: int
    outputs: int  # network outputs: the label classes, background included


TASKS = {
    "gli": Task(990, "DemoGLI", "brats-gli", "brats-gli-2024", "synthetic BraTS-GLI 2024 (post-treatment glioma)",
                modalities=4, outputs=5),
    "men-rt": Task(991, "DemoMENRT", "men-rt", "brats-men-rt-2024", "synthetic BraTS-MEN-RT 2024 (meningioma)",
                   modalities=1, outputs=2),
}

#: the synthetic data are the same for every run (``--seed`` varies the training only)
DATA_SEED = 0


#: the product's own prediction: 24 views and the default post-processing (small components removed)
DEMO_VARIANT = Variant("sliceres_24view", EXT_ENTRY, TWENTY_FOUR_VIEWS,
                       "24 views (3 axes x 8 dihedral transforms), default post-processing")


@dataclass(frozen=True)
class Profile:
    """Data size and training budget of a demo run (every field can be overridden on the command line)."""

    cases: int
    shape: tuple[int, int, int]
    epochs: int
    iterations: int
    val_iterations: int
    #: safety net only, far above the expected training time: when it triggers, training stops early and the
    #: output and the report say the numbers are not the demo's
    cap_minutes: float | None
    #: ``nnunet-ext plan --set`` values: a crop and batch sized for the small demo grids
    plan_set: tuple[str, ...]


#: folds of the demo's patient-grouped split; fold 0 is held out (GLI: 2 time points of one patient)
HELD_OUT_FOLDS = 10

#: a quarter of the published widths: 4x fewer operations, so a CPU trains and runs the 24-view ensemble in minutes
DEMO_WIDTHS = "network.kwargs.widths=[16,32,64,128]"

PROFILES = {
    "standard": Profile(cases=20, shape=(64, 64, 48), epochs=40, iterations=25, val_iterations=2, cap_minutes=20.0,
                        # no inverse-frequency focal weighting: in a budget this short it drove the rare classes
                        # (ET, NETC) to flood the brain (held-out WT Dice 0.19); without it, WT 1.000
                        plan_set=("crop_size=[64,64]", "batch_size=16", DEMO_WIDTHS, "loss.focal_alpha=null")),
    "quick": Profile(cases=10, shape=(32, 32, 24), epochs=1, iterations=4, val_iterations=1, cap_minutes=None,
                     plan_set=("crop_size=[32,32]", "batch_size=4", "network.kwargs.widths=[8,16,32,64]")),
}


def demo_environment(out: Path, device: str) -> dict[str, str]:
    """This process's environment with nnU-Net's three folders inside ``out`` and our trainers discoverable."""
    env = environment_with_trainers()
    env.update({"nnUNet_raw": str(out / "nnUNet_raw"), "nnUNet_preprocessed": str(out / "nnUNet_preprocessed"),
                "nnUNet_results": str(out / "nnUNet_results")})
    if device == "cpu":
        env.setdefault("nnUNet_compile", "f")  # torch.compile costs minutes on a CPU and gains nothing here
        # nnU-Net trains with one torch thread per core beside its augmentation workers; OpenMP's default
        # spin-waiting then turns every thread sync into a fight for the cores (on the shared 2-core box one
        # iteration of the demo's training took 2.3-3.3 s instead of 0.55 s with passive waiting)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def announce(task: Task, profile: Profile, budget: Budget, device: str, seed: int, env: dict[str, str]) -> None:
    """Print the budget and the estimated time before anything runs (measured with the training's ``env``)."""
    iterations = budget.epochs * budget.iterations
    cap = f"; safety cap {budget.minutes:g} min of training" if budget.minutes is not None else ""
    print(f"[demo] budget: {budget.epochs} epochs x {budget.iterations} iterations = {iterations} training "
          f"iterations, seed {seed}{cap}", flush=True)
    step = measure_step(env, num_modalities=task.modalities, num_outputs=task.outputs, plan_set=profile.plan_set,
                        depth=min(profile.shape), device=device)
    megavoxels = profile.cases * profile.shape[0] * profile.shape[1] * profile.shape[2] / 1e6
    print(f"[demo] {estimate(step, iterations, megavoxels).describe()}", flush=True)


def run_demo(task_name: str, out: Path, profile: Profile, budget: Budget, device: str, num_processes: int = 2,
             echo: bool = True, seed: int = 0) -> dict[str, object]:
    """Run (or resume) the demo; returns the key numbers (wall time, Dice per region, time cap verdict, paths).

    ``budget`` must give epochs and iterations (the demo's budget); ``seed`` is the training seed (network
    initialisation, slice sampling, augmentation).
    """
    from nnunet_ext.dataset_conversion import brats_gli
    from nnunet_ext.dataset_conversion.demo_data import write_demo_dataset
    from nnunet_ext.dataset_conversion.splits import grouped_splits, write_splits

    task = TASKS[task_name]
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    env = demo_environment(out, device)
    announce(task, profile, budget, device, seed, env)
    source = out / "source"
    raw_root = Path(env["nnUNet_raw"])
    dataset = f"Dataset{task.dataset_id:03d}_{task.name}"
    cache = StepCache(out / "manifest.json")

    def generate(resume: bool) -> dict[str, object]:
        if source.exists():
            shutil.rmtree(source)  # cases of an earlier, different demo run must not be converted too
        return {"cases": write_demo_dataset(source, task_name, profile.cases, profile.shape, DATA_SEED,
                                            num_workers=num_processes)}

    data = cache.run("data", {"task": task_name, "cases": profile.cases, "shape": list(profile.shape),
                              "seed": DATA_SEED}, [source], generate)
    convert_args = ["convert", task.converter, str(source), "-d", str(task.dataset_id), "-n", task.name,
                    "-j", str(num_processes), "--raw-root", str(raw_root)]
    if task.converter == "brats-gli":
        convert_args += ["--preprocessed-root", env["nnUNet_preprocessed"]]

    def convert(resume: bool) -> dict[str, object]:
        if (raw_root / dataset).exists():
            shutil.rmtree(raw_root / dataset)  # the demo's own conversion of earlier data
        record = out / "records" / "convert.json"
        run_logged(probe_command(record, EXT_ENTRY, convert_args), env, out / "logs" / "convert.log", echo=echo)
        # one patient held out (HELD_OUT_FOLDS-fold grouped split): more training data, half the prediction time
        group = brats_gli.patient_of if task.converter == "brats-gli" else str
        write_splits(grouped_splits(data["result"]["cases"], group, n_folds=HELD_OUT_FOLDS),
                     Path(env["nnUNet_preprocessed"]), dataset)
        return json.loads(record.read_text())

    converted = cache.run("convert", {"args": convert_args, "data": data["token"], "folds": HELD_OUT_FOLDS},
                          [raw_root / dataset / "dataset.json"], convert)

    method = dataclasses.replace(METHODS["sliceres"], variants=(DEMO_VARIANT,))
    preprocessed_splits = Path(env["nnUNet_preprocessed"]) / dataset / "splits_final.json"  # written by convert
    settings = Settings(dataset=dataset, raw_root=raw_root, out=out, budget=budget, methods=[method], folds=[0],
                        rules=task.rules, device=device, num_processes=num_processes,
                        plan_args=[arg for value in (*profile.plan_set, f"seed={seed}") for arg in ("--set", value)],
                        title=f"nnunet-ext demo: SliceRes on {task.description}", overlays=3, echo=echo,
                        splits_file=preprocessed_splits, upstream=converted["token"],
                        time_cap_warning=TIME_CAP_WARNING)
    comparison = Comparison(settings, base_env=env)
    fold_dir = comparison.model_folder(method) / "fold_0"
    with TrainingProgress(fold_dir, budget.epochs, budget.iterations):
        report = comparison.run()
    verdict = time_cap_verdict(fold_dir)
    rows = read_per_case(out / "evaluation" / method.variants[0].name / "per_case.csv")
    metric = "lesionwise_dice" if rows and "lesionwise_dice" in rows[0] else "legacy_dice"
    dice = {}
    for region in regions_of(rows):
        values = [float(r[metric]) for r in rows if r["region"] == region]
        dice[region] = sum(values) / len(values)
    return {"wall_seconds": time.perf_counter() - start, "dice_metric": metric, "dice": dice,
            "time_cap": dataclasses.asdict(verdict), "warning": verdict.lines(), "report": str(report),
            "model": str(comparison.model_folder(method)), "predictions": str(out / "predictions"),
            "evaluation": str(out / "evaluation"), "logs": str(out / "logs"), "out": str(out)}


def print_summary(summary: dict[str, object], stream=sys.stdout) -> None:
    """Tell the user what was reached and where everything is."""
    dice, warning = summary["dice"], summary["warning"]
    print("\n=== nnunet-ext demo finished in {:.1f} min ===".format(summary["wall_seconds"] / 60), file=stream)
    for line in warning:  # type: ignore[union-attr]
        print(line, file=stream)
    print(f"{summary['dice_metric']} on the held-out cases (24-view SliceRes):", file=stream)
    for region, value in dice.items():  # type: ignore[union-attr]
        print(f"  {region:>5}: {value:.3f}", file=stream)
    for line in warning:  # type: ignore[union-attr]
        print(line, file=stream)
    for key in ("report", "model", "predictions", "evaluation", "logs"):
        print(f"{key:>12}: {summary[key]}", file=stream)
