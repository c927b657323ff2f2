"""What the caches remember of a file: size and modification time (ns), the cheap test that it is unchanged."""

from __future__ import annotations

from pathlib import Path


def size_and_mtime(path: Path) -> list[int]:
    """``[size in bytes, mtime in ns]`` of ``path`` (following links)."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def file_stamp(path: Path) -> list:
    """``[resolved path, size, mtime ns]``: a file's identity for a cache key."""
    return [str(Path(path).resolve()), *size_and_mtime(path)]
