"""The comparison pipeline: plan -> split -> train (each method, each fold) -> predict (each variant) ->
evaluate -> report, every step cached in ``OUT/manifest.json``.

Isolation: the raw dataset is only read. Preprocessed data and trained models go to
``OUT/nnUNet_preprocessed`` and ``OUT/nnUNet_results``, handed to the child processes through their
environment, so a comparison never overwrites the user's own plans or models and can be deleted as a whole.

Resumption: a step interrupted while training restarts with nnU-Net's ``--c`` (continue from the latest
checkpoint) when its parameters are unchanged; other interrupted steps are redone from scratch (they are
short, and redoing them keeps the timings honest).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nnunet_ext.atomic import atomic_write_text
from nnunet_ext.compare.heldout import dataset_cases, ensure_splits, held_out, stage_cases
from nnunet_ext.compare.manifest import StepCache
from nnunet_ext.compare.methods import DEFAULT_PLANS, EXT_ENTRY, RESENC_PLANNER, RESENC_PLANS, Method, Variant
from nnunet_ext.compare.process import probe_command, run_logged
from nnunet_ext.compare.report import build_report
from nnunet_ext.compare.results import TIME_CAP_WARNING, ComparisonResults, VariantResult
from nnunet_ext.discovery import environment_with_trainers
from nnunet_ext.training.budget import ENV_NAMES, Budget, read_record

log = logging.getLogger("nnunet_ext.compare")

TRAIN_ENTRY = "nnunetv2.run.run_training:run_training_entry"
PLAN_EXPERIMENT_ENTRY = "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:plan_experiment_entry"
PREPROCESS_ENTRY = "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:preprocess_entry"


def find_raw_dataset(raw_root: Path, dataset: str) -> Path:
    """``nnUNet_raw/DatasetXXX_Name`` from an id (``5``, ``005``) or a full name; clear error otherwise."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise FileNotFoundError(f"nnUNet_raw folder {raw_root} does not exist")
    if dataset.isdigit():
        matches = sorted(raw_root.glob(f"Dataset{int(dataset):03d}_*"))
    else:
        matches = [raw_root / dataset] if (raw_root / dataset).is_dir() else []
    if len(matches) != 1:
        found = sorted(p.name for p in raw_root.glob("Dataset*"))
        raise FileNotFoundError(f"dataset {dataset!r} not found (exactly once) in {raw_root}; there are {found}")
    return matches[0]


@dataclass
class Settings:
    """Everything that defines one comparison run."""

    dataset: str
    raw_root: Path
    out: Path
    budget: Budget
    methods: list[Method]
    folds: list[int] = field(default_factory=lambda: [0])
    rules: str = "brats-gli-2024"
    device: str = "cpu"
    num_processes: int = 2
    plan_args: list[str] = field(default_factory=list)
    title: str = ""
    overlays: int = 1
    echo: bool = True
    #: a ``splits_final.json`` to use (e.g. the patient-grouped one the converter wrote) instead of nnU-Net's
    splits_file: Path | None = None
    #: token of whatever produced the raw dataset (the demo's conversion step): new data means planning again
    upstream: str = ""
    #: what the report says (at the top) when a method trained fewer epochs than the budget because the time
    #: cap stopped it, i.e. when both epochs and minutes are budgeted and the minutes ran out first
    time_cap_warning: str = TIME_CAP_WARNING


