"""Access for the metric plugins to a sample set, its images and the dataset's reference pairs.

A :class:`~qcdtool.core.contracts.SampleSet` contains ``generated`` images of
shape (n, K, C, H, W): K samples for each of n test conditions. Most metrics
treat the n * K generated images as one flat sample, with the labels of
each condition repeated K times (:func:`flat_generated`, :func:`per_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.contracts import SampleSet
from qcdtool.core.pairs import ImagePairs
from qcdtool.plugins.metrics.common.grid import PixelGrid

FloatArray = NDArray[np.float64]

#: Quark flavours by the PDG id stored in the dataset's ``flavour`` column.
FLAVOUR_NAMES: dict[int, str] = {1: "d", 2: "u", 3: "s", 4: "c", 5: "b"}

#: Pairs read from a dataset file at a time.
READ_BLOCK = 8192


def flavour_name(pdg_id: int) -> str:
    """Return the quark name of a flavour id (``b`` for 5), or the id as text."""
    return FLAVOUR_NAMES.get(int(pdg_id), str(int(pdg_id)))


def pixel_grid(samples: SampleSet) -> PixelGrid:
    """Build the pixel grid of the sample set's images from the imager's extents."""
    extents = np.asarray(samples.image["extents"], dtype=np.float64)
    height, width = samples.generated.shape[-2:]
    (u_lo, u_hi), (v_lo, v_hi) = extents.tolist()
    return PixelGrid.from_extents(((u_lo, u_hi), (v_lo, v_hi)), height, width)


def channel_names(samples: SampleSet) -> list[str]:
    """Return the names of the image channels (``all`` for one-channel images)."""
    names = [str(name) for name in samples.image.get("channels", [])]
    channels = samples.generated.shape[2]
    return names if len(names) == channels else [f"channel {c}" for c in range(channels)]


def flat_generated(samples: SampleSet) -> NDArray[np.float32]:
    """Return the generated images as one (n * K, C, H, W) array, condition by condition."""
    generated = samples.generated
    flat: NDArray[np.float32] = generated.reshape(-1, *generated.shape[2:])
    return flat


def per_sample(values: NDArray[Any], samples: SampleSet) -> NDArray[Any]:
    """Repeat one value per condition K times, to line up with :func:`flat_generated`."""
    return np.repeat(np.asarray(values), samples.generated.shape[1], axis=0)


def suffixed(name: str, channel: str, channels: int) -> str:
    """Name of a per-channel value: ``name`` for one channel, ``name_<channel>`` for several."""
    return name if channels == 1 else f"{name}_{channel}"


def subset(pairs: ImagePairs, positions: NDArray[np.int64]) -> ImagePairs:
    """Return the pairs at the given positions (indices into ``pairs.rows``, in any order)."""
    rows = np.unique(pairs.rows[np.asarray(positions, dtype=np.int64)])
    return ImagePairs(pairs.path, pairs.label, pairs.direction, rows)


def random_positions(n: int, limit: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Return all of ``range(n)`` when ``n <= limit``, else ``limit`` of them drawn without replacement, sorted."""
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=limit, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class ConfigurationImages:
    """The distinct target images of each configuration in a set of image pairs.

    In rehadronize mode every hadronization of a configuration has the same
    parton image, so in the inverse direction each configuration has one
    image here. Imagers that orient both levels by the hadron jet (the
    ``rotate`` and ``flip`` options) give a configuration several parton
    images, and then each distinct one is listed.
    """

    images: NDArray[np.float32]
    config_id: NDArray[np.int64]
    flavour: NDArray[np.int64]

    @property
    def configurations(self) -> NDArray[np.int64]:
        """The configuration ids, sorted."""
        return np.unique(self.config_id)

    @property
    def max_per_configuration(self) -> int:
        """The largest number of distinct images of one configuration."""
        return int(np.bincount(np.searchsorted(self.configurations, self.config_id)).max())

    def flavour_of(self) -> dict[int, int]:
        """Return the flavour id of each configuration."""
        return {int(c): int(f) for c, f in zip(self.config_id, self.flavour, strict=True)}


def configuration_targets(pairs: ImagePairs) -> ConfigurationImages:
    """Collect the distinct target images of every configuration in ``pairs``.

    Pairs are read block by block, and duplicates are dropped within each
    block and again at the end, so memory grows with the number of distinct
    images rather than with the number of pairs.
    """
    labels = pairs.labels()
    config = np.asarray(labels["config_id"], dtype=np.int64)
    flavour = np.asarray(labels["flavour"], dtype=np.int64)
    kept: list[tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]] = []
    for start in range(0, len(pairs), READ_BLOCK):
        stop = min(start + READ_BLOCK, len(pairs))
        _, targets = pairs.read(start, stop)
        kept.append(_distinct(targets, config[start:stop], flavour[start:stop]))
    if not kept:
        raise ValueError(f"no image pairs in {pairs.path} (imager '{pairs.label}') to take configuration images from")
    images, configs, flavours = _distinct(
        np.concatenate([block[0] for block in kept]),
        np.concatenate([block[1] for block in kept]),
        np.concatenate([block[2] for block in kept]),
    )
    return ConfigurationImages(images=images, config_id=configs, flavour=flavours)


def _distinct(
    images: NDArray[np.float32], config: NDArray[np.int64], flavour: NDArray[np.int64]
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]:
    """Drop repeated (configuration, image) pairs; the result is sorted by configuration."""
    chosen: list[NDArray[np.int64]] = []
    flat = images.reshape(len(images), -1)
    for value in np.unique(config):
        rows = np.flatnonzero(config == value)
        _, first = np.unique(flat[rows], axis=0, return_index=True)
        chosen.append(rows[np.sort(first)])
    keep = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return images[keep], config[keep], flavour[keep]


@dataclass(frozen=True)
class LabelledTargets:
    """Target images of some pairs, with the configuration and hadronization of each."""

    images: NDArray[np.float32]
    config_id: NDArray[np.int64]
    hadronization: NDArray[np.int64]


def targets_per_configuration(pairs: ImagePairs, limit: int, rng: np.random.Generator) -> LabelledTargets:
    """Read the target images of at most ``limit`` pairs of each configuration, drawn at random."""
    config = np.asarray(pairs.labels()["config_id"], dtype=np.int64)
    positions = [
        np.flatnonzero(config == value)[random_positions(int(np.count_nonzero(config == value)), limit, rng)]
        for value in np.unique(config)
    ]
    chosen = subset(pairs, np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64))
    _, targets = chosen.read()
    labels = chosen.labels()
    return LabelledTargets(
        images=targets,
        config_id=np.asarray(labels["config_id"], dtype=np.int64),
        hadronization=np.asarray(labels["hadronization"], dtype=np.int64),
    )
