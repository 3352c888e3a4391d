"""The ``angular`` imager: jet constituents as angles about the jet axis, at any polar angle.

Each jet gets an orthonormal frame ``(n, u, v)``: ``n`` is the direction of
the jet's three-momentum, ``u`` the direction of the principal axis of the
frame level's constituents (below) and ``v = n x u``. A constituent at polar
angle ``theta`` from ``n`` and azimuth ``phi`` from ``u`` towards ``v`` has
the image coordinates ``(theta cos phi, theta sin phi)`` (rows, columns).
This is the azimuthal equidistant projection: the distance from the centre
is the opening angle to the jet axis. Unlike delta eta and delta phi this
is well defined for a jet at any polar angle, including along the beam.

The orientation of ``u`` about ``n``. The jet alone carries no direction
perpendicular to its axis other than its own constituents, so ``u`` is the
energy-weighted principal axis of the constituents of the ``frame_from``
level, with its sign set by the third moment (see
:func:`qcdtool.core.images.principal_axis_rotation`). The other level's jet
takes ``u`` projected onto the plane perpendicular to its own axis, so both
images share one orientation. Since ``n`` and ``u`` are built from momenta
alone, rotating the whole event in 3D leaves the images unchanged.
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
    ChannelScheme,
    FrameLevel,
    PlaneRotation,
    Points,
    charge_channels,
    fractions_of_sum,
    normalize_images,
    paired_reflection,
    perpendicular_unit_vectors,
    pixelize,
    principal_axis_rotation,
    reflect_points,
    rotate_points,
    subtract_centroid,
    symmetric_axis,
    unit_vectors,
)
from qcdtool.core.particles import ParticleBatch

FloatArray = NDArray[np.float64]

EnergyIntensity = Literal["energy-fraction", "energy"]

INTENSITY_LABELS: dict[str, str] = {
    "energy-fraction": "E_i / sum_j E_j (constituents of the jet)",
    "energy": "E_i (GeV)",
}


class AngularParams(PluginParams):
    """Options of the ``angular`` imager."""

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
        description=("Half-width of the window as an angle from the jet axis (rad); unset means the jet radius."),
    )
    intensity: EnergyIntensity = Field(
        "energy-fraction",
        description="Pixel intensity: energy-fraction (E_i over the jet energy) or energy (E_i in GeV).",
    )
    center: Literal["axis", "centroid"] = Field(
        "axis",
        description="Image centre: the jet axis, or the energy-weighted centroid of the projected points.",
    )
    flip: bool = Field(False, description="Reflect the heaviest quadrant to positive row and column coordinates.")
    normalize: bool = Field(False, description="Scale each image so that its pixels sum to one.")
    channels: ChannelScheme = Field(
        "all", description="One channel (all), or two: charged then neutral constituents (charged-neutral)."
    )
    frame_from: FrameLevel = Field(
        "hadron", description="Level whose constituents fix the orientation (and reflection) of both images."
    )


def angular_coordinates(constituents: ParticleBatch, n: FloatArray, u: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return ``(theta cos phi, theta sin phi)`` of each constituent in its jet's frame ``(n, u, n x u)``.

    ``n`` and ``u`` have one orthonormal pair of unit vectors per jet, shape
    (jets, 3). With ``p_u``, ``p_v`` the momentum components along ``u`` and
    ``v`` and ``p_t = sqrt(p_u^2 + p_v^2)``: ``theta = atan2(p_t, p . n)`` and
    ``theta cos phi = theta p_u / p_t``, which needs no unit vectors and no
    trigonometry beyond one arctangent. A constituent on the axis maps to
    the origin.
    """
    c = constituents
    entry = c.entry_index
    v = np.cross(n, u)
    p_n = c.px * n[entry, 0] + c.py * n[entry, 1] + c.pz * n[entry, 2]
    p_u = c.px * u[entry, 0] + c.py * u[entry, 1] + c.pz * u[entry, 2]
    p_v = c.px * v[entry, 0] + c.py * v[entry, 1] + c.pz * v[entry, 2]
    p_t = np.sqrt(p_u * p_u + p_v * p_v)
    theta = np.arctan2(p_t, p_n)
    scale = theta / np.where(p_t > 0.0, p_t, 1.0)
    return p_u * scale, p_v * scale


def project_onto_plane(u: FloatArray, n: FloatArray) -> FloatArray:
    """Return ``u`` projected onto the plane perpendicular to ``n`` and normalized, per row.

    Where ``u`` is parallel to ``n`` the lab-based perpendicular vector of
    :func:`perpendicular_unit_vectors` is used instead.
    """
    projected = u - np.einsum("ij,ij->i", u, n)[:, None] * n
    norm = np.linalg.norm(projected, axis=1)
    usable = norm > 1e-12
    fallback = perpendicular_unit_vectors(n)
    return np.where(usable[:, None], projected / np.where(usable, norm, 1.0)[:, None], fallback)


