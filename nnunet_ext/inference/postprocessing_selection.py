"""Choose post-processing per region on the cross-validation predictions, as nnU-Net does after training.

nnU-Net's ``determine_postprocessing`` (run by ``nnUNetv2_find_best_configuration``) tries "keep the largest
component" per label or region on the merged validation predictions and keeps it only where it raises that
label's or region's mean Dice. Here the candidates are our rules (remove components under N voxels; remove
components under a fraction of the largest), tried for every region of the :class:`~.postprocessing.Layout`:
the nested regions innermost first, as the cascade applies them (a removed ET becomes NETC, a removed TC SNFH,
a removed WT background), then the separate regions. For each region the candidate with the highest mean Dice
of that region is kept if it beats the rules chosen so far without it.

nnU-Net writes a post-processed copy of every case for every candidate. Here each case is read once and reduced
to the statistics of its predicted components (size, reference voxels of each label inside, enclosing component
of the next region out). That is exact: a cascade step removes whole components of its region, whose mask the
inner steps leave unchanged (they only relabel voxels inside it), and removing an outer component removes the
inner components inside it. Dice is 1 where prediction and reference of a region are both empty (the BraTS rule;
nnU-Net leaves such cases out of the mean), so removing the only false positives of a case counts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np

from nnunet_ext.inference.postprocessing import Layout, Region, Rule, Setting, layout, read_labels, reader_writer
from nnunet_ext.utils.pool import map_cases

MIN_SIZES = (8, 16, 32, 64, 128, 256, 512)
FRACTIONS = (0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class Components:
    """The predicted connected components of one region in one case."""

    sizes: np.ndarray  # (n,) voxels of each component
    overlap: np.ndarray  # (n, labels) reference voxels of each label inside each component
    parent: np.ndarray  # (n,) index of the enclosing component of the next cascade region out (else empty)


@dataclass(frozen=True)
class CaseStats:
    """What scoring any combination of rules on one case needs."""

    case: str
    reference: np.ndarray  # (labels,) reference voxels of each label
    cascade: tuple[Components, ...]  # one per cascade step, innermost first
    separate: tuple[Components, ...]  # one per separate region


def case_stats(case: str, prediction: np.ndarray, reference: np.ndarray, regions: Layout,
               connectivity: int = 26) -> CaseStats:
    """Reduce a predicted label map and its reference to :class:`CaseStats`."""
    if prediction.shape != reference.shape:
        raise ValueError(f"{case}: prediction shape {prediction.shape} differs from reference shape {reference.shape}")
    all_labels = [v for region, fill in regions.cascade for v in (*region, fill)] + [v for r in regions.separate
                                                                                     for v in r]
    n_labels = int(max(prediction.max(), reference.max(), *all_labels)) + 1
    ref = reference.ravel().astype(np.int64)

    def components(region: Region) -> tuple[np.ndarray, Components]:
        ids, n = cc3d.connected_components(np.isin(prediction, region), connectivity=connectivity, return_N=True)
        flat = ids.ravel().astype(np.int64)
        sizes = np.bincount(flat, minlength=n + 1)[1:]
        overlap = np.bincount(flat * n_labels + ref, minlength=(n + 1) * n_labels).reshape(n + 1, n_labels)[1:]
        return flat, Components(sizes, overlap, np.zeros(0, np.int64))

    cascade: list[Components] = []
    inner = None
    for region, _ in regions.cascade:
        flat, comps = components(region)
        if inner is not None:  # every inner component lies inside one component of this region
            inner_flat, inner_comps = inner
            inside = inner_flat > 0
            parent = np.zeros(inner_comps.sizes.size + 1, np.int64)
            parent[inner_flat[inside]] = flat[inside]
            cascade[-1] = Components(inner_comps.sizes, inner_comps.overlap, parent[1:] - 1)
        cascade.append(comps)
        inner = (flat, comps)
    separate = tuple(components(region)[1] for region in regions.separate)
    return CaseStats(case, np.bincount(ref, minlength=n_labels), tuple(cascade), separate)


def _dice(tp: int, predicted: int, reference: int) -> float:
    return 1.0 if predicted + reference == 0 else 2.0 * tp / (predicted + reference)


def case_dice(stats: CaseStats, regions: Layout, rules: dict[Region, Rule]) -> dict[Region, float]:
    """Dice of every scored region of one case after applying ``rules`` (by region) as the setting would."""
    kept: list[np.ndarray] = [np.zeros(0, bool)] * len(regions.cascade)
    gone_outer = None
    for j in reversed(range(len(regions.cascade))):  # an outer removal takes the components inside it along
        comps, rule = stats.cascade[j], rules.get(regions.cascade[j][0])
        gone = rule.removed(comps.sizes) if rule else np.zeros(comps.sizes.size, bool)
        if gone_outer is not None:
            gone = gone | gone_outer[comps.parent]
        kept[j], gone_outer = ~gone, gone
    scores: dict[Region, float] = {}
    previous = None
    for j, (region, _) in enumerate(regions.cascade):
        comps = stats.cascade[j]
        predicted, overlap = int(comps.sizes[kept[j]].sum()), comps.overlap[kept[j]]
        scores[region] = _dice(int(overlap[:, list(region)].sum()), predicted, int(stats.reference[list(region)].sum()))
        if previous is not None:  # the label this region adds: this region's voxels outside the inner one's
            inner_region, inner_predicted, inner_overlap = previous
            added = tuple(sorted(set(region) - set(inner_region)))
            tp = int(overlap[:, list(added)].sum()) - int(inner_overlap[:, list(added)].sum())
            scores[added] = _dice(tp, predicted - inner_predicted, int(stats.reference[list(added)].sum()))
        previous = (region, predicted, overlap)
    for region, comps in zip(regions.separate, stats.separate):
        rule = rules.get(region)
        keep = ~rule.removed(comps.sizes) if rule else np.ones(comps.sizes.size, bool)
        scores[region] = _dice(int(comps.overlap[keep][:, list(region)].sum()), int(comps.sizes[keep].sum()),
                               int(stats.reference[list(region)].sum()))
    return scores


def mean_dice(cases: Sequence[CaseStats], regions: Layout, rules: dict[Region, Rule]) -> dict[Region, float]:
    """Mean Dice over ``cases`` of every scored region."""
    per_case = [case_dice(c, regions, rules) for c in cases]
    return {region: float(np.mean([scores[region] for scores in per_case])) for region in regions.scored()}


@dataclass(frozen=True)
class Decision:
    """The best candidate for one region and whether it was kept."""

    rule: Rule
    dice_before: float
    dice_after: float

    @property
    def kept(self) -> bool:
        return self.dice_after > self.dice_before


def candidates(region: Region, fill: int, name: str, min_sizes: Sequence[int],
               fractions: Sequence[float]) -> list[Rule]:
    """The rules tried for a region, mildest first within each kind (the first of equal scores wins)."""
    return [*(Rule(region, fill, min_size=int(n), name=name) for n in sorted(min_sizes)),
            *(Rule(region, fill, min_fraction=float(f), name=name) for f in sorted(fractions))]


def select(cases: Sequence[CaseStats], regions: Layout, min_sizes: Sequence[int] = MIN_SIZES,
           fractions: Sequence[float] = FRACTIONS) -> tuple[tuple[Rule, ...], list[Decision]]:
    """Greedy choice, region by region in the order the rules apply: the kept rules and every decision."""
    if not cases:
        raise ValueError("no validation cases to select post-processing on")
    if not (min_sizes or fractions):
        raise ValueError("no candidate rules: give at least one minimum size or fraction")
    chosen: dict[Region, Rule] = {}
    decisions = []
    for region, fill in [*regions.cascade, *((r, 0) for r in regions.separate)]:
        before = mean_dice(cases, regions, chosen)[region]
        best, best_dice = None, -1.0
        for rule in candidates(region, fill, regions.name(region), min_sizes, fractions):
            dice = mean_dice(cases, regions, {**chosen, region: rule})[region]
            if dice > best_dice:
                best, best_dice = rule, dice
        decisions.append(Decision(best, before, best_dice))
        if decisions[-1].kept:
            chosen[region] = best
    return tuple(chosen.values()), decisions


def validation_pairs(model_folder: Path, reference_folder: Path | None = None,
                     folds: Sequence[str] | None = None) -> tuple[list[tuple[str, Path, Path]], list[str], Path]:
    """(case, validation prediction, reference) of every case in ``fold_*/validation``, the folds, the references.

    References default to ``nnUNet_preprocessed/<dataset>/gt_segmentations``, where nnU-Net keeps them in original
    geometry. Fold ``all`` validates on its own training cases, so it is left out unless asked for.
    """
    plans = json.loads((model_folder / "plans.json").read_text())
    file_ending = json.loads((model_folder / "dataset.json").read_text())["file_ending"]
    if reference_folder is None:
        preprocessed = os.environ.get("nnUNet_preprocessed")
        if not preprocessed:
            raise ValueError("nnUNet_preprocessed is not set: give the reference segmentations with --ref")
        reference_folder = Path(preprocessed) / plans["dataset_name"] / "gt_segmentations"
    if not reference_folder.is_dir():
        raise ValueError(f"reference folder {reference_folder} does not exist")
    found = sorted(p.parent.name[len("fold_"):] for p in model_folder.glob("fold_*/validation"))
    use = [f for f in (folds or [f for f in found if f != "all"]) if str(f) in found]
    missing = sorted(set(map(str, folds or ())) - set(found))
    if missing or not use:
        raise ValueError(f"{model_folder}: no fold_{'/fold_'.join(missing or ['*'])}/validation; nnU-Net writes "
                         f"it at the end of training (or with nnUNetv2_train ... --val)")
    pairs, seen, no_reference = [], set(), []
    for fold in use:
        for prediction in sorted((model_folder / f"fold_{fold}" / "validation").glob(f"*{file_ending}")):
            if prediction.name.startswith("."):
                continue
            case = prediction.name[:-len(file_ending)]
            if case in seen:
                raise ValueError(f"{prediction}: case {case} is in the validation of more than one fold")
            seen.add(case)
            reference = reference_folder / prediction.name
            if not reference.is_file():
                no_reference.append(str(reference))
            pairs.append((case, prediction, reference))
    if no_reference:
        raise ValueError(f"references missing for {len(no_reference)} validation cases: {', '.join(no_reference[:3])}")
    if not pairs:
        raise ValueError(f"{model_folder}: fold {', '.join(use)} validation folders hold no *{file_ending} files")
    return pairs, use, reference_folder


def _stats_of_files(job: tuple[str, Path, Path, Layout, int, object]) -> CaseStats:
    case, prediction, reference, regions, connectivity, reader = job
    return case_stats(case, read_labels(prediction, reader)[0], read_labels(reference, reader)[0], regions,
                      connectivity)


def select_for_model(model_folder: Path, reference_folder: Path | None = None, folds: Sequence[str] | None = None,
                     min_sizes: Sequence[int] = MIN_SIZES, fractions: Sequence[float] = FRACTIONS,
                     connectivity: int = 26, num_processes: int = 1) -> tuple[Setting, dict]:
    """The selected setting of a model folder and the evidence to record with it (per-region Dice, folds...)."""
    dataset_json = json.loads((model_folder / "dataset.json").read_text())
    regions = layout(dataset_json)
    pairs, used_folds, reference_folder = validation_pairs(model_folder, reference_folder, folds)
    reader = reader_writer(model_folder, dataset_json["file_ending"], pairs[0][1])
    jobs = [(case, p, r, regions, connectivity, reader) for case, p, r in pairs]
    cases = list(map_cases(_stats_of_files, jobs, num_processes, "reading validation predictions"))
    rules, decisions = select(cases, regions, min_sizes, fractions)
    before, after = mean_dice(cases, regions, {}), mean_dice(cases, regions, {r.region: r for r in rules})
    evidence = {
        "folds": used_folds, "cases": len(cases), "reference_folder": str(reference_folder),
        "candidates": {"min_sizes": sorted(int(n) for n in min_sizes),
                       "fractions": sorted(float(f) for f in fractions)},
        "decisions": [{"region": regions.name(d.rule.region), "best_rule": d.rule.to_json(), "kept": d.kept,
                       "dice_before": d.dice_before, "dice_after": d.dice_after} for d in decisions],
        "mean_dice": {regions.name(r): {"none": before[r], "selected": after[r]} for r in regions.scored()},
    }
    return Setting("selected", 0, connectivity, rules), evidence
