"""BraTS-GLI 2024 (post-treatment glioma) download -> nnU-Net raw dataset + patient-grouped splits.

Source layout (training and validation downloads alike)::

    SRC/BraTS-GLI-XXXXX-YYY/BraTS-GLI-XXXXX-YYY-{t1n,t1c,t2w,t2f}.nii.gz  (+ -seg.nii.gz when labelled)

``XXXXX`` is the patient, ``YYY`` the time point. Files are found anywhere below SRC; ``-`` or ``_`` before
the modality and ``.nii`` or ``.nii.gz`` are accepted. The nnU-Net case identifier is the BraTS case name,
so predictions come back as ``BraTS-GLI-XXXXX-YYY.nii.gz``. Channel order and the label-based label set
follow nnU-Net's own ``Dataset226_BraTS2024-BraTS-GLI`` converter (t1n, t1c, t2w, t2f; NETC 1, SNFH 2,
ET 3, RC 4).

Region-based variant (``regions=True``), matching how BraTS 2024 scores GLI::

    WT = (1, 2, 3)   TC = (1, 3)   ET = (3,)   RC = (4,)      regions_class_order = (2, 1, 3, 4)

nnU-Net turns region predictions back into a label map by writing, in this order, ``regions_class_order[i]``
wherever region ``i`` has probability > 0.5, later regions overwriting earlier ones. Hence:
voxels in WT only -> 2 (SNFH); in TC but not ET -> 1 (NETC); in ET -> 3 (ET); in RC -> 4 (RC), RC winning
over any tumour region it overlaps. On a reference label map this reproduces every label exactly (TC is
inside WT, ET inside TC, RC disjoint from WT), so the label files stay 0..4 on disk and exports need no
relabelling. A voxel predicted as TC outside WT still becomes NETC; the only information lost is where the
network's regions contradict their nesting.
"""

from __future__ import annotations

import re
from pathlib import Path

from nnunet_ext.dataset_conversion.raw_dataset import DatasetSpec, SourceCase, find_source_cases

MODALITIES = ("t1n", "t1c", "t2w", "t2f")
CHANNEL_NAMES = {0: "T1", 1: "T1C", 2: "T2W", 3: "T2F"}  # as nnU-Net's Dataset226 (all non-CT: z-score)
LABELS = {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}
REGIONS = {"background": 0, "WT": [1, 2, 3], "TC": [1, 3], "ET": [3], "RC": [4]}
REGIONS_CLASS_ORDER = (2, 1, 3, 4)
CASE_PATTERN = re.compile(r"^(?P<case>BraTS-GLI-(?P<patient>\d{5})-(?P<timepoint>\d{3}))[-_]"
                          r"(?P<key>t1n|t1c|t2w|t2f|seg)\.nii(?:\.gz)?$")
DEFAULT_NAME = "BraTS2024GLI"


def patient_of(case_id: str) -> str:
    """``BraTS-GLI-XXXXX-YYY`` -> ``XXXXX`` (the grouping key for the splits)."""
    match = re.match(r"^BraTS-GLI-(\d{5})-\d{3}$", case_id)
    if match is None:
        raise ValueError(f"{case_id!r} is not a BraTS-GLI case name (BraTS-GLI-XXXXX-YYY)")
    return match.group(1)


def find_cases(src: Path) -> list[SourceCase]:
    """All BraTS-GLI cases below ``src``; missing modalities are kept as expected paths to be reported."""
    return find_source_cases(src, "BraTS-GLI-*", CASE_PATTERN, MODALITIES, "seg", "-")


def dataset_spec(dataset_id: int, name: str = DEFAULT_NAME, regions: bool = False) -> DatasetSpec:
    return DatasetSpec(
        dataset_id=dataset_id, name=name, channel_names=CHANNEL_NAMES,
        labels=REGIONS if regions else LABELS, source_labels=tuple(LABELS.values()),
        regions_class_order=REGIONS_CLASS_ORDER if regions else None,
        description="BraTS 2024 post-treatment glioma (BraTS-GLI), converted by nnunet-ext"
                    + (" (region-based: WT, TC, ET, RC)" if regions else ""),
        reference="https://www.synapse.org/Synapse:syn53708249/wiki/627500",
        licence="see https://www.synapse.org/Synapse:syn53708249/wiki/627508",
    )
