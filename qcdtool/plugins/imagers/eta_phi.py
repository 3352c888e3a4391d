"""The ``eta-phi`` imager: jet constituents in (delta eta, delta phi) about the jet axis.

Rows are ``delta eta = eta_i - eta_jet`` (pseudorapidity), columns
``delta phi = wrap_phi(phi_i - phi_jet)`` in (-pi, pi], both on a
``size`` x ``size`` grid over ``[-extent, extent]``. The image is invariant
under rotations of the event about the beam (z) axis, because it uses only
differences of phi. Other 3D rotations change delta eta and delta phi, and
so the image. A jet along the beam axis has no
pseudorapidity, so all its weight counts as dropped.

Before pixelization the coordinates about the jet axis may be changed in
three steps. ``center`` moves the weighted centroid to the origin,
``rotate`` turns the principal axis onto the delta eta axis, and ``flip``
reflects the heaviest quadrant to positive delta eta and delta phi. Rotation
and reflection are taken from the ``frame_from`` level and applied to both
levels, so that the two images of an event stay comparable.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

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
from qcdtool.core.images import (
    MAX_SIZE,
    MIN_SIZE,
    POINT_CHUNK,
    ChannelScheme,
    FrameLevel,
    Points,
    charge_channels,
    fractions_of_sum,
    normalize_images,
    paired_reflection,
    paired_rotation,
    pixelize,
    point_chunks,
    reflect_points,
    rotate_points,
    subtract_centroid,
    symmetric_axis,
)
from qcdtool.core.particles import ParticleBatch

JetIntensity = Literal["pt-fraction", "energy-fraction", "energy"]

#: Units of the unrotated axes, delta eta and delta phi.
AXIS_UNITS = "delta eta (no unit) and delta phi (rad)"
#: Units of the axes with ``rotate``: the rotation mixes delta eta and delta phi, as delta R does.
ROTATED_AXIS_UNITS = (
    "distance along and across the principal axis in the (delta eta, delta phi) plane, "
    "as delta R (delta eta has no unit, delta phi is in rad)"
)

INTENSITY_LABELS: dict[str, str] = {
    "pt-fraction": "pT_i / sum_j pT_j (constituents of the jet)",
    "energy-fraction": "E_i / sum_j E_j (constituents of the jet)",
    "energy": "E_i (GeV)",
}


class EtaPhiParams(PluginParams):
    """Options of the ``eta-phi`` imager."""

    size: int = Field(
        15,
        ge=MIN_SIZE,
        le=MAX_SIZE,
        description=(
            "Pixels per side. The default is odd so that the jet axis lies at the centre of a pixel "
            "and not on the corner of four."
        ),
    )
    extent: float | None = Field(
        None,
        gt=0.0,
        le=math.pi,
        description="Half-width of the window in delta eta and delta phi (rad); unset means the jet radius.",
    )
    intensity: JetIntensity = Field(
        "pt-fraction",
        description=(
            "Pixel intensity: pt-fraction (pT_i over the jet's scalar pT sum), energy-fraction "
            "(E_i over the jet energy) or energy (E_i in GeV)."
        ),
    )
    center: Literal["axis", "centroid"] = Field(
        "axis",
        description="Image centre: the jet axis, or the intensity-weighted centroid of the constituents.",
    )
    rotate: bool = Field(False, description="Turn the intensity-weighted principal axis onto the delta eta (row) axis.")
    flip: bool = Field(False, description="Reflect the heaviest quadrant to positive delta eta and positive delta phi.")
    normalize: bool = Field(False, description="Scale each image so that its pixels sum to one.")
    channels: ChannelScheme = Field(
        "all", description="One channel (all), or two: charged then neutral constituents (charged-neutral)."
    )
    frame_from: FrameLevel = Field(
        "hadron",
        description="Level whose jet fixes the rotation and reflection of both images (with rotate or flip).",
    )


def eta_phi_coordinates(jets: JetBatch) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return (delta eta, delta phi) of every constituent about its jet's axis, delta phi in (-pi, pi].

    Delta phi is the signed angle from the axis to the constituent in the
    transverse plane, ``atan2(a x p, a . p)``, which needs no 2 pi wrap and
    keeps full precision near +-pi. atan2 returns values in [-pi, pi], so
    only an exact -pi needs mapping to +pi to land in (-pi, pi].
    An empty jet has a zero axis and a jet along the beam an infinite eta:
    both give NaN offsets, which pixelize counts as dropped.
    """
    delta_eta, delta_phi, _ = coordinates_and_pt(jets)
    return delta_eta, delta_phi


