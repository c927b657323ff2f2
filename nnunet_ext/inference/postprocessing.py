"""Post-processing of exported segmentations: connected-component rules, label by label or region by region.

The method removes connected components under 64 voxels (meningioma Dice 0.804 -> 0.830). With nested regions
(BraTS: ET inside TC inside WT) doing that label by label damages the regions it should clean: an ET speck inside
the core becomes background and punches a hole in the core, and a large core made of small NETC and ET pieces
disappears although the core is large. Region rules act on each nested region instead, innermost first, and give
what they remove the label of the next region out, so a removal never leaves a hole in an outer region:

    ET  (3)        removed components -> NETC (1)   (they stay tumour core)
    TC  (1, 3)     removed components -> SNFH (2)   (they stay whole tumour)
    WT  (1, 2, 3)  removed components -> background

Regions outside the nesting (RC, label 4, in BraTS-GLI) are processed on their own. A :class:`Rule` removes the
components of its region that are under ``min_size`` voxels or under ``min_fraction`` of its largest component.
Modes of a :class:`Setting`:

- ``components``: every label on its own, components under ``min_size`` voxels -> background (no nesting);
- ``cascade``: the region rules above, one ``min_size`` for every region (the default where regions nest);
- ``selected``: rules chosen per region on cross-validation predictions (:mod:`.postprocessing_selection`);
- ``none``.

All modes work on the label map in original image geometry (what nnU-Net exports) and are idempotent, so re-running
them on a resumed prediction folder is harmless. A setting recorded in a model folder (``sliceres_postprocessing.json``)
is what ``predict --postprocess auto`` applies for that model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cc3d
import numpy as np

from nnunet_ext.atomic import atomic_write, atomic_write_text, remove_stale_temporaries
from nnunet_ext.nifti_io import check_complete, incomplete_files
from nnunet_ext.utils.pool import map_cases

RECORD_NAME = "sliceres_postprocessing.json"
MODES = ("none", "components", "cascade", "selected")
DEFAULT_MIN_SIZE = 64
# nested regions of nnU-Net's BraTS 2024 GLI conversion (Dataset226), by label names
BRATS_REGIONS = {"ET": ("ET",), "TC": ("ET", "NETC"), "WT": ("ET", "NETC", "SNFH")}

Region = tuple[int, ...]
Step = tuple[Region, int]  # (labels forming the region, label that fills removed voxels)


@dataclass(frozen=True)
class Rule:
    """Components of ``region`` under ``min_size`` voxels or under ``min_fraction`` x its largest become ``fill``."""

    region: Region
    fill: int = 0
    min_size: int = 0
    min_fraction: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if not self.region or self.fill in self.region:
            raise ValueError(f"rule for region {self.region}: the region must be non-empty and exclude its fill "
                             f"label {self.fill}")
        if self.min_size < 0 or not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"rule for region {self.region}: min_size must be >= 0 and min_fraction in [0, 1], "
                             f"got {self.min_size} and {self.min_fraction}")

    def removed(self, sizes: np.ndarray) -> np.ndarray:
        """Which of the region's components (given by voxel counts) the rule removes."""
        limit = max(self.min_size, self.min_fraction * sizes.max()) if sizes.size else 0
        return sizes < limit

    def describe(self, fill_name: str | None = None) -> str:
        parts = ([f"< {self.min_size} voxels"] if self.min_size else []) + \
                ([f"< {self.min_fraction:g} x largest"] if self.min_fraction else [])
        target = fill_name or (str(self.fill) if self.fill else "background")
        return f"{self.name or self.region}: components {' or '.join(parts) or 'none'} -> {target}"

    def to_json(self) -> dict:
        return {"name": self.name, "region": list(self.region), "fill": self.fill, "min_size": self.min_size,
                "min_fraction": self.min_fraction}

    @classmethod
    def from_json(cls, data: dict) -> Rule:
        return cls(tuple(int(v) for v in data["region"]), int(data["fill"]), int(data.get("min_size", 0)),
                   float(data.get("min_fraction", 0.0)), str(data.get("name", "")))


