"""A small convolutional classifier of configurations from images (torch).

A nearest-class-mean classifier on pixels understates how well a learned
encoder distinguishes configurations, so this network gives a second,
usually higher, ceiling for inversion accuracy. It is kept small (about 40k
parameters at 16x16) and deterministic: the same seed, data and thread count
give the same probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from qcdtool.plugins.metrics.common.assignment import binomial_accuracy
from qcdtool.plugins.metrics.common.classifiers import ClassifierResult


def build_network(channels: int, n_classes: int) -> nn.Module:
    """Two 3x3 convolution blocks, a fixed 4x4 pooling and two dense layers."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        # Pooling to a fixed 4x4 map keeps the layer sizes independent of the image size.
        nn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, n_classes),
    )


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cnn_classifier(
    train_images: ArrayLike,
    train_labels: ArrayLike,
    test_images: ArrayLike,
    test_labels: ArrayLike,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 1,
) -> ClassifierResult:
    """Train the network on the training images and classify the test images.

    Images are divided by the standard deviation of all training pixels.
    Training uses Adam with cross-entropy for ``epochs`` passes over
    shuffled batches. The probabilities are the softmax of the network's
    outputs. A test label that does not occur in training counts as a
    wrong prediction; the baseline of the accuracy is chance, 1/K.

    The global torch random state and thread count are left as they were.
    ``threads`` sets torch's CPU threads while the function runs. One is the
    default because the network is too small to gain from more: on a 2-core
    machine with another process busy, a training step with two threads took
    15 to 50 times as long as with one (about 50 us per image).
    """
    x_train = np.asarray(train_images, dtype=np.float32)
    x_test = np.asarray(test_images, dtype=np.float32)
    y_train = np.asarray(train_labels)
    y_test = np.asarray(test_labels)
    if x_train.ndim != 4 or x_test.ndim != 4 or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"train and test images must have shape (n, C, H, W) with equal C, H, W, "
            f"got {x_train.shape} and {x_test.shape}"
        )
    if y_train.shape != (len(x_train),) or y_test.shape != (len(x_test),):
        raise ValueError(f"expected one label per image, got {y_train.shape} and {y_test.shape} labels")
    if epochs < 1 or batch_size < 1 or threads < 1:
        raise ValueError(f"epochs, batch_size and threads must be positive, got {epochs}, {batch_size} and {threads}")

    # 1. Map labels to class indices 0..K-1 and scale the pixels.
    classes, index = np.unique(y_train, return_inverse=True)
    scale = float(x_train.std()) or 1.0
    inputs = torch.from_numpy(x_train / scale).to(device)
    targets = torch.from_numpy(index.astype(np.int64)).to(device)

    with _torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network(x_train.shape[1], len(classes)).to(device)
        optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        loss_function = nn.CrossEntropyLoss()
        shuffle = torch.Generator().manual_seed(seed)

        # 2. Train on shuffled batches.
        network.train()
        for _ in range(epochs):
            permutation = torch.randperm(len(inputs), generator=shuffle).to(device)
            for start in range(0, len(inputs), batch_size):
                batch = permutation[start : start + batch_size]
                optimizer.zero_grad()
                loss = loss_function(network(inputs[batch]), targets[batch])
                loss.backward()
                optimizer.step()

        # 3. Classify the test images.
        network.eval()
        with torch.no_grad():
            logits = torch.cat(
                [
                    network(torch.from_numpy(x_test[start : start + 1024] / scale).to(device))
                    for start in range(0, len(x_test), 1024)
                ]
            )
            probabilities = torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)

    predicted = classes[np.argmax(probabilities, axis=1)]
    accuracy = binomial_accuracy(
        predicted == y_test, baseline=1.0 / len(classes), note=f"small CNN, {len(classes)} classes"
    )
    return ClassifierResult(classes=classes, predicted=predicted, probabilities=probabilities, accuracy=accuracy)
