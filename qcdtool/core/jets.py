"""Jet reconstruction at parton and hadron level with FastJet.

Each level of a batch is clustered in one call of the scikit-hep ``fastjet``
awkward interface, which loops over the events in C++. Everything after the
clustering (choosing the leading jet, matching, gathering constituents) is
numpy over flat arrays, with no Python loop over events or jets.

The algorithms and their distances are those of the FastJet user manual
(Cacciari, Salam, Soyez, arXiv:1111.6097):

- ``antikt``, ``kt``, ``cambridge`` (the longitudinally invariant "pp"
  algorithms): d_ij = min(pt_i^2p, pt_j^2p) Delta R_ij^2 / R^2 with
  Delta R^2 = Delta y^2 + Delta phi^2 in rapidity y and azimuth phi, and
  p = -1, 1, 0 respectively;
- ``ee-genkt``: d_ij = min(E_i^2p, E_j^2p) (1 - cos theta_ij) / (1 - cos R)
  with the opening angle theta_ij, inclusive jets;
- ``durham`` (e+e- kt): y_ij = 2 min(E_i^2, E_j^2) (1 - cos theta_ij) / Q^2,
  run exclusively until ``n_exclusive`` jets remain.

All use the E recombination scheme, so a jet's four-momentum is the sum of
its constituents' four-momenta.
"""

from __future__ import annotations

import enum
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

import awkward as ak
import fastjet
import numpy as np
from numpy.typing import NDArray

from qcdtool.core import kinematics
from qcdtool.core.capture import redirect_fd1
from qcdtool.core.contracts import JetBatch
from qcdtool.core.particles import PARTICLE_COLUMNS, ParticleBatch, offsets_from_counts, ranges_index

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

Algorithm = Literal["antikt", "kt", "cambridge", "ee-genkt", "durham"]
Matching = Literal["matched", "leading"]
Level = Literal["parton", "hadron"]

ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
MATCHINGS: tuple[str, ...] = get_args(Matching)
#: Algorithms whose distance is built from energies and opening angles.
EE_ALGORITHMS: tuple[str, ...] = ("ee-genkt", "durham")

_FOUR_MOMENTUM = ("px", "py", "pz", "E")


@dataclass(frozen=True)
class JetSettings:
    """How jets are found and how the hadron-level jet is chosen.

    ``radius`` is R of every algorithm except ``durham``, which has none.
    ``p`` is the exponent of ``ee-genkt``: -1 behaves like anti-kt, 0 like
    Cambridge/Aachen and 1 like kt. ``n_exclusive`` is the number of jets
    that ``durham`` clusters each event into. Other algorithms ignore both.
    ``match_radius`` bounds the distance between the hadron-level jet and the
    parton-level jet for ``matching="matched"`` (Delta R in (y, phi) for the
    pp algorithms, the opening angle in radians for the e+e- ones) and
    defaults to ``radius``.
    """

    algorithm: Algorithm = "antikt"
    radius: float = 0.8
    p: float = -1.0
    n_exclusive: int = 2
    matching: Matching = "matched"
    match_radius: float | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"invalid jet algorithm {self.algorithm!r}, expected one of {ALGORITHMS}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"invalid jet matching {self.matching!r}, expected one of {MATCHINGS}")
        if not (np.isfinite(self.radius) and self.radius > 0.0):
            raise ValueError(f"jet radius must be a positive number, got {self.radius}")
        if not np.isfinite(self.p):
            raise ValueError(f"ee-genkt exponent p must be finite, got {self.p}")
        if self.n_exclusive < 1:
            raise ValueError(f"n_exclusive must be at least 1, got {self.n_exclusive}")
        if self.match_radius is not None and not (np.isfinite(self.match_radius) and self.match_radius > 0.0):
            raise ValueError(f"match_radius must be a positive number, got {self.match_radius}")

    @property
    def is_ee(self) -> bool:
        """Whether the algorithm measures energies and opening angles (e+e-)."""
        return self.algorithm in EE_ALGORITHMS

    @property
    def is_exclusive(self) -> bool:
        """Whether each event is clustered into a fixed number of jets."""
        return self.algorithm == "durham"

    @property
    def max_match_distance(self) -> float:
        """``match_radius``, or ``radius`` where it is not set."""
        return self.radius if self.match_radius is None else self.match_radius


