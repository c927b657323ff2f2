"""Atomic file writes for the whole project: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import glob
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

_TEMPORARY = re.compile(r"^\.(?P<stem>.*)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(?P<ending>.*)$")


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
    tmp = folder / f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{ending}"  # see _TEMPORARY
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed and not yet reaped, does not: read from /proc on Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def remove_stale_temporaries(path: Path, scratch: Path | None = None) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` of ``path`` left behind (beside it, or in ``scratch``)
    in processes that no longer run, i.e. were killed mid-write; returns them. A running writer's are kept."""
    path = Path(path)
    ending = _ending(path.name)
    stem = path.name[: len(path.name) - len(ending)]
    folder = Path(scratch) if scratch is not None else path.parent
    removed = []
    for tmp in folder.glob(f".{glob.escape(stem)}.*.tmp{glob.escape(ending)}"):
        match = _TEMPORARY.match(tmp.name)
        if match and match["stem"] == stem and match["ending"] == ending and not _running(int(match["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
