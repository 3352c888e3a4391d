"""Jet observables computed from images, vectorized over images and channels.

Each pixel stands for one particle at the pixel centre, with the pixel's
intensity as its momentum (or energy) share. Every function takes images of
shape ``(n, C, H, W)`` and returns one value per image and channel, shape
``(n, C)`` (with a trailing axis where an observable has several values).

Conventions:

- negative intensities, which generated images can contain, count as zero;
- ``z_i`` is the intensity of pixel ``i`` divided by the image's total
  intensity (per channel), so that sum_i z_i = 1; an empty image has all
  ``z_i = 0`` and all shape observables 0;
- ``r_i`` is the distance of the pixel centre from the grid origin (the jet
  axis), in the units of the grid.

Girth, pT dispersion and the angularities are members of the generalized
angularities lambda^kappa_beta = sum_i z_i^kappa (r_i / R)^beta of Larkoski,
Thaler and Waalewijn, "Gaining (mutual) information about quark/gluon
discrimination", JHEP 11 (2014) 129 (arXiv:1408.3122): girth is R times
lambda^1_1, p_T^D is sqrt(lambda^2_0), and the angularities here have
kappa = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qcdtool.plugins.metrics.common.grid import PixelGrid

FloatArray = NDArray[np.float64]

#: Angular exponents beta of the angularities computed by default.
DEFAULT_BETAS: tuple[float, ...] = (0.5, 1.0, 2.0)

#: Images handled at once by :func:`image_observables`; bounds the float64
#: working copy to about 16 MB per channel for 16x16 images.
CHUNK_SIZE = 8192


def _as_pixel_rows(images: ArrayLike) -> tuple[FloatArray, tuple[int, int]]:
    """Reshape ``(n, C, H, W)`` images into ``(n * C, H * W)`` float64 rows with negatives set to 0."""
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"images must have shape (n, C, H, W), got shape {array.shape}")
    n, channels, height, width = array.shape
    rows = np.clip(array.reshape(n * channels, height * width).astype(np.float64), 0.0, None)
    return rows, (n, channels)


def _check_grid(images: ArrayLike, grid: PixelGrid) -> None:
    shape = np.shape(images)[-2:]
    if tuple(shape) != grid.shape:
        raise ValueError(f"images are {shape[0]}x{shape[1]} pixels but the grid is {grid.shape[0]}x{grid.shape[1]}")


def _fractions(rows: FloatArray) -> FloatArray:
    """Divide each row by its sum; rows that sum to zero stay zero."""
    total = rows.sum(axis=1, keepdims=True)
    z: FloatArray = np.divide(rows, total, out=np.zeros_like(rows), where=total > 0.0)
    return z


def intensity_fractions(images: ArrayLike) -> FloatArray:
    """Return z_i, the share of each pixel in its image's total intensity, shape ``(n, C, H, W)``."""
    rows, _ = _as_pixel_rows(images)
    return _fractions(rows).reshape(np.shape(images))


def pixel_multiplicity(images: ArrayLike, threshold: float = 0.0) -> NDArray[np.int64]:
    """Count the pixels whose intensity is strictly above ``threshold``, shape ``(n, C)``."""
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"images must have shape (n, C, H, W), got shape {array.shape}")
    counts: NDArray[np.int64] = np.count_nonzero(array > threshold, axis=(2, 3)).astype(np.int64)
    return counts


def _mass(rows: FloatArray, grid: PixelGrid) -> FloatArray:
    """Invariant mass of massless pixel particles with pT = row intensity, per row.

    E^2 - |p|^2 cancels badly when m << E: a single pixel came out as about
    1e-8 E instead of 0. So m^2 is evaluated as (E - |p|) (E + |p|) with

        E - |p| = sum_i E_i (1 - cos theta_i) = sum_i E_i |n_i - n|^2 / 2,

    where n_i is the direction of pixel i, n that of the total momentum and
    theta_i the angle between them. A single pixel then gives m = 0 up to
    rounding of order 1e-16 E.
    """
    uu, vv = grid.mesh()
    u, v = uu.ravel(), vv.ravel()

    # 1. Pixel energies E_i = I_i cosh u_i and unit directions n_i = (cos v, sin v, sinh u) / cosh u.
    e_i = rows * np.cosh(u)
    n_i = np.stack([np.cos(v), np.sin(v), np.sinh(u)], axis=1) / np.cosh(u)[:, None]

    # 2. Totals E and p = sum_i E_i n_i, and the direction n of p (zero for empty rows).
    e = e_i.sum(axis=1)
    p = e_i @ n_i
    p_norm = np.linalg.norm(p, axis=1)
    n = np.divide(p, p_norm[:, None], out=np.zeros_like(p), where=p_norm[:, None] > 0.0)

    # 3. E - |p| from the chord lengths |n_i - n|, then m^2 = (E - |p|) (E + |p|).
    chord2 = np.zeros_like(e_i)
    for k in range(3):
        component = n_i[None, :, k] - n[:, k, None]
        chord2 += component * component
    e_minus_p = 0.5 * np.einsum("ij,ij->i", e_i, chord2)
    mass: FloatArray = np.sqrt(np.clip(e_minus_p * (e + p_norm), 0.0, None))
    return mass