@dataclass(frozen=True)
class Setting:
    """What to do to a segmentation. ``rules`` (cascade and selected modes) are applied in order."""

    mode: str = "components"
    min_size: int = DEFAULT_MIN_SIZE  # components and cascade modes; selected rules carry their own thresholds
    connectivity: int = 26
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"post-processing mode must be one of {MODES}, got {self.mode!r}")
        if self.min_size < 0:
            raise ValueError(f"minimum component size must be >= 0, got {self.min_size}")
        if self.connectivity not in (6, 18, 26):
            raise ValueError(f"connectivity must be 6, 18 or 26, got {self.connectivity}")
        if self.mode == "cascade" and not self.rules:
            raise ValueError("cascade mode needs region rules (see cascade_setting)")
        if self.mode in ("none", "components") and self.rules:
            raise ValueError(f"{self.mode} mode takes no region rules")

    def describe(self) -> str:
        """One line for logs: the mode and what it removes."""
        if self.mode == "none":
            return "none"
        if self.mode == "components":
            return f"components < {self.min_size} voxels, per label"
        if self.mode == "cascade":
            return f"cascade, components < {self.min_size} voxels per region"
        return "selected per region: " + ("; ".join(r.describe() for r in self.rules) or "no rule raised Dice")

    def to_json(self) -> dict:
        return {"mode": self.mode, "min_size": self.min_size, "connectivity": self.connectivity,
                "rules": [r.to_json() for r in self.rules]}

    @classmethod
    def from_json(cls, data: dict) -> Setting:
        return cls(mode=data["mode"], min_size=int(data["min_size"]), connectivity=int(data.get("connectivity", 26)),
                   rules=tuple(Rule.from_json(r) for r in data.get("rules", ())))


def remove_small_components(seg: np.ndarray, min_size: int, connectivity: int = 26) -> np.ndarray:
    """Set components smaller than ``min_size`` voxels of each label to background (a new array)."""
    return cc3d.dust(seg, min_size, connectivity=connectivity)


def apply_rule(seg: np.ndarray, rule: Rule, connectivity: int = 26) -> np.ndarray:
    """``seg`` with the components that ``rule`` removes set to its fill label (``seg`` itself if none are)."""
    components, n = cc3d.connected_components(np.isin(seg, rule.region), connectivity=connectivity, return_N=True)
    if n == 0:
        return seg
    removed = rule.removed(np.bincount(components.ravel(), minlength=n + 1)[1:])
    if not removed.any():
        return seg
    out = seg.copy()
    out[np.concatenate(([False], removed))[components]] = rule.fill
    return out


def apply(seg: np.ndarray, setting: Setting) -> np.ndarray:
    """Post-process one label map according to ``setting`` (the input is not modified)."""
    if setting.mode == "none":
        return seg
    if setting.mode == "components":
        return remove_small_components(seg, setting.min_size, setting.connectivity)
    for rule in setting.rules:
        seg = apply_rule(seg, rule, setting.connectivity)
    return seg


def cascade_steps(regions: Sequence[Sequence[int]]) -> tuple[Step, ...]:
    """Steps for nested regions, innermost first: each region's removed voxels take the label the next one adds.

    ``regions`` may come in any order; they must be strictly nested and each must add exactly one label to
    the one inside it (the outermost region's removals become background).
    """
    ordered = sorted((tuple(sorted({int(v) for v in r})) for r in regions), key=len)
    steps = []
    for inner, outer in zip(ordered, ordered[1:] + [None]):
        if outer is None:
            steps.append((inner, 0))
            continue
        added = set(outer) - set(inner)
        if not set(inner) < set(outer) or len(added) != 1:
            raise ValueError(f"cascade regions must be nested, each adding exactly one label; got {inner} inside "
                             f"{outer}")
        steps.append((inner, added.pop()))
    return tuple(steps)


@dataclass(frozen=True)
class Layout:
    """How a model's output labels group into the regions that post-processing acts on."""

    cascade: tuple[Step, ...]  # nested regions, innermost first, with the label their removed voxels take
    separate: tuple[Region, ...]  # regions outside the nesting, each on its own (removed voxels -> background)
    names: dict[Region, str] = field(default_factory=dict)

    def name(self, region: Region) -> str:
        return self.names.get(region, "+".join(str(v) for v in region))

    def rules(self, min_size: int) -> tuple[Rule, ...]:
        """One ``min_size`` rule per region: the cascade, innermost first, then the separate regions."""
        steps = [*self.cascade, *((region, 0) for region in self.separate)]
        return tuple(Rule(region, fill, min_size, name=self.name(region)) for region, fill in steps)

    def scored(self) -> list[Region]:
        """Regions whose Dice post-processing changes: the cascade's, the labels between them, the separate ones."""
        between = [tuple(sorted(set(outer) - set(inner))) for (inner, _), (outer, _) in
                   zip(self.cascade, self.cascade[1:])]
        return [*(region for region, _ in self.cascade), *between, *self.separate]


