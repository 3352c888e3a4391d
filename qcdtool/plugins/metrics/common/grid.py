"""Pixel-centre coordinates of images, read from their description."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.contracts import ImageDescription

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PixelGrid:
    """Coordinates of the pixel centres of an ``(H, W)`` image.

    ``u`` contains the ``H`` row centres (along ``axes[0]`` of the
    description) and ``v`` the ``W`` column centres (along ``axes[1]``),
    both in the units of the description. ``du`` and ``dv`` are the height
    of a row and the width of a column. The origin ``(0, 0)`` is the reference direction of the
    image: the jet axis for jet imagers.
    """

    u: FloatArray
    v: FloatArray
    du: float
    dv: float

    @classmethod
    def from_extents(
        cls, extents: tuple[tuple[float, float], tuple[float, float]], height: int, width: int
    ) -> PixelGrid:
        """Build the grid of ``height`` x ``width`` equal pixels spanning ``extents``.

        ``extents`` gives the lower and upper edge of the rows' axis, then of
        the columns' axis.
        """
        if height < 1 or width < 1:
            raise ValueError(f"image shape must be at least 1x1, got {height}x{width}")
        (u_lo, u_hi), (v_lo, v_hi) = extents
        if not (u_hi > u_lo and v_hi > v_lo):
            raise ValueError(f"each extent must have upper edge > lower edge, got {extents}")
        u_edges = np.linspace(u_lo, u_hi, height + 1)
        v_edges = np.linspace(v_lo, v_hi, width + 1)
        return cls(
            u=0.5 * (u_edges[:-1] + u_edges[1:]),
            v=0.5 * (v_edges[:-1] + v_edges[1:]),
            du=(u_hi - u_lo) / height,
            dv=(v_hi - v_lo) / width,
        )

    @classmethod
    def from_description(cls, description: ImageDescription) -> PixelGrid:
        """Build the grid of the images an imager describes."""
        _, height, width = description.shape
        return cls.from_extents(description.extents, height, width)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (len(self.u), len(self.v))

    def mesh(self) -> tuple[FloatArray, FloatArray]:
        """Return the ``(H, W)`` arrays of the row and column coordinate of each pixel."""
        uu, vv = np.meshgrid(self.u, self.v, indexing="ij")
        return uu, vv

    def radius(self) -> FloatArray:
        """Return the ``(H, W)`` distance of each pixel centre from the origin."""
        uu, vv = self.mesh()
        return np.hypot(uu, vv)

    def points(self) -> FloatArray:
        """Return the ``(H * W, 2)`` pixel centres in the row-major order of ``ravel``."""
        uu, vv = self.mesh()
        return np.stack([uu.ravel(), vv.ravel()], axis=1)
