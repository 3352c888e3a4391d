import numpy as np
import pytest

from qcdtool.plugins.metrics.common.assignment import (
    assign_nearest,
    confusion_matrix,
    group_accuracy,
    l2_distances,
    threshold_criterion,
    top1_accuracy,
)
from qcdtool.plugins.metrics.common.grid import PixelGrid

GRID = PixelGrid.from_extents(((-0.4, 0.4), (-0.4, 0.4)), 4, 4)


def configuration_images(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.random((k, 1, 4, 4)) * (rng.random((k, 1, 4, 4)) < 0.4) + 0.01


def test_l2_distances_explicit() -> None:
    rng = np.random.default_rng(0)
    images, references = rng.random((5, 2, 4, 4)), rng.random((3, 2, 4, 4))
    expected = np.sqrt(((images[:, None] - references[None]) ** 2).sum(axis=(2, 3, 4)))
    np.testing.assert_allclose(l2_distances(images, references), expected, rtol=1e-12)


def test_perfect_samples_accuracy_one() -> None:
    rng = np.random.default_rng(1)
    references = configuration_images(rng, 5)
    labels = rng.integers(0, 5, size=200)
    result = top1_accuracy(assign_nearest(references[labels], references), labels, 5)
    assert result.value == 1.0
    assert result.uncertainty == 0.0


def test_perfect_samples_accuracy_one_by_emd() -> None:
    rng = np.random.default_rng(2)
    references = configuration_images(rng, 3)
    labels = rng.integers(0, 3, size=12)
    assigned = assign_nearest(references[labels], references, distance="emd", grid=GRID)
    assert top1_accuracy(assigned, labels, 3).value == 1.0


def test_random_samples_at_chance() -> None:
    rng = np.random.default_rng(3)
    k, n = 4, 2000
    references = configuration_images(rng, k)
    labels = rng.integers(0, k, size=n)
    generated = rng.random((n, 1, 4, 4))
    result = top1_accuracy(assign_nearest(generated, references), labels, k)
    assert abs(result.value - 1.0 / k) < 3.0 * np.sqrt(0.25 * 0.75 / n)


def test_accuracy_baseline_is_chance() -> None:
    assert top1_accuracy([0, 1], [0, 0], 4).baseline == 0.25


def test_accuracy_binomial_error() -> None:
    # 3 of 4 right: sqrt(0.75 * 0.25 / 4).
    result = top1_accuracy([0, 1, 2, 0], [0, 1, 2, 3], 4)
    assert result.value == 0.75
    assert result.uncertainty == pytest.approx(np.sqrt(0.75 * 0.25 / 4), rel=1e-15)


def test_group_accuracy_per_group() -> None:
    result = group_accuracy([0, 1, 1, 1], [0, 1, 0, 0], ["b", "b", "uds", "uds"], 2)
    assert result["b"].value == 1.0
    assert result["uds"].value == 0.0


def test_confusion_matrix_counts() -> None:
    matrix = confusion_matrix([0, 1, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2], 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 1], [0, 0, 2]])


def test_labels_out_of_range_rejected() -> None:
    with pytest.raises(ValueError, match=r"0\.\.2"):
        top1_accuracy([0, 1], [0, 3], 3)


def test_unknown_distance_rejected() -> None:
    with pytest.raises(ValueError, match="'l2' or 'emd'"):
        assign_nearest(np.zeros((1, 1, 4, 4)), np.zeros((2, 1, 4, 4)), distance="cosine")  # type: ignore[arg-type]


def test_emd_needs_grid() -> None:
    with pytest.raises(ValueError, match="grid"):
        assign_nearest(np.zeros((1, 1, 4, 4)), np.zeros((2, 1, 4, 4)), distance="emd")


def test_threshold_identical_configurations_chance_one() -> None:
    image = configuration_images(np.random.default_rng(4), 1)
    references = np.concatenate([image, image])
    result = threshold_criterion(references[[0, 1, 1]], references, np.array([0, 1, 1]))
    assert result.baseline == 1.0


def test_threshold_distant_configurations_chance_zero() -> None:
    references = np.stack([np.zeros((1, 4, 4)), np.ones((1, 4, 4))])
    result = threshold_criterion(references[[0, 1]], references, np.array([0, 1]))
    assert result.baseline == 0.0


def test_threshold_perfect_samples_pass() -> None:
    references = np.stack([np.zeros((1, 4, 4)), np.ones((1, 4, 4))])
    result = threshold_criterion(references[[0, 1, 1]], references, np.array([0, 1, 1]))
    assert result.value == 1.0


def test_threshold_distance_just_above_fails() -> None:
    # One pixel off by 0.6 is 0.6 away in L2, above the default 0.5.
    references = np.stack([np.zeros((1, 4, 4)), np.ones((1, 4, 4))])
    generated = references[[0]].copy()
    generated[0, 0, 0, 0] = 0.6
    assert threshold_criterion(generated, references, np.array([0])).value == 0.0


def test_threshold_chance_counts_conditions() -> None:
    # Configurations 0 and 1 are 0.3 apart, 2 is far away: chance is the
    # share of conditions that belong to 0 or 1.
    references = np.zeros((3, 1, 4, 4))
    references[1, 0, 0, 0] = 0.3
    references[2] = 5.0
    labels = np.array([0, 1, 2, 2])
    assert threshold_criterion(references[labels], references, labels).baseline == 0.5
