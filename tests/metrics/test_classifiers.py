import numpy as np
import pytest

from qcdtool.plugins.metrics.common.classifiers import nearest_class_mean, softmax


def test_softmax_rows_sum_to_one() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0, -5.0], [1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-15)


def test_softmax_equal_logits_uniform() -> None:
    np.testing.assert_allclose(softmax(np.zeros((1, 4))), 0.25, rtol=1e-15)


def test_separable_classes_accuracy_one() -> None:
    rng = np.random.default_rng(0)
    means = rng.random((3, 1, 4, 4)) * 5.0
    train_labels = np.repeat([10, 20, 30], 20)
    test_labels = np.repeat([10, 20, 30], 5)
    train = means[train_labels // 10 - 1] + rng.normal(0.0, 0.01, size=(60, 1, 4, 4))
    test = means[test_labels // 10 - 1] + rng.normal(0.0, 0.01, size=(15, 1, 4, 4))
    result = nearest_class_mean(train, train_labels, test, test_labels)
    assert result.accuracy.value == 1.0
    np.testing.assert_array_equal(result.predicted, test_labels)


def test_classes_sorted_labels() -> None:
    train = np.zeros((3, 1, 2, 2))
    train[1] = 1.0
    result = nearest_class_mean(train, np.array([7, 3, 7]), train[:1], np.array([7]))
    np.testing.assert_array_equal(result.classes, [3, 7])


def test_probabilities_gaussian_model() -> None:
    # Class means 0 and 3 (4 pixels each); residuals +-1 give sigma^2 = 1.
    # A test image of ones is |x - mu|^2 = 4 and 16 away, so
    # p(first) = 1 / (1 + exp(-(16 - 4) / 2)).
    e = np.ones((1, 2, 2))
    train = np.stack([e, -e, 3.0 + e, 3.0 - e])
    labels = np.array([0, 0, 1, 1])
    result = nearest_class_mean(train, labels, np.ones((1, 1, 2, 2)), np.array([0]))
    expected = 1.0 / (1.0 + np.exp(-6.0))
    assert result.probabilities[0, 0] == pytest.approx(expected, rel=1e-12)


def test_probabilities_halfway() -> None:
    e = np.full((1, 2, 2), 0.1)
    train = np.stack([e, -e, 1.0 + e, 1.0 - e])
    result = nearest_class_mean(train, np.array([0, 0, 1, 1]), np.full((1, 1, 2, 2), 0.5), np.array([0]))
    np.testing.assert_allclose(result.probabilities[0], [0.5, 0.5], rtol=1e-12)


def test_zero_variance_no_nan() -> None:
    train = np.stack([np.zeros((1, 2, 2)), np.ones((1, 2, 2))])
    result = nearest_class_mean(train, np.array([0, 1]), np.full((1, 1, 2, 2), 0.2), np.array([0]))
    np.testing.assert_array_equal(result.probabilities[0], [1.0, 0.0])


def test_unknown_test_label_wrong() -> None:
    train = np.stack([np.zeros((1, 2, 2)), np.ones((1, 2, 2))])
    result = nearest_class_mean(train, np.array([0, 1]), train, np.array([0, 5]))
    assert result.accuracy.value == 0.5


def test_baseline_is_chance() -> None:
    train = np.stack([np.zeros((1, 2, 2)), np.ones((1, 2, 2)), np.full((1, 2, 2), 2.0)])
    result = nearest_class_mean(train, np.array([0, 1, 2]), train, np.array([0, 1, 2]))
    assert result.accuracy.baseline == pytest.approx(1.0 / 3.0)
