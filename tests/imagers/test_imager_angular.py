"""Tests of the angular imager."""

from __future__ import annotations

import math

import numpy as np
import pytest
from imager_reference import jet_batch, massless, particle_batch, random_rotation, rotate_jets

from qcdtool.core.contracts import ImageSet, JetBatch, PluginContext
from qcdtool.core.images import perpendicular_unit_vectors, unit_vectors
from qcdtool.core.kinematics import opening_angle
from qcdtool.plugins.imagers.angular import AngularImager, AngularParams, angular_coordinates


def render(jets: JetBatch, other: JetBatch | None = None, **options: object) -> ImageSet:
    imager = AngularImager(AngularParams(**options), PluginContext(jet_radius=0.8))
    return imager.render(jets if other is None else other, jets)


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-image sum of absolute pixel differences, as a fraction of the intensity."""
    return float(np.abs(a - b).sum(axis=(1, 2, 3)).max())


def mirror_matrix(seed: int) -> np.ndarray:
    """A reflection in a random plane through the origin (determinant -1)."""
    normal = np.random.default_rng(seed).normal(size=3)
    normal /= np.linalg.norm(normal)
    return np.eye(3) - 2.0 * np.outer(normal, normal)


# --------------------------------------------------------------------------
# Coordinates and one-constituent jets


@pytest.mark.parametrize(("size", "pixel"), [(15, 7), (16, 8)])
def test_one_constituent_named_pixel(size: int, pixel: int) -> None:
    jets = jet_batch([[massless(12.0, 0.37, -2.9)]])
    image = render(jets, size=size).hadron[0, 0]
    assert image[pixel, pixel] == 1.0


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


def test_distance_from_centre_is_opening_angle(z_jets: tuple[JetBatch, JetBatch]) -> None:
    jets = z_jets[1]
    c = jets.constituents
    n = unit_vectors(*jets.axis[:, :3].T)
    row, col = angular_coordinates(c, n, perpendicular_unit_vectors(n))
    axis = jets.axis[c.entry_index]
    expected = opening_angle(c.px, c.py, c.pz, axis[:, 0], axis[:, 1], axis[:, 2])
    np.testing.assert_allclose(np.hypot(row, col), expected, rtol=1e-12, atol=1e-15)


def test_principal_axis_along_rows() -> None:
    # Three constituents on one great circle through the jet axis lie on one line in the image.
    rotation = random_rotation(11)
    constituents = [(5.0, 0.0), (2.0, 0.25), (1.0, -0.4)]
    jet = [
        (*(float(v) for v in e * (rotation @ np.array([math.cos(t), math.sin(t), 0.0]))), e, 1.0)
        for e, t in constituents
    ]
    jets = jet_batch([jet])
    image = render(jets, size=15).hadron[0, 0]
    assert image[:, 7].sum() == pytest.approx(1.0, rel=1e-6)


def test_jet_along_beam_fully_drawn(z_jets: tuple[JetBatch, JetBatch]) -> None:
    jets = z_jets[1]
    first = JetBatch(axis=jets.axis[:1], constituents=jets.constituents.take(np.array([0])))
    n = unit_vectors(*first.axis[:, :3].T)[0]
    # The rotation that takes n to +z: about n x z by the angle between them.
    k = np.cross(n, [0.0, 0.0, 1.0])
    angle = math.atan2(np.linalg.norm(k), n[2])
    k /= np.linalg.norm(k)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    to_beam = np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * cross @ cross
    along_beam = rotate_jets(first, to_beam)
    assert abs(along_beam.axis[0, 0]) + abs(along_beam.axis[0, 1]) < 1e-12
    np.testing.assert_allclose(render(along_beam).hadron, render(first).hadron, atol=1e-6)


# --------------------------------------------------------------------------
# Intensity and window


def test_pixel_sum_one_minus_dropped(z_jets: tuple[JetBatch, JetBatch]) -> None:
    result = render(z_jets[1], extent=0.2)
    dropped = result.per_image["hadron_dropped_fraction"]
    assert np.count_nonzero(dropped) > 100
    np.testing.assert_allclose(result.hadron.sum(axis=(1, 2, 3)), 1.0 - dropped, atol=1e-6)


def test_energy_intensity_in_gev() -> None:
    jets = jet_batch([[massless(10.0, 0.1, 0.1), massless(5.0, -0.2, 0.05)]])
    assert render(jets, intensity="energy").hadron.sum() == pytest.approx(jets.constituents.E.sum(), rel=1e-6)


def test_channels_sum_to_one_channel(z_jets: tuple[JetBatch, JetBatch]) -> None:
    parton, hadron = z_jets
    one = render(hadron, parton)
    two = render(hadron, parton, channels="charged-neutral")
    np.testing.assert_allclose(two.hadron.sum(axis=1), one.hadron[:, 0], atol=1e-6)
    np.testing.assert_allclose(two.parton.sum(axis=1), one.parton[:, 0], atol=1e-6)


# --------------------------------------------------------------------------
# Symmetries


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("frame_from", ["hadron", "parton"])
def test_invariant_under_3d_rotation(z_jets: tuple[JetBatch, JetBatch], seed: int, frame_from: str) -> None:
    parton, hadron = z_jets
    rotation = random_rotation(seed)
    before = render(hadron, parton, frame_from=frame_from)
    after = render(rotate_jets(hadron, rotation), rotate_jets(parton, rotation), frame_from=frame_from)
    assert changed_fraction(after.hadron, before.hadron) <= 1e-5
    assert changed_fraction(after.parton, before.parton) <= 1e-5


def test_invariant_under_rotation_all_options(z_jets: tuple[JetBatch, JetBatch]) -> None:
    parton, hadron = z_jets
    rotation = random_rotation(4)
    options = {"center": "centroid", "flip": True, "channels": "charged-neutral", "size": 16}
    before = render(hadron, parton, **options)
    after = render(rotate_jets(hadron, rotation), rotate_jets(parton, rotation), **options)
    assert changed_fraction(after.hadron, before.hadron) <= 1e-5
    assert changed_fraction(after.parton, before.parton) <= 1e-5


def test_flip_removes_mirror_reflection(z_jets: tuple[JetBatch, JetBatch]) -> None:
    parton, hadron = z_jets
    mirror = mirror_matrix(5)
    before = render(hadron, parton, flip=True)
    after = render(rotate_jets(hadron, mirror), rotate_jets(parton, mirror), flip=True)
    assert changed_fraction(after.hadron, before.hadron) <= 1e-5


def test_without_flip_mirror_reflection_shows(z_jets: tuple[JetBatch, JetBatch]) -> None:
    parton, hadron = z_jets
    mirror = mirror_matrix(5)
    before = render(hadron, parton)
    after = render(rotate_jets(hadron, mirror), rotate_jets(parton, mirror))
    assert changed_fraction(after.hadron, before.hadron) > 0.1


def test_frame_from_level_orients_both(z_jets: tuple[JetBatch, JetBatch]) -> None:
    parton, hadron = z_jets
    paired = render(hadron, parton, frame_from="parton")
    alone = render(parton, parton)
    np.testing.assert_array_equal(paired.parton, alone.parton)


def test_frame_falls_back_on_other_level() -> None:
    # The hadron jet has its one constituent on the axis; the parton jet then uses its own principal axis.
    hadron = jet_batch([[massless(10.0, 0.5, 1.0)]])
    parton = jet_batch([[massless(6.0, 0.5, 1.0), massless(4.0, 0.7, 1.1)]])
    rotation = random_rotation(6)
    before = render(hadron, parton)
    after = render(rotate_jets(hadron, rotation), rotate_jets(parton, rotation))
    np.testing.assert_allclose(after.parton, before.parton, atol=1e-6)


# --------------------------------------------------------------------------
# Description and input checks


def test_describe_shape_and_window() -> None:
    description = AngularImager(AngularParams(size=16, extent=0.5), PluginContext()).describe()
    assert description.shape == (1, 16, 16)
    assert description.extents == ((-0.5, 0.5), (-0.5, 0.5))
    assert description.units == "rad"


def test_render_rejects_events() -> None:
    imager = AngularImager(AngularParams(), PluginContext())
    events = particle_batch([[massless(1.0, 0.0, 0.0)]])
    with pytest.raises(TypeError, match="JetBatch"):
        imager.render(events, events)
