"""Synthetic BraTS-GLI 2024 and BraTS-MEN-RT 2024 cases with the challenges' naming and geometry conventions.

Why synthetic: the real data cannot ship with the project, but the demo, the tests and the converters need
cases that look like the downloads (file names, folder layout, grids, dtypes) and that a network can only
segment by learning the MRI contrasts, not by thresholding one channel:

* GLI: four co-registered modalities (t1n, t1c, t2w, t2f) on the SRI24-like 240x240x155 1 mm grid,
  skull-stripped; white/grey matter, ventricles, a tumour with enhancing rim (ET, bright on T1c only),
  necrotic core (NETC, dark on T1c, bright on T2), surrounding oedema (SNFH, bright on T2/FLAIR) and, in
  some cases, a resection cavity (RC, fluid: dark on T1/T1c/FLAIR, very bright on T2). The ventricles are
  CSF too, so RC must be told apart by shape and context, and oedema vs. CSF by FLAIR.
* MEN-RT: one T1c in a native-like grid (anisotropic spacing, oblique direction, scanner origin), skull NOT
  removed (bright marrow and scalp fat, dark cortical bone) and an enhancing dural-based mass with a
  non-labelled dural tail; label file ``_gtv``. Bright marrow competes with the enhancing tumour.

Everything is vectorised numpy (smooth random fields are upsampled coarse noise), so a full-size GLI case
takes a few seconds. Arrays are handled in SimpleITK order (z, y, x); ``shape`` arguments are (X, Y, Z) as
on the command line and in the image headers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.files import remove_partials, write_image
from nnunet_ext.utils.pool import map_cases

GLI_MODALITIES = ("t1n", "t1c", "t2w", "t2f")
GLI_SHAPE = (240, 240, 155)
# SRI24 as stored in the BraTS NIfTI files, seen through SimpleITK (LPS): identity direction, this origin
GLI_ORIGIN = (0.0, -239.0, 0.0)
MEN_RT_SHAPE = (256, 256, 112)
MEN_RT_SPACING = (0.9375, 0.9375, 1.5)

# relative intensity of each tissue per modality (white matter = 1 on T1); rows follow _GLI_TISSUES
_GLI_TISSUES = ("background", "wm", "gm", "csf", "snfh", "netc", "et", "rc")
_GLI_CONTRAST = {
    #        bg   wm    gm    csf   snfh  netc  et    rc
    "t1n": (0.0, 1.00, 0.78, 0.30, 0.70, 0.60, 0.75, 0.25),
    "t1c": (0.0, 1.00, 0.80, 0.32, 0.72, 0.50, 1.70, 0.25),
    "t2w": (0.0, 0.55, 0.75, 1.70, 1.15, 1.25, 0.95, 1.75),
    "t2f": (0.0, 0.65, 0.85, 0.25, 1.45, 1.10, 1.05, 0.45),
}
_GLI_SCALE = {"t1n": 800.0, "t1c": 1100.0, "t2w": 1500.0, "t2f": 600.0}


def _grid(shape_zyx: tuple[int, ...]) -> list[np.ndarray]:
    """Open (broadcastable) index grids, as float32, for the three array axes."""
    return [g.astype(np.float32) for g in np.ogrid[tuple(slice(0, s) for s in shape_zyx)]]


def _linear_upsampling(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of linear interpolation weights, end points aligned."""
    position = np.linspace(0, n_in - 1, n_out, dtype=np.float32)[:, None]
    return np.maximum(0, 1 - np.abs(position - np.arange(n_in, dtype=np.float32)[None]))


def smooth_field(rng: np.random.Generator, shape_zyx: tuple[int, int, int], cells: int = 6) -> np.ndarray:
    """Zero-mean, unit-ish smooth random field: coarse Gaussian noise, trilinearly upsampled.

    The upsampling is separable, one matrix product per axis, which is ~20x faster than ``scipy.ndimage.zoom``
    on a 240x240x155 grid.
    """
    nz, ny, nx = shape_zyx
    cz, cy, cx = (max(2, min(cells, s)) for s in shape_zyx)
    field = rng.standard_normal((cz, cy, cx)).astype(np.float32)
    field = field @ _linear_upsampling(nx, cx).T  # (cz, cy, nx)
    field = np.einsum("yj,zjx->zyx", _linear_upsampling(ny, cy), field)  # (cz, ny, nx)
    return (_linear_upsampling(nz, cz) @ field.reshape(cz, -1)).reshape(nz, ny, nx)


