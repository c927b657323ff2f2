"""What a finished comparison hands to its report: the results of each prediction variant and their context.

The pipeline (:mod:`nnunet_ext.compare.pipeline`) builds a :class:`ComparisonResults` once every step is done;
the report (:mod:`nnunet_ext.compare.report`) reads nothing else, so it can be written (and tested) from a
hand-built object without running a comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_ext.compare.methods import Method, Variant
from nnunet_ext.training.budget import Budget

#: the report's warning when a method trained fewer epochs than budgeted (the minutes ran out first)
TIME_CAP_WARNING = "training stopped early by the time cap: the numbers below are not those of the budget"


@dataclass(frozen=True)
class VariantResult:
    """One prediction variant: its evaluation folder (``per_case.csv``, ``summary.json``), the merged
    predictions of all folds, the training and prediction steps' records (one per fold) and the evaluation's
    cache token (the report is redone when it changes)."""

    method: Method
    variant: Variant
    evaluation: Path
    predictions: Path
    train: Sequence[Mapping[str, Any]]
    predict: Sequence[Mapping[str, Any]]
    token: str


@dataclass(frozen=True)
class ComparisonResults:
    """The variants' results and everything the report says about the setup they were obtained in."""

    #: the comparison folder: the report, ``figures/`` and ``results.json`` are written here, and the held-out
    #: reference labels are read from ``heldout/labels``
    out: Path
    #: the raw dataset (``DatasetXXX_Name``) whose images the overlays show
    raw_folder: Path
    #: its ``dataset.json`` (channel names, labels, file ending)
    dataset_json: Mapping[str, Any]
    variants: Sequence[VariantResult]
    #: fold -> its held-out cases
    heldout: Mapping[int, Sequence[str]]
    budget: Budget
    device: str
    rules: str
    title: str = ""
    #: number of cases shown as overlays
    overlays: int = 1
    #: what the report says (at the top) when a method trained fewer epochs than budgeted
    time_cap_warning: str = TIME_CAP_WARNING

    @property
    def dataset_name(self) -> str:
        return self.raw_folder.name

    @property
    def folds(self) -> list[int]:
        return list(self.heldout)

    @property
    def file_ending(self) -> str:
        return str(self.dataset_json["file_ending"])
