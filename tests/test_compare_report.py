"""The comparison's report written from a hand-built :class:`ComparisonResults`: no pipeline, no training.

The evaluation files it reads are made by the real ``evaluate_folders`` on two tiny cases: one variant predicts
the reference (Dice 1), the other predicts nothing (Dice 0), and the training and prediction records carry
numbers chosen here, so every cell checked below comes from this test's input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_ext.compare.methods import METHODS
from nnunet_ext.compare.report import build_report
from nnunet_ext.compare.results import ComparisonResults, VariantResult
from nnunet_ext.evaluation import evaluate_folders, write_outputs
from nnunet_ext.training.budget import Budget
from tests.helpers.synthetic import make_raw_dataset

WARNING = "the minutes ran out: these numbers are not the budget's"


def _variant(out: Path, method_name: str, labels: Path, cases: list[str], empty: bool, train: list[dict],
             predict: list[dict]) -> VariantResult:
    """Predictions (the reference, or empty label maps) evaluated with the real evaluation into ``out``."""
    method = METHODS[method_name]
    variant = method.variants[-1]
    predictions = out / "predictions" / variant.name / "all"
    predictions.mkdir(parents=True)
    for case in cases:
        reference = sitk.ReadImage(str(labels / f"{case}.nii.gz"))
        if empty:
            blank = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(reference)))
            blank.CopyInformation(reference)
            reference = blank
        sitk.WriteImage(reference, str(predictions / f"{case}.nii.gz"))
    evaluation = out / "evaluation" / variant.name
    rows, summary = evaluate_folders(predictions, labels, "voxel", num_workers=1)
    write_outputs(rows, summary, evaluation)
    return VariantResult(method, variant, evaluation, predictions, train, predict, token=variant.name)


def _results(tmp_path: Path, budget: Budget, sliceres_epochs: list[int]) -> ComparisonResults:
    raw = make_raw_dataset(tmp_path / "raw", 502, "Report", n_cases=2, shape=(6, 16, 16))
    out = tmp_path / "cmp"
    labels = out / "heldout" / "labels"
    shutil.copytree(raw / "labelsTr", labels)
    cases = ["case_000", "case_001"]
    stock_train = [{"epochs": budget.epochs, "train_seconds": 50.0, "wall_seconds": 70.0,
                    "budget_wall_seconds": 60.0, "train_step_share": 0.5, "examples_seen": 400,
                    "peak_gpu_allocated_bytes": 3 * 2**30}]
    slice_train = [{"epochs": e, "train_seconds": 80.0, "wall_seconds": 100.0, "budget_wall_seconds": 150.0,
                    "train_step_share": 0.25, "examples_seen": 1234} for e in sliceres_epochs]
    variants = [
        _variant(out, "2d", labels, cases, empty=False, train=stock_train,
                 predict=[{"wall_seconds": 4.0, "cases": 2, "peak_gpu_allocated_bytes": 2**30}]),
        _variant(out, "sliceres", labels, cases, empty=True, train=slice_train,
                 predict=[{"wall_seconds": 6.0, "cases": 2}] * len(sliceres_epochs)),
    ]
    return ComparisonResults(out=out, raw_folder=raw, dataset_json=json.loads((raw / "dataset.json").read_text()),
                             variants=variants, heldout={0: cases}, budget=budget, device="cpu", rules="voxel",
                             title="hand-built comparison", overlays=1, time_cap_warning=WARNING)


def test_report_shows_the_given_numbers_and_the_budget(tmp_path: Path) -> None:
    budget = Budget(epochs=3, iterations=4)
    results = _results(tmp_path, budget, sliceres_epochs=[3])
    written = build_report(results)
    report = (results.out / "report.md").read_text()
    assert report.startswith("# hand-built comparison")
    assert "WARNING" not in report  # every method trained its budgeted epochs
    assert f"training budget (every method): {budget.describe()}" in report and "3 epochs" in budget.describe()
    assert "dataset: Dataset502_Report" in report and "2 held-out cases from fold(s) 0" in report
    # accuracy: the reference scores Dice 1 in both regions (the best, in bold), the empty prediction 0
    for region in ("1", "2"):
        assert f"| {region} | 2d | **1.000 [1.000, 1.000]** |" in report
        assert f"| {region} | sliceres_24view | 0.000 [0.000, 0.000] |" in report
    # cost: epochs, the budget's wall clock, share in train steps, examples, GPU memory, inference per case
    assert "| 2d | 3 | 60.0 s | 50 % | 400 | 3.00 GiB | 2.0 s | 1.00 GiB |" in report
    assert "| sliceres_24view | 3 | 2.5 min | 25 % | 1,234 | n/a | 3.0 s | n/a |" in report
    figures = written["figures"]
    assert figures[:2] == ["figures/box_legacy_dice.png", "figures/box_legacy_hd95.png"] and len(figures) == 3
    assert figures[2] in ("figures/overlay_case_000.png", "figures/overlay_case_001.png")
    assert all((results.out / name).is_file() and name in report for name in figures)
    numbers = json.loads((results.out / "results.json").read_text())
    assert numbers["budget"] == budget.as_dict() and numbers["held_out"] == {"0": ["case_000", "case_001"]}
    assert numbers["cost"]["sliceres_24view"]["inference_seconds_per_case"] == 3.0
    assert numbers["cost"]["2d"]["peak_gpu_train_bytes"] == 3 * 2**30


def test_report_warns_when_budgeted_epochs_were_cut_by_the_minutes(tmp_path: Path) -> None:
    results = _results(tmp_path, Budget(epochs=5, minutes=2.0), sliceres_epochs=[2, 5])
    build_report(results)
    report = (results.out / "report.md").read_text()
    # only the method that fell short is named, with the epochs of each fold
    assert f"WARNING: {WARNING} (sliceres trained 2/5 of 5 epochs)." in report
    assert report.index("WARNING") < report.index("## Setup")
    assert "| sliceres_24view | 2/5 |" in report
