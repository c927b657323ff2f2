"""The project's one image reader: a file is read completely or fails with an error naming it.

SimpleITK's NIfTI reader returns whatever it could decompress from a cut-off ``.nii.gz`` (and reads a short
``.nii`` as well), without any error: a truncated reference then scores as a tiny tumour, a truncated
segmentation is post-processed into an empty one. nibabel notices, but raises a bare ``EOFError`` that names
no file. So every reader of image files in ``nnunet_ext`` goes through :func:`read_image` or
:func:`read_voxels`, which first run :func:`check_complete`: the whole gzip stream is decompressed (its
end-of-stream marker, length and CRC checked) and a NIfTI file must hold every voxel byte its header declares.
Where files are handed to nnU-Net's own readers (planning, prediction, ``read_seg``), call
:func:`check_complete` on them first (``nnunet_ext.case_checks`` does it for raw datasets and inputs).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

PathLike = str | Path
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


class ImageReadError(ValueError):
    """An image file that cannot be read completely; ``str()`` is ``"<file>: <reason>"``."""

    def __init__(self, path: PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument constructor
        return type(self), (self.path, self.reason)


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def _content_length(path: Path) -> int:
    """Bytes of the file's content: the decompressed length for gzip files (decompressing all of it)."""
    if not _is_gzip(path):
        return path.stat().st_size
    try:
        length = 0
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                length += len(chunk)
        return length
    except EOFError:
        raise ImageReadError(path, "is truncated: the compressed data end before the end of the gzip stream "
                                   "(an interrupted download, copy or write?)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise ImageReadError(path, f"is corrupt: its gzip stream does not decompress ({error})") from None


def _nifti_data_end(path: Path) -> int:
    """Where the voxel data of a NIfTI file end according to its header (offset + voxels x bytes per voxel)."""
    import nibabel
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    try:
        proxy = nibabel.load(str(path)).dataobj
    except (ImageFileError, HeaderDataError, EOFError, ValueError, zlib.error) as error:
        raise ImageReadError(path, f"cannot be read as NIfTI ({type(error).__name__}: "
                                   f"{str(error).strip()[-200:]})") from None
    return int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * np.dtype(proxy.dtype).itemsize


def check_complete(path: PathLike) -> None:
    """Raise :class:`ImageReadError` unless ``path`` exists and is complete (see the module docstring).

    Costs one decompression of the file (about 0.1 s for a BraTS-sized volume).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file is missing")
    try:
        length = _content_length(path)  # first: a truncated stream gets its own message
        needed = _nifti_data_end(path) if _is_nifti(path) else 0
    except OSError as error:
        raise ImageReadError(path, f"cannot be read ({error.strerror or error})") from None
    if length < needed:
        raise ImageReadError(path, f"is truncated: holds {length} bytes, its NIfTI header declares {needed}")


def incomplete_files(paths: Iterable[PathLike]) -> list[str]:
    """``"<file>: <reason>"`` for each of ``paths`` that :func:`check_complete` rejects: check every input first."""
    problems = []
    for path in paths:
        try:
            check_complete(path)
        except ImageReadError as error:
            problems.append(str(error))
    return problems


def read_image(path: PathLike) -> sitk.Image:
    """The complete image as a SimpleITK image (geometry included), or :class:`ImageReadError`."""
    check_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        raise ImageReadError(path, f"cannot be read as an image ({lines[-1] if lines else 'unknown error'})") from None


def read_label_image(path: PathLike) -> sitk.Image:
    """The complete image of a label map: one 3D single-channel image, or :class:`ImageReadError` naming the file."""
    image = read_image(path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(path, f"expected a 3D single-channel label map, got {image.GetDimension()}D with "
                                   f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel")
    return image


def read_voxels(path: PathLike) -> np.ndarray:
    """The voxel array exactly as stored (for value checks; axis order is the reader's).

    NIfTI files are read with nibabel: ITK's NIfTI reader silently turns NaN voxels into 0, so SimpleITK
    (and therefore nnU-Net's own NaN check) never sees them, while other tools reading the same file do.
    """
    path = Path(path)
    if not _is_nifti(path):
        return sitk.GetArrayFromImage(read_image(path))
    check_complete(path)
    import nibabel

    try:
        return np.asanyarray(nibabel.load(str(path)).dataobj)
    except (OSError, EOFError, ValueError) as error:
        raise ImageReadError(path, f"voxel data cannot be read ({str(error).strip()[-200:]})") from None
