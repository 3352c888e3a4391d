"""Kinematic quantities of four-vectors, as pure functions over numpy arrays.

Conventions used everywhere in qcdtool:

- momenta in GeV, angles in radians;
- phi in (-pi, pi], the range of PYTHIA's ``phi()``; differences of phi are
  wrapped into the same range by :func:`wrap_phi`;
- the pseudorapidity of a particle along the beam axis is +-inf, not NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def wrap_phi(phi: ArrayLike) -> FloatArray:
    """Map angles into (-pi, pi], the one phi range that qcdtool uses.

    ``-pi`` maps to ``+pi``, so that the two ends of the range never both
    occur. Works for differences of angles as well as for angles.
    """
    wrapped = np.remainder(np.asarray(phi, dtype=np.float64) + np.pi, 2.0 * np.pi) - np.pi
    return np.where(wrapped <= -np.pi, wrapped + 2.0 * np.pi, wrapped)


def pt(px: ArrayLike, py: ArrayLike) -> FloatArray:
    """Transverse momentum with respect to the z axis."""
    return np.hypot(np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64))


def phi(px: ArrayLike, py: ArrayLike) -> FloatArray:
    """Azimuth in (-pi, pi]."""
    return wrap_phi(np.arctan2(np.asarray(py, dtype=np.float64), np.asarray(px, dtype=np.float64)))


def eta(px: ArrayLike, py: ArrayLike, pz: ArrayLike) -> FloatArray:
    """Pseudorapidity, +-inf for a momentum along the z axis."""
    pt_ = pt(px, py)
    pz_ = np.asarray(pz, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.arcsinh(pz_ / pt_)


def rapidity(e: ArrayLike, pz: ArrayLike) -> FloatArray:
    """Rapidity y = 0.5 ln((E + pz) / (E - pz))."""
    e_ = np.asarray(e, dtype=np.float64)
    pz_ = np.asarray(pz, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 0.5 * np.log((e_ + pz_) / (e_ - pz_))


def mass(px: ArrayLike, py: ArrayLike, pz: ArrayLike, e: ArrayLike) -> FloatArray:
    """Invariant mass, with negative m^2 from rounding clipped to zero."""
    px_, py_, pz_, e_ = (np.asarray(v, dtype=np.float64) for v in (px, py, pz, e))
    m2 = e_ * e_ - px_ * px_ - py_ * py_ - pz_ * pz_
    return np.sqrt(np.clip(m2, 0.0, None))


def opening_angle(
    px1: ArrayLike, py1: ArrayLike, pz1: ArrayLike, px2: ArrayLike, py2: ArrayLike, pz2: ArrayLike
) -> FloatArray:
    """Angle between two three-momenta in [0, pi].

    Uses atan2(|a x b|, a . b), which stays accurate for small and for
    nearly back-to-back angles where arccos of the cosine loses precision.
    """
    a = np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (px1, py1, pz1))), -1)
    b = np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (px2, py2, pz2))), -1)
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.sum(a * b, axis=-1)
    return np.asarray(np.arctan2(cross, dot), dtype=np.float64)


def delta_r(eta1: ArrayLike, phi1: ArrayLike, eta2: ArrayLike, phi2: ArrayLike) -> FloatArray:
    """Distance in the (eta, phi) plane, with the phi difference wrapped."""
    deta = np.asarray(eta1, dtype=np.float64) - np.asarray(eta2, dtype=np.float64)
    dphi = wrap_phi(np.asarray(phi1, dtype=np.float64) - np.asarray(phi2, dtype=np.float64))
    return np.hypot(deta, dphi)
