"""Inversion accuracy: which parton configuration does each generated image belong to?

In the inverse direction a model turns a hadron image of configuration k
into a parton image. Each generated image is assigned to the nearest of the
K configuration images (the true parton images), and the assignment is
right when it picks k. A second, looser criterion requires only that the
generated image lies within an L2 distance ``threshold`` of the true image.
Its chance level is the share of images for which some other
configuration's image would pass as well.

Accuracies come with the binomial standard error sqrt(p (1 - p) / n).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qcdtool.core.contracts import MetricValue
from qcdtool.plugins.metrics.common.grid import PixelGrid

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: L2 distance to the true image below which the threshold criterion passes.
DEFAULT_THRESHOLD = 0.5


def _flatten(images: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(images, dtype=np.float64)
    if array.ndim != 4:
        raise ValueError(f"{name} must have shape (n, C, H, W), got shape {array.shape}")
    return array.reshape(len(array), -1)


def l2_distances(images: ArrayLike, references: ArrayLike) -> FloatArray:
    """Return the L2 distance between each image and each reference over all pixels, shape ``(n, K)``."""
    x = _flatten(images, "images")
    r = _flatten(references, "references")
    if x.shape[1] != r.shape[1]:
        raise ValueError(f"images have {x.shape[1]} pixel values each, references {r.shape[1]}")

    # |x - r|^2 = |x|^2 - 2 x.r + |r|^2; rounding can make it slightly negative.
    squared = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ r.T) + (r * r).sum(axis=1)[None, :]
    distances: FloatArray = np.sqrt(np.clip(squared, 0.0, None))
    return distances


def _check_labels(true_config: ArrayLike, n: int, n_configurations: int) -> IntArray:
    labels = np.asarray(true_config)
    if labels.shape != (n,):
        raise ValueError(f"expected {n} configuration labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"configuration labels must be integers, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= n_configurations):
        raise ValueError(
            f"configuration labels must lie in 0..{n_configurations - 1}, got {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int64)


def assign_nearest(
    images: ArrayLike,
    references: ArrayLike,
    *,
    distance: Literal["l2", "emd"] = "l2",
    grid: PixelGrid | None = None,
) -> IntArray:
    """Return the index of the nearest of K ``references`` for each image, shape ``(n,)``.

    ``distance`` is ``"l2"`` (over all pixels and channels) or ``"emd"``
    (summed over channels, see :func:`.emd.emd_to_references`, which needs
    the ``grid``). Ties go to the lowest index; an image with NaN EMD to
    every reference is assigned to reference 0.
    """
    if distance == "l2":
        distances = l2_distances(images, references)
    elif distance == "emd":
        if grid is None:
            raise ValueError("distance='emd' needs the pixel grid of the images")
        from qcdtool.plugins.metrics.common.emd import emd_to_references

        distances = emd_to_references(images, references, grid)
        distances = np.where(np.isnan(distances), np.inf, distances)
    else:
        raise ValueError(f"distance must be 'l2' or 'emd', got {distance!r}")
    nearest: IntArray = np.argmin(distances, axis=1).astype(np.int64)
    return nearest


def binomial_accuracy(correct: ArrayLike, baseline: float | None = None, note: str = "") -> MetricValue:
    """Return the share of true entries of ``correct`` with its binomial standard error."""
    hits = np.asarray(correct, dtype=bool)
    n = hits.size
    if n == 0:
        raise ValueError("accuracy of an empty set of predictions is undefined")
    p = float(np.count_nonzero(hits)) / n
    return MetricValue(value=p, uncertainty=float(np.sqrt(p * (1.0 - p) / n)), baseline=baseline, note=note)


def top1_accuracy(assigned: ArrayLike, true_config: ArrayLike, n_configurations: int) -> MetricValue:
    """Return the share of images assigned to their own configuration; the baseline is chance, 1/K."""
    assigned_ = np.asarray(assigned)
    labels = _check_labels(true_config, len(assigned_), n_configurations)
    return binomial_accuracy(
        assigned_ == labels,
        baseline=1.0 / n_configurations,
        note=f"top-1 among {n_configurations} configurations",
    )


def group_accuracy(
    assigned: ArrayLike, true_config: ArrayLike, groups: ArrayLike, n_configurations: int
) -> dict[Hashable, MetricValue]:
    """Return the top-1 accuracy of each group of images (for example each flavour).

    ``groups`` contains one label per image. The baseline of each group is the
    overall chance level 1/K.
    """
    assigned_ = np.asarray(assigned)
    labels = _check_labels(true_config, len(assigned_), n_configurations)
    groups_ = np.asarray(groups)
    if groups_.shape != labels.shape:
        raise ValueError(f"expected {len(labels)} group labels, got shape {groups_.shape}")
    correct = assigned_ == labels
    return {
        group.item(): binomial_accuracy(
            correct[groups_ == group], baseline=1.0 / n_configurations, note=f"group {group.item()!r}"
        )
        for group in np.unique(groups_)
    }


def confusion_matrix(assigned: ArrayLike, true_config: ArrayLike, n_configurations: int) -> IntArray:
    """Count images by true configuration (row) and assigned configuration (column), shape ``(K, K)``."""
    assigned_ = np.asarray(assigned)
    labels = _check_labels(true_config, len(assigned_), n_configurations)
    _check_labels(assigned_, len(assigned_), n_configurations)
    flat = labels * n_configurations + assigned_.astype(np.int64)
    return np.bincount(flat, minlength=n_configurations**2).reshape(n_configurations, n_configurations)


def threshold_criterion(
    images: ArrayLike, references: ArrayLike, true_config: ArrayLike, threshold: float = DEFAULT_THRESHOLD
) -> MetricValue:
    """Return the share of images within L2 distance ``threshold`` of their true configuration's image.

    The baseline is the chance level: the share of images whose true
    configuration image has another configuration's image within
    ``threshold`` too, so that an image indistinguishable from that other
    configuration would still pass. A chance level near 1 means the
    criterion cannot tell configurations apart.
    """
    refs = np.asarray(references)
    n_configurations = len(refs)
    distances = l2_distances(images, refs)
    labels = _check_labels(true_config, len(distances), n_configurations)
    if threshold <= 0.0:
        raise ValueError(f"threshold must be positive, got {threshold}")

    # 1. Pass: the generated image is close enough to its own configuration's image.
    passed = distances[np.arange(len(labels)), labels] < threshold

    # 2. Chance: configuration k's image is within the threshold of some other one.
    between = l2_distances(refs, refs)
    np.fill_diagonal(between, np.inf)
    ambiguous = np.any(between < threshold, axis=1)
    chance = float(np.mean(ambiguous[labels])) if len(labels) else float("nan")

    return binomial_accuracy(passed, baseline=chance, note=f"L2 to the true image < {threshold:g}")
