"""Earth mover's distance between images, with pixel centres as points (POT's exact solver).

The formulation is balanced: each image channel is normalized to total
weight 1 (z_i as in :mod:`.observables`), the optimal transport cost

    EMD(a, b) = min_f sum_ij f_ij d_ij,  sum_j f_ij = z^a_i,  sum_i f_ij = z^b_j,  f_ij >= 0,

is solved exactly with ``ot.emd2``, and the difference of the total
intensities is returned beside it rather than added to it. ``d_ij`` is the
Euclidean distance between pixel centres in the angular units of the image
(no wrap-around in azimuth). For two images of equal total, this EMD
divided by R equals the energy mover's distance of Komiske, Metodiev and
Thaler, "The metric space of collider events", PRL 123 (2019) 041801,
eq. (1), whose extra term |sum E - sum E'| is then zero.

Negative intensities count as zero. The EMD of an empty channel against a
non-empty one is NaN; two empty channels are 0 apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ot
from numpy.typing import ArrayLike, NDArray

from qcdtool.plugins.metrics.common.grid import PixelGrid

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ImageEmd:
    """EMD between paired images and the difference of their total intensities, each ``(n, C)``.

    ``intensity_difference`` is sum(a) - sum(b) per channel, negative
    intensities counted as zero.
    """

    emd: FloatArray
    intensity_difference: FloatArray


def ground_distance(grid: PixelGrid) -> FloatArray:
    """Return the ``(H * W, H * W)`` Euclidean distances between pixel centres, in ``ravel`` order."""
    points = grid.points()
    return np.ascontiguousarray(np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1)))


def _channel_rows(images: ArrayLike, grid: PixelGrid, name: str) -> tuple[FloatArray, tuple[int, int]]:
    """Reshape ``(n, C, H, W)`` into ``(n, C, H * W)`` float64 with negatives set to 0."""
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"{name} must have shape (n, C, H, W), got shape {array.shape}")
    if array.shape[-2:] != grid.shape:
        raise ValueError(f"{name} are {array.shape[2]}x{array.shape[3]} pixels but the grid is {grid.shape}")
    n, channels = array.shape[:2]
    return np.clip(array.reshape(n, channels, -1).astype(np.float64), 0.0, None), (n, channels)


def _emd_pair(a: FloatArray, b: FloatArray, cost: FloatArray) -> float:
    """Balanced EMD between two non-negative pixel rows, solved on their supports only."""
    total_a, total_b = a.sum(), b.sum()
    if total_a == 0.0 and total_b == 0.0:
        return 0.0
    if total_a == 0.0 or total_b == 0.0:
        return float("nan")
    support_a = np.flatnonzero(a)
    support_b = np.flatnonzero(b)
    cost_ab = np.ascontiguousarray(cost[np.ix_(support_a, support_b)])
    return float(ot.emd2(a[support_a] / total_a, b[support_b] / total_b, cost_ab))


def image_emd(images_a: ArrayLike, images_b: ArrayLike, grid: PixelGrid) -> ImageEmd:
    """Compute the EMD between ``images_a[k]`` and ``images_b[k]`` for each k and channel.

    Both arrays have shape ``(n, C, H, W)``. One linear program is solved
    per image and channel in a Python loop, because ``ot.emd2`` takes one
    source histogram per call. Each is restricted to the pixels with
    non-zero intensity, so sparse images solve much faster than dense ones.
    """
    a, (n, channels) = _channel_rows(images_a, grid, "images_a")
    b, shape_b = _channel_rows(images_b, grid, "images_b")
    if shape_b != (n, channels):
        raise ValueError(
            f"images_a has {n} images of {channels} channels "
            f"but images_b has {shape_b[0]} images of {shape_b[1]} channels"
        )
    cost = ground_distance(grid)
    emd = np.empty((n, channels))
    for k in range(n):
        for c in range(channels):
            emd[k, c] = _emd_pair(a[k, c], b[k, c], cost)
    return ImageEmd(emd=emd, intensity_difference=a.sum(axis=2) - b.sum(axis=2))


def emd_to_references(images: ArrayLike, references: ArrayLike, grid: PixelGrid) -> FloatArray:
    """Return the EMD from each image to each reference image, summed over channels, shape ``(n, K)``.

    ``images`` has shape ``(n, C, H, W)`` and ``references`` ``(K, C, H, W)``.
    For each image and channel, one call of ``ot.emd2`` solves against all
    K references at once.
    """
    x, (n, channels) = _channel_rows(images, grid, "images")
    refs, (n_refs, ref_channels) = _channel_rows(references, grid, "references")
    if ref_channels != channels:
        raise ValueError(f"images have {channels} channels but references have {ref_channels}")
    cost = ground_distance(grid)

    # 1. Normalize the references; an empty reference channel gets NaN distances.
    ref_totals = refs.sum(axis=2)
    ref_z = np.divide(refs, ref_totals[..., None], out=np.zeros_like(refs), where=ref_totals[..., None] > 0.0)

    # 2. Solve each image channel against all K reference channels at once.
    distances = np.zeros((n, n_refs))
    for c in range(channels):
        empty_ref = ref_totals[:, c] == 0.0
        targets = np.ascontiguousarray(ref_z[:, c, :].T)
        for k in range(n):
            total = x[k, c].sum()
            if total == 0.0:
                distances[k] += np.where(empty_ref, 0.0, np.nan)
                continue
            support = np.flatnonzero(x[k, c])
            cost_k = np.ascontiguousarray(cost[support])
            row = np.full(n_refs, np.nan)
            if np.any(~empty_ref):
                solved = ot.emd2(x[k, c, support] / total, targets[:, ~empty_ref], cost_k)
                row[~empty_ref] = np.asarray(solved, dtype=np.float64)
            distances[k] += row
    return distances
