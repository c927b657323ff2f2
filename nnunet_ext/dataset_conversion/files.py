"""Atomic, idempotent file output for the converters: nothing half-written ever carries a final name.

Every output is first written to a ``.partial`` folder beside its destination and moved into place with
``os.replace`` (atomic on one file system), so an interrupted run leaves either the old file or the new one
and nnU-Net, which lists ``imagesTr`` by suffix, never sees a temporary file. A small JSON manifest records
how each output was made (recipe + source file stats) so a re-run skips outputs that are already correct.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from nnunet_ext.atomic import atomic_write, atomic_write_text
from nnunet_ext.utils.file_stamp import file_stamp, size_and_mtime

PARTIAL = ".partial"


def remove_partials(folders: list[Path]) -> None:
    """Delete the ``.partial`` scratch folder of each output folder (once no worker is writing any more).

    They only ever hold our own unfinished temporary files, e.g. from an interrupted run.
    """
    for folder in folders:
        partial = Path(folder) / PARTIAL
        if partial.is_dir():
            shutil.rmtree(partial)


def _write(dst: Path, write: Callable[[Path], None]) -> None:
    atomic_write(dst, write, scratch=dst.parent / PARTIAL)


def write_image(image: sitk.Image, dst: Path) -> None:
    """Write ``image`` to ``dst`` atomically (compressed when the name ends in .gz)."""
    _write(dst, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=dst.name.endswith(".gz")))


def copy_file(src: Path, dst: Path) -> None:
    """Byte-exact copy of ``src`` to ``dst``, atomically."""
    _write(dst, lambda tmp: shutil.copyfile(src, tmp))


def symlink_file(src: Path, dst: Path) -> None:
    """Absolute symlink ``dst`` -> ``src``, atomically replacing whatever ``dst`` was."""
    _write(dst, lambda tmp: tmp.symlink_to(src.resolve()))


def write_json(data: Any, dst: Path) -> None:
    """Pretty JSON written atomically (beside ``dst``: no ``.partial`` folder is left where it is written)."""
    atomic_write_text(dst, json.dumps(data, indent=2, sort_keys=False) + "\n")


def fingerprint(recipe: dict[str, Any], sources: list[Path]) -> str:
    """Hash of how an output is made: the recipe and each source's resolved path, size and mtime."""
    blob = json.dumps({"recipe": recipe, "sources": [file_stamp(src) for src in sources]}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def output_state(dst: Path) -> list[Any] | None:
    """What the manifest remembers of an output (link target or size + mtime), None when it does not exist."""
    if dst.is_symlink():
        return ["link", os.readlink(dst)]
    if not dst.is_file():
        return None
    return ["file", *size_and_mtime(dst)]


class Manifest:
    """``{output relative path: [fingerprint, output state]}`` stored as JSON in the dataset folder."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, list[Any]] = json.loads(path.read_text()) if path.is_file() else {}

    def is_current(self, key: str, print_: str, dst: Path) -> bool:
        """True when ``dst`` was made from the same recipe and sources and has not been touched since."""
        entry = self.entries.get(key)
        return entry is not None and entry[0] == print_ and self.is_unchanged(key, dst)

    def is_unchanged(self, key: str, dst: Path) -> bool:
        """True when ``dst`` exists and is still exactly what was recorded (ours to replace or remove)."""
        entry = self.entries.get(key)
        return entry is not None and entry[1] is not None and entry[1] == output_state(dst)

    def record(self, key: str, print_: str, dst: Path) -> None:
        self.entries[key] = [print_, output_state(dst)]

    def save(self) -> None:
        write_json(self.entries, self.path)
