"""BraTS 2021 (adult glioma, RSNA-ASNR-MICCAI) download -> nnU-Net raw dataset in the BraTS-GLI 2024 convention.

Source layout, the challenge's own (training and validation downloads alike)::

    SRC/BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,t1,t1ce,t2}.nii.gz  (+ _seg.nii.gz when labelled)

Files are found anywhere below SRC; ``.nii`` and ``.nii.gz`` are accepted. The nnU-Net case identifier is the
BraTS case name (``BraTS2021_XXXXX``). BraTS 2021 has one scan per patient, so nnU-Net's own 5-fold split is
already patient-grouped and no ``splits_final.json`` is written.

Why the GLI convention: a model or an evaluation set up for ``convert brats-gli`` must work unchanged on data
from this converter. So the channels are the GLI ones in the GLI order (t1n = T1, t1c = T1ce, t2w = T2,
t2f = FLAIR) and the labels mean the same: NETC 1, SNFH 2, ET 3. BraTS 2021 writes enhancing tumour as 4
(and has no 3 and no resection cavity), so label files are rewritten with 4 -> 3; images are copied (or
linked) byte for byte. ``export-brats --task brats-2021`` turns 3 back into 4 for submission files.

Region-based variant (``regions=True``): WT (1, 2, 3), TC (1, 3), ET (3) with ``regions_class_order``
(2, 1, 3), the GLI regions without RC, so the regions convert back to exactly the stored labels
(see :mod:`nnunet_ext.dataset_conversion.brats_gli`).
"""

from __future__ import annotations

import re
from pathlib import Path

from nnunet_ext.dataset_conversion.brats_gli import CHANNEL_NAMES
from nnunet_ext.dataset_conversion.raw_dataset import DatasetSpec, SourceCase, find_source_cases

#: the BraTS 2021 file keys in the GLI channel order: t1 = t1n, t1ce = t1c, t2 = t2w, flair = t2f
MODALITIES = ("t1", "t1ce", "t2", "flair")
SOURCE_LABELS = (0, 1, 2, 4)  # background, necrotic/non-enhancing core, oedema, enhancing tumour
#: BraTS 2021 label -> stored (GLI) label; labels not listed keep their value
TO_GLI = {4: 3}
LABELS = {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}
REGIONS = {"background": 0, "WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
REGIONS_CLASS_ORDER = (2, 1, 3)
CASE_PATTERN = re.compile(r"^(?P<case>BraTS2021_\d{5})_(?P<key>flair|t1|t1ce|t2|seg)\.nii(?:\.gz)?$")
CASE_NAME = re.compile(r"^BraTS2021_\d{5}$")
DEFAULT_NAME = "BraTS2021"


def find_cases(src: Path) -> list[SourceCase]:
    """All BraTS 2021 cases below ``src``; missing modalities are kept as expected paths to be reported."""
    return find_source_cases(src, "BraTS2021_*", CASE_PATTERN, MODALITIES, "seg", "_")


def dataset_spec(dataset_id: int, name: str = DEFAULT_NAME, regions: bool = False) -> DatasetSpec:
    return DatasetSpec(
        dataset_id=dataset_id, name=name, channel_names=CHANNEL_NAMES,
        labels=REGIONS if regions else LABELS, source_labels=SOURCE_LABELS, label_mapping=TO_GLI,
        regions_class_order=REGIONS_CLASS_ORDER if regions else None,
        description="BraTS 2021 adult glioma, converted by nnunet-ext to the BraTS-GLI 2024 channels and labels "
                    "(ET 4 -> 3)" + (" (region-based: WT, TC, ET)" if regions else ""),
        reference="Baid et al., arXiv:2107.02314 (BraTS 2021); Menze et al., IEEE TMI 34(10), 2015",
        licence="see the BraTS 2021 (RSNA-ASNR-MICCAI) data terms",
    )