def _as_region(value) -> Region:
    return tuple(sorted({int(v) for v in value})) if isinstance(value, (list, tuple)) else (int(value),)


def layout(dataset_json: dict) -> Layout:
    """The regions of a model from its ``dataset.json``.

    Region-based models (nnU-Net ``regions_class_order``) use their own regions: those inside the largest one
    form the cascade, the ones disjoint from it are separate. Label-based models with the BraTS labels ET, NETC
    and SNFH get the ET/TC/WT cascade, their other labels are separate; any other model has one separate region
    per label (what per-label removal does).
    """
    labels = {name: _as_region(value) for name, value in dataset_json["labels"].items() if name != "ignore"}
    regions = {name: region for name, region in labels.items() if region != (0,)}
    names = {region: name for name, region in regions.items()}
    if any(len(region) > 1 for region in regions.values()):
        ordered = sorted(set(regions.values()), key=len)
        outer = set(ordered[-1])
        nested = [r for r in ordered if set(r) <= outer]
        separate = [r for r in ordered if not set(r) & outer]
        if len(nested) + len(separate) != len(ordered) or len({v for r in separate for v in r}) != sum(
                map(len, separate)):
            raise ValueError(f"dataset.json regions {sorted(ordered)} overlap without nesting: region-wise "
                             f"post-processing needs nested or disjoint regions (use --postprocess components)")
        return Layout(cascade_steps(nested), tuple(separate), names)
    by_name = {name.upper(): region[0] for name, region in regions.items()}
    if all(n in by_name for names_ in BRATS_REGIONS.values() for n in names_):
        brats = {tuple(sorted(by_name[n] for n in members)): name for name, members in BRATS_REGIONS.items()}
        in_cascade = {v for region in brats for v in region}
        separate = tuple(r for r in sorted(regions.values()) if r[0] not in in_cascade)
        return Layout(cascade_steps(list(brats)), separate, {**names, **brats})
    return Layout((), tuple(sorted(regions.values())), names)


def cascade_setting(dataset_json: dict, min_size: int = DEFAULT_MIN_SIZE, connectivity: int = 26) -> Setting:
    """The region cascade with one ``min_size`` for every region (ValueError when the labels do not nest)."""
    regions = layout(dataset_json)
    if not regions.cascade:
        raise ValueError(f"the cascade needs nested regions in dataset.json or the BraTS labels ET, NETC, SNFH; "
                         f"labels {sorted(dataset_json['labels'])} have neither")
    return Setting("cascade", min_size, connectivity, regions.rules(min_size))


def resolve_setting(mode: str, dataset_json: dict | None, recorded: Setting | None = None,
                    min_size: int | None = None, connectivity: int | None = None) -> Setting:
    """The setting a ``--postprocess``/``--mode`` choice means for a model.

    ``auto`` is the model folder's record when there is one, else the cascade where the labels nest (per-label
    removal would damage the regions) and per-label removal otherwise. ``min_size``/``connectivity`` override
    the recorded or default values; rules selected per region cannot take one size, so that is refused.
    """
    if mode == "auto" and recorded is not None:
        if min_size is None and connectivity is None:
            return recorded
        if recorded.mode == "selected":
            raise ValueError(f"the model folder's {RECORD_NAME} holds rules selected per region; --min-size and "
                             f"--connectivity apply to the components or cascade mode")
        mode = recorded.mode
        min_size = recorded.min_size if min_size is None else min_size
        connectivity = recorded.connectivity if connectivity is None else connectivity
    size = DEFAULT_MIN_SIZE if min_size is None else min_size
    connectivity = connectivity or 26
    if mode == "auto":
        mode = "cascade" if dataset_json is not None and layout(dataset_json).cascade else "components"
    if mode in ("none", "components"):
        return Setting(mode, size, connectivity)
    if mode != "cascade":
        raise ValueError(f"post-processing mode must be auto, none, components or cascade, got {mode!r}")
    if dataset_json is None:
        raise ValueError("the cascade needs the model's labels (dataset.json)")
    return cascade_setting(dataset_json, size, connectivity)