class AngularImager(Imager):
    """Draws each jet as angles about its axis, oriented by its principal axis."""

    name: ClassVar[str] = "angular"
    summary: ClassVar[str] = (
        "Jet images as angles about the jet axis, invariant under any 3D rotation; energy intensity."
    )
    Params: ClassVar[type[PluginParams]] = AngularParams
    input: ClassVar[ImagerInput] = ImagerInput.JET

    params: AngularParams

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        if not isinstance(params, AngularParams):
            raise TypeError(f"angular needs AngularParams, got {type(params).__name__}")
        super().__init__(params, context)
        self.extent = params.extent if params.extent is not None else context.jet_radius
        self.channel_names = charge_channels(np.zeros(0, dtype=np.float32), params.channels)[1]

    def describe(self) -> ImageDescription:
        """Axes, window, units and intensity of the images."""
        window = (-self.extent, self.extent)
        return ImageDescription(
            axes=("theta_along_principal_axis", "theta_across_principal_axis"),
            extents=(window, window),
            units="rad",
            intensity=INTENSITY_LABELS[self.params.intensity],
            channels=self.channel_names,
            shape=(len(self.channel_names), self.params.size, self.params.size),
        )

    def render(self, parton: JetBatch | ParticleBatch, hadron: JetBatch | ParticleBatch) -> ImageSet:
        """Draw the parton and hadron jets of ``n`` events as (n, C, size, size) float32 images."""
        if not isinstance(parton, JetBatch) or not isinstance(hadron, JetBatch):
            raise TypeError("angular draws jets: pass JetBatch objects for both levels")
        if len(parton) != len(hadron):
            raise ValueError(f"parton and hadron batches differ in length: {len(parton)} and {len(hadron)}")
        params = self.params
        axis = symmetric_axis(self.extent, params.size)
        tolerance = axis.edge_tolerance
        jets = {"parton": parton, "hadron": hadron}
        frame_level = params.frame_from
        other_level = "parton" if frame_level == "hadron" else "hadron"

        # 1. Jet axes, a first, lab-based frame (u, v) per jet, and the points in it.
        n = {level: unit_vectors(*j.axis[:, :3].T) for level, j in jets.items()}
        u_lab = {level: perpendicular_unit_vectors(n[level]) for level in jets}
        v_lab = {level: np.cross(n[level], u_lab[level]) for level in jets}
        lab_points = {level: self._points(j, n[level], u_lab[level]) for level, j in jets.items()}

        # 2. Each level's principal axis as a 3D direction u.
        rotation = {level: principal_axis_rotation(lab_points[level], tolerance) for level in jets}
        u_own = {
            level: rotation[level].cos[:, None] * u_lab[level] + rotation[level].sin[:, None] * v_lab[level]
            for level in jets
        }

        # 3. The frame level's u, carried over to the other level's axis (a level's own
        #    u where the frame level has all its constituents on the axis). Turning
        #    the lab-frame points by the angle from u_lab to that u gives the image.
        frame_defined = rotation[frame_level].defined
        points: dict[str, Points] = {}
        for level in jets:
            carried = project_onto_plane(u_own[frame_level], n[level])
            u = np.where(frame_defined[:, None], carried, u_own[level])
            turn = PlaneRotation(
                cos=np.einsum("ij,ij->i", u, u_lab[level]),
                sin=np.einsum("ij,ij->i", u, v_lab[level]),
                defined=frame_defined | rotation[level].defined,
            )
            points[level] = rotate_points(lab_points[level], turn)

        # 4. Reflection from the frame level, applied to both levels.
        if params.flip:
            reflection = paired_reflection(points[frame_level], points[other_level], tolerance)
            points = {level: reflect_points(p, reflection) for level, p in points.items()}

        # 5. Pixelize and record what fell outside the window.
        images: dict[str, NDArray[np.float32]] = {}
        per_image: dict[str, NDArray[np.generic]] = {}
        for level, p in points.items():
            pixelized = pixelize(p, axis, axis)
            images[level] = normalize_images(pixelized.images) if params.normalize else pixelized.images
            per_image[f"{level}_dropped_fraction"] = pixelized.dropped_fraction
        return ImageSet(parton=images["parton"], hadron=images["hadron"], per_image=per_image)

    def _points(self, jets: JetBatch, n: FloatArray, u: FloatArray) -> Points:
        c = jets.constituents
        row, col = angular_coordinates(c, n, u)
        channel, names = charge_channels(c.charge, self.params.channels)
        if self.params.intensity == "energy":
            weight = c.E.copy()
        else:
            weight = fractions_of_sum(c.E, c.entry_index, len(jets))
        points = Points(
            row=row,
            col=col,
            weight=weight,
            image=c.entry_index,
            n_images=len(jets),
            channel=channel,
            n_channels=len(names),
        )
        return subtract_centroid(points) if self.params.center == "centroid" else points


@hookimpl
def register_imagers(register: Register) -> None:
    """Register the angular imager."""
    register(AngularImager)
