"""Scalar jet observables of images as named columns, shared by the W1 and FPD metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qcdtool.plugins.metrics.common.grid import PixelGrid
from qcdtool.plugins.metrics.common.observables import angularity_name, image_observables

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ObservableSettings:
    """How observables are computed from images.

    ``radius`` is the jet radius R in the units of the image axes;
    ``threshold`` the intensity above which a pixel counts for the
    multiplicity; ``edges`` the annulus edges of the radial profile (None
    for no profile).
    """

    radius: float
    threshold: float
    betas: tuple[float, ...]
    edges: FloatArray | None = None


def observable_labels(settings: ObservableSettings, units: str) -> dict[str, str]:
    """Axis labels of the scalar observables; ``units`` is the description of the image axes."""
    labels = {
        "multiplicity": f"pixels above {settings.threshold:g}",
        "mass": "image mass (in units of the jet pT for fraction images)",
        "girth": f"girth g = sum z_i r_i ({units})",
        "pt_dispersion": "p_T^D = sqrt(sum z_i^2)",
    }
    for beta in settings.betas:
        labels[angularity_name(beta)] = f"angularity lambda_{beta:g} = sum z_i (r_i / R)^{beta:g}"
    return labels


def compute_observables(
    images: ArrayLike, grid: PixelGrid, settings: ObservableSettings, channels: Sequence[str]
) -> tuple[dict[str, FloatArray], FloatArray | None]:
    """Compute every scalar observable of (n, C, H, W) images, and the radial profiles.

    The scalars come as one (n,) column per observable and channel, named
    after the observable (``mass``) with one channel and
    ``<observable>_<channel>`` with several. The radial profiles have shape
    (n, C, n_annuli), or are None when ``settings.edges`` is None.
    """
    computed = image_observables(
        images,
        grid,
        radius=settings.radius,
        threshold=settings.threshold,
        betas=settings.betas,
        edges=settings.edges,
    )
    columns: dict[str, FloatArray] = {}
    for name, values in computed.items():
        if name == "radial_profile":
            continue
        for c, channel in enumerate(channels):
            columns[name if len(channels) == 1 else f"{name}_{channel}"] = values[:, c]
    return columns, computed.get("radial_profile")
