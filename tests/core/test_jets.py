"""Tests of jet reconstruction: synthetic events with exact expected values, real PYTHIA events."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import awkward as ak
import fastjet
import numpy as np
import pytest
import pythia8mc

from qcdtool.core import kinematics
from qcdtool.core.jets import (
    JetRejection,
    JetSettings,
    LevelJets,
    cluster_jets,
    find_jet_pairs,
)
from qcdtool.core.particles import ParticleBatch, offsets_from_counts

REPO_ROOT = Path(__file__).resolve().parents[2]

#: e+e- -> gamma*/Z -> q qbar (d, u, s, c, b) at the Z pole, quiet.
EE_SETTINGS = (
    "Beams:idA = 11",
    "Beams:idB = -11",
    "Beams:eCM = 91.188",
    "PDF:lepton = off",
    "WeakSingleBoson:ffbar2gmZ = on",
    "23:onMode = off",
    "23:onIfAny = 1 2 3 4 5",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Random:setSeed = on",
)

Particle = tuple[float, float, float]


# --------------------------------------------------------------------------
# Inputs


def massless_events(*events: list[Particle]) -> ParticleBatch:
    """Build a batch of massless particles, each given as (pt, eta, phi)."""
    flat = [particle for event in events for particle in event]
    pt, eta, phi = (np.array([p[k] for p in flat], dtype=np.float64) for k in range(3))
    return ParticleBatch(
        px=pt * np.cos(phi),
        py=pt * np.sin(phi),
        pz=pt * np.sinh(eta),
        E=pt * np.cosh(eta),
        pid=np.full(len(flat), 211, dtype=np.int32),
        charge=np.ones(len(flat), dtype=np.float32),
        offsets=offsets_from_counts(np.array([len(event) for event in events])),
    )


def _particle_batch(particles: ak.Array, pythia: pythia8mc.Pythia) -> ParticleBatch:
    pid = np.asarray(ak.flatten(particles.id), dtype=np.int32)
    species, inverse = np.unique(pid, return_inverse=True)
    charges = np.array([pythia.particleData.charge(int(code)) for code in species], dtype=np.float32)
    return ParticleBatch(
        px=np.asarray(ak.flatten(particles.p.px), dtype=np.float64),
        py=np.asarray(ak.flatten(particles.p.py), dtype=np.float64),
        pz=np.asarray(ak.flatten(particles.p.pz), dtype=np.float64),
        E=np.asarray(ak.flatten(particles.p.e), dtype=np.float64),
        pid=pid,
        charge=charges[inverse],
        offsets=offsets_from_counts(np.asarray(ak.num(particles, axis=1))),
    )


def generate_ee_events(n_events: int, seed: int) -> tuple[ParticleBatch, ParticleBatch]:
    """Generate Z-pole events; return the parton-level and hadron-level final states.

    The partons are the entries before the first hadronization entry N
    (first |status| >= 71) that are final (status > 0) or that went into
    hadronization (daughter1 >= N). The hadrons are the final particles
    without neutrinos.
    """
    pythia = pythia8mc.Pythia("", False)
    for setting in (*EE_SETTINGS, f"Random:seed = {seed}"):
        assert pythia.readString(setting), setting
    assert pythia.init()
    record = pythia.nextBatch(n_events).prt

    status = record.status
    position = ak.local_index(status, axis=1)
    first_hadronization = ak.argmax(abs(status) >= 71, axis=1, keepdims=True)
    is_parton = (position < first_hadronization) & ((status > 0) | (record.daughter1 >= first_hadronization))
    abs_id = abs(record.id)
    is_neutrino = (abs_id == 12) | (abs_id == 14) | (abs_id == 16)
    is_hadron = (status > 0) & ~is_neutrino
    return _particle_batch(record[is_parton], pythia), _particle_batch(record[is_hadron], pythia)


@pytest.fixture(scope="module")
def ee_events() -> tuple[ParticleBatch, ParticleBatch]:
    return generate_ee_events(300, seed=20231)


# --------------------------------------------------------------------------
# Settings


def test_settings_default_match_radius() -> None:
    assert JetSettings(radius=0.4).max_match_distance == 0.4


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"algorithm": "anti-kt"}, "invalid jet algorithm 'anti-kt'"),
        ({"matching": "nearest"}, "invalid jet matching 'nearest'"),
        ({"radius": 0.0}, "jet radius must be a positive number"),
        ({"radius": math.nan}, "jet radius must be a positive number"),
        ({"p": math.inf}, "exponent p must be finite"),
        ({"n_exclusive": 0}, "n_exclusive must be at least 1"),
        ({"match_radius": -0.1}, "match_radius must be a positive number"),
    ],
)
def test_settings_invalid(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JetSettings(**arguments)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Synthetic events with exact expected values


def test_seam_constituents_join_one_jet() -> None:
    parton = massless_events([(10.0, 0.0, 3.13), (10.0, 0.0, -3.13), (5.0, 0.0, 0.0)])
    hadron = massless_events([(10.0, 0.0, -3.13)])
    pairs = find_jet_pairs(parton, hadron, JetSettings())
    assert pairs.parton.constituents.tolist() == [0, 1]
    assert pairs.parton.phi[0] == pytest.approx(np.pi, abs=1e-12)
    assert pairs.parton.pt[0] == pytest.approx(20.0 * np.cos(np.pi - 3.13), rel=1e-12)


def test_seam_delta_r_to_constituents() -> None:
    parton = massless_events([(10.0, 0.0, 3.13), (10.0, 0.0, -3.13)])
    jet = find_jet_pairs(parton, parton, JetSettings()).parton
    constituent_phi = np.array([3.13, -3.13])
    distance = kinematics.delta_r(jet.rapidity[0], jet.phi[0], 0.0, constituent_phi)
    assert np.round(distance, 4).tolist() == [0.0116, 0.0116]
    assert np.round(kinematics.delta_r(0.0, 3.13, 0.0, -3.13), 4) == 0.0232


def test_seam_matching_distance() -> None:
    parton = massless_events([(10.0, 0.0, 3.13), (10.0, 0.0, -3.13)])
    hadron = massless_events([(10.0, 0.0, -3.13)])
    pairs = find_jet_pairs(parton, hadron, JetSettings())
    assert pairs.delta_r[0] == pytest.approx(np.pi - 3.13, abs=1e-12)
    assert pairs.opening_angle[0] == pytest.approx(np.pi - 3.13, abs=1e-12)


@pytest.mark.parametrize("algorithm", ["antikt", "ee-genkt"])
def test_matched_jet_is_nearest_not_leading(algorithm: str) -> None:
    parton = massless_events([(40.0, 0.0, 0.0), (30.0, 0.0, np.pi)])
    hadron = massless_events([(20.0, 0.0, 0.1), (50.0, 0.0, 3.0)])
    pairs = find_jet_pairs(parton, hadron, JetSettings(algorithm=algorithm))  # type: ignore[arg-type]
    assert pairs.parton.pt[0] == pytest.approx(40.0)
    assert pairs.hadron.pt[0] == pytest.approx(20.0)
    assert pairs.hadron.phi[0] == pytest.approx(0.1)
    assert pairs.opening_angle[0] == pytest.approx(0.1)


def test_leading_matching_takes_leading_jet() -> None:
    parton = massless_events([(40.0, 0.0, 0.0), (30.0, 0.0, np.pi)])
    hadron = massless_events([(20.0, 0.0, 0.1), (50.0, 0.0, 3.0)])
    pairs = find_jet_pairs(parton, hadron, JetSettings(matching="leading"))
    assert pairs.hadron.pt[0] == pytest.approx(50.0)
    assert pairs.delta_r[0] == pytest.approx(3.0)


def test_ee_leading_jet_by_energy() -> None:
    # The forward jet has more energy, the central one more pt.
    parton = massless_events([(10.0, 2.0, 0.0), (20.0, 0.0, np.pi)])
    pairs = find_jet_pairs(parton, parton, JetSettings(algorithm="ee-genkt"))
    assert pairs.parton.E[0] == pytest.approx(10.0 * np.cosh(2.0))


def test_pp_leading_jet_by_pt() -> None:
    parton = massless_events([(10.0, 2.0, 0.0), (20.0, 0.0, np.pi)])
    pairs = find_jet_pairs(parton, parton, JetSettings(algorithm="kt"))
    assert pairs.parton.pt[0] == pytest.approx(20.0)


def test_empty_levels_are_flagged() -> None:
    jet = [(10.0, 0.0, 0.0)]
    parton = massless_events(jet, [], jet)
    hadron = massless_events(jet, jet, [])
    pairs = find_jet_pairs(parton, hadron, JetSettings())
    assert pairs.parton.rejection.tolist() == [
        JetRejection.ACCEPTED,
        JetRejection.NO_PARTICLES,
        JetRejection.ACCEPTED,
    ]
    assert pairs.hadron.rejection.tolist() == [
        JetRejection.ACCEPTED,
        JetRejection.NO_PARTON_JET,
        JetRejection.NO_PARTICLES,
    ]
    assert pairs.accepted.tolist() == [True, False, False]


def test_rejected_rows_hold_no_jet() -> None:
    jet = [(10.0, 0.0, 0.0)]
    pairs = find_jet_pairs(massless_events(jet, []), massless_events(jet, jet), JetSettings())
    assert np.isnan(pairs.parton.px[1])
    assert np.isnan(pairs.hadron.E[1])
    assert pairs.parton.n_constituents.tolist() == [1, 0]
    assert np.isnan(pairs.delta_r[1])


def test_all_events_empty() -> None:
    pairs = find_jet_pairs(massless_events([], []), massless_events([], []), JetSettings())
    assert pairs.hadron.rejection.tolist() == [JetRejection.NO_PARTICLES] * 2


def test_jet_beyond_match_radius_is_flagged() -> None:
    parton = massless_events([(10.0, 0.0, 0.0)])
    hadron = massless_events([(10.0, 0.0, 1.5)])
    pairs = find_jet_pairs(parton, hadron, JetSettings(match_radius=1.0))
    assert pairs.hadron.rejection.tolist() == [JetRejection.NO_MATCH]


def test_leading_matching_ignores_match_radius() -> None:
    parton = massless_events([(10.0, 0.0, 0.0)])
    hadron = massless_events([(10.0, 0.0, 1.5)])
    pairs = find_jet_pairs(parton, hadron, JetSettings(matching="leading", match_radius=1.0))
    assert pairs.accepted.tolist() == [True]


def test_durham_too_few_particles() -> None:
    parton = massless_events([(10.0, 0.0, 0.0), (10.0, 0.0, np.pi)], [(10.0, 0.0, 0.0)])
    jets = cluster_jets(parton, JetSettings(algorithm="durham"))
    assert jets.rejection.tolist() == [JetRejection.ACCEPTED, JetRejection.TOO_FEW_PARTICLES]
    assert jets.counts.tolist() == [2, 0]


def test_jet_batch_keeps_accepted_events() -> None:
    first = [(10.0, 0.0, 0.0), (5.0, 0.1, 0.1)]
    third = [(7.0, 0.0, 1.0)]
    parton = massless_events(first, [], third)
    pairs = find_jet_pairs(parton, parton, JetSettings())
    batch = pairs.jet_batch("parton", parton)
    assert batch.constituents.counts.tolist() == [2, 1]
    assert batch.constituents.E.tolist() == parton.E[[0, 1, 2]].tolist()


def test_jet_batch_unknown_level() -> None:
    parton = massless_events([(10.0, 0.0, 0.0)])
    pairs = find_jet_pairs(parton, parton, JetSettings())
    with pytest.raises(ValueError, match="invalid level 'partons'"):
        pairs.jet_batch("partons", parton)  # type: ignore[arg-type]


def test_find_jet_pairs_length_mismatch() -> None:
    one = massless_events([(10.0, 0.0, 0.0)])
    two = massless_events([(10.0, 0.0, 0.0)], [(10.0, 0.0, 0.0)])
    with pytest.raises(ValueError, match="parton level has 1 events, hadron level 2"):
        find_jet_pairs(one, two, JetSettings())


# --------------------------------------------------------------------------
# Real PYTHIA events


@pytest.mark.parametrize("algorithm", ["antikt", "cambridge", "ee-genkt", "durham"])
def test_jet_equals_sum_of_constituents(ee_events: tuple[ParticleBatch, ParticleBatch], algorithm: str) -> None:
    parton, hadron = ee_events
    pairs = find_jet_pairs(parton, hadron, JetSettings(algorithm=algorithm))  # type: ignore[arg-type]
    for level, particles in (("parton", parton), ("hadron", hadron)):
        batch = pairs.jet_batch(level, particles)  # type: ignore[arg-type]
        np.testing.assert_allclose(batch.constituents.sum_four_momentum(), batch.axis, rtol=1e-12, atol=1e-9)


def test_opposite_hemisphere_fraction(ee_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = ee_events
    pairs = find_jet_pairs(parton, hadron, JetSettings(matching="leading"))
    opposite = np.mean(pairs.opening_angle[pairs.accepted] > np.pi / 2)
    assert 0.2 < opposite < 0.4


def test_matched_jets_within_radius(ee_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = ee_events
    pairs = find_jet_pairs(parton, hadron, JetSettings())
    accepted = pairs.accepted
    assert np.all(pairs.delta_r[accepted] <= 0.8)
    assert accepted.mean() > 0.9


def test_every_particle_in_one_jet(ee_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    _, hadron = ee_events
    jets = cluster_jets(hadron, JetSettings())
    per_event = np.bincount(np.repeat(jets.event_index, np.diff(jets.constituent_offsets)), minlength=len(hadron))
    assert per_event.tolist() == hadron.counts.tolist()


def test_shared_configuration_clustered_once(ee_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = ee_events
    # Ten hadron-level events, all paired with the parton level of event 3.
    rows = np.full(10, 3, dtype=np.int64)
    repeated = parton.take(rows)
    hadrons = hadron.take(np.arange(10, dtype=np.int64))
    plain = find_jet_pairs(repeated, hadrons, JetSettings())
    shared = find_jet_pairs(repeated, hadrons, JetSettings(), parton_configuration=np.zeros(10, dtype=np.int64))
    assert np.array_equal(plain.parton.four_momentum, shared.parton.four_momentum)
    assert np.array_equal(plain.parton.constituents, shared.parton.constituents)
    assert np.array_equal(plain.hadron.rejection, shared.hadron.rejection)


@pytest.mark.parametrize("level", [0, 1])
def test_durham_two_jets_sum_to_event(ee_events: tuple[ParticleBatch, ParticleBatch], level: int) -> None:
    particles = ee_events[level]
    jets = cluster_jets(particles, JetSettings(algorithm="durham", n_exclusive=2))
    jet_sum = np.stack(
        [np.add.reduceat(getattr(jets, name), jets.offsets[:-1]) for name in ("px", "py", "pz", "E")], axis=1
    )
    assert jets.counts.tolist() == [2] * len(particles)
    np.testing.assert_allclose(jet_sum, particles.sum_four_momentum(), rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------
# Agreement with FastJet's classic (one event at a time) interface


class ClassicPair(NamedTuple):
    """Jets of one event from the classic interface; NaN and [] without a match."""

    parton_momentum: list[float]
    parton_constituents: list[int]
    hadron_momentum: list[float]
    hadron_constituents: list[int]
    delta_r: float


def _pseudojets(particles: ParticleBatch, event: int) -> list[fastjet.PseudoJet]:
    start = int(particles.offsets[event])
    pseudojets = []
    for k in range(int(particles.counts[event])):
        i = start + k
        pseudojet = fastjet.PseudoJet(particles.px[i], particles.py[i], particles.pz[i], particles.E[i])
        pseudojet.set_user_index(k)
        pseudojets.append(pseudojet)
    return pseudojets


def _four_momentum(jet: fastjet.PseudoJet) -> list[float]:
    return [jet.px(), jet.py(), jet.pz(), jet.E()]


def _constituents(jet: fastjet.PseudoJet) -> list[int]:
    return sorted(constituent.user_index() for constituent in jet.constituents())


def classic_pair(parton: ParticleBatch, hadron: ParticleBatch, event: int) -> ClassicPair:
    """Cluster one event with anti-kt R = 0.8 and match as find_jet_pairs does."""
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.8)
    # The sequences must stay alive while their jets' constituents are read.
    parton_sequence = fastjet.ClusterSequence(_pseudojets(parton, event), definition)
    hadron_sequence = fastjet.ClusterSequence(_pseudojets(hadron, event), definition)
    leading = max(parton_sequence.inclusive_jets(), key=lambda jet: jet.pt())
    nearest = min(hadron_sequence.inclusive_jets(), key=lambda jet: jet.delta_R(leading))
    if nearest.delta_R(leading) > 0.8:
        return ClassicPair(_four_momentum(leading), _constituents(leading), [math.nan] * 4, [], math.nan)
    return ClassicPair(
        _four_momentum(leading),
        _constituents(leading),
        _four_momentum(nearest),
        _constituents(nearest),
        nearest.delta_R(leading),
    )


def _constituent_lists(jets: LevelJets, n_events: int) -> list[list[int]]:
    offsets = jets.constituent_offsets
    return [jets.constituents[offsets[event] : offsets[event + 1]].tolist() for event in range(n_events)]


def test_batched_equals_classic(ee_events: tuple[ParticleBatch, ParticleBatch]) -> None:
    parton, hadron = ee_events
    n_events = 200
    pairs = find_jet_pairs(parton, hadron, JetSettings())
    expected = [classic_pair(parton, hadron, event) for event in range(n_events)]

    parton_momentum = [pair.parton_momentum for pair in expected]
    np.testing.assert_allclose(pairs.parton.four_momentum[:n_events], parton_momentum, rtol=1e-12, atol=1e-9)
    hadron_momentum = [pair.hadron_momentum for pair in expected]
    np.testing.assert_allclose(pairs.hadron.four_momentum[:n_events], hadron_momentum, rtol=1e-12, atol=1e-9)
    delta_r = [pair.delta_r for pair in expected]
    np.testing.assert_allclose(pairs.delta_r[:n_events], delta_r, rtol=1e-12, atol=1e-12)
    parton_constituents = [pair.parton_constituents for pair in expected]
    assert _constituent_lists(pairs.parton, n_events) == parton_constituents
    hadron_constituents = [pair.hadron_constituents for pair in expected]
    assert _constituent_lists(pairs.hadron, n_events) == hadron_constituents


# --------------------------------------------------------------------------
# FastJet's banner


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    # Without PYTHONUNBUFFERED, C's stdout is buffered as it is for users.
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        check=True,
    )


CLUSTER_ONE_EVENT = """
    import numpy as np
    from qcdtool.core.jets import JetSettings, cluster_jets
    from qcdtool.core.particles import ParticleBatch
    one = np.ones(1)
    batch = ParticleBatch(px=one, py=one, pz=one, E=2 * one, pid=np.ones(1, dtype=np.int32),
                          charge=np.ones(1, dtype=np.float32), offsets=np.array([0, 1]))
    cluster_jets(batch, JetSettings())
    print("done")
"""


def test_banner_hidden() -> None:
    result = _run_python(CLUSTER_ONE_EVENT)
    assert result.stdout == "done\n"


def test_banner_sent_to_log(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    result = _run_python(
        f"from qcdtool.core.jets import emit_fastjet_banner\nemit_fastjet_banner({str(log)!r})\n"
        + textwrap.dedent(CLUSTER_ONE_EVENT)
    )
    assert result.stdout == "done\n"
    assert "FastJet release" in log.read_text()
