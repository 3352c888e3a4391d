"""The ``polar`` imager: jet constituents on a (distance, angle) grid about the jet axis.

Each constituent's offset from the jet axis in the (delta eta, delta phi)
plane is written as a distance r = sqrt(delta eta^2 + delta phi^2) and an
angle alpha = atan2(delta phi, delta eta) in (-pi, pi]. Rows are ``rings``
equal bins of r over [0, extent], columns are ``sectors`` equal bins of
alpha. The intensity is the constituent's share of the jet's scalar pT sum.

Like ``eta-phi`` the image uses only differences of phi, so it does not
change when the whole event is rotated about the beam axis.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field

from qcdtool.core import kinematics
from qcdtool.core.contracts import (
    ImageDescription,
    Imager,
    ImagerInput,
    ImageSet,
    JetBatch,
    PluginContext,
    PluginParams,
    Register,
)
from qcdtool.core.hookspecs import hookimpl
from qcdtool.core.images import Axis, Points, fractions_of_sum, pixelize
from qcdtool.core.particles import ParticleBatch


class PolarParams(PluginParams):
    """Options of the ``polar`` imager; every field needs a default and a description."""

    rings: int = Field(10, ge=2, le=128, description="Number of distance bins (rows) between 0 and extent.")
    sectors: int = Field(16, ge=4, le=128, description="Number of angle bins (columns) around the jet axis.")
    extent: float | None = Field(
        None, gt=0.0, le=math.pi, description="Largest distance from the jet axis drawn; unset means the jet radius."
    )


class PolarImager(Imager):
    """Draws each jet on a polar grid about its axis."""

    name: ClassVar[str] = "polar"
    summary: ClassVar[str] = "Jet images on a (distance, angle) grid about the jet axis; pT fraction intensity."
    Params = PolarParams
    input: ClassVar[ImagerInput] = ImagerInput.JET

    params: PolarParams

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        super().__init__(params, context)
        self.extent = self.params.extent if self.params.extent is not None else context.jet_radius

    def describe(self) -> ImageDescription:
        """Axes, window, units and intensity of the images."""
        return ImageDescription(
            axes=("r", "alpha"),
            extents=((0.0, self.extent), (-math.pi, math.pi)),
            units="r in (delta eta, delta phi) distance, alpha in rad",
            intensity="pT_i / sum_j pT_j (constituents of the jet)",
            channels=("all",),
            shape=(1, self.params.rings, self.params.sectors),
        )

    def render(self, parton: JetBatch | ParticleBatch, hadron: JetBatch | ParticleBatch) -> ImageSet:
        """Draw both levels' jets as (n, 1, rings, sectors) float32 images."""
        if not isinstance(parton, JetBatch) or not isinstance(hadron, JetBatch):
            raise TypeError("polar draws jets: pass JetBatch objects for both levels")
        rows = Axis(0.0, self.extent, self.params.rings)
        cols = Axis(-math.pi, math.pi, self.params.sectors, periodic=True)
        images = {}
        dropped = {}
        for level, jets in (("parton", parton), ("hadron", hadron)):
            pixels = pixelize(self._points(jets), rows, cols)
            images[level] = pixels.images
            dropped[f"{level}_dropped_fraction"] = pixels.dropped_fraction
        return ImageSet(parton=images["parton"], hadron=images["hadron"], per_image=dropped)

    def _points(self, jets: JetBatch) -> Points:
        """Distance and angle of every constituent about its jet axis, weighted by its pT share."""
        constituents = jets.constituents
        entry = constituents.entry_index
        axis_eta = kinematics.eta(jets.axis[:, 0], jets.axis[:, 1], jets.axis[:, 2])
        axis_phi = kinematics.phi(jets.axis[:, 0], jets.axis[:, 1])
        delta_eta = constituents.eta - axis_eta[entry]
        delta_phi = kinematics.wrap_phi(constituents.phi - axis_phi[entry])
        weight = fractions_of_sum(constituents.pt, entry, len(jets))
        return Points(
            row=np.hypot(delta_eta, delta_phi),
            col=np.arctan2(delta_phi, delta_eta),
            weight=weight,
            image=entry,
            n_images=len(jets),
        )


@hookimpl
def register_imagers(register: Register) -> None:
    """Hand the polar imager to qcdtool."""
    register(PolarImager)
