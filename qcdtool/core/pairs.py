"""Condition and target images of a set of events, read lazily from a dataset file.

A model with direction ``forward`` learns hadron images given parton images
(condition = parton, target = hadron); ``inverse`` the reverse. Images are
read in contiguous blocks of rows, never the whole file at once, so memory
stays bounded by the block size whatever the dataset's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.contracts import Direction
from qcdtool.core.dataset import Dataset
from qcdtool.core.errors import DatasetError
from qcdtool.core.split import SplitSettings, split_rows

#: Rows read from the file at a time.
BLOCK_ROWS = 8192


def levels(direction: Direction) -> tuple[str, str]:
    """(condition level, target level) of a direction."""
    return ("parton", "hadron") if direction == Direction.FORWARD else ("hadron", "parton")


@dataclass(frozen=True)
class ImagePairs:
    """The (condition, target) image pairs of the given rows of one imager's images."""

    path: Path
    label: str
    direction: Direction
    #: Row indices into the dataset, ascending.
    rows: NDArray[np.int64]

    def __post_init__(self) -> None:
        if len(self.rows) and np.any(np.diff(self.rows) <= 0):
            raise ValueError("rows must be strictly ascending")
        with Dataset(self.path) as dataset:
            dataset.images(self.label, "parton")  # raises if the imager is missing

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(C, H, W) of the condition and of the target images."""
        with Dataset(self.path) as dataset:
            condition, target = levels(self.direction)
            return (
                tuple(dataset.images(self.label, condition).shape[1:]),
                tuple(dataset.images(self.label, target).shape[1:]),
            )

    def labels(self) -> dict[str, NDArray[np.generic]]:
        """config_id, flavour and hadronization of every pair."""
        with Dataset(self.path) as dataset:
            return {name: dataset.column(name)[self.rows] for name in ("config_id", "flavour", "hadronization")}

    def read(self, start: int = 0, stop: int | None = None) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Conditions and targets of pairs ``start:stop`` (positions in ``rows``)."""
        rows = self.rows[start:stop]
        with Dataset(self.path) as dataset:
            return self._read_rows(dataset, rows)

    def _read_rows(self, dataset: Dataset, rows: NDArray[np.int64]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        condition_level, target_level = levels(self.direction)
        if len(rows) == 0:
            shape_c, shape_t = self.shapes
            return np.zeros((0, *shape_c), np.float32), np.zeros((0, *shape_t), np.float32)
        # One contiguous read covering the rows, then a selection in memory.
        first, last = int(rows[0]), int(rows[-1]) + 1
        local = rows - first
        condition = np.asarray(dataset.images(self.label, condition_level)[first:last])[local]
        target = np.asarray(dataset.images(self.label, target_level)[first:last])[local]
        return condition.astype(np.float32, copy=False), target.astype(np.float32, copy=False)

    def batches(
        self, batch_size: int, rng: np.random.Generator, block_rows: int = BLOCK_ROWS
    ) -> Iterator[tuple[NDArray[np.float32], NDArray[np.float32]]]:
        """One epoch of shuffled minibatches.

        Blocks of ``block_rows`` pairs are visited in random order and shuffled
        within themselves; the last, smaller batch of each block is kept. The
        order depends only on ``rng``.
        """
        if len(self) == 0:
            raise DatasetError(f"no image pairs to train on in {self.path} (imager '{self.label}')")
        block_rows = max(block_rows, batch_size)  # a batch never spans two blocks, so a block holds one
        starts = np.arange(0, len(self), block_rows)
        with Dataset(self.path) as dataset:
            for start in rng.permutation(starts):
                rows = self.rows[start : start + block_rows]
                condition, target = self._read_rows(dataset, rows)
                order = rng.permutation(len(rows))
                for first in range(0, len(rows), batch_size):
                    chosen = order[first : first + batch_size]
                    yield condition[chosen], target[chosen]


def split_pairs(
    path: Path, label: str, direction: Direction, settings: SplitSettings, seed: int
) -> dict[str, ImagePairs]:
    """Split one imager's image pairs of a dataset file into the train, validation and test sets.

    The rows of each set come from :func:`qcdtool.core.split.split_rows` with
    ``settings`` and ``seed``; no image is read.
    """
    with Dataset(path) as dataset:
        config = dataset.column("config_id")
        hadronization = dataset.column("hadronization")
    rows = split_rows(config, hadronization, settings, seed)
    return {name: ImagePairs(path, label, direction, indices) for name, indices in rows.items()}
