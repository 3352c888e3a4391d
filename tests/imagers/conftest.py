"""Fixtures of the imager tests: a few hundred real PYTHIA Z-pole events and jets."""

from __future__ import annotations

import pytest
from imager_reference import generate_events, paired_jets

from qcdtool.core.contracts import JetBatch
from qcdtool.core.particles import ParticleBatch

N_EVENTS = 600
SEED = 20231
JET_RADIUS = 0.8


@pytest.fixture(scope="session")
def z_events() -> tuple[ParticleBatch, ParticleBatch]:
    """Parton- and hadron-level final states of 600 e+e- -> Z -> q qbar events at 91.188 GeV."""
    return generate_events(N_EVENTS, SEED)


@pytest.fixture(scope="session")
def z_jets(z_events: tuple[ParticleBatch, ParticleBatch]) -> tuple[JetBatch, JetBatch]:
    """One jet per event and level: an R = 0.8 cone around the leading hadron and the parton cone beside it.

    The parton cone is centred on the parton nearest to the hadron jet axis.
    """
    parton, hadron = z_events
    return paired_jets(parton, hadron, JET_RADIUS)
