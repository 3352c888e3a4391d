"""Tests of the eta-phi imager."""

from __future__ import annotations

import math

import numpy as np
import pytest
from imager_reference import (
    jet_batch,
    massless,
    particle_batch,
    reference_eta_phi,
    rotate_jets,
    rotation_about_z,
    two_jets_per_event,
)

from qcdtool.core import kinematics
from qcdtool.core.contracts import ImageSet, JetBatch, PluginContext
from qcdtool.core.images import POINT_CHUNK
from qcdtool.core.particles import ParticleBatch
from qcdtool.plugins.imagers.eta_phi import EtaPhiImager, EtaPhiParams, coordinates_and_pt, eta_phi_coordinates

AXIS_AT_ORIGIN = np.array([1.0, 0.0, 0.0, 1.0])  # eta = 0, phi = 0


def render(jets: JetBatch, other: JetBatch | None = None, radius: float = 0.8, **options: object) -> ImageSet:
    imager = EtaPhiImager(EtaPhiParams(**options), PluginContext(jet_radius=radius))
    return imager.render(jets if other is None else other, jets)


def jets_about_origin(constituents: list[list[tuple[float, float, float, float, float]]]) -> JetBatch:
    """Jets whose axis is fixed at eta = 0, phi = 0, so constituent eta and phi are the offsets."""
    batch = particle_batch(constituents)
    return JetBatch(axis=np.tile(AXIS_AT_ORIGIN, (len(batch), 1)), constituents=batch)


def offsets_of(jets: JetBatch) -> list[list[tuple[float, float, float]]]:
    """(pT, delta eta, delta phi) of every constituent of every jet."""
    delta_eta, delta_phi = eta_phi_coordinates(jets)
    pt = jets.constituents.pt
    c = jets.constituents
    return [
        [(pt[i], delta_eta[i], delta_phi[i]) for i in range(c.offsets[j], c.offsets[j + 1])] for j in range(len(jets))
    ]


def transformed_jets(
    offsets: list[list[tuple[float, float, float]]], angle: float, mirror: tuple[int, int]
) -> JetBatch:
    """Rebuild jets about the origin with offsets turned by ``angle`` and then mirrored."""
    c, s = math.cos(angle), math.sin(angle)
    jets = []
    for jet in offsets:
        constituents = []
        for pt, deta, dphi in jet:
            row = mirror[0] * (c * deta - s * dphi)
            col = mirror[1] * (s * deta + c * dphi)
            constituents.append(massless(pt, row, col))
        jets.append(constituents)
    return jets_about_origin(jets)


@pytest.fixture(scope="module")
def real_offsets(z_jets: tuple[JetBatch, JetBatch]) -> list[list[tuple[float, float, float]]]:
    """Offsets of 200 real hadron jets with at least three constituents, all within 0.9 of the axis.

    Jets near the beam have eta-phi offsets of several units. Turning those
    would push delta phi past pi, where it wraps, so they are left out.
    """
    hadron = z_jets[1]
    delta_eta, delta_phi = eta_phi_coordinates(hadron)
    farthest = np.zeros(len(hadron))
    np.maximum.at(farthest, hadron.constituents.entry_index, np.hypot(delta_eta, delta_phi))
    keep = np.flatnonzero((hadron.constituents.counts >= 3) & (farthest <= 0.9))[:200]
    assert len(keep) == 200
    return offsets_of(JetBatch(axis=hadron.axis[keep], constituents=hadron.constituents.take(keep)))


# --------------------------------------------------------------------------
# Even-size rule and one-constituent jets


@pytest.mark.parametrize(("size", "pixel"), [(15, 7), (16, 8), (31, 15), (32, 16)])
def test_one_constituent_named_pixel(size: int, pixel: int) -> None:
    jets = jet_batch([[massless(12.0, 0.37, -2.9)]])
    image = render(jets, size=size).hadron[0, 0]
    assert image[pixel, pixel] == 1.0
    assert image.sum() == 1.0


@pytest.mark.parametrize(("size", "pixel"), [(15, 7), (16, 8)])
def test_one_constituent_axis_one_ulp_apart(size: int, pixel: int) -> None:
    constituent = massless(12.0, 0.37, -2.9)
    jets = jet_batch([[constituent], [constituent]])
    axis = jets.axis.copy()
    axis[0, :3] = np.nextafter(axis[0, :3], np.inf)
    axis[1, :3] = np.nextafter(axis[1, :3], -np.inf)
    images = render(JetBatch(axis=axis, constituents=jets.constituents), size=size).hadron
    assert images[0, 0, pixel, pixel] == 1.0
    assert images[1, 0, pixel, pixel] == 1.0