def _ellipsoid_distance(grids: list[np.ndarray], centre, radii) -> np.ndarray:
    """Normalised ellipsoid distance (1 on the surface) on the given grids."""
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) ** 0.5


def _to_image(array: np.ndarray, spacing, origin, direction) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    return image


def gli_label_map(rng: np.random.Generator, shape_zyx: tuple[int, int, int], cavity: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Tissue index map (see ``_GLI_TISSUES``) and the BraTS-GLI label map (NETC 1, SNFH 2, ET 3, RC 4)."""
    grids = _grid(shape_zyx)
    z, y, x = (np.asarray(shape_zyx, dtype=np.float32) - 1) / 2
    size = np.asarray(shape_zyx, dtype=np.float32)
    brain_r = np.array([0.40, 0.44, 0.36]) * size
    brain_d = _ellipsoid_distance(grids, (z, y, x), brain_r) + 0.06 * smooth_field(rng, shape_zyx, 5)
    brain = brain_d < 1.0
    tissue = np.zeros(shape_zyx, dtype=np.uint8)
    cortex = brain_d + 0.10 * smooth_field(rng, shape_zyx, 12) > 0.78
    tissue[brain] = 1
    tissue[brain & cortex] = 2
    # two ventricles, mirror images across the mid-sagittal plane (x)
    for side in (-1, 1):
        vent = _ellipsoid_distance(grids, (z + 0.05 * size[0], y, x + side * 0.06 * size[2]),
                                   np.array([0.10, 0.16, 0.035]) * size)
        tissue[vent < 1.0] = 3
    # tumour centre inside one hemisphere, away from the brain surface
    side = rng.choice([-1, 1])
    centre = (z + rng.uniform(-0.12, 0.12) * size[0], y + rng.uniform(-0.18, 0.18) * size[1],
              x + side * rng.uniform(0.14, 0.22) * size[2])
    radius = rng.uniform(0.06, 0.10) * size.mean()
    warp = 0.18 * smooth_field(rng, shape_zyx, 8)
    tumour_d = _ellipsoid_distance(grids, centre, radius * rng.uniform(0.8, 1.2, 3)) + warp
    oedema_d = _ellipsoid_distance(grids, centre, radius * rng.uniform(1.6, 2.3, 3)) \
        + 0.35 * smooth_field(rng, shape_zyx, 10)
    core = rng.uniform(0.65, 0.85)  # the enhancing rim is the outer 15-35 % of the tumour radius
    label = np.zeros(shape_zyx, dtype=np.uint8)
    label[(oedema_d < 1.0) & (tissue != 3)] = 2
    label[tumour_d < 1.0] = 3
    label[tumour_d < core] = 1
    if cavity:
        # resected part of the tumour, shifted towards the brain surface; the rest of the tumour stays
        offset = np.asarray(centre) - np.array([z, y, x])
        cav_centre = np.asarray(centre) + 0.6 * radius * offset / np.linalg.norm(offset)
        cav_d = _ellipsoid_distance(grids, cav_centre, radius * rng.uniform(0.7, 1.0, 3)) \
            + 0.08 * smooth_field(rng, shape_zyx, 8)
        label[cav_d < 1.0] = 4
    label[~brain] = 0
    tissue[label == 2] = 4
    tissue[label == 1] = 5
    tissue[label == 3] = 6
    tissue[label == 4] = 7
    return tissue, label


def make_gli_case(seed: int, shape: tuple[int, int, int] = GLI_SHAPE, cavity: bool | None = None,
                  ) -> dict[str, sitk.Image]:
    """One synthetic BraTS-GLI case: ``{"t1n", "t1c", "t2w", "t2f": int16 images, "seg": uint8 labels}``.

    ``cavity=None`` draws a resection cavity with probability 1/2. Grid: 1 mm, identity direction, SRI24-like
    origin, as in the BraTS 2024 release (all files of a case share it).
    """
    rng = np.random.default_rng(seed)
    shape_zyx = tuple(int(s) for s in shape[::-1])
    cavity = bool(rng.random() < 0.5) if cavity is None else cavity
    tissue, label = gli_label_map(rng, shape_zyx, cavity)
    brain = tissue > 0
    geometry = ((1.0, 1.0, 1.0), GLI_ORIGIN, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    case = {}
    for modality in GLI_MODALITIES:
        contrast = np.asarray(_GLI_CONTRAST[modality], dtype=np.float32)
        bias = 1.0 + 0.08 * smooth_field(rng, shape_zyx, 3)
        texture = 0.04 * smooth_field(rng, shape_zyx, 24)
        noise = rng.standard_normal(shape_zyx, dtype=np.float32) * 0.05
        value = (contrast[tissue] + texture + noise) * bias * _GLI_SCALE[modality]
        value[~brain] = 0
        case[modality] = _to_image(np.clip(value, 0, 32767).astype(np.int16), *geometry)
    case["seg"] = _to_image(label, *geometry)
    return case


def _oblique_direction(rng: np.random.Generator, max_degrees: float = 12.0) -> np.ndarray:
    """A random rotation of a few degrees about each axis: a tilted head in scanner coordinates."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_degrees, max_degrees, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_men_rt_case(seed: int, shape: tuple[int, int, int] = MEN_RT_SHAPE,
                     spacing: tuple[float, float, float] = MEN_RT_SPACING) -> dict[str, sitk.Image]:
    """One synthetic BraTS-MEN-RT case: ``{"t1c": int16 image with skull, "gtv": uint8 label (GTV 1)}``.

    Anatomy is built in millimetres on the voxel grid, so anisotropic spacing keeps the head round; the
    direction is a random oblique rotation and the origin puts the head centre near the scanner isocentre.
    """
    rng = np.random.default_rng(seed)
    shape_zyx = tuple(int(s) for s in shape[::-1])
    spacing_zyx = np.asarray(spacing[::-1], dtype=np.float32)
    extent = np.asarray(shape_zyx) * spacing_zyx
    grids = [g * s for g, s in zip(_grid(shape_zyx), spacing_zyx)]  # mm
    centre = extent / 2 + rng.uniform(-0.04, 0.04, 3) * extent
    head_r = np.minimum(np.array([0.46, 0.44, 0.38]) * extent[[0, 1, 2]], [95.0, 105.0, 80.0])
    head_d = _ellipsoid_distance(grids, centre, head_r) + 0.015 * smooth_field(rng, shape_zyx, 4)
    thickness = 6.0 / head_r.min()  # ~6 mm per layer, in normalised distance
    scalp, marrow, bone = head_d < 1.0, head_d < 1.0 - thickness, head_d < 1.0 - 1.6 * thickness
    intracranial = head_d < 1.0 - 2.2 * thickness
    value = np.zeros(shape_zyx, dtype=np.float32)
    value[scalp] = 0.75  # skin and subcutaneous fat
    value[marrow] = 1.20  # diploe: fatty marrow is bright on T1, close to the enhancing tumour
    value[bone & ~intracranial] = 0.08  # inner table
    brain_texture = 0.62 + 0.10 * (smooth_field(rng, shape_zyx, 14) > 0)
    value[intracranial] = brain_texture[intracranial]
    value[intracranial & (head_d > 1.0 - 2.5 * thickness)] = 0.25  # CSF rim between brain and dura
    # meningioma: dural based, on the inner skull surface in a random upper direction, growing inward
    direction = rng.standard_normal(3)
    direction[0] = abs(direction[0]) + 0.3
    direction /= np.linalg.norm(direction)
    surface = centre + direction * head_r * (1.0 - 2.2 * thickness)
    radius = rng.uniform(8.0, 18.0)
    warp = 0.12 * smooth_field(rng, shape_zyx, 8)
    mass = (_ellipsoid_distance(grids, surface, radius * rng.uniform(0.8, 1.2, 3)) + warp < 1.0) & intracranial
    tail = (_ellipsoid_distance(grids, surface, np.array([2.5 * radius] * 3)) < 1.0) & intracranial \
        & (head_d > 1.0 - 2.6 * thickness) & ~mass
    value[tail] = 1.05  # enhancing dural tail: bright, but not part of the GTV
    value[mass] = 1.30 + 0.12 * smooth_field(rng, shape_zyx, 16)[mass]
    # a few enhancing vessels/sinuses: bright tubes that are not tumour either
    for _ in range(3):
        point = centre + rng.uniform(-0.5, 0.5, 3) * head_r
        axis = rng.integers(0, 3)
        dist = sum(((g - p) ** 2 for i, (g, p) in enumerate(zip(grids, point)) if i != axis)) ** 0.5
        value[(dist < 1.5) & intracranial & ~mass] = 1.2
    bias = 1.0 + 0.12 * smooth_field(rng, shape_zyx, 3)
    noise = rng.standard_normal(shape_zyx, dtype=np.float32) * 0.04
    value = np.abs(value * bias + noise * (value > 0) + 0.01 * noise) * 900.0  # Rician-like floor outside
    direction_matrix = _oblique_direction(rng)
    size_xyz = np.asarray(shape, dtype=np.float64)
    origin = -direction_matrix @ ((size_xyz - 1) / 2 * np.asarray(spacing)) + rng.uniform(-10, 10, 3)
    geometry = (spacing, origin, direction_matrix.ravel())
    return {"t1c": _to_image(np.clip(value, 0, 32767).astype(np.int16), *geometry),
            "gtv": _to_image(mass.astype(np.uint8), *geometry)}


