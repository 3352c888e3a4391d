"""The ``event`` imager: every final-state particle of an event, in the event's thrust frame.

Frame. The frame consists of the thrust axis ``n_T`` of the ``frame_from``
level, pointing into the more energetic hemisphere, the thrust-major axis
``m`` (perpendicular to ``n_T``, pointing into the more energetic half) and
the minor axis ``k = n_T x m``. :mod:`qcdtool.core.thrust` describes the
method and its measured accuracy. The other level is drawn in the same
frame, so that the two images of an event are comparable. The default,
``hadron``, suits inverse models, which only see hadrons. Where the frame level has no
momentum perpendicular to the thrust axis (two back-to-back partons), the
major axis comes from the other level's particles about the same axis.

Channels. One per hemisphere: ``forward`` holds the particles with
``p . n_T > 0``, ``backward`` the rest. With ``channels = "charged-neutral"``
each hemisphere is split further into charged and neutral particles.

Coordinates. Within a hemisphere, ``theta`` is the angle from that
hemisphere's axis (``+n_T`` forward, ``-n_T`` backward), in [0, pi/2], and
``phi = atan2(p . k, p . m)`` the azimuth from the major axis, the same in
both hemispheres. ``coordinates = "angle-azimuth"`` bins rows in ``theta``
over [0, extent] and columns in ``phi`` over [-pi, pi] (periodic, so
``phi = pi`` and ``phi = -pi`` share the first column);
``coordinates = "plane"`` bins ``(theta cos phi, theta sin phi)`` over
``[-extent, extent]`` on both axes, the azimuthal equidistant projection onto
the plane perpendicular to the axis. A particle within the edge tolerance
of the axis gets ``phi = 0``, because its azimuth is rounding noise.

Intensity: ``E_i / E_total`` (all particles of the event at that level) or
``E_i`` in GeV. Every quantity comes from momenta alone, so rotating the
whole event in 3D leaves the images unchanged.
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
    Axis,
    ChannelScheme,
    FrameLevel,
    Points,
    charge_channels,
    fractions_of_sum,
    normalize_images,
    pixelize,
    polar_angles,
    symmetric_axis,
    unit_vectors,
)
from qcdtool.core.particles import ParticleBatch
from qcdtool.core.thrust import DEFAULT_KEPT_STARTS, DEFAULT_LEADING, ThrustFrame, thrust_frame

FloatArray = NDArray[np.float64]

HEMISPHERES = ("forward", "backward")

INTENSITY_LABELS: dict[str, str] = {
    "energy-fraction": "E_i / E_total (all particles of the event)",
    "energy": "E_i (GeV)",
}


class EventParams(PluginParams):
    """Options of the ``event`` imager."""

    size: int = Field(
        31,
        ge=MIN_SIZE,
        le=MAX_SIZE,
        description=(
            "Pixels per side. The default is odd so that the thrust axis (plane) and the major axis "
            "(azimuth 0) lie at pixel centres and not on pixel edges."
        ),
    )
    extent: float = Field(
        math.pi / 2,
        gt=0.0,
        le=math.pi / 2,
        description=("Largest angle from the hemisphere axis that is drawn (rad); pi/2 draws whole hemispheres."),
    )
    coordinates: Literal["angle-azimuth", "plane"] = Field(
        "angle-azimuth",
        description=(
            "angle-azimuth: rows are the angle from the axis, columns the azimuth from the major axis; "
            "plane: the azimuthal equidistant projection onto the plane perpendicular to the axis."
        ),
    )
    intensity: Literal["energy-fraction", "energy"] = Field(
        "energy-fraction",
        description="Pixel intensity: energy-fraction (E_i over the event energy) or energy (E_i in GeV).",
    )
    normalize: bool = Field(False, description="Scale each image (all channels) so that its pixels sum to one.")
    channels: ChannelScheme = Field(
        "all", description="Per hemisphere one channel (all), or two: charged then neutral (charged-neutral)."
    )
    frame_from: FrameLevel = Field("hadron", description="Level whose thrust frame both levels are drawn in.")
    thrust_leading: int = Field(
        DEFAULT_LEADING,
        ge=1,
        le=12,
        description=("Number of leading particles whose sign combinations start the thrust search (2**(n-1) starts)."),
    )


class EventImager(Imager):
    """Draws whole events in their thrust frame, one channel per hemisphere."""

    name: ClassVar[str] = "event"
    summary: ClassVar[str] = "Whole events in the thrust frame, one channel per hemisphere; energy intensity."
    Params: ClassVar[type[PluginParams]] = EventParams
    input: ClassVar[ImagerInput] = ImagerInput.EVENT

    params: EventParams

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        if not isinstance(params, EventParams):
            raise TypeError(f"event needs EventParams, got {type(params).__name__}")
        super().__init__(params, context)
        charge_names = charge_channels(np.zeros(0, dtype=np.float32), params.channels)[1]
        if len(charge_names) == 1:
            self.channel_names: tuple[str, ...] = HEMISPHERES
        else:
            self.channel_names = tuple(f"{h}-{c}" for h in HEMISPHERES for c in charge_names)
        self.n_charge_channels = len(charge_names)

    def axes(self) -> tuple[Axis, Axis]:
        """Return the row and column axes of the image grid."""
        size, extent = self.params.size, self.params.extent
        if self.params.coordinates == "angle-azimuth":
            return Axis(0.0, extent, size), Axis(-math.pi, math.pi, size, periodic=True)
        return symmetric_axis(extent, size), symmetric_axis(extent, size)

    def describe(self) -> ImageDescription:
        """Axes, window, units and intensity of the images."""
        rows, cols = self.axes()
        names = ("theta", "phi") if self.params.coordinates == "angle-azimuth" else ("theta_cos_phi", "theta_sin_phi")
        return ImageDescription(
            axes=names,
            extents=((rows.low, rows.high), (cols.low, cols.high)),
            units="rad",
            intensity=INTENSITY_LABELS[self.params.intensity],
            channels=self.channel_names,
            shape=(len(self.channel_names), self.params.size, self.params.size),
        )

    def render(self, parton: JetBatch | ParticleBatch, hadron: JetBatch | ParticleBatch) -> ImageSet:
        """Draw the parton and hadron level of ``n`` events as (n, C, size, size) float32 images."""
        if not isinstance(parton, ParticleBatch) or not isinstance(hadron, ParticleBatch):
            raise TypeError("event draws whole events: pass ParticleBatch objects for both levels")
        if len(parton) != len(hadron):
            raise ValueError(f"parton and hadron batches differ in length: {len(parton)} and {len(hadron)}")
        levels = {"parton": parton, "hadron": hadron}
        other_level = "parton" if self.params.frame_from == "hadron" else "hadron"
        frame = thrust_frame(levels[self.params.frame_from], self.params.thrust_leading, DEFAULT_KEPT_STARTS)
        frame = frame.with_major_axis_from(levels[other_level])
        rows, cols = self.axes()

        images: dict[str, NDArray[np.float32]] = {}
        per_image: dict[str, NDArray[np.generic]] = {
            "thrust": frame.thrust,
            "thrust_major": frame.thrust_major,
        }
        for level, particles in levels.items():
            pixelized = pixelize(self.points(particles, frame, rows), rows, cols)
            images[level] = normalize_images(pixelized.images) if self.params.normalize else pixelized.images
            per_image[f"{level}_dropped_fraction"] = pixelized.dropped_fraction
        return ImageSet(parton=images["parton"], hadron=images["hadron"], per_image=per_image)

    def points(self, particles: ParticleBatch, frame: ThrustFrame, rows: Axis) -> Points:
        """Return the weighted image points of every particle in the given thrust frame."""
        entry = particles.entry_index
        d = unit_vectors(particles.px, particles.py, particles.pz)

        # 1. Hemisphere, angle from the hemisphere's axis and azimuth from the major axis.
        n = frame.axis[entry]
        forward = np.einsum("ij,ij->i", d, n) > 0.0
        hemisphere_axis = np.where(forward[:, None], n, -n)
        theta, phi = polar_angles(d, hemisphere_axis, frame.major_axis[entry], frame.minor_axis[entry])
        phi = np.where(theta <= rows.edge_tolerance, 0.0, phi)

        # 2. Grid coordinates, channel and intensity.
        if self.params.coordinates == "angle-azimuth":
            row, col = theta, phi
        else:
            row, col = theta * np.cos(phi), theta * np.sin(phi)
        charge_channel, _ = charge_channels(particles.charge, self.params.channels)
        channel = np.where(forward, 0, 1) * self.n_charge_channels + charge_channel
        if self.params.intensity == "energy":
            weight = particles.E.copy()
        else:
            weight = fractions_of_sum(particles.E, entry, len(particles))
        return Points(
            row=row,
            col=col,
            weight=weight,
            image=entry,
            n_images=len(particles),
            channel=channel.astype(np.int64),
            n_channels=len(self.channel_names),
        )


@hookimpl
def register_imagers(register: Register) -> None:
    """Register the event imager."""
    register(EventImager)