class JetRejection(enum.IntEnum):
    """Reason code of an event without a jet at one level, ``ACCEPTED`` if it has one."""

    ACCEPTED = 0
    #: The level has no particles in this event.
    NO_PARTICLES = 1
    #: Fewer particles than the ``n_exclusive`` jets of an exclusive algorithm.
    TOO_FEW_PARTICLES = 2
    #: Hadron level with ``matching="matched"``: the parton level has no jet.
    NO_PARTON_JET = 3
    #: Hadron level with ``matching="matched"``: no jet within ``match_radius``.
    NO_MATCH = 4


# --------------------------------------------------------------------------
# Clustering


@dataclass(frozen=True)
class EventJets:
    """All jets of every event of one level, as flat arrays with offsets.

    The jets of event ``i`` are ``offsets[i]:offsets[i + 1]``, in FastJet's
    output order. The constituents of jet ``j`` are
    ``constituents[constituent_offsets[j]:constituent_offsets[j + 1]]``:
    indices of particles within their own event, in ascending order.
    """

    px: FloatArray
    py: FloatArray
    pz: FloatArray
    E: FloatArray
    offsets: IntArray
    constituents: NDArray[np.int32]
    constituent_offsets: IntArray
    rejection: NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> IntArray:
        """Number of jets of each event."""
        return np.diff(self.offsets)

    @property
    def event_index(self) -> IntArray:
        """For each jet, the index of its event."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.counts)


def jet_definition(settings: JetSettings) -> Any:
    """Build the ``fastjet.JetDefinition`` for the settings (E scheme)."""
    if settings.algorithm == "antikt":
        return fastjet.JetDefinition(fastjet.antikt_algorithm, settings.radius)
    if settings.algorithm == "kt":
        return fastjet.JetDefinition(fastjet.kt_algorithm, settings.radius)
    if settings.algorithm == "cambridge":
        return fastjet.JetDefinition(fastjet.cambridge_algorithm, settings.radius)
    if settings.algorithm == "ee-genkt":
        return fastjet.JetDefinition(fastjet.ee_genkt_algorithm, settings.radius, settings.p)
    # The Python JetDefinition wrapper insists on an R, which FastJet rejects
    # for the parameterless e+e- kt algorithm.
    return fastjet.JetDefinition0Param(fastjet.ee_kt_algorithm)


_fastjet_banner_done = False


def emit_fastjet_banner(target: str | os.PathLike[str] | int = os.devnull) -> None:
    """Send FastJet's once-per-process banner to ``target`` instead of stdout.

    FastJet writes 13 lines to file descriptor 1 at the first clustering of
    the process. This runs a one-particle clustering with descriptor 1
    redirected (see :func:`qcdtool.core.capture.redirect_fd1`), so later
    clusterings print nothing. :func:`cluster_jets` calls it with
    ``os.devnull`` when no clustering has run yet; call it earlier to keep
    the banner in a log file. Later calls do nothing.
    """
    global _fastjet_banner_done
    if _fastjet_banner_done:
        return
    event = ParticleBatch(
        px=np.ones(1),
        py=np.zeros(1),
        pz=np.zeros(1),
        E=np.ones(1),
        pid=np.zeros(1, dtype=np.int32),
        charge=np.zeros(1, dtype=np.float32),
        offsets=np.array([0, 1], dtype=np.int64),
    )
    with redirect_fd1(target):
        fastjet.ClusterSequence(_awkward_events(event, np.zeros(1, dtype=np.int64)), jet_definition(JetSettings()))
    _fastjet_banner_done = True


def _awkward_events(particles: ParticleBatch, events: IntArray) -> ak.Array:
    """Four-momenta of the given events as the jagged record array fastjet reads."""
    counts = particles.counts[events]
    if len(events) == len(particles):
        columns = [getattr(particles, name) for name in _FOUR_MOMENTUM]  # every event: no gather needed
    else:
        index = ranges_index(particles.offsets[events], counts)
        columns = [getattr(particles, name)[index] for name in _FOUR_MOMENTUM]
    fields = [ak.contents.NumpyArray(column) for column in columns]
    content = ak.contents.RecordArray(fields, list(_FOUR_MOMENTUM))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets_from_counts(counts)), content))


@contextmanager
def _exclusive_warning_silenced() -> Iterator[None]:
    # fastjet 3.5.2.0 compares the JetDefinition object with algorithm enums
    # and so warns that exclusive jets "should be interpreted with care" for
    # every algorithm, the e+e- kt algorithm included, which is exclusive by
    # construction.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="dcut and exclusive jets", category=UserWarning)
        yield


def cluster_jets(particles: ParticleBatch, settings: JetSettings) -> EventJets:
    """Cluster every event of ``particles`` into jets in one fastjet call.

    Inclusive algorithms keep all jets (no minimum pt). ``durham`` returns
    exactly ``n_exclusive`` jets per event. Events with no particles, or with
    fewer than ``n_exclusive`` for ``durham``, are not clustered: they get no
    jets and a :class:`JetRejection` code.
    """
    n_events = len(particles)
    n_particles = particles.counts
    min_particles = settings.n_exclusive if settings.is_exclusive else 1

    # 1. Events that cannot give jets are flagged and left out.
    rejection = np.zeros(n_events, dtype=np.int8)
    rejection[n_particles == 0] = JetRejection.NO_PARTICLES
    rejection[(n_particles > 0) & (n_particles < min_particles)] = JetRejection.TOO_FEW_PARTICLES
    clustered = np.flatnonzero(n_particles >= min_particles)
    jet_counts = np.zeros(n_events, dtype=np.int64)
    if len(clustered) == 0:
        empty = np.zeros(0, dtype=np.float64)
        return EventJets(
            px=empty,
            py=empty,
            pz=empty,
            E=empty,
            offsets=offsets_from_counts(jet_counts),
            constituents=np.zeros(0, dtype=np.int32),
            constituent_offsets=np.zeros(1, dtype=np.int64),
            rejection=rejection,
        )

    # 2. One C++ clustering over all remaining events. Only the constituent
    # lists are read back: with the E recombination scheme a jet's
    # four-momentum is the sum of its constituents', computed below, which
    # saves fastjet a second conversion of every jet.
    emit_fastjet_banner()
    sequence = fastjet.ClusterSequence(_awkward_events(particles, clustered), jet_definition(settings))
    if settings.is_exclusive:
        with _exclusive_warning_silenced():
            index = sequence.exclusive_jets_constituent_index(settings.n_exclusive)
    else:
        index = sequence.constituent_index(min_pt=0.0)

    # 3. Flatten. The clustered events keep their order, so only the jet
    # counts need scattering back to all events.
    jet_counts[clustered] = np.asarray(ak.num(index, axis=1), dtype=np.int64)
    constituent_counts = np.asarray(ak.flatten(ak.num(index, axis=2), axis=None), dtype=np.int64)
    constituents = np.asarray(ak.flatten(index, axis=None), dtype=np.int32)

    # 4. Constituents of each jet in ascending particle order. fastjet 3.5.2.0
    # returns them so already, and sorting keeps that a property of this module.
    owner = np.repeat(np.arange(len(constituent_counts), dtype=np.int64), constituent_counts)
    constituents = constituents[np.lexsort((constituents, owner))]

    # 5. Jet four-momenta: sums over the constituents (E scheme).
    jet_event = np.repeat(np.arange(n_events, dtype=np.int64), jet_counts)
    flat = particles.offsets[jet_event[owner]] + constituents
    sums: dict[str, FloatArray] = {
        name: np.bincount(owner, weights=getattr(particles, name)[flat], minlength=len(constituent_counts)).astype(
            np.float64, copy=False
        )
        for name in _FOUR_MOMENTUM
    }
    return EventJets(
        px=sums["px"],
        py=sums["py"],
        pz=sums["pz"],
        E=sums["E"],
        offsets=offsets_from_counts(jet_counts),
        constituents=constituents,
        constituent_offsets=offsets_from_counts(constituent_counts),
        rejection=rejection,
    )


# --------------------------------------------------------------------------
# One jet per event and level


@dataclass(frozen=True)
class LevelJets:
    """The chosen jet of every event at one level.

    Rows of events without a jet (``rejection`` not ``ACCEPTED``) hold NaN
    four-momenta and no constituents. ``constituents`` are indices of
    particles within their own event of the input :class:`ParticleBatch`,
    ascending, with ``constituent_offsets`` of length ``n + 1``.
    """

    px: FloatArray
    py: FloatArray
    pz: FloatArray
    E: FloatArray
    constituents: NDArray[np.int32]
    constituent_offsets: IntArray
    rejection: NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.rejection)

    @property
    def accepted(self) -> NDArray[np.bool_]:
        """Whether the event has a jet at this level."""
        accepted: NDArray[np.bool_] = self.rejection == JetRejection.ACCEPTED
        return accepted

    @property
    def four_momentum(self) -> FloatArray:
        """(px, py, pz, E) of each jet, shape (n, 4), in GeV."""
        return np.stack([self.px, self.py, self.pz, self.E], axis=1)

    @property
    def pt(self) -> FloatArray:
        """Transverse momentum with respect to the beam (z) axis, GeV."""
        return kinematics.pt(self.px, self.py)

    @property
    def eta(self) -> FloatArray:
        """Pseudorapidity of the jet axis."""
        return kinematics.eta(self.px, self.py, self.pz)

    @property
    def rapidity(self) -> FloatArray:
        """Rapidity y of the jet, the coordinate of the pp algorithms' Delta R."""
        return kinematics.rapidity(self.E, self.pz)

    @property
    def phi(self) -> FloatArray:
        """Azimuth of the jet axis in (-pi, pi]."""
        return kinematics.phi(self.px, self.py)

    @property
    def mass(self) -> FloatArray:
        """Invariant mass, GeV."""
        return kinematics.mass(self.px, self.py, self.pz, self.E)

    @property
    def n_constituents(self) -> IntArray:
        """Number of constituents of each jet (0 where rejected)."""
        return np.diff(self.constituent_offsets)

    def take(self, rows: IntArray) -> LevelJets:
        """The jets of the given events, in that order (rows may repeat)."""
        counts = self.n_constituents[rows]
        index = ranges_index(self.constituent_offsets[rows], counts)
        return LevelJets(
            px=self.px[rows],
            py=self.py[rows],
            pz=self.pz[rows],
            E=self.E[rows],
            constituents=self.constituents[index],
            constituent_offsets=offsets_from_counts(counts),
            rejection=self.rejection[rows],
        )