def gli_case_id(index: int) -> str:
    """``BraTS-GLI-XXXXX-YYY``: two time points per patient (patient = index // 2), like follow-up scans."""
    return f"BraTS-GLI-{index // 2:05d}-{index % 2:03d}"


def men_rt_case_id(index: int) -> str:
    """``BraTS-MEN-RT-XXXX-1``: one planning scan per patient."""
    return f"BraTS-MEN-RT-{index + 1:04d}-1"


def _write_case(job: tuple[str, int, int, tuple[int, int, int] | None, Path, bool]) -> tuple[str, bool]:
    """Write one case (task, index, seed, shape, out, labelled); returns its id and whether its label map came out
    empty (a grid too small)."""
    task, index, seed, shape, out, labelled = job
    if task == "gli":
        case_id = gli_case_id(index)
        images = make_gli_case(seed + index, shape or GLI_SHAPE)
        names = {key: f"{case_id}-{key}.nii.gz" for key in images}
        label_key = "seg"
    else:
        case_id = men_rt_case_id(index)
        images = make_men_rt_case(seed + index, shape or MEN_RT_SHAPE)
        names = {key: f"{case_id}_{key}.nii.gz" for key in images}
        label_key = "gtv"
    folder = out / case_id
    folder.mkdir(parents=True, exist_ok=True)
    for key, image in images.items():
        if key != label_key or labelled:
            write_image(image, folder / names[key])
    return case_id, not sitk.GetArrayViewFromImage(images[label_key]).any()


