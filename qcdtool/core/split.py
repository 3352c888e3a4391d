"""Train, validation and test split of a dataset's events.

Every event gets a number u in [0, 1) from a hash of the run seed and either
its (configuration, hadronization) pair or its configuration alone; u below
``test`` puts the event in the test set, below ``test + validation`` in the
validation set, and the rest is for training. The assignment of an event
depends only on the seed and the event's own labels, never on the order of
rows, the number of workers or how the file was sharded.

- ``by = "hadronization"``: the hadronizations of every configuration are
  shared out over the three sets, so a model is tested on configurations it
  has seen, with hadronizations it has not. This is the only choice with
  few configurations (two in the reference study).
- ``by = "configuration"``: whole configurations go to one set, so a model
  is tested on parton configurations it has never seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.errors import DatasetError

SPLITS = ("train", "validation", "test")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class SplitSettings:
    """How events are shared out; fractions of events (or of configurations)."""

    by: Literal["hadronization", "configuration"] = "hadronization"
    validation: float = 0.1
    test: float = 0.2

    def __post_init__(self) -> None:
        if not (0.0 <= self.validation < 1.0 and 0.0 < self.test < 1.0 and self.validation + self.test < 1.0):
            raise ValueError(
                f"invalid split fractions validation={self.validation}, test={self.test}: each must lie in "
                "[0, 1), test must be above 0 and their sum below 1"
            )


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The SplitMix64 finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mix."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def uniform_labels(seed: int, *labels: NDArray[np.integer]) -> NDArray[np.float64]:
    """Draw a number in [0, 1) for each row, determined by the seed and the rows' labels."""
    value = _splitmix64(np.full(len(labels[0]), seed, dtype=np.uint64))
    for label in labels:
        with np.errstate(over="ignore"):
            value = _splitmix64(value ^ np.asarray(label).astype(np.uint64))
    return (value >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_rows(
    config_id: NDArray[np.int64], hadronization: NDArray[np.int32], settings: SplitSettings, seed: int
) -> dict[str, NDArray[np.int64]]:
    """Row indices (ascending) of the train, validation and test sets."""
    if settings.by == "hadronization":
        u = uniform_labels(seed, config_id, hadronization)
    else:
        u = uniform_labels(seed, config_id)
    test = u < settings.test
    validation = ~test & (u < settings.test + settings.validation)
    train = ~test & ~validation
    rows = {
        "train": np.flatnonzero(train),
        "validation": np.flatnonzero(validation),
        "test": np.flatnonzero(test),
    }
    for name in ("train", "test"):
        if len(rows[name]) == 0:
            unit = "configurations" if settings.by == "configuration" else "events"
            raise DatasetError(
                f"the {name} set is empty: {len(np.unique(config_id))} configurations and {len(config_id)} events "
                f"are too few to split by {settings.by}; generate more {unit} or change the [split] fractions"
            )
    return rows
