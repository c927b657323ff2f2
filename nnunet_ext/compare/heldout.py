"""The held-out cases of a fold: nnU-Net's cross-validation split and the staging of their files.

nnU-Net itself writes ``splits_final.json`` when the first fold starts training; we write the very same
split (same function, same seed, sorted identifiers) *before* any training, so every method is trained and
evaluated on identical folds and prediction inputs can be staged up front.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from nnunet_ext.atomic import atomic_write_text


def dataset_cases(raw_dataset_folder: Path) -> dict[str, dict]:
    """``case -> {"images": [paths], "label": path}`` of a raw dataset, as nnU-Net reads it."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    folder = Path(raw_dataset_folder)
    if not (folder / "dataset.json").is_file():
        raise FileNotFoundError(f"{folder / 'dataset.json'}: missing; is {folder} an nnU-Net raw dataset?")
    return get_filenames_of_train_images_and_targets(str(folder))


def ensure_splits(preprocessed_dataset_folder: Path, cases: list[str], n_splits: int = 5) -> list[dict]:
    """Read ``splits_final.json`` or create it exactly as ``nnUNetTrainer.do_split`` would."""
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    path = Path(preprocessed_dataset_folder) / "splits_final.json"
    if path.is_file():
        return json.loads(path.read_text())
    if len(cases) < n_splits:
        raise ValueError(f"{len(cases)} training cases cannot make a {n_splits}-fold cross-validation; "
                         f"add cases or write your own {path}")
    splits = generate_crossval_split(sorted(cases), seed=12345, n_splits=n_splits)
    atomic_write_text(path, json.dumps(splits, indent=2))
    return splits


def held_out(splits: list[dict], fold: int, source: Path) -> list[str]:
    """Validation cases of ``fold`` (error naming the split file when the fold does not exist)."""
    if not 0 <= fold < len(splits):
        raise ValueError(f"fold {fold} is not in {source} ({len(splits)} folds)")
    return sorted(splits[fold]["val"])


def _link(src: Path, dst: Path) -> None:
    """Symlink ``dst`` -> ``src`` (copy where links are not allowed); never touches ``src``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(os.path.abspath(src), dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_cases(cases: dict[str, dict], wanted: list[str], file_ending: str, images_dest: Path,
                labels_dest: Path | None) -> None:
    """Link the images (as ``CASE_XXXX`` + ending, the names predictors expect) and labels (``CASE`` + ending,
    the names evaluators match) of ``wanted`` cases into fresh folders."""
    missing = [c for c in wanted if c not in cases]
    if missing:
        raise ValueError(f"cases {missing[:5]} of the split are not in the raw dataset")
    for dest in (images_dest, labels_dest):
        if dest is not None and Path(dest).exists():
            shutil.rmtree(dest)
    for case in wanted:
        for channel, image in enumerate(cases[case]["images"]):
            _link(Path(image), Path(images_dest) / f"{case}_{channel:04d}{file_ending}")
        if labels_dest is not None:
            label = Path(cases[case]["label"])
            if not label.is_file():
                raise FileNotFoundError(f"{label}: reference segmentation of case {case} is missing")
            _link(label, Path(labels_dest) / f"{case}{file_ending}")