class Comparison:
    def __init__(self, settings: Settings, base_env: dict[str, str] | None = None):
        self.s = settings
        self.out = Path(settings.out).resolve()
        self.raw_folder = find_raw_dataset(settings.raw_root, settings.dataset)
        self.dataset_name = self.raw_folder.name
        self.preprocessed = self.out / "nnUNet_preprocessed"
        self.results = self.out / "nnUNet_results"
        self.logs = self.out / "logs"
        self.records = self.out / "records"
        self.env = self._environment(base_env)
        self.dataset_json = json.loads((self.raw_folder / "dataset.json").read_text())
        self.ending = self.dataset_json["file_ending"]

    def _environment(self, base_env: dict[str, str] | None) -> dict[str, str]:
        env = environment_with_trainers(base_env)
        for name in ENV_NAMES.values():  # a budget variable left in the caller's shell is not part of this budget
            env.pop(name, None)
        env.update({"nnUNet_raw": str(Path(self.s.raw_root).resolve()), "nnUNet_preprocessed": str(self.preprocessed),
                    "nnUNet_results": str(self.results), **self.s.budget.to_env()})
        env.setdefault("nnUNet_n_proc_DA", str(max(1, self.s.num_processes)))
        return env

    # ------------------------------------------------------------------ running
    def run(self) -> Path:
        """Run (or resume) the whole comparison; returns the Markdown report's path."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._log_to_file()
        cache = StepCache(self.out / "manifest.json")
        log.info("comparison of %s in %s (budget: %s, device %s, folds %s)", self.dataset_name, self.out,
                 self.s.budget.describe(), self.s.device, self.s.folds)
        n_variants = sum(len(m.variants) for m in self.s.methods)
        n_data = len({(m.plans, m.configuration) for m in self.s.methods})
        total = 2 + int(self._needs_resenc()) + n_data + len(self.s.methods) * len(self.s.folds) \
            + n_variants * (len(self.s.folds) + 1)
        with tqdm(total=total, desc="compare", unit="step", disable=None) as bar:
            def step(*args: Any) -> dict[str, Any]:
                record = cache.run(*args)
                bar.update()
                return record

            prepared = self._prepare(step)
            heldout = self._stage_heldout()
            results = []
            for method in self.s.methods:
                trains = [self._train(step, method, fold, prepared[method.plans, method.configuration])
                          for fold in self.s.folds]
                for variant in method.variants:
                    predicts = [self._predict(step, method, variant, fold, heldout[fold], train)
                                for fold, train in zip(self.s.folds, trains)]
                    evaluation = self._evaluate(step, variant, heldout, predicts)
                    results.append(VariantResult(method, variant, self.out / "evaluation" / variant.name,
                                                 self.out / "predictions" / variant.name / "all",
                                                 [t["result"] for t in trains], [p["result"] for p in predicts],
                                                 evaluation["token"]))
            report = self._report(step, results, heldout)
        log.info("report: %s", report)
        return report

    def _log_to_file(self) -> None:
        """Append this package's log lines to ``logs/compare.log`` (nnU-Net's own output goes to per-step logs)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger("nnunet_ext.compare")
        path = str(self.logs / "compare.log")
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def _needs_resenc(self) -> bool:
        return any(m.plans == RESENC_PLANS for m in self.s.methods)

    def _probe(self, name: str, entry: str, args: list[str]) -> dict[str, Any]:
        """Run ``entry`` under the probe, logging to ``logs/<name>.log``; returns the probe's record."""
        record = self.records / f"{name}.json"
        record.unlink(missing_ok=True)
        run_logged(probe_command(record, entry, args), self.env, self.logs / f"{name}.log", echo=self.s.echo)
        return json.loads(record.read_text())

    # ------------------------------------------------------------------ steps
    def _prepare(self, step: Callable[..., dict[str, Any]]) -> dict[tuple[str, str], str]:
        """Plan once, then preprocess each (plans, configuration) the methods need as a step of its own.

        Separate preprocessing steps keep the cache useful when methods are added to a finished comparison:
        only the new configuration is preprocessed and nothing already trained is invalidated.
        Returns the token of each preprocessing step, which the training steps depend on.
        """
        folder = self.preprocessed / self.dataset_name
        dataset_id = self.dataset_name[len("Dataset"):].split("_", 1)[0]
        args = ["plan", "-d", self.dataset_name, "--no-preprocess", "-np", str(self.s.num_processes), *self.s.plan_args]
        plan = step("plan", {"dataset": self.dataset_name, "args": args, "upstream": self.s.upstream},
                    [folder / f"{DEFAULT_PLANS}.json"],
                    lambda resume: self._probe("plan", EXT_ENTRY, args))
        plans_token = {DEFAULT_PLANS: plan["token"]}
        if self._needs_resenc():
            resenc_args = ["-d", dataset_id, "-pl", RESENC_PLANNER]
            plans_token[RESENC_PLANS] = step(
                "plan_resenc", {"args": resenc_args, "fingerprint": plan["token"]}, [folder / f"{RESENC_PLANS}.json"],
                lambda resume: self._probe("plan_resenc", PLAN_EXPERIMENT_ENTRY, resenc_args))["token"]
        tokens = {}
        for plans, configuration in dict.fromkeys((m.plans, m.configuration) for m in self.s.methods):
            pre_args = ["-d", dataset_id, "-plans_name", plans, "-c", configuration, "-np", str(self.s.num_processes)]
            tokens[plans, configuration] = step(
                f"preprocess/{plans}/{configuration}", {"args": pre_args, "plans": plans_token[plans]},
                [folder / data_identifier(folder / f"{plans}.json", configuration)],
                lambda resume, a=pre_args, n=f"preprocess_{plans}_{configuration}": self._probe(n, PREPROCESS_ENTRY, a),
            )["token"]
        return tokens

    def _stage_heldout(self) -> dict[int, list[str]]:
        """Held-out cases per fold, their images linked under ``heldout/fold_X`` and labels under ``heldout/labels``."""
        cases = dataset_cases(self.raw_folder)
        source = self.preprocessed / self.dataset_name / "splits_final.json"
        given = self.s.splits_file
        if given is not None and not source.exists():
            if not Path(given).is_file():
                raise FileNotFoundError(f"{given}: split file not found")
            atomic_write_text(source, Path(given).read_text())
        splits = ensure_splits(source.parent, list(cases))
        heldout = {fold: held_out(splits, fold, source) for fold in self.s.folds}
        every = sorted({c for fold in self.s.folds for c in heldout[fold]})
        stage_cases(cases, every, self.ending, self.out / "heldout" / "images_all", self.out / "heldout" / "labels")
        for fold in self.s.folds:
            stage_cases(cases, heldout[fold], self.ending, self.out / "heldout" / f"fold_{fold}", None)
        shutil.rmtree(self.out / "heldout" / "images_all")
        return heldout

    def model_folder(self, method: Method) -> Path:
        return self.results / self.dataset_name / f"{method.trainer}__{method.plans}__{method.configuration}"

    def _train(self, step: Callable[..., dict[str, Any]], method: Method, fold: int, data: str) -> dict[str, Any]:
        name = f"train_{method.name}_fold_{fold}"
        fold_dir = self.model_folder(method) / f"fold_{fold}"
        params = {"trainer": method.trainer, "plans": method.plans, "configuration": method.configuration,
                  "fold": fold, "budget": self.s.budget.as_dict(), "device": self.s.device, "data": data}

        def train(resume: bool) -> dict[str, Any]:
            if not resume and fold_dir.exists():
                shutil.rmtree(fold_dir)
            args = [self.dataset_name, method.configuration, str(fold), "-tr", method.trainer, "-p", method.plans,
                    "-device", self.s.device, *(["--c"] if resume else [])]
            return {**self._probe(name, TRAIN_ENTRY, args), **epoch_times(fold_dir / "checkpoint_final.pth"),
                    **budget_spent(fold_dir)}

        return step(f"train/{method.name}/fold_{fold}", params, [fold_dir / "checkpoint_final.pth"], train)

    def _predict(self, step: Callable[..., dict[str, Any]], method: Method, variant: Variant, fold: int,
                 cases: list[str], train: dict[str, Any]) -> dict[str, Any]:
        name = f"predict_{variant.name}_fold_{fold}"
        dest = self.out / "predictions" / variant.name / f"fold_{fold}"
        args = [*variant.args, "-i", str(self.out / "heldout" / f"fold_{fold}"), "-o", str(dest),
                "-d", self.dataset_name, "-c", method.configuration, "-p", method.plans, "-tr", method.trainer,
                "-f", str(fold), "-device", self.s.device,
                "-npp", str(self.s.num_processes), "-nps", str(self.s.num_processes)]

        def predict(resume: bool) -> dict[str, Any]:
            if dest.exists():
                shutil.rmtree(dest)
            record = self._probe(name, variant.entry, args)
            return {**record, "cases": len(cases), "seconds_per_case": record["wall_seconds"] / max(1, len(cases))}

        return step(f"predict/{variant.name}/fold_{fold}", {"args": args, "model": train["token"], "cases": cases},
                    [dest / f"{c}{self.ending}" for c in cases], predict)

    def _evaluate(self, step: Callable[..., dict[str, Any]], variant: Variant, heldout: dict[int, list[str]],
                  predicts: list[dict[str, Any]]) -> dict[str, Any]:
        """Score all folds' held-out predictions of ``variant`` together (one summary, intervals over all cases)."""
        merged = self.out / "predictions" / variant.name / "all"
        dest = self.out / "evaluation" / variant.name

        def evaluate(resume: bool) -> dict[str, Any]:
            from nnunet_ext.evaluation import evaluate_folders, format_table, write_outputs

            if merged.exists():
                shutil.rmtree(merged)
            merged.mkdir(parents=True)
            for fold in self.s.folds:
                for case in heldout[fold]:
                    os.symlink(Path("..") / f"fold_{fold}" / f"{case}{self.ending}", merged / f"{case}{self.ending}")
            rows, summary = evaluate_folders(merged, self.out / "heldout" / "labels", self.s.rules,
                                             num_workers=self.s.num_processes, cache_dir=dest / "cases",
                                             progress=self.s.echo)
            write_outputs(rows, summary, dest)
            table = format_table(summary)
            (self.logs / f"evaluate_{variant.name}.log").write_text(table + "\n")
            if self.s.echo:
                print(f"{variant.name}:\n{table}")
            return {"cases": summary["num_cases"]}

        return step(f"evaluate/{variant.name}", {"rules": self.s.rules, "predictions": [p["token"] for p in predicts]},
                    [dest / "per_case.csv", dest / "summary.json"], evaluate)

    def _report(self, step: Callable[..., dict[str, Any]], variants: list[VariantResult],
                heldout: dict[int, list[str]]) -> Path:
        results = ComparisonResults(out=self.out, raw_folder=self.raw_folder, dataset_json=self.dataset_json,
                                    variants=variants, heldout=heldout, budget=self.s.budget, device=self.s.device,
                                    rules=self.s.rules, title=self.s.title, overlays=self.s.overlays,
                                    time_cap_warning=self.s.time_cap_warning)
        files = [self.out / "report.md", self.out / "report.html"]
        params = {"evaluations": [r.token for r in variants], "title": self.s.title, "overlays": self.s.overlays}
        step("report", params, files, lambda resume: build_report(results))
        return files[0]


