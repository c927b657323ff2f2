"""Cross-validation splits that keep all cases of one patient in the same fold.

nnU-Net's default split (``generate_crossval_split``) is a plain KFold over case identifiers, so two time
points of one BraTS-GLI patient can land in training and validation of the same fold and inflate validation
scores. Here whole patients are dealt to folds instead; the result is written as ``splits_final.json`` into
``nnUNet_preprocessed/DatasetXXX_NAME/``, which nnU-Net's trainer reads instead of making its own split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nnunet_ext.dataset_conversion.files import write_json

N_FOLDS = 5


def grouped_splits(case_ids: Sequence[str], group_of: Callable[[str], str], n_folds: int = N_FOLDS,
                   seed: int = 12345) -> list[dict[str, list[str]]]:
    """``n_folds`` (fewer when there are fewer groups) train/val splits, no group in both parts of a fold.

    Groups are shuffled with ``seed`` (nnU-Net's default seed) and then dealt, largest first, to the fold
    that has the fewest cases so far, which keeps the validation parts balanced in case count.
    """
    groups: dict[str, list[str]] = {}
    for case_id in sorted(case_ids):
        groups.setdefault(group_of(case_id), []).append(case_id)
    if len(groups) < 2:
        raise ValueError(f"cannot build cross-validation splits from {len(groups)} patient(s); need at least 2")
    n_folds = min(n_folds, len(groups))
    names = sorted(groups)
    order = np.random.RandomState(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    shuffled.sort(key=lambda g: -len(groups[g]))  # stable: ties keep the shuffled order
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for group in shuffled:
        smallest = min(range(n_folds), key=lambda f: len(folds[f]))
        folds[smallest].extend(groups[group])
    splits = []
    for val in folds:
        held_out = set(val)
        splits.append({"train": sorted(c for c in case_ids if c not in held_out), "val": sorted(val)})
    return splits


def write_splits(splits: list[dict[str, list[str]]], preprocessed_root: Path, dataset_folder_name: str) -> Path:
    """Write ``splits_final.json`` where nnU-Net looks for it (creating the dataset's preprocessed folder)."""
    folder = Path(preprocessed_root) / dataset_folder_name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "splits_final.json"
    write_json(splits, path)
    return path
