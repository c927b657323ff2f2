"""Which slices of which preprocessed volume hold foreground, along each axis: the sampler's only state.

Built once from nnU-Net's preprocessed segmentations (read through nnU-Net's dataset class) and cached as a
small pickle beside the preprocessed data folder (a few bytes per slice; no image data is copied). A cache
entry is reused while the case's preprocessed ``.pkl`` keeps its size and modification time, so
re-preprocessing a case refreshes its entry.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nnunet_ext.atomic import atomic_write

CACHE_VERSION = 1


@dataclass(frozen=True)
class SliceIndex:
    """Slices as rows ``(case, axis, index)``; ``case`` indexes ``identifiers``."""

    identifiers: tuple[str, ...]
    foreground: np.ndarray  # (n_fg, 3) int32
    empty: np.ndarray  # (n_empty, 3) int32


def foreground_flags(seg: np.ndarray, ignore_label: int | None) -> list[np.ndarray]:
    """Per spatial axis of a (1, X, Y, Z) segmentation: does slice i contain a label > 0 (not ignore)?"""
    fg = np.asarray(seg[0]) > 0
    if ignore_label is not None:
        fg &= np.asarray(seg[0]) != ignore_label
    return [fg.any(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3)]


def _stamp(folder: Path, identifier: str) -> tuple[int, int]:
    stat = (folder / f"{identifier}.pkl").stat()
    return stat.st_size, stat.st_mtime_ns


def _load_cache(cache_file: Path, ignore_label: int | None) -> dict:
    try:
        with open(cache_file, "rb") as f:
            cache = pickle.load(f)
    except (FileNotFoundError, EOFError, pickle.UnpicklingError):
        return {}
    if cache.get("version") != CACHE_VERSION or cache.get("ignore_label") != ignore_label:
        return {}
    return cache.get("cases", {})


def _save_cache(cache_file: Path, cases: dict, ignore_label: int | None) -> None:
    content = pickle.dumps({"version": CACHE_VERSION, "ignore_label": ignore_label, "cases": cases})
    atomic_write(cache_file, lambda tmp: tmp.write_bytes(content))


def build_slice_index(dataset, axes: list[int], ignore_label: int | None, cache_file: Path) -> SliceIndex:
    """Foreground/empty slice lists of ``dataset`` (an nnU-Net dataset object) along ``axes``."""
    folder = Path(dataset.source_folder)
    identifiers = tuple(dataset.identifiers)
    if not identifiers:
        raise ValueError(f"{folder}: no preprocessed cases to sample slices from")
    cache = _load_cache(cache_file, ignore_label)
    changed = False
    for identifier in tqdm(identifiers, desc="indexing foreground slices", unit="case",
                           disable=len(identifiers) < 50):
        stamp = _stamp(folder, identifier)
        if identifier in cache and cache[identifier]["stamp"] == stamp:
            continue
        _, seg, _, _ = dataset.load_case(identifier)
        cache[identifier] = {"stamp": stamp, "flags": [np.packbits(f) for f in foreground_flags(seg[:], ignore_label)],
                             "shape": tuple(int(s) for s in seg.shape[1:])}
        changed = True
    if changed:
        _save_cache(cache_file, cache, ignore_label)
    rows_fg, rows_empty = [], []
    for case, identifier in enumerate(identifiers):
        entry = cache[identifier]
        for axis in axes:
            flags = np.unpackbits(entry["flags"][axis], count=entry["shape"][axis]).astype(bool)
            idx = np.arange(flags.size, dtype=np.int32)
            for rows, selected in ((rows_fg, idx[flags]), (rows_empty, idx[~flags])):
                rows.append(np.stack([np.full_like(selected, case), np.full_like(selected, axis), selected], 1))
    return SliceIndex(identifiers, np.concatenate(rows_fg).astype(np.int32),
                      np.concatenate(rows_empty).astype(np.int32))