def data_identifier(plans_file: Path, configuration: str) -> str:
    """The preprocessed-data folder name of ``configuration`` (ResEnc plans share ``nnUNetPlans_3d_fullres``)."""
    configurations = json.loads(plans_file.read_text())["configurations"]
    if configuration not in configurations:
        raise ValueError(f"{plans_file} has no configuration '{configuration}' (planned: {sorted(configurations)}); "
                         "nnU-Net does not plan it for this dataset, so drop the methods that need it")
    return configurations[configuration].get("data_identifier", f"{plans_file.stem}_{configuration}")


def epoch_times(checkpoint: Path) -> dict[str, Any]:
    """Epochs trained and the summed epoch durations, from the log nnU-Net stores in its checkpoint.

    Summing epoch durations (rather than timing the process) excludes start-up, data loader warm-up and the
    final validation, and stays correct when training was resumed with ``--c``.
    """
    import torch

    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: training ended without a final checkpoint")
    logging_ = torch.load(checkpoint, map_location="cpu", weights_only=False)["logging"]
    starts, ends = logging_["epoch_start_timestamps"], logging_["epoch_end_timestamps"]
    return {"epochs": len(ends), "train_seconds": float(sum(e - s for s, e in zip(starts, ends)))}


def budget_spent(fold_dir: Path) -> dict[str, Any]:
    """What the trainer's budget accounting measured (``fold_X/budget.json``): the wall clock the budget
    counts, the share of it in optimiser steps, the training examples seen and the effective budget."""
    record = read_record(fold_dir)
    return {"budget_wall_seconds": record["wall_seconds"], "train_step_share": record["train_step_share"],
            "examples_seen": record["examples_seen"], "effective_budget": record["effective"]}


def default_device() -> str:
    """``cuda`` when PyTorch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
