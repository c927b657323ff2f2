"""The scoring rule sets as data: which labels form a region and how the BraTS scorers treat its lesions.

The numbers reproduce the organisers' scorers, quirks included, because users compare against numbers that were
produced by those scorers (``../shared/spec/evaluation.md``; the official outputs in the metric vectors decide):

* GLI 2024 intends dilation 5 for NETC, SNFH and RC, but the official code tests for ``"SFNH"``, so SNFH gets 3.
* Reference lesions are measured in mm^3 (voxel count x voxel volume) against the threshold, predicted lesions
  are deleted by voxel count in GLI 2024 and by mm^3 in MEN-RT 2024.
* GLI 2024 merges lesions that touch across NETC, ET, RC and SNFH, in the partner order of the official code.
* The 2024 scorers compute Legacy HD95, Sensitivity and Specificity on lesion-id maps, not on masks
  (``label_map_quirks``); the correct mask-based values are reported beside them as ``voxel_*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Region:
    """One scored region: the labels it unites and its lesion-wise parameters."""

    name: str
    labels: tuple[int, ...]
    dilation: int = 0  # 18-connected dilation iterations used to merge lesions and to match predictions
    min_ref_volume_mm3: float = 0.0  # reference lesions at or under this volume are not scored
    delete_pred_at_most: float = 0.0  # predicted lesions at or under this size are deleted before scoring
    merge_with: tuple[str, ...] = ()  # GLI 2024: regions whose touching lesions share a lesion id, in order


@dataclass(frozen=True)
class Rules:
    """A complete rule set. ``regions`` empty means one region per foreground label (``voxel`` rules)."""

    name: str
    regions: tuple[Region, ...]
    valid_labels: frozenset[int] | None  # None: any non-negative integer
    lesionwise: bool = True
    hd95_penalty: float | None = None  # None: image diagonal in voxels, sqrt(X^2 + Y^2 + Z^2)
    count_fp: bool = True  # false positives enter the lesion-wise case score
    merge_predictions: bool = True  # 2024: predictions get the same dilation merge as the reference
    pred_size_unit: str = "voxels"  # unit of Region.delete_pred_at_most: "voxels" or "mm3"
    label_map_quirks: bool = False  # Legacy HD95 / Sensitivity / Specificity on lesion-id maps (official 2024)

    def region_names(self, labels: set[int] | None = None) -> list[str]:
        """Region names in output order; for per-label rules, one per label in ``labels``."""
        if self.regions:
            return [r.name for r in self.regions]
        return [str(label) for label in sorted(labels or ())]

    def regions_for(self, labels: set[int]) -> tuple[Region, ...]:
        """The regions to score on a case whose reference and prediction contain ``labels``."""
        if self.regions:
            return self.regions
        return tuple(Region(name=str(label), labels=(label,)) for label in sorted(labels) if label != 0)


_GLI_2024_TISSUE_PARTNERS = {
    "NETC": ("ET", "RC"),
    "ET": ("NETC", "RC"),
    "RC": ("ET", "NETC"),
    "SNFH": ("ET", "RC", "NETC"),
}

BRATS_GLI_2024 = Rules(
    name="brats-gli-2024",
    regions=(
        Region("WT", (1, 2, 3), dilation=3, min_ref_volume_mm3=20, delete_pred_at_most=20),
        Region("TC", (1, 3), dilation=3, min_ref_volume_mm3=20, delete_pred_at_most=20),
        Region("NETC", (1,), dilation=5, min_ref_volume_mm3=20, delete_pred_at_most=20,
               merge_with=_GLI_2024_TISSUE_PARTNERS["NETC"]),
        Region("SNFH", (2,), dilation=3, min_ref_volume_mm3=20, delete_pred_at_most=20,
               merge_with=_GLI_2024_TISSUE_PARTNERS["SNFH"]),
        Region("ET", (3,), dilation=3, min_ref_volume_mm3=10, delete_pred_at_most=10,
               merge_with=_GLI_2024_TISSUE_PARTNERS["ET"]),
        Region("RC", (4,), dilation=5, min_ref_volume_mm3=20, delete_pred_at_most=20,
               merge_with=_GLI_2024_TISSUE_PARTNERS["RC"]),
    ),
    valid_labels=frozenset({0, 1, 2, 3, 4}),
    hd95_penalty=337.0,
    label_map_quirks=True,
)

BRATS_MEN_RT_2024 = Rules(
    name="brats-men-rt-2024",
    regions=(Region("GTV", (1,), dilation=1, min_ref_volume_mm3=50, delete_pred_at_most=50),),
    valid_labels=frozenset({0, 1}),
    hd95_penalty=None,
    count_fp=False,
    pred_size_unit="mm3",
    label_map_quirks=True,
)

BRATS_2023 = Rules(
    name="brats-2023",
    regions=(
        Region("WT", (1, 2, 3), dilation=3, min_ref_volume_mm3=50),
        Region("TC", (1, 3), dilation=3, min_ref_volume_mm3=50),
        Region("ET", (3,), dilation=3, min_ref_volume_mm3=50),
    ),
    valid_labels=frozenset({0, 1, 2, 3}),
    hd95_penalty=374.0,
    merge_predictions=False,
)

VOXEL = Rules(name="voxel", regions=(), valid_labels=None, lesionwise=False, hd95_penalty=None)

RULES: dict[str, Rules] = {r.name: r for r in (BRATS_GLI_2024, BRATS_MEN_RT_2024, BRATS_2023, VOXEL)}

# Named label conventions for --labels-are: a mapping applied to both reference and prediction before scoring.
LABEL_CONVENTIONS: dict[str, str] = {
    "as-is": "",
    "brats-2021": "4:3",  # BraTS 2021 files use 4 for enhancing tumour
    "binary": "*:1",  # every foreground label becomes 1 (e.g. MEN-RT rules on multi-label masks)
}

_MAPPING = re.compile(r"^\s*(\d+|\*)\s*:\s*(\d+)\s*$")


def parse_label_mapping(spec: str) -> dict[int | str, int]:
    """Parse ``--labels-are``: a convention name or ``SRC:DST[,SRC:DST...]`` (``*`` = every other foreground label)."""
    spec = LABEL_CONVENTIONS.get(spec, spec)
    mapping: dict[int | str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _MAPPING.match(item)
        if not match:
            names = ", ".join(LABEL_CONVENTIONS)
            raise ValueError(f"bad label mapping {item!r}: use one of {names} or SRC:DST pairs such as 4:3,*:1")
        src, dst = match.groups()
        mapping["*" if src == "*" else int(src)] = int(dst)
    return mapping
