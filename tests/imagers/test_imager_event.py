"""Tests of the event imager."""

from __future__ import annotations

import math

import numpy as np
import pytest
from imager_reference import jet_batch, massless, particle_batch, random_rotation, rotate_particles

from qcdtool.core.contracts import ImageSet, PluginContext
from qcdtool.core.particles import ParticleBatch
from qcdtool.plugins.imagers.event import EventImager, EventParams

# p1 = (0, 0, 40) against p2 = (3, 0, -20) and p3 = (-3, 0, -20): the thrust axis
# is z, pointing to -z (40.45 GeV against 40 GeV); p2 and p3 tie in energy, so
# the first of them, p2, sets the major axis to +x, and the minor axis is
# (-z) x (+x) = -y.
E23 = math.sqrt(409.0)
THREE_PARTICLES = [(0.0, 0.0, 40.0, 40.0, 1.0), (3.0, 0.0, -20.0, E23, -1.0), (-3.0, 0.0, -20.0, E23, 0.0)]
E_TOTAL = 40.0 + 2.0 * E23
THETA_23 = math.atan2(3.0, 20.0)


def render(parton: ParticleBatch, hadron: ParticleBatch, **options: object) -> ImageSet:
    return EventImager(EventParams(**options), PluginContext()).render(parton, hadron)


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-image sum of absolute pixel differences, as a fraction of the intensity."""
    return float(np.abs(a - b).sum(axis=(1, 2, 3)).max())


# --------------------------------------------------------------------------
# A three-particle event with known frame


def test_three_particles_angle_azimuth() -> None:
    event = particle_batch([THREE_PARTICLES])
    images = render(event, event).hadron[0]
    # Backward (+z): p1 on the axis, theta 0 (row 0) and phi set to 0 (column 15 of 31).
    assert images[1, 0, 15] == pytest.approx(40.0 / E_TOTAL, rel=1e-6)
    # Forward (-z): p2 at phi 0, p3 at phi = pi, which wraps into column 0.
    row = math.floor(THETA_23 / (math.pi / 2) * 31)
    assert images[0, row, 15] == pytest.approx(E23 / E_TOTAL, rel=1e-6)
    assert images[0, row, 0] == pytest.approx(E23 / E_TOTAL, rel=1e-6)


def test_three_particles_plane() -> None:
    event = particle_batch([THREE_PARTICLES])
    images = render(event, event, coordinates="plane").hadron[0]
    pixel = 31 / math.pi  # pixels per radian over [-pi/2, pi/2]
    assert images[1, 15, 15] == pytest.approx(40.0 / E_TOTAL, rel=1e-6)
    assert images[0, math.floor((THETA_23 + math.pi / 2) * pixel), 15] == pytest.approx(E23 / E_TOTAL, rel=1e-6)
    assert images[0, math.floor((-THETA_23 + math.pi / 2) * pixel), 15] == pytest.approx(E23 / E_TOTAL, rel=1e-6)


def test_three_particles_thrust_stored() -> None:
    event = particle_batch([THREE_PARTICLES])
    per_image = render(event, event).per_image
    assert per_image["thrust"][0] == pytest.approx(80.0 / E_TOTAL, rel=1e-12)
    assert per_image["thrust_major"][0] == pytest.approx(6.0 / E_TOTAL, rel=1e-12)


def test_three_particles_charged_neutral() -> None:
    event = particle_batch([THREE_PARTICLES])
    images = render(event, event, channels="charged-neutral").hadron[0]
    row = math.floor(THETA_23 / (math.pi / 2) * 31)
    # Channels: forward-charged, forward-neutral, backward-charged, backward-neutral.
    assert images[0, row, 15] == pytest.approx(E23 / E_TOTAL, rel=1e-6)
    assert images[1, row, 0] == pytest.approx(E23 / E_TOTAL, rel=1e-6)
    assert images[2, 0, 15] == pytest.approx(40.0 / E_TOTAL, rel=1e-6)


# --------------------------------------------------------------------------
# Real events


def test_pixel_sum_one_minus_dropped(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    result = render(parton, hadron, extent=0.5)
    dropped = result.per_image["hadron_dropped_fraction"]
    assert np.count_nonzero(dropped) > 100
    np.testing.assert_allclose(result.hadron.sum(axis=(1, 2, 3)), 1.0 - dropped, atol=1e-6)


def test_whole_hemispheres_drop_nothing(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    result = render(parton, hadron)
    assert result.per_image["hadron_dropped_fraction"].max() == 0.0
    assert result.per_image["parton_dropped_fraction"].max() == 0.0


def test_forward_hemisphere_more_energetic(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    images = render(parton, hadron).hadron
    assert np.all(images[:, 0].sum(axis=(1, 2)) >= images[:, 1].sum(axis=(1, 2)) - 1e-6)


def test_energy_intensity_in_gev(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    images = render(parton, hadron, intensity="energy").hadron
    total = np.bincount(hadron.entry_index, weights=hadron.E, minlength=len(hadron))
    np.testing.assert_allclose(images.sum(axis=(1, 2, 3)), total, rtol=1e-5)


def test_normalize_sums_to_one(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    images = render(parton, hadron, extent=0.5, normalize=True).hadron
    np.testing.assert_allclose(images.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("coordinates", ["angle-azimuth", "plane"])
def test_charge_channels_sum_to_hemispheres(z_events: tuple[ParticleBatch, ParticleBatch], coordinates: str) -> None:
    parton, hadron = z_events
    one = render(parton, hadron, coordinates=coordinates)
    two = render(parton, hadron, coordinates=coordinates, channels="charged-neutral")
    n, _, h, w = two.hadron.shape
    np.testing.assert_allclose(two.hadron.reshape(n, 2, 2, h, w).sum(axis=2), one.hadron, atol=1e-6)
    np.testing.assert_allclose(two.parton.reshape(n, 2, 2, h, w).sum(axis=2), one.parton, atol=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("coordinates", ["angle-azimuth", "plane"])
@pytest.mark.parametrize("frame_from", ["hadron", "parton"])
def test_invariant_under_3d_rotation(
    z_events: tuple[ParticleBatch, ParticleBatch], seed: int, coordinates: str, frame_from: str
) -> None:
    parton, hadron = z_events
    rotation = random_rotation(seed)
    before = render(parton, hadron, coordinates=coordinates, frame_from=frame_from)
    after = render(
        rotate_particles(parton, rotation),
        rotate_particles(hadron, rotation),
        coordinates=coordinates,
        frame_from=frame_from,
    )
    assert changed_fraction(after.hadron, before.hadron) <= 1e-5
    assert changed_fraction(after.parton, before.parton) <= 1e-5


def test_frame_from_parton_draws_partons_alone(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    paired = render(parton, hadron, frame_from="parton")
    alone = render(parton, parton, frame_from="parton")
    np.testing.assert_array_equal(paired.parton, alone.parton)


def test_frame_from_changes_other_level(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    from_hadron = render(parton, hadron, frame_from="hadron")
    from_parton = render(parton, hadron, frame_from="parton")
    assert changed_fraction(from_parton.hadron, from_hadron.hadron) > 0.1


# --------------------------------------------------------------------------
# Description and input checks


def test_describe_angle_azimuth() -> None:
    description = EventImager(EventParams(), PluginContext()).describe()
    assert description.channels == ("forward", "backward")
    assert description.shape == (2, 31, 31)
    assert description.extents == ((0.0, math.pi / 2), (-math.pi, math.pi))


def test_describe_charged_neutral_plane() -> None:
    params = EventParams(coordinates="plane", channels="charged-neutral", size=16, extent=1.0)
    description = EventImager(params, PluginContext()).describe()
    assert description.channels == (
        "forward-charged",
        "forward-neutral",
        "backward-charged",
        "backward-neutral",
    )
    assert description.extents == ((-1.0, 1.0), (-1.0, 1.0))


def test_render_rejects_jets() -> None:
    imager = EventImager(EventParams(), PluginContext())
    jets = jet_batch([[massless(1.0, 0.0, 0.0)]])
    with pytest.raises(TypeError, match="ParticleBatch"):
        imager.render(jets, jets)


def test_render_rejects_unequal_levels(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = z_events
    with pytest.raises(ValueError, match="differ in length"):
        render(parton.take(np.arange(3)), hadron)