# --------------------------------------------------------------------------
# Intensity and window


def test_pixel_sum_one_minus_dropped(z_jets: tuple[JetBatch, JetBatch]) -> None:
    result = render(z_jets[1], extent=0.3)
    dropped = result.per_image["hadron_dropped_fraction"]
    assert np.count_nonzero(dropped) > 100
    np.testing.assert_allclose(result.hadron.sum(axis=(1, 2, 3)), 1.0 - dropped, rtol=1e-6, atol=1e-6)


def test_parton_dropped_fraction_stored(z_jets: tuple[JetBatch, JetBatch]) -> None:
    result = render(z_jets[1], z_jets[0], extent=0.3)
    np.testing.assert_allclose(
        result.parton.sum(axis=(1, 2, 3)), 1.0 - result.per_image["parton_dropped_fraction"], atol=1e-6
    )


def test_energy_intensity_in_gev() -> None:
    jets = jet_batch([[massless(10.0, 0.1, 0.1), massless(5.0, -0.2, 0.05)]])
    image = render(jets, intensity="energy").hadron
    energy = jets.constituents.E
    assert image.sum() == pytest.approx(energy.sum(), rel=1e-6)


def test_energy_fraction_sums_to_one() -> None:
    jets = jet_batch([[massless(10.0, 0.1, 0.1), massless(5.0, -0.2, 0.05)]])
    assert render(jets, intensity="energy-fraction").hadron.sum() == pytest.approx(1.0, rel=1e-6)


def test_normalize_despite_dropped_weight() -> None:
    jets = jets_about_origin([[massless(10.0, 0.1, 0.1), massless(5.0, 0.7, 0.05)]])
    result = render(jets, extent=0.4, normalize=True)
    assert result.hadron.sum() == pytest.approx(1.0, rel=1e-6)
    assert result.per_image["hadron_dropped_fraction"][0] == pytest.approx(5.0 / 15.0, rel=1e-12)


def test_window_edge_in_edge_pixels() -> None:
    inside = massless(4.0, 0.0, 0.5)
    mirrored = (inside[0], -inside[1], inside[2], inside[3], inside[4])
    extent = float(kinematics.phi(inside[0], inside[1]))
    jets = jets_about_origin([[inside, mirrored, massless(2.0, 0.0, 0.6)]])
    result = render(jets, extent=extent, size=15)
    image = result.hadron[0, 0]
    assert image[7, 14] == pytest.approx(0.4, rel=1e-6)
    assert image[7, 0] == pytest.approx(0.4, rel=1e-6)
    assert result.per_image["hadron_dropped_fraction"][0] == pytest.approx(0.2, rel=1e-12)


def test_outside_window_dropped_not_clamped() -> None:
    jets = jets_about_origin([[massless(1.0, 0.0, 0.0), massless(1.0, 0.81, 0.0)]])
    result = render(jets, extent=0.8, size=15)
    assert result.hadron[0, 0, 14].sum() == 0.0
    assert result.per_image["hadron_dropped_fraction"][0] == pytest.approx(0.5, rel=1e-12)