def save_setting(model_folder: str | os.PathLike, setting: Setting, selection: dict | None = None) -> Path:
    """Record ``setting`` (and how it was selected) in a model folder, atomically; prediction applies it."""
    record = {**setting.to_json(), **({"selection": selection} if selection else {})}
    return atomic_write_text(Path(model_folder) / RECORD_NAME, json.dumps(record, indent=2) + "\n")


def load_setting(model_folder: str | os.PathLike) -> Setting | None:
    """The setting recorded in a model folder, or None when there is none."""
    path = Path(model_folder) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return Setting.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a valid post-processing record ({error})") from error


def reader_writer(folder: Path, file_ending: str, example: Path):
    """The image reader/writer nnU-Net used for this folder (its plans.json names it), else by file ending.

    Looked up by name as ``PlansManager.image_reader_writer_class`` does, without importing torch with it.
    """
    from nnunetv2.imageio.reader_writer_registry import (
        determine_reader_writer_from_file_ending,
        recursive_find_reader_writer_by_name,
    )

    plans = folder / "plans.json"
    if plans.is_file():
        return recursive_find_reader_writer_by_name(json.loads(plans.read_text())["image_reader_writer"])()
    return determine_reader_writer_from_file_ending(file_ending, str(example), verbose=False)()


def read_labels(path: Path, reader, checked: bool = False) -> tuple[np.ndarray, dict]:
    """A label map as nnU-Net's reader returns it, without the channel axis, in the smallest integer type.

    Cut-off files fail here, naming the file (:func:`nnunet_ext.nifti_io.check_complete`): nnU-Net's reader would
    return a partial volume. ``checked``: the caller has already checked the file (no second decompression).
    """
    if not checked:
        check_complete(path)
    seg, properties = reader.read_seg(str(path))
    return seg[0].astype(np.uint16 if seg.max() > 255 else np.uint8), properties


def postprocess_file(job: tuple[Path, Path], setting: Setting, reader, checked: bool = False) -> None:
    """Read a segmentation, post-process it and write it to ``target`` atomically (``target`` may be ``source``).

    ``job`` is ``(source, target)``; ``checked``: as in :func:`read_labels`. In place, an unchanged result is not
    rewritten, so re-running on a resumed folder leaves finished files alone.
    """
    source, target = job
    seg, properties = read_labels(source, reader, checked)
    result = apply(seg, setting)
    if source.resolve() == target.resolve() and np.array_equal(result, seg):
        return
    atomic_write(target, lambda tmp: reader.write_seg(result, str(tmp), properties))


def postprocess_folder(input_folder: str | os.PathLike, output_folder: str | os.PathLike, setting: Setting,
                       case_ids: Iterable[str] | None = None, num_processes: int = 1) -> list[Path]:
    """Post-process nnU-Net's exported segmentations of ``input_folder`` (all, or ``case_ids``) into
    ``output_folder`` (may be the same folder: files are replaced atomically). Returns the written files."""
    input_folder, output_folder = Path(input_folder), Path(output_folder)
    dataset_json = input_folder / "dataset.json"
    file_ending = json.loads(dataset_json.read_text())["file_ending"] if dataset_json.is_file() else ".nii.gz"
    if case_ids is None:
        sources = sorted(p for p in input_folder.glob(f"*{file_ending}") if not p.name.startswith("."))
    else:
        sources = [input_folder / f"{c}{file_ending}" for c in case_ids]
        missing = [str(p) for p in sources if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"segmentations to post-process are missing: {', '.join(missing)}")
    if not sources:
        raise FileNotFoundError(f"{input_folder}: no *{file_ending} segmentations to post-process")
    unreadable = incomplete_files(sources)  # before anything is written: nnU-Net's reader reads cut-off files
    if unreadable:
        raise ValueError(f"{input_folder}: nothing post-processed, {len(unreadable)} of {len(sources)} "
                         "segmentations cannot be read:\n  " + "\n  ".join(unreadable))
    output_folder.mkdir(parents=True, exist_ok=True)
    targets = [output_folder / p.name for p in sources]
    for target in targets:  # what a killed earlier run was writing
        remove_stale_temporaries(target)
    reader = reader_writer(input_folder, file_ending, sources[0])
    work = partial(postprocess_file, setting=setting, reader=reader, checked=True)
    list(map_cases(work, zip(sources, targets), num_processes, f"post-processing ({setting.mode})"))
    return targets
