"""Containers for variable-length particle lists of many events or jets.

Particles of a batch are stored as flat arrays with offsets (a CSR layout):
the particles of entry ``i`` are ``offsets[i]:offsets[i + 1]``. The same
layout is used in memory, in the HDF5 dataset and by the imagers, so no
per-event Python objects are ever built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qcdtool.core import kinematics

#: Particle columns with their storage dtypes. Momenta and energy in GeV.
PARTICLE_COLUMNS: dict[str, np.dtype[np.generic]] = {
    "px": np.dtype(np.float64),
    "py": np.dtype(np.float64),
    "pz": np.dtype(np.float64),
    "E": np.dtype(np.float64),
    "pid": np.dtype(np.int32),
    "charge": np.dtype(np.float32),
}


@dataclass(frozen=True)
class ParticleBatch:
    """Particles of ``n`` entries (events or jets) as flat columns with offsets.

    ``charge`` is in units of the positron charge (a float, because quarks
    carry thirds).
    """

    px: NDArray[np.float64]
    py: NDArray[np.float64]
    pz: NDArray[np.float64]
    E: NDArray[np.float64]
    pid: NDArray[np.int32]
    charge: NDArray[np.float32]
    offsets: NDArray[np.int64]
    _cache: dict[str, NDArray[Any]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_particles = int(self.offsets[-1]) if len(self.offsets) else 0
        if len(self.offsets) == 0 or self.offsets[0] != 0:
            raise ValueError("offsets must start with 0")
        for name in PARTICLE_COLUMNS:
            if len(getattr(self, name)) != n_particles:
                raise ValueError(f"column {name!r} has {len(getattr(self, name))} entries, offsets say {n_particles}")

    @classmethod
    def empty(cls) -> ParticleBatch:
        """A batch with no entries."""
        columns: dict[str, Any] = {name: np.zeros(0, dtype=dtype) for name, dtype in PARTICLE_COLUMNS.items()}
        return cls(**columns, offsets=np.zeros(1, dtype=np.int64))

    @classmethod
    def concatenate(cls, batches: Sequence[ParticleBatch]) -> ParticleBatch:
        """Join batches entry-wise, in order."""
        if not batches:
            return cls.empty()
        columns: dict[str, Any] = {
            name: np.concatenate([getattr(b, name) for b in batches]) for name in PARTICLE_COLUMNS
        }
        counts = np.concatenate([b.counts for b in batches])
        return cls(**columns, offsets=offsets_from_counts(counts))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> NDArray[np.int64]:
        """Number of particles of each entry."""
        return np.diff(self.offsets)

    @property
    def entry_index(self) -> NDArray[np.int64]:
        """For each particle, the index of the entry it belongs to (computed once per batch)."""
        if "entry_index" not in self._cache:
            self._cache["entry_index"] = np.repeat(np.arange(len(self), dtype=np.int64), self.counts)
        index: NDArray[np.int64] = self._cache["entry_index"]
        return index

    def _cached(self, name: str) -> NDArray[np.float64]:
        if name not in self._cache:
            if name == "pt":
                self._cache[name] = kinematics.pt(self.px, self.py)
            elif name == "eta":
                self._cache[name] = kinematics.eta(self.px, self.py, self.pz)
            elif name == "phi":
                self._cache[name] = kinematics.phi(self.px, self.py)
        return self._cache[name]

    @property
    def pt(self) -> NDArray[np.float64]:
        """Transverse momentum of each particle (GeV)."""
        return self._cached("pt")

    @property
    def eta(self) -> NDArray[np.float64]:
        """Pseudorapidity of each particle."""
        return self._cached("eta")

    @property
    def phi(self) -> NDArray[np.float64]:
        """Azimuth of each particle in (-pi, pi]."""
        return self._cached("phi")

    def select(self, mask: NDArray[np.bool_]) -> ParticleBatch:
        """Keep the particles where ``mask`` is true; entries stay, perhaps empty."""
        counts = np.bincount(self.entry_index[mask], minlength=len(self)).astype(np.int64)
        columns = {name: getattr(self, name)[mask] for name in PARTICLE_COLUMNS}
        return ParticleBatch(**columns, offsets=offsets_from_counts(counts))

    def take(self, entries: NDArray[np.int64]) -> ParticleBatch:
        """Return the entries with the given indices, in that order."""
        entries = np.asarray(entries, dtype=np.int64)
        counts = self.counts[entries]
        starts = self.offsets[entries]
        index = ranges_index(starts, counts)
        columns = {name: getattr(self, name)[index] for name in PARTICLE_COLUMNS}
        return ParticleBatch(**columns, offsets=offsets_from_counts(counts))

    def sum_four_momentum(self) -> NDArray[np.float64]:
        """Sum of (px, py, pz, E) of each entry, shape (n, 4)."""
        out = np.zeros((len(self), 4), dtype=np.float64)
        index = self.entry_index
        for k, name in enumerate(("px", "py", "pz", "E")):
            out[:, k] = np.bincount(index, weights=getattr(self, name), minlength=len(self))
        return out


def offsets_from_counts(counts: NDArray[np.integer]) -> NDArray[np.int64]:
    """Offsets (length n + 1, starting at 0) of entries with the given counts."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def ranges_index(starts: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Concatenate ``arange(s, s + c)`` for every (s, c) pair, without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = offsets_from_counts(counts)[:-1]
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - first, counts)
    return np.arange(total, dtype=np.int64) + shift
