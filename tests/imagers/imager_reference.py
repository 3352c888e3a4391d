"""Real PYTHIA events, simple cone jets and a per-constituent reference imager.

Shared by the imager tests and ``benchmarks/bench_imagers.py``. The events
are e+e- -> Z -> q qbar at 91.188 GeV from pythia8mc; the parton level is the
set of partons that enter hadronization, read off the full event record.
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pythia8mc
from numpy.typing import NDArray

from qcdtool.core.contracts import JetBatch
from qcdtool.core.images import EDGE_TOLERANCE
from qcdtool.core.particles import ParticleBatch, offsets_from_counts

Z_POLE_SETTINGS = (
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


def generate_events(n_events: int, seed: int) -> tuple[ParticleBatch, ParticleBatch]:
    """Generate ``n_events`` Z-pole events; return (parton level, hadron level) final states.

    Neutrinos are left out of the hadron level.
    """
    pythia = pythia8mc.Pythia("", False)
    for setting in (*Z_POLE_SETTINGS, f"Random:seed = {seed}"):
        if not pythia.readString(setting):
            raise RuntimeError(f"PYTHIA rejected the setting {setting!r}")
    if not pythia.init():
        raise RuntimeError("PYTHIA failed to initialize")
    record = pythia.nextBatch(n_events).prt

    # The partons entering hadronization sit below the first entry with
    # |status| >= 71 and are final (status > 0) or have a daughter at or past it.
    index = ak.local_index(record.id, axis=1)
    first_hadronization = ak.fill_none(ak.argmax(abs(record.status) >= 71, axis=1, keepdims=True), 0)
    parton_mask = (index < first_hadronization) & ((record.status > 0) | (record.daughter1 >= first_hadronization))
    absolute_id = abs(record.id)
    neutrino = (absolute_id == 12) | (absolute_id == 14) | (absolute_id == 16)
    hadron_mask = (record.status > 0) & ~neutrino
    charge_of = _charge_lookup(pythia, record.id)
    return _to_batch(record[parton_mask], charge_of), _to_batch(record[hadron_mask], charge_of)


def _charge_lookup(pythia: pythia8mc.Pythia, ids: ak.Array) -> dict[int, float]:
    unique = np.unique(ak.to_numpy(ak.flatten(ids)))
    return {int(i): float(pythia.particleData.charge(int(i))) for i in unique}


def _flat(values: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(values), allow_missing=False))


def _to_batch(particles: ak.Array, charge_of: dict[int, float]) -> ParticleBatch:
    counts = np.asarray(ak.to_numpy(ak.num(particles.id, axis=1), allow_missing=False)).astype(np.int64)
    pid = _flat(particles.id).astype(np.int32)
    unique, inverse = np.unique(pid, return_inverse=True)
    charge = np.array([charge_of[int(i)] for i in unique], dtype=np.float32)[inverse]
    momentum = particles.p
    return ParticleBatch(
        px=_flat(momentum.px).astype(np.float64),
        py=_flat(momentum.py).astype(np.float64),
        pz=_flat(momentum.pz).astype(np.float64),
        E=_flat(momentum.e).astype(np.float64),
        pid=pid,
        charge=charge,
        offsets=offsets_from_counts(counts),
    )


# --------------------------------------------------------------------------
# Simple cone jets


def cone_jets(events: ParticleBatch, seeds: NDArray[np.float64], radius: float) -> JetBatch:
    """Form one jet per event: the particles within ``radius`` (opening angle) of ``seeds[i]``.

    The axis is the four-momentum sum of the constituents.
    """
    entry = events.entry_index
    p = np.stack([events.px, events.py, events.pz], axis=1)
    p_unit = p / np.linalg.norm(p, axis=1, keepdims=True)
    s_unit = seeds / np.linalg.norm(seeds, axis=1, keepdims=True)
    angle = np.arccos(np.clip(np.einsum("ij,ij->i", p_unit, s_unit[entry]), -1.0, 1.0))
    constituents = events.select(angle < radius)
    return JetBatch(axis=constituents.sum_four_momentum(), constituents=constituents)


def leading_directions(events: ParticleBatch, exclude: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    """Return the three-momentum of the most energetic particle of each event (not excluded)."""
    energy = np.where(exclude, -np.inf, events.E) if exclude is not None else events.E
    entry = events.entry_index
    order = np.lexsort((-energy, entry))
    first = np.ones(len(order), dtype=bool)
    first[1:] = entry[order][1:] != entry[order][:-1]
    leading = order[first]
    return np.stack([events.px[leading], events.py[leading], events.pz[leading]], axis=1)


def paired_jets(parton: ParticleBatch, hadron: ParticleBatch, radius: float) -> tuple[JetBatch, JetBatch]:
    """Form the hadron jet around the leading hadron and the parton jet around the parton nearest to it."""
    hadron_seed = leading_directions(hadron)
    hadron_jets = cone_jets(hadron, hadron_seed, radius)
    axis = hadron_jets.axis[:, :3]
    entry = parton.entry_index
    p = np.stack([parton.px, parton.py, parton.pz], axis=1)
    cosine = np.einsum("ij,ij->i", p, axis[entry]) / (np.linalg.norm(p, axis=1) * np.linalg.norm(axis[entry], axis=1))
    nearest = leading_directions(
        ParticleBatch(
            px=parton.px,
            py=parton.py,
            pz=parton.pz,
            E=cosine,
            pid=parton.pid,
            charge=parton.charge,
            offsets=parton.offsets,
        )
    )
    return cone_jets(parton, nearest, radius), hadron_jets


def two_jets_per_event(events: ParticleBatch, radius: float) -> JetBatch:
    """Form two jets per event: a cone around the leading particle, then around the leading one outside it."""
    first_seed = leading_directions(events)
    first = cone_jets(events, first_seed, radius)
    entry = events.entry_index
    p = np.stack([events.px, events.py, events.pz], axis=1)
    s = first_seed[entry]
    cosine = np.einsum("ij,ij->i", p, s) / (np.linalg.norm(p, axis=1) * np.linalg.norm(s, axis=1))
    in_first = np.arccos(np.clip(cosine, -1.0, 1.0)) < radius
    has_second = np.bincount(entry, weights=(~in_first).astype(np.float64), minlength=len(events)) > 0
    second_seed = leading_directions(events, exclude=in_first)
    second = cone_jets(events, second_seed, radius)
    keep = np.flatnonzero(has_second)
    axes = np.concatenate([first.axis, second.axis[keep]])
    constituents = ParticleBatch.concatenate([first.constituents, second.constituents.take(keep)])
    return JetBatch(axis=axes, constituents=constituents)


# --------------------------------------------------------------------------
# Reference imager: a plain Python loop over constituents


def reference_pixel(x: float, extent: float, size: int) -> int | None:
    """Return the pixel of coordinate ``x`` on ``size`` pixels over [-extent, extent], None if outside."""
    u = (x - (-extent)) * (size / (extent - (-extent)))
    nearest = round(u)
    if abs(u - nearest) <= EDGE_TOLERANCE:
        u = nearest
    if not 0.0 <= u <= size:
        return None
    return min(math.floor(u), size - 1)


def reference_eta_phi(jets: JetBatch, extent: float, size: int, charged_neutral: bool = False) -> np.ndarray:
    """Draw eta-phi images (pT fraction) one constituent at a time, in plain Python."""
    n_channels = 2 if charged_neutral else 1
    images = np.zeros((len(jets), n_channels, size, size), dtype=np.float64)
    c = jets.constituents
    for j in range(len(jets)):
        ax, ay, az = (float(v) for v in jets.axis[j, :3])
        axis_eta = math.asinh(az / math.hypot(ax, ay))
        axis_phi = math.atan2(ay, ax)
        start, stop = int(c.offsets[j]), int(c.offsets[j + 1])
        pts = [math.hypot(float(c.px[i]), float(c.py[i])) for i in range(start, stop)]
        pt_sum = sum(pts)
        for i, pt_i in zip(range(start, stop), pts, strict=True):
            deta = math.asinh(float(c.pz[i]) / pt_i) - axis_eta
            dphi = math.atan2(float(c.py[i]), float(c.px[i])) - axis_phi
            while dphi > math.pi:
                dphi -= 2.0 * math.pi
            while dphi <= -math.pi:
                dphi += 2.0 * math.pi
            row = reference_pixel(deta, extent, size)
            col = reference_pixel(dphi, extent, size)
            if row is None or col is None:
                continue
            channel = 1 if charged_neutral and c.charge[i] == 0 else 0
            images[j, channel, row, col] += pt_i / pt_sum
    return images


# --------------------------------------------------------------------------
# Synthetic inputs and rotations


def particle_batch(entries: list[list[tuple[float, float, float, float, float]]]) -> ParticleBatch:
    """Build a batch from lists of (px, py, pz, E, charge) per entry; pid is 211 or 22 by charge."""
    flat = [particle for entry in entries for particle in entry]
    columns = np.array(flat, dtype=np.float64).reshape(-1, 5)
    charge = columns[:, 4].astype(np.float32)
    return ParticleBatch(
        px=columns[:, 0].copy(),
        py=columns[:, 1].copy(),
        pz=columns[:, 2].copy(),
        E=columns[:, 3].copy(),
        pid=np.where(charge != 0, 211, 22).astype(np.int32),
        charge=charge,
        offsets=offsets_from_counts(np.array([len(entry) for entry in entries], dtype=np.int64)),
    )


def massless(pt: float, eta: float, phi: float, charge: float = 1.0) -> tuple[float, float, float, float, float]:
    """Return (px, py, pz, E, charge) of a massless particle."""
    px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
    return px, py, pz, math.sqrt(px * px + py * py + pz * pz), charge


def jet_batch(jets: list[list[tuple[float, float, float, float, float]]]) -> JetBatch:
    """Build jets whose axes are the four-momentum sums of their constituents."""
    constituents = particle_batch(jets)
    return JetBatch(axis=constituents.sum_four_momentum(), constituents=constituents)


def rotate_particles(batch: ParticleBatch, rotation: NDArray[np.float64]) -> ParticleBatch:
    """Rotate every three-momentum of ``batch`` by the 3x3 matrix ``rotation``."""
    p = np.stack([batch.px, batch.py, batch.pz], axis=1) @ rotation.T
    return ParticleBatch(
        px=p[:, 0].copy(),
        py=p[:, 1].copy(),
        pz=p[:, 2].copy(),
        E=batch.E,
        pid=batch.pid,
        charge=batch.charge,
        offsets=batch.offsets,
    )


def rotate_jets(jets: JetBatch, rotation: NDArray[np.float64]) -> JetBatch:
    """Rotate the axes and constituents of ``jets`` by the 3x3 matrix ``rotation``."""
    axis = jets.axis.copy()
    axis[:, :3] = jets.axis[:, :3] @ rotation.T
    return JetBatch(axis=axis, constituents=rotate_particles(jets.constituents, rotation))


def rotation_about_z(angle: float) -> NDArray[np.float64]:
    """Return the matrix of a rotation by ``angle`` about the z axis."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def random_rotation(seed: int) -> NDArray[np.float64]:
    """Return a random 3D rotation matrix (uniform on SO(3)), reproducible from ``seed``."""
    from scipy.spatial.transform import Rotation

    return np.asarray(Rotation.random(random_state=seed).as_matrix(), dtype=np.float64)