def write_demo_dataset(out: Path, task: str, n: int, shape: tuple[int, int, int] | None = None, seed: int = 0,
                       n_unlabelled: int = 0, num_workers: int = 1) -> list[str]:
    """Write ``n`` cases in the challenge's download layout (one folder per case) and return their ids.

    The last ``n_unlabelled`` cases get no label file, like the validation downloads.
    """
    if task not in ("gli", "men-rt"):
        raise ValueError(f"unknown task {task!r}; expected 'gli' or 'men-rt'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(task, i, seed, shape, out, i < n - n_unlabelled) for i in range(n)]
    written = list(map_cases(_write_case, jobs, num_workers, f"demo {task}"))
    ids = [case_id for case_id, _ in written]
    remove_partials([out / case_id for case_id in ids])
    empty = [case_id for (case_id, is_empty), job in zip(written, jobs) if is_empty and job[-1]]
    if empty:
        grid = " ".join(map(str, shape or (GLI_SHAPE if task == "gli" else MEN_RT_SHAPE)))
        logging.getLogger(__name__).warning(
            "warning: %d of %d labelled cases have an empty label map (no tumour fits the %s grid): %s; use a "
            "larger --shape, e.g. 48 48 32", len(empty), n - n_unlabelled, grid,
            ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else ""))
    return ids
