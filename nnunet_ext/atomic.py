"""Atomic file writes for the whole project: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def _ending(name: str) -> str:
    """``.nii.gz`` for ``x.nii.gz``, ``.png`` for ``x.png``: writers infer the format from the whole ending."""
    suffixes = Path(name).suffixes
    return "".join(suffixes[-2:]) if suffixes[-2:-1] == [".nii"] else "".join(suffixes[-1:])


def atomic_write(path: Path, write: Callable[[Path], None], scratch: Path | None = None) -> Path:
    """Call ``write(tmp)`` on a temporary file, then move it into place with ``os.replace``.

    The temporary file lies beside ``path`` (or in ``scratch``, a folder on the same file system, for folders
    that others list by file ending: a run killed mid-write leaves its temporary file there) and keeps
    ``path``'s ending, so writers that infer the format from the name (SimpleITK, matplotlib's ``savefig``)
    still work. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(scratch) if scratch is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    ending = _ending(path.name)
    stem = path.name[: len(path.name) - len(ending)]
    # a fresh name, not created here: the writer creates the file with the usual permissions
    tmp = folder / f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{ending}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