def coordinates_and_pt(jets: JetBatch) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return delta eta, delta phi (as :func:`eta_phi_coordinates`) and pT of every constituent."""
    c = jets.constituents
    entry = c.entry_index
    ax, ay, az = (np.ascontiguousarray(jets.axis[:, k]) for k in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        axis_eta = np.arcsinh(az / np.sqrt(ax * ax + ay * ay))

    # Chunks of points keep the temporaries in the CPU cache (see POINT_CHUNK).
    # pT is sqrt(px^2 + py^2): np.hypot is about 10 times slower (numpy 2.4),
    # and momenta in GeV cannot overflow.
    n = len(entry)
    delta_eta = np.empty(n, dtype=np.float64)
    delta_phi = np.empty(n, dtype=np.float64)
    pt = np.empty(n, dtype=np.float64)
    for start in point_chunks(n):
        chunk = slice(start, start + POINT_CHUNK)
        jet = entry[chunk]
        px, py = c.px[chunk], c.py[chunk]
        pt_chunk = pt[chunk]
        np.multiply(px, px, out=pt_chunk)
        pt_chunk += py * py
        np.sqrt(pt_chunk, out=pt_chunk)
        with np.errstate(invalid="ignore", divide="ignore"):
            eta = np.divide(c.pz[chunk], pt_chunk)
            np.arcsinh(eta, out=eta)
        np.subtract(eta, axis_eta[jet], out=delta_eta[chunk])
        a_x, a_y = ax[jet], ay[jet]
        cross = a_x * py
        cross -= a_y * px
        dot = a_x * px
        dot += a_y * py
        np.arctan2(cross, dot, out=delta_phi[chunk])
    delta_phi[delta_phi == -np.pi] = np.pi
    return delta_eta, delta_phi, pt


def constituent_intensity(
    constituents: ParticleBatch, intensity: JetIntensity, pt: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Return the intensity of each constituent: a fraction of its jet's sum, or its energy (``pt`` in GeV)."""
    c = constituents
    if intensity == "energy":
        return c.E.copy()
    value = pt if intensity == "pt-fraction" else c.E
    return fractions_of_sum(value, c.entry_index, len(c))


class EtaPhiImager(Imager):
    """Draws each jet in (delta eta, delta phi) about its axis."""

    name: ClassVar[str] = "eta-phi"
    summary: ClassVar[str] = "Jet images in (delta eta, delta phi) about the jet axis; pT or energy intensity."
    Params: ClassVar[type[PluginParams]] = EtaPhiParams
    input: ClassVar[ImagerInput] = ImagerInput.JET

    params: EtaPhiParams

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        if not isinstance(params, EtaPhiParams):
            raise TypeError(f"eta-phi needs EtaPhiParams, got {type(params).__name__}")
        super().__init__(params, context)
        self.extent = params.extent if params.extent is not None else context.jet_radius
        self.channel_names = charge_channels(np.zeros(0, dtype=np.float32), params.channels)[1]

    def describe(self) -> ImageDescription:
        """Axes, window, units and intensity of the images."""
        axes = ("major_axis", "minor_axis") if self.params.rotate else ("delta_eta", "delta_phi")
        window = (-self.extent, self.extent)
        return ImageDescription(
            axes=axes,
            extents=(window, window),
            units=ROTATED_AXIS_UNITS if self.params.rotate else AXIS_UNITS,
            intensity=INTENSITY_LABELS[self.params.intensity],
            channels=self.channel_names,
            shape=(len(self.channel_names), self.params.size, self.params.size),
        )

    def render(self, parton: JetBatch | ParticleBatch, hadron: JetBatch | ParticleBatch) -> ImageSet:
        """Draw the parton and hadron jets of ``n`` events as (n, C, size, size) float32 images."""
        if not isinstance(parton, JetBatch) or not isinstance(hadron, JetBatch):
            raise TypeError("eta-phi draws jets: pass JetBatch objects for both levels")
        if len(parton) != len(hadron):
            raise ValueError(f"parton and hadron batches differ in length: {len(parton)} and {len(hadron)}")
        params = self.params
        axis = symmetric_axis(self.extent, params.size)
        tolerance = axis.edge_tolerance

        # 1. Points about each jet's axis, optionally about its centroid.
        points = {"parton": self._points(parton), "hadron": self._points(hadron)}
        if params.center == "centroid":
            points = {level: subtract_centroid(p) for level, p in points.items()}
        frame_level = params.frame_from
        other_level = "parton" if frame_level == "hadron" else "hadron"

        # 2. Rotation and reflection from the frame level, applied to both levels.
        if params.rotate:
            rotation = paired_rotation(points[frame_level], points[other_level], tolerance)
            points = {level: rotate_points(p, rotation) for level, p in points.items()}
        if params.flip:
            reflection = paired_reflection(points[frame_level], points[other_level], tolerance)
            points = {level: reflect_points(p, reflection) for level, p in points.items()}

        # 3. Pixelize and record what fell outside the window.
        images: dict[str, NDArray[np.float32]] = {}
        per_image: dict[str, NDArray[np.generic]] = {}
        for level, p in points.items():
            pixelized = pixelize(p, axis, axis)
            images[level] = normalize_images(pixelized.images) if params.normalize else pixelized.images
            per_image[f"{level}_dropped_fraction"] = pixelized.dropped_fraction
        return ImageSet(parton=images["parton"], hadron=images["hadron"], per_image=per_image)

    def _points(self, jets: JetBatch) -> Points:
        delta_eta, delta_phi, pt = coordinates_and_pt(jets)
        names = self.channel_names
        # One channel needs no channel index (Points reads None as channel 0).
        channel = charge_channels(jets.constituents.charge, self.params.channels)[0] if len(names) > 1 else None
        return Points(
            row=delta_eta,
            col=delta_phi,
            weight=constituent_intensity(jets.constituents, self.params.intensity, pt),
            image=jets.constituents.entry_index,
            n_images=len(jets),
            channel=channel,
            n_channels=len(names),
        )


@hookimpl
def register_imagers(register: Register) -> None:
    """Register the eta-phi imager."""
    register(EtaPhiImager)
