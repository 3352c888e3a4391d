import numpy as np
import pytest
import torch

from qcdtool.plugins.metrics.common.cnn import build_network, cnn_classifier


def blob_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """8x8 images with a bright pixel in column 1 (label 0) or column 6 (label 1), plus noise."""
    images = rng.random((len(labels), 1, 8, 8)).astype(np.float32) * 0.2
    rows = rng.integers(2, 6, size=len(labels))
    columns = np.where(labels == 0, 1, 6)
    images[np.arange(len(labels)), 0, rows, columns] += 1.0
    return images


def test_separable_classes_learned() -> None:
    rng = np.random.default_rng(0)
    train_labels, test_labels = rng.integers(0, 2, size=256), rng.integers(0, 2, size=64)
    result = cnn_classifier(
        blob_images(rng, train_labels), train_labels, blob_images(rng, test_labels), test_labels, epochs=8
    )
    assert result.accuracy.value == 1.0


def test_same_seed_same_probabilities() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=64)
    images = blob_images(rng, labels)
    first = cnn_classifier(images, labels, images[:8], labels[:8], epochs=2, seed=5)
    second = cnn_classifier(images, labels, images[:8], labels[:8], epochs=2, seed=5)
    np.testing.assert_array_equal(first.probabilities, second.probabilities)


def test_global_random_state_untouched() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=16)
    images = blob_images(rng, labels)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    cnn_classifier(images, labels, images, labels, epochs=1)
    assert torch.equal(torch.rand(3), expected)


def test_probabilities_rows_sum_to_one() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([4, 9, 4, 9, 7, 7])
    result = cnn_classifier(blob_images(rng, labels % 2), labels, blob_images(rng, labels % 2), labels, epochs=1)
    assert result.probabilities.shape == (6, 3)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_odd_image_size_accepted() -> None:
    network = build_network(2, 5)
    assert network(torch.zeros(3, 2, 15, 15)).shape == (3, 5)


def test_thread_count_restored() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=16)
    images = blob_images(rng, labels)
    before = torch.get_num_threads()
    cnn_classifier(images, labels, images[:4], labels[:4], epochs=1, threads=1)
    assert torch.get_num_threads() == before


def test_zero_threads_rejected() -> None:
    labels = np.array([0, 1])
    images = blob_images(np.random.default_rng(4), labels)
    with pytest.raises(ValueError, match="must be positive"):
        cnn_classifier(images, labels, images, labels, threads=0)