def jet_mass(images: ArrayLike, grid: PixelGrid, scale: ArrayLike = 1.0) -> FloatArray:
    """Compute the invariant mass of each image from pixel four-vectors, shape ``(n, C)``.

    Each pixel is a massless particle with transverse momentum
    ``scale * intensity``, at rapidity ``u`` and azimuth ``v`` of its centre,
    measured from the jet axis in radians. ``scale`` is a number or one value
    per image (for example the jet pT in GeV); the mass comes out in its
    units. The intensity is used as it is, not normalized, so for images of
    pT fractions with ``scale = 1`` this returns m / pT_jet.

    The mass is invariant under boosts along the beam and rotations about
    it, so placing the jet axis at rapidity 0 and azimuth 0 loses nothing.
    For eta-phi images of pT, the only approximation is that all momentum
    of a pixel sits at its centre. For images whose axes are two small angles
    about the jet axis (and whose intensity is an energy share), reading them
    as (rapidity, azimuth) at zero rapidity gives m^2 right at second order
    in the angles, with errors of fourth order.
    """
    _check_grid(images, grid)
    rows, (n, channels) = _as_pixel_rows(images)
    mass = _mass(rows, grid).reshape(n, channels)
    return mass * _per_image(scale, n)


def _per_image(values: ArrayLike, n: int) -> FloatArray:
    """Broadcast a number or ``n`` values to shape ``(n, 1)``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        return np.full((n, 1), float(array))
    if array.shape != (n,):
        raise ValueError(f"expected a number or {n} values (one per image), got shape {array.shape}")
    return array[:, None]


def girth(images: ArrayLike, grid: PixelGrid) -> FloatArray:
    """Compute the girth g = sum_i z_i r_i, shape ``(n, C)``, in the units of the grid."""
    _check_grid(images, grid)
    rows, (n, channels) = _as_pixel_rows(images)
    return (_fractions(rows) @ grid.radius().ravel()).reshape(n, channels)


def pt_dispersion(images: ArrayLike) -> FloatArray:
    """Compute the pT dispersion p_T^D = sqrt(sum_i z_i^2), shape ``(n, C)``.

    It is 1 when one pixel contains all the intensity and 1/sqrt(N) when N
    pixels share it equally.
    """
    rows, (n, channels) = _as_pixel_rows(images)
    z = _fractions(rows)
    dispersion: FloatArray = np.sqrt(np.einsum("ij,ij->i", z, z)).reshape(n, channels)
    return dispersion


def _angularity_weights(grid: PixelGrid, radius: float, betas: Sequence[float]) -> FloatArray:
    """(r_i / R)^beta for each pixel and beta, shape ``(H * W, len(betas))``."""
    if radius <= 0.0:
        raise ValueError(f"jet radius must be positive, got {radius}")
    if any(beta <= 0.0 for beta in betas):
        raise ValueError(f"angularity exponents must be positive, got {list(betas)}")
    ratio = grid.radius().ravel() / radius
    return ratio[:, None] ** np.asarray(betas, dtype=np.float64)[None, :]


def angularities(
    images: ArrayLike, grid: PixelGrid, radius: float, betas: Sequence[float] = DEFAULT_BETAS
) -> FloatArray:
    """Compute lambda_beta = sum_i z_i (r_i / R)^beta, shape ``(n, C, len(betas))``.

    ``radius`` is the jet radius R in the units of the grid. Pixels outside
    R are kept, so lambda_beta can exceed 1 when the window is wider than R.
    """
    _check_grid(images, grid)
    rows, (n, channels) = _as_pixel_rows(images)
    weights = _angularity_weights(grid, radius, betas)
    return (_fractions(rows) @ weights).reshape(n, channels, len(betas))


def _annulus_matrix(grid: PixelGrid, edges: ArrayLike) -> FloatArray:
    """One-hot ``(H * W, n_annuli)`` matrix of the annulus [edges[k], edges[k+1]) of each pixel centre."""
    edges_ = np.asarray(edges, dtype=np.float64)
    if edges_.ndim != 1 or len(edges_) < 2 or np.any(np.diff(edges_) <= 0.0):
        raise ValueError(f"annulus edges must be at least two increasing numbers, got {edges_.tolist()}")
    r = grid.radius().ravel()
    annulus = np.searchsorted(edges_, r, side="right") - 1
    n_annuli = len(edges_) - 1
    one_hot: FloatArray = (annulus[:, None] == np.arange(n_annuli)[None, :]).astype(np.float64)
    return one_hot


def radial_profile(images: ArrayLike, grid: PixelGrid, edges: ArrayLike) -> FloatArray:
    """Compute the share of intensity in each annulus about the jet axis, shape ``(n, C, n_annuli)``.

    A pixel belongs to the annulus [edges[k], edges[k+1]) that contains its
    centre. Pixels whose centre lies outside all annuli are left out, so
    the shares of an image add up to at most 1.
    """
    _check_grid(images, grid)
    rows, (n, channels) = _as_pixel_rows(images)
    matrix = _annulus_matrix(grid, edges)
    return (_fractions(rows) @ matrix).reshape(n, channels, matrix.shape[1])


def angularity_name(beta: float) -> str:
    """Name of the angularity with exponent ``beta`` in :func:`image_observables` (``lambda_0.5``)."""
    return f"lambda_{beta:g}"


def image_observables(
    images: ArrayLike,
    grid: PixelGrid,
    *,
    radius: float,
    threshold: float = 0.0,
    betas: Sequence[float] = DEFAULT_BETAS,
    edges: ArrayLike | None = None,
    scale: ArrayLike = 1.0,
) -> dict[str, FloatArray]:
    """Compute all observables of this module in one pass over the images.

    Returns arrays of shape ``(n, C)`` named ``multiplicity`` (pixels above
    ``threshold``), ``mass``, ``girth``, ``pt_dispersion`` and
    ``lambda_<beta>`` for each beta, plus ``radial_profile`` of shape
    ``(n, C, n_annuli)`` when annulus ``edges`` are given. Arguments mean
    what they mean in the single-observable functions. Images are processed
    in chunks of :data:`CHUNK_SIZE` to bound memory.
    """
    _check_grid(images, grid)
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"images must have shape (n, C, H, W), got shape {array.shape}")
    n, channels = array.shape[:2]
    scale_ = _per_image(scale, n)

    # 1. Per-pixel weights shared by all chunks.
    r = grid.radius().ravel()
    angularity_weights = _angularity_weights(grid, radius, betas)
    annuli = None if edges is None else _annulus_matrix(grid, edges)

    # 2. Fill the outputs chunk by chunk.
    out: dict[str, FloatArray] = {
        "multiplicity": np.empty((n, channels)),
        "mass": np.empty((n, channels)),
        "girth": np.empty((n, channels)),
        "pt_dispersion": np.empty((n, channels)),
    }
    lambdas = np.empty((n, channels, len(betas)))
    profile = None if annuli is None else np.empty((n, channels, annuli.shape[1]))
    for start in range(0, n, CHUNK_SIZE):
        stop = min(start + CHUNK_SIZE, n)
        chunk = array[start:stop]
        rows, _ = _as_pixel_rows(chunk)
        z = _fractions(rows)
        shape = (stop - start, channels)
        out["multiplicity"][start:stop] = np.count_nonzero(chunk > threshold, axis=(2, 3))
        out["mass"][start:stop] = _mass(rows, grid).reshape(shape) * scale_[start:stop]
        out["girth"][start:stop] = (z @ r).reshape(shape)
        out["pt_dispersion"][start:stop] = np.sqrt(np.einsum("ij,ij->i", z, z)).reshape(shape)
        lambdas[start:stop] = (z @ angularity_weights).reshape(*shape, len(betas))
        if profile is not None and annuli is not None:
            profile[start:stop] = (z @ annuli).reshape(*shape, annuli.shape[1])

    # 3. Name the angularities and the profile.
    for k, beta in enumerate(betas):
        out[angularity_name(beta)] = lambdas[..., k]
    if profile is not None:
        out["radial_profile"] = profile
    return out
