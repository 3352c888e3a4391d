"""Classifiers that tell the configuration from an image: a ceiling for inversion accuracy.

If a classifier trained on hadron images cannot tell two configurations
apart, no inverse model can either, so its test accuracy is the reference
against which inversion accuracy is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qcdtool.core.contracts import MetricValue
from qcdtool.plugins.metrics.common.assignment import binomial_accuracy, l2_distances

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ClassifierResult:
    """Predictions of a classifier on test images.

    ``classes`` contains the K sorted training labels; ``probabilities`` has
    shape ``(n, K)`` with columns in that order, ``predicted`` the label
    of the most probable class of each test image.
    """

    classes: NDArray[np.generic]
    predicted: NDArray[np.generic]
    probabilities: FloatArray
    accuracy: MetricValue


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax, shifted by the row maximum so that no exponential overflows."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    weights = np.exp(shifted)
    probabilities: FloatArray = weights / weights.sum(axis=1, keepdims=True)
    return probabilities


def nearest_class_mean(
    train_images: ArrayLike, train_labels: ArrayLike, test_images: ArrayLike, test_labels: ArrayLike
) -> ClassifierResult:
    """Classify test images by the nearest class-mean image (L2) of the training images.

    The probabilities are those of a Gaussian model with one mean image mu_k
    per class, a shared isotropic variance sigma^2 and equal priors:

        p(k | x) = softmax_k(-|x - mu_k|^2 / (2 sigma^2)),

    with sigma^2 the mean squared deviation of a training pixel from its
    class mean. The most probable class is always the nearest mean. A test
    label that does not occur in training counts as a wrong prediction.
    The baseline of the accuracy is chance, 1/K.
    """
    x_train = np.asarray(train_images, dtype=np.float64)
    x_test = np.asarray(test_images, dtype=np.float64)
    y_train = np.asarray(train_labels)
    y_test = np.asarray(test_labels)
    if x_train.ndim != 4 or x_test.ndim != 4 or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"train and test images must have shape (n, C, H, W) with equal C, H, W, "
            f"got {x_train.shape} and {x_test.shape}"
        )
    if y_train.shape != (len(x_train),) or y_test.shape != (len(x_test),):
        raise ValueError(f"expected one label per image, got {y_train.shape} and {y_test.shape} labels")

    # 1. Class means mu_k over the training images.
    classes, index = np.unique(y_train, return_inverse=True)
    flat = x_train.reshape(len(x_train), -1)
    counts = np.bincount(index, minlength=len(classes)).astype(np.float64)
    means = np.zeros((len(classes), flat.shape[1]))
    np.add.at(means, index, flat)
    means /= counts[:, None]

    # 2. Shared variance sigma^2 per pixel from the training residuals.
    residual = flat - means[index]
    sigma2 = float(np.mean(residual * residual))
    if sigma2 == 0.0:
        sigma2 = float(np.finfo(np.float64).tiny)

    # 3. p(k | x) from the squared distances to the means.
    mean_images = means.reshape((len(classes), *x_train.shape[1:]))
    d2 = l2_distances(x_test, mean_images) ** 2
    excess = d2 - d2.min(axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        # With sigma^2 tiny the logits may overflow to -inf, which softmax maps to 0.
        probabilities = softmax(-excess / (2.0 * sigma2))
    predicted = classes[np.argmin(d2, axis=1)]

    accuracy = binomial_accuracy(
        predicted == y_test, baseline=1.0 / len(classes), note=f"nearest class mean, {len(classes)} classes"
    )
    return ClassifierResult(classes=classes, predicted=predicted, probabilities=probabilities, accuracy=accuracy)
