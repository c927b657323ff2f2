"""Surface distances and the robust Hausdorff distance exactly as the BraTS scorers compute them.

The organisers use DeepMind's ``surface_distance``: surface elements ("surfels") sit on the corners between voxels,
each weighted by its area from a marching-cubes table; HD95 is the area-weighted 95th percentile of the closest
distances in each direction (``searchsorted`` on the cumulative area), and the larger direction wins. We take the
area table from that package (a dependency) and compute the rest here so that it is cropped to the bounding box,
works with NumPy 2, and reproduces what the 2024 scorer does when it is handed lesion-id maps instead of masks:
neighbour codes are then the value-weighted sums modulo 256 (uint8 wrap-around in the original).

Arrays are in (x, y, z) order with ``spacing`` (sx, sy, sz), like the scorer's nibabel arrays: the area table is
not symmetric under axis permutations for ambiguous marching-cubes configurations, so the order matters.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage
from surface_distance import lookup_tables

_KERNEL = np.asarray(lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, dtype=np.int64)


@functools.lru_cache(maxsize=16)
def _surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    return lookup_tables.create_table_neighbour_code_to_surface_area(spacing)


def bounding_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every non-zero voxel, grown by ``pad`` and clipped to the array."""
    coords = [np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
              for axis in range(mask.ndim)]
    if coords[0].size == 0:
        return None
    return tuple(slice(max(int(c[0]) - pad, 0), min(int(c[-1]) + 1 + pad, size)) for c, size in zip(coords, mask.shape))


def _neighbour_codes(values: np.ndarray) -> np.ndarray:
    """2x2x2 neighbour code at every voxel corner of a box padded by one zero voxel on the high side.

    Values enter modulo 256 and codes are taken modulo 256, which is what the original's uint8 arrays do.
    """
    padded = np.zeros(tuple(s + 1 for s in values.shape), dtype=np.uint16)
    padded[:-1, :-1, :-1] = values & 0xFF
    return ndimage.correlate(padded, _KERNEL, mode="constant", cval=0) & 0xFF


def surface_distances(
    reference: np.ndarray, prediction: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closest distances (mm) and surfel areas: (ref->pred, ref areas, pred->ref, pred areas), each sorted.

    Inputs are masks or lesion-id maps (non-zero = foreground). A side without surface gets infinite distances
    from the other side, as in the original. Distance maps are Euclidean distance transforms of the bounding box.
    """
    spacing = tuple(float(s) for s in spacing)
    box = bounding_box((reference != 0) | (prediction != 0))
    if box is None:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    codes = [_neighbour_codes(np.asarray(values[box], dtype=np.int64)) for values in (reference, prediction)]
    borders = [(c != 0) & (c != 0xFF) for c in codes]
    distance_maps = [
        ndimage.distance_transform_edt(~b, sampling=spacing) if b.any() else np.full(b.shape, np.inf) for b in borders
    ]
    table = _surfel_area_table(spacing)
    ref_to_pred, ref_areas = _sorted(distance_maps[1][borders[0]], table[codes[0][borders[0]]])
    pred_to_ref, pred_areas = _sorted(distance_maps[0][borders[1]], table[codes[1][borders[1]]])
    return ref_to_pred, ref_areas, pred_to_ref, pred_areas


def _sorted(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # The original sorts (distance, area) tuples; the same lexicographic order keeps the cumulative sums identical.
    order = np.lexsort((areas, distances))
    return distances[order], areas[order]


def _percentile_distance(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if distances.size == 0:
        return math.inf
    cumulative = np.cumsum(areas) / np.sum(areas)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(index, distances.size - 1)])


def robust_hausdorff(
    reference: np.ndarray, prediction: np.ndarray, spacing: tuple[float, float, float], percent: float = 95.0
) -> float:
    """Area-weighted ``percent`` Hausdorff distance in mm; ``inf`` when one side (or both) has no surface."""
    ref_to_pred, ref_areas, pred_to_ref, pred_areas = surface_distances(reference, prediction, spacing)
    return max(
        _percentile_distance(ref_to_pred, ref_areas, percent), _percentile_distance(pred_to_ref, pred_areas, percent)
    )