def _first_per_event(jets: EventJets, key: FloatArray) -> IntArray:
    """Index of the jet with the smallest ``key`` in each event, -1 without jets.

    Ties go to the jet that comes first in FastJet's output.
    """
    order = np.lexsort((key, jets.event_index))
    first = np.full(len(jets), -1, dtype=np.int64)
    has_jets = jets.counts > 0
    first[has_jets] = order[jets.offsets[:-1][has_jets]]
    return first


def leading_jet(jets: EventJets, settings: JetSettings) -> IntArray:
    """Index into the flat jets of each event's leading jet, -1 without jets.

    The leading jet has the highest energy for the e+e- algorithms and the
    highest pt for the pp algorithms: each ranks jets by the quantity its
    own distance is built from. The pp algorithms' (pt, y, phi) are invariant
    under boosts along the beam axis, while the e+e- algorithms' (E, theta)
    are invariant under rotations, where pt would favour jets that happen to
    lie far from the beam axis.
    """
    score = jets.E if settings.is_ee else kinematics.pt(jets.px, jets.py)
    return _first_per_event(jets, -score)


def jet_distance(
    settings: JetSettings,
    first: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    second: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> FloatArray:
    """Angular distance between jet axes in the algorithm's own measure.

    ``first`` and ``second`` are (px, py, pz, E). Returns the opening angle
    for the e+e- algorithms and Delta R in (y, phi) for the pp algorithms.
    """
    if settings.is_ee:
        return kinematics.opening_angle(*first[:3], *second[:3])
    return _delta_r(first, second)


def _delta_r(
    first: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    second: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> FloatArray:
    px1, py1, pz1, e1 = first
    px2, py2, pz2, e2 = second
    return kinematics.delta_r(
        kinematics.rapidity(e1, pz1),
        kinematics.phi(px1, py1),
        kinematics.rapidity(e2, pz2),
        kinematics.phi(px2, py2),
    )


def _matched_jet(jets: EventJets, reference: LevelJets, settings: JetSettings) -> tuple[IntArray, NDArray[np.bool_]]:
    """Find each event's jet nearest to the reference jet within the match radius.

    Returns the flat jet index (-1 where none) and whether a jet lay within
    the radius.
    """
    # 1. Distance of every jet to its event's reference axis, NaN where the
    # event has no reference jet.
    event = jets.event_index
    axis = (reference.px[event], reference.py[event], reference.pz[event], reference.E[event])
    distance = jet_distance(settings, (jets.px, jets.py, jets.pz, jets.E), axis)

    # 2. Jets beyond the radius (and NaN distances) can never be chosen.
    within = distance <= settings.max_match_distance
    key = np.where(within, distance, np.inf)
    nearest = _first_per_event(jets, key)
    has_match = np.zeros(len(jets), dtype=bool)
    has_match[nearest >= 0] = within[nearest[nearest >= 0]]
    return np.where(has_match, nearest, -1), has_match


def _select_jets(jets: EventJets, chosen: IntArray, rejection: NDArray[np.int8]) -> LevelJets:
    """Pick one jet per event from the flat jets by index (``chosen``, -1 for none)."""
    accepted = rejection == JetRejection.ACCEPTED
    picked = chosen[accepted]
    columns: dict[str, FloatArray] = {}
    for name in _FOUR_MOMENTUM:
        column = np.full(len(chosen), np.nan, dtype=np.float64)
        column[accepted] = getattr(jets, name)[picked]
        columns[name] = column

    counts = np.zeros(len(chosen), dtype=np.int64)
    counts[accepted] = np.diff(jets.constituent_offsets)[picked]
    index = ranges_index(jets.constituent_offsets[picked], counts[accepted])
    return LevelJets(
        **columns,
        constituents=jets.constituents[index],
        constituent_offsets=offsets_from_counts(counts),
        rejection=rejection,
    )


# --------------------------------------------------------------------------
# Jet pairs


@dataclass(frozen=True)
class JetPairs:
    """The parton-level and hadron-level jet of each event, and their distance.

    ``opening_angle`` (radians) and ``delta_r`` (in (y, phi)) are measured
    between the two jet axes and are NaN unless both levels are accepted.
    """

    settings: JetSettings
    parton: LevelJets
    hadron: LevelJets
    opening_angle: FloatArray
    delta_r: FloatArray

    def __len__(self) -> int:
        return len(self.parton)

    @property
    def accepted(self) -> NDArray[np.bool_]:
        """Whether the event has a jet at both levels."""
        return self.parton.accepted & self.hadron.accepted

    def level(self, level: Level) -> LevelJets:
        """Return the jets of the ``"parton"`` or ``"hadron"`` level."""
        if level == "parton":
            return self.parton
        if level == "hadron":
            return self.hadron
        raise ValueError(f"invalid level {level!r}, expected 'parton' or 'hadron'")

    def jet_batch(self, level: Level, particles: ParticleBatch) -> JetBatch:
        """Build the :class:`JetBatch` of one level for the accepted events.

        ``particles`` is the batch of that level that the jets were found in.
        Events where either level has no jet are left out, so the parton and
        hadron batches line up entry by entry.
        """
        jets = self.level(level)
        if len(particles) != len(self):
            raise ValueError(
                f"particles has {len(particles)} events but the jet pairs have {len(self)}: "
                "pass the batch that the jets were found in"
            )
        events = np.flatnonzero(self.accepted)

        # Constituent indices are local to each event. Adding the event's
        # offset turns them into indices of the flat particle columns.
        counts = jets.n_constituents[events]
        local = jets.constituents[ranges_index(jets.constituent_offsets[events], counts)]
        flat = np.repeat(particles.offsets[events], counts) + local
        columns = {name: getattr(particles, name)[flat] for name in PARTICLE_COLUMNS}
        constituents = ParticleBatch(**columns, offsets=offsets_from_counts(counts))
        return JetBatch(axis=jets.four_momentum[events], constituents=constituents)


def find_jet_pairs(
    parton: ParticleBatch,
    hadron: ParticleBatch,
    settings: JetSettings,
    parton_configuration: IntArray | None = None,
) -> JetPairs:
    """Find the parton-level jet and its hadron-level partner in every event.

    The parton-level jet is the leading jet (:func:`leading_jet`). The
    hadron-level jet is, for ``matching="matched"``, the jet whose axis is
    nearest to the parton-level jet's axis and within ``match_radius``
    (:func:`jet_distance`), and for ``matching="leading"`` the leading jet.
    Events without a jet or a match are flagged in each level's
    ``rejection``, not dropped, so rows stay aligned with the input.

    ``parton_configuration`` optionally labels each event's parton-level
    configuration; events with the same label must have identical
    parton-level particles (rehadronizations of one configuration), and
    each configuration is then clustered once.
    """
    if len(parton) != len(hadron):
        raise ValueError(f"parton level has {len(parton)} events, hadron level {len(hadron)}")

    # 1. Parton level: the leading jet, once per distinct configuration.
    copies: IntArray | None = None
    distinct = parton
    if parton_configuration is not None:
        _, representative, inverse = np.unique(parton_configuration, return_index=True, return_inverse=True)
        if len(representative) < len(parton):
            copies = inverse.astype(np.int64)
            distinct = parton.take(representative)
    parton_jets = cluster_jets(distinct, settings)
    parton_choice = leading_jet(parton_jets, settings)
    parton_level = _select_jets(parton_jets, parton_choice, parton_jets.rejection)
    if copies is not None:
        parton_level = parton_level.take(copies)

    # 2. Hadron level: the matched or the leading jet.
    hadron_jets = cluster_jets(hadron, settings)
    hadron_rejection = hadron_jets.rejection.copy()
    if settings.matching == "matched":
        hadron_choice, has_match = _matched_jet(hadron_jets, parton_level, settings)
        clustered = hadron_rejection == JetRejection.ACCEPTED
        hadron_rejection[clustered & ~parton_level.accepted] = JetRejection.NO_PARTON_JET
        hadron_rejection[clustered & parton_level.accepted & ~has_match] = JetRejection.NO_MATCH
    else:
        hadron_choice = leading_jet(hadron_jets, settings)
    hadron_level = _select_jets(hadron_jets, hadron_choice, hadron_rejection)

    # 3. Distance between the two axes, NaN unless both levels have a jet.
    both = parton_level.accepted & hadron_level.accepted
    parton_axis = (parton_level.px, parton_level.py, parton_level.pz, parton_level.E)
    hadron_axis = (hadron_level.px, hadron_level.py, hadron_level.pz, hadron_level.E)
    opening_angle = np.where(both, kinematics.opening_angle(*parton_axis[:3], *hadron_axis[:3]), np.nan)
    delta_r = np.where(both, _delta_r(parton_axis, hadron_axis), np.nan)
    return JetPairs(settings, parton_level, hadron_level, opening_angle, delta_r)