def test_empty_jet_gives_empty_image() -> None:
    constituents = ParticleBatch.concatenate([particle_batch([[massless(3.0, 0.0, 0.0)]]), ParticleBatch.empty()])
    batch = ParticleBatch(
        px=constituents.px,
        py=constituents.py,
        pz=constituents.pz,
        E=constituents.E,
        pid=constituents.pid,
        charge=constituents.charge,
        offsets=np.array([0, 1, 1]),
    )
    jets = JetBatch(axis=np.array([[3.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]), constituents=batch)
    result = render(jets)
    assert result.hadron[1].sum() == 0.0
    assert result.per_image["hadron_dropped_fraction"][1] == 0.0


# --------------------------------------------------------------------------
# Phi wrap


def test_phi_wrap_opposite_edge_columns() -> None:
    jets = jets_about_origin([[massless(1.0, 0.0, math.pi - 1e-3), massless(1.0, 0.0, -math.pi + 1e-3)]])
    image = render(jets, extent=math.pi, size=15).hadron[0, 0]
    assert image[7, 14] == pytest.approx(0.5, rel=1e-6)
    assert image[7, 0] == pytest.approx(0.5, rel=1e-6)


def test_phi_wrap_at_pi_in_last_column() -> None:
    # delta phi = pi up to rounding lies on the closed upper window edge.
    jets = jets_about_origin([[massless(1.0, 0.0, np.nextafter(math.pi, 0.0))]])
    image = render(jets, extent=math.pi, size=16).hadron[0, 0]
    assert image[8, 15] == 1.0


def test_delta_phi_across_wrap() -> None:
    constituent = massless(5.0, 0.2, -3.10)
    axis = np.array([[10.0 * math.cos(3.10), 10.0 * math.sin(3.10), 10.0 * math.sinh(0.2), 0.0]])
    axis[0, 3] = float(np.linalg.norm(axis[0, :3]))
    jets = JetBatch(axis=axis, constituents=particle_batch([[constituent]]))
    delta_phi = eta_phi_coordinates(jets)[1][0]
    assert round(delta_phi, 4) == 0.0832
    assert delta_phi == pytest.approx(2 * math.pi - 6.20, abs=1e-12)
    image = render(jets, size=15).hadron[0, 0]
    assert image[7, 8] == 1.0


# --------------------------------------------------------------------------
# Symmetries


@pytest.mark.parametrize("angle", [0.7, 2.5, -1.9, math.pi])
def test_invariant_under_phi_rotation(z_jets: tuple[JetBatch, JetBatch], angle: float) -> None:
    parton, hadron = z_jets
    rotation = rotation_about_z(angle)
    before = render(hadron, parton, size=16)
    after = render(rotate_jets(hadron, rotation), rotate_jets(parton, rotation), size=16)
    changed = np.abs(after.hadron - before.hadron).sum(axis=(1, 2, 3))
    assert changed.max() <= 1e-5
    np.testing.assert_allclose(after.parton, before.parton, atol=1e-6)


@pytest.mark.parametrize("angle", [0.4, 1.9, -2.6])
def test_rotate_removes_plane_rotation(real_offsets: list[list[tuple[float, float, float]]], angle: float) -> None:
    original = transformed_jets(real_offsets, 0.0, (1, 1))
    turned = transformed_jets(real_offsets, angle, (1, 1))
    np.testing.assert_allclose(render(turned, rotate=True).hadron, render(original, rotate=True).hadron, atol=1e-6)


def test_without_rotate_plane_rotation_shows(real_offsets: list[list[tuple[float, float, float]]]) -> None:
    original = transformed_jets(real_offsets, 0.0, (1, 1))
    turned = transformed_jets(real_offsets, 1.1, (1, 1))
    assert np.abs(render(turned).hadron - render(original).hadron).max() > 0.1


def test_describe_units_unrotated() -> None:
    description = EtaPhiImager(EtaPhiParams(), PluginContext()).describe()
    assert description.axes == ("delta_eta", "delta_phi")
    assert description.units == "delta eta (no unit) and delta phi (rad)"


def test_describe_units_rotated() -> None:
    description = EtaPhiImager(EtaPhiParams(rotate=True), PluginContext()).describe()
    assert description.axes == ("major_axis", "minor_axis")
    assert description.units == (
        "distance along and across the principal axis in the (delta eta, delta phi) plane, "
        "as delta R (delta eta has no unit, delta phi is in rad)"
    )


@pytest.mark.parametrize("mirror", [(-1, 1), (1, -1), (-1, -1)])
def test_flip_removes_reflections(
    real_offsets: list[list[tuple[float, float, float]]], mirror: tuple[int, int]
) -> None:
    original = transformed_jets(real_offsets, 0.0, (1, 1))
    mirrored = transformed_jets(real_offsets, 0.0, mirror)
    np.testing.assert_allclose(render(mirrored, flip=True).hadron, render(original, flip=True).hadron, atol=1e-6)


def test_flip_heaviest_quadrant_positive() -> None:
    jets = jets_about_origin([[massless(1.0, -0.3, -0.4), massless(3.0, -0.2, 0.3), massless(1.5, 0.35, 0.1)]])
    image = render(jets, flip=True, size=15).hadron[0, 0]
    # The (-0.2, +0.3) constituent, the heaviest quadrant, moves to (+0.2, +0.3).
    assert image[9, 10] == pytest.approx(3.0 / 5.5, rel=1e-6)


@pytest.mark.parametrize(("angle", "mirror"), [(0.8, (-1, 1)), (-2.2, (1, -1))])
def test_rotate_flip_remove_both(
    real_offsets: list[list[tuple[float, float, float]]], angle: float, mirror: tuple[int, int]
) -> None:
    original = transformed_jets(real_offsets, 0.0, (1, 1))
    moved = transformed_jets(real_offsets, angle, mirror)
    a = render(original, rotate=True, flip=True, center="centroid").hadron
    b = render(moved, rotate=True, flip=True, center="centroid").hadron
    np.testing.assert_allclose(b, a, atol=1e-6)


def test_centroid_centres_pair() -> None:
    # Equal pT at delta eta = -0.1 and +0.3: the centroid is +0.1, the points end at -0.2 and +0.2.
    jets = jets_about_origin([[massless(2.0, -0.1, 0.0), massless(2.0, 0.3, 0.0)]])
    image = render(jets, center="centroid", size=15, extent=0.75).hadron[0, 0]
    assert image[5, 7] == pytest.approx(0.5, rel=1e-6)
    assert image[9, 7] == pytest.approx(0.5, rel=1e-6)


def test_frame_from_level_orients_both(z_jets: tuple[JetBatch, JetBatch]) -> None:
    parton, hadron = z_jets
    paired = render(hadron, parton, rotate=True, flip=True, frame_from="parton")
    alone = render(parton, parton, rotate=True, flip=True)
    np.testing.assert_allclose(paired.parton, alone.parton, atol=1e-6)


# --------------------------------------------------------------------------
# Channels and the reference loop


def test_channels_sum_to_one_channel(z_jets: tuple[JetBatch, JetBatch]) -> None:
    parton, hadron = z_jets
    one = render(hadron, parton)
    two = render(hadron, parton, channels="charged-neutral")
    assert two.hadron.shape[1] == 2
    np.testing.assert_allclose(two.hadron.sum(axis=1), one.hadron[:, 0], atol=1e-6)
    np.testing.assert_allclose(two.parton.sum(axis=1), one.parton[:, 0], atol=1e-6)


def test_neutral_channel_holds_photons() -> None:
    jets = jet_batch([[massless(3.0, 0.0, 0.0, charge=0.0), massless(1.0, 0.3, 0.3, charge=-1.0)]])
    images = render(jets, channels="charged-neutral").hadron
    assert images[0, 1].sum() == pytest.approx(0.75, rel=1e-6)


@pytest.mark.parametrize("size", [15, 16])
def test_matches_reference_loop(z_events: tuple[ParticleBatch, ParticleBatch], size: int) -> None:
    hadron = z_events[1]
    jets = two_jets_per_event(hadron, 0.8)
    assert len(jets) >= 1000
    expected = reference_eta_phi(jets, 0.8, size)
    np.testing.assert_allclose(render(jets, size=size).hadron, expected, rtol=1e-6, atol=1e-7)


def test_matches_reference_loop_channels(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton = z_events[0]
    jets = two_jets_per_event(parton, 0.8)
    expected = reference_eta_phi(jets, 0.8, 16, charged_neutral=True)
    images = render(jets, size=16, channels="charged-neutral").hadron
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------
# Description and input checks


def test_describe_uses_jet_radius() -> None:
    description = EtaPhiImager(
        EtaPhiParams(size=16, channels="charged-neutral"), PluginContext(jet_radius=0.4)
    ).describe()
    assert description.extents == ((-0.4, 0.4), (-0.4, 0.4))
    assert description.shape == (2, 16, 16)
    assert description.axes == ("delta_eta", "delta_phi")


def test_render_rejects_events() -> None:
    imager = EtaPhiImager(EtaPhiParams(), PluginContext())
    events = particle_batch([[massless(1.0, 0.0, 0.0)]])
    with pytest.raises(TypeError, match="JetBatch"):
        imager.render(events, events)


def test_coordinates_across_point_chunks(z_jets: tuple[JetBatch, JetBatch]) -> None:
    # Real jets tiled past three chunks of constituents, against the
    # whole-batch formulas of the documented definitions.
    _, hadron = z_jets
    index = np.resize(np.arange(len(hadron)), 3 * POINT_CHUNK // 10)
    jets = JetBatch(axis=hadron.axis[index], constituents=hadron.constituents.take(index))
    c = jets.constituents
    entry = c.entry_index
    ax, ay, az = (jets.axis[:, k] for k in range(3))
    pt = np.sqrt(c.px * c.px + c.py * c.py)
    delta_eta = np.arcsinh(c.pz / pt) - np.arcsinh(az / np.sqrt(ax * ax + ay * ay))[entry]
    delta_phi = np.arctan2(ax[entry] * c.py - ay[entry] * c.px, ax[entry] * c.px + ay[entry] * c.py)
    result = coordinates_and_pt(jets)
    assert len(c.px) > 3 * POINT_CHUNK
    np.testing.assert_array_equal(result[0], delta_eta)
    np.testing.assert_array_equal(result[1], delta_phi)
    np.testing.assert_array_equal(result[2], pt)
