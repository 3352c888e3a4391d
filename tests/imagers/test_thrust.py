"""Tests of the thrust frame in qcdtool.core.thrust."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pythia8mc
from imager_reference import particle_batch, random_rotation, rotate_particles

from qcdtool.core.particles import ParticleBatch
from qcdtool.core.thrust import thrust_axes, thrust_frame


def pythia_thrust(batch: ParticleBatch) -> np.ndarray:
    """Return (thrust, thrust major) of every event from PYTHIA's exact Thrust class."""
    event = pythia8mc.Event()
    thrust = pythia8mc.Thrust(1)
    values = np.zeros((len(batch), 2))
    for i in range(len(batch)):
        event.reset()
        for k in range(int(batch.offsets[i]), int(batch.offsets[i + 1])):
            event.append(211, 1, 0, 0, batch.px[k], batch.py[k], batch.pz[k], batch.E[k], 0.0)
        thrust.analyze(event)
        values[i] = thrust.thrust(), thrust.tMajor()
    return values


def test_thrust_back_to_back_is_one() -> None:
    batch = particle_batch([[(0.0, 3.0, 4.0, 5.0, 1.0), (0.0, -3.0, -4.0, 5.0, -1.0)]])
    frame = thrust_frame(batch)
    assert frame.thrust[0] == pytest.approx(1.0, rel=1e-15)
    assert abs(frame.axis[0] @ np.array([0.0, 0.6, 0.8])) == pytest.approx(1.0, rel=1e-15)


def test_thrust_three_particles_exact() -> None:
    # For three momenta that sum to zero, T = 2 max |p_i| / sum |p_i|.
    p3 = (-0.4, -0.8, 0.0)
    norm3 = math.hypot(*p3)
    batch = particle_batch([[(1.0, 0.0, 0.0, 1.0, 0.0), (-0.6, 0.8, 0.0, 1.0, 0.0), (*p3, norm3, 0.0)]])
    frame = thrust_frame(batch)
    assert frame.thrust[0] == pytest.approx(2.0 / (2.0 + norm3), rel=1e-14)


def test_thrust_planar_minor_zero() -> None:
    batch = particle_batch([[(1.0, 0.0, 0.0, 1.0, 0.0), (-0.6, 0.8, 0.0, 1.0, 0.0), (-0.4, -0.8, 0.0, 0.9, 0.0)]])
    frame = thrust_frame(batch)
    assert abs(frame.minor_axis[0, 2]) == pytest.approx(1.0, rel=1e-12)


def test_thrust_empty_event() -> None:
    batch = ParticleBatch.concatenate([particle_batch([[(1.0, 0.0, 0.0, 1.0, 0.0)]]), ParticleBatch.empty()])
    batch = ParticleBatch(
        px=batch.px,
        py=batch.py,
        pz=batch.pz,
        E=batch.E,
        pid=batch.pid,
        charge=batch.charge,
        offsets=np.array([0, 1, 1]),
    )
    frame = thrust_frame(batch)
    assert frame.thrust.tolist() == [1.0, 0.0]


def test_thrust_matches_pythia_on_z_events(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    for batch in z_events:
        reference = pythia_thrust(batch)
        _, thrust = thrust_axes(batch)
        difference = reference[:, 0] - thrust
        assert np.mean(np.abs(difference) <= 1e-12) >= 0.99
        assert difference.min() >= -1e-12
        assert difference.max() <= 1e-3


def test_thrust_major_matches_pythia(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    hadron = z_events[1]
    reference = pythia_thrust(hadron)
    frame = thrust_frame(hadron)
    same_axis = np.abs(reference[:, 0] - frame.thrust) <= 1e-12
    np.testing.assert_allclose(frame.thrust_major[same_axis], reference[same_axis, 1], rtol=1e-10)


def test_thrust_axis_points_to_energetic_side(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    hadron = z_events[1]
    frame = thrust_frame(hadron)
    entry = hadron.entry_index
    along = hadron.px * frame.axis[entry, 0] + hadron.py * frame.axis[entry, 1] + hadron.pz * frame.axis[entry, 2]
    forward = np.bincount(entry, weights=np.where(along > 0, hadron.E, 0.0), minlength=len(hadron))
    backward = np.bincount(entry, weights=np.where(along < 0, hadron.E, 0.0), minlength=len(hadron))
    assert np.all(forward >= backward)


def test_thrust_frame_right_handed(z_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    frame = thrust_frame(z_events[1])
    basis = np.stack([frame.axis, frame.major_axis, frame.minor_axis], axis=1)
    np.testing.assert_allclose(basis @ basis.transpose(0, 2, 1), np.broadcast_to(np.eye(3), basis.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(basis), 1.0, rtol=1e-12)


@pytest.mark.parametrize("seed", [1, 2])
def test_thrust_frame_rotates_with_event(z_events: tuple[ParticleBatch, ParticleBatch], seed: int) -> None:
    rotation = random_rotation(seed)
    for batch in z_events:
        frame = thrust_frame(batch)
        turned = thrust_frame(rotate_particles(batch, rotation))
        # Events with every particle on the thrust axis have no major axis to rotate.
        has_major = frame.thrust_major > 1e-9
        np.testing.assert_allclose(turned.axis, frame.axis @ rotation.T, atol=1e-9)
        np.testing.assert_allclose(turned.major_axis[has_major], (frame.major_axis @ rotation.T)[has_major], atol=1e-9)
