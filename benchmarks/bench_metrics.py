"""Time the metric kernels on synthetic 16x16 jet images.

Usage::

    PYTHONPATH=. python benchmarks/bench_metrics.py [--images 100000] [--emd-pairs 2000]

Measures, each once after one warm-up call:

1. all image observables of ``--images`` generated and as many true images;
2. W1 with bootstrap uncertainty and truth-halves baseline for each scalar
   observable;
3. FPD on the vector of scalar observables, with the default batch sizes;
4. EMD of ``--emd-pairs`` paired images (sparse and dense) and EMD from
   images to 20 configuration images.

The images are random, not physical. A pixel is filled with a probability
that falls with its distance from the centre, which leaves about 20 of 256
pixels non-zero, like a leading-jet image at hadron level. "Dense" images
add a small positive value to every pixel, as unthresholded diffusion
samples have.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from qcdtool.plugins.metrics.common.emd import emd_to_references, image_emd
from qcdtool.plugins.metrics.common.frechet import frechet_physics_distance
from qcdtool.plugins.metrics.common.grid import PixelGrid
from qcdtool.plugins.metrics.common.observables import image_observables
from qcdtool.plugins.metrics.common.wasserstein import DEFAULT_BOOTSTRAP, wasserstein_1_metric

T = TypeVar("T")
GRID = PixelGrid.from_extents(((-0.8, 0.8), (-0.8, 0.8)), 16, 16)
RADIUS = 0.8


def jet_like_images(rng: np.random.Generator, n: int) -> NDArray[np.float32]:
    """Sparse, centrally peaked, normalized images of shape (n, 1, 16, 16)."""
    occupancy = 0.9 * np.exp(-GRID.radius() / 0.2)
    mask = rng.random((n, 1, 16, 16)) < occupancy
    images = rng.exponential(size=(n, 1, 16, 16)) * mask
    totals = images.sum(axis=(2, 3), keepdims=True)
    normalized: NDArray[np.float32] = np.divide(images, totals, out=np.zeros_like(images), where=totals > 0).astype(
        np.float32
    )
    return normalized


def timed(function: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="generated (and true) images")
    parser.add_argument("--emd-pairs", type=int, default=2000, help="image pairs for the EMD timing")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic images and bootstraps")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"numpy {np.__version__}")

    # 1. Observables of generated and true images.
    generated = jet_like_images(rng, args.images)
    truth = jet_like_images(rng, args.images)
    edges = np.linspace(0.0, RADIUS, 9)
    image_observables(generated[:1000], GRID, radius=RADIUS, edges=edges)
    obs_generated, t_generated = timed(lambda: image_observables(generated, GRID, radius=RADIUS, edges=edges))
    obs_truth, t_truth = timed(lambda: image_observables(truth, GRID, radius=RADIUS, edges=edges))
    scalars = [name for name, value in obs_generated.items() if value.ndim == 2]
    print(f"observables ({len(scalars)} scalars + radial profile), {args.images} images: {t_generated:.2f} s")
    print(f"observables, {args.images} true images: {t_truth:.2f} s")

    # 2. W1 with bootstrap and baseline for every scalar observable.
    def all_w1() -> None:
        for name in scalars:
            wasserstein_1_metric(obs_generated[name][:, 0], obs_truth[name][:, 0], rng=rng)

    _, t_w1 = timed(all_w1)
    print(
        f"W1 of {len(scalars)} observables, {args.images} vs {args.images} samples, "
        f"{DEFAULT_BOOTSTRAP} bootstraps: {t_w1:.2f} s"
    )
    print(f"observables + W1 total: {t_generated + t_truth + t_w1:.2f} s")

    # 3. FPD on the scalar observables.
    features_generated = np.stack([obs_generated[name][:, 0] for name in scalars], axis=1)
    features_truth = np.stack([obs_truth[name][:, 0] for name in scalars], axis=1)
    fpd, t_fpd = timed(lambda: frechet_physics_distance(features_generated, features_truth, rng=rng))
    print(f"FPD, {features_generated.shape[1]} features: {t_fpd:.2f} s ({fpd.note})")

    # 4. EMD between paired images, sparse and dense, and to 20 references.
    pairs = args.emd_pairs
    image_emd(generated[:10], truth[:10], GRID)
    _, t_sparse = timed(lambda: image_emd(generated[:pairs], truth[:pairs], GRID))
    dense_generated = generated[:pairs] + np.float32(1e-3)
    dense_truth = truth[:pairs] + np.float32(1e-3)
    dense_pairs = max(pairs // 10, 1)
    _, t_dense = timed(lambda: image_emd(dense_generated[:dense_pairs], dense_truth[:dense_pairs], GRID))
    n_to_refs = max(pairs // 4, 1)
    _, t_refs = timed(lambda: emd_to_references(generated[:n_to_refs], truth[:20], GRID))
    print(f"EMD, {pairs} sparse pairs: {t_sparse:.2f} s ({pairs / t_sparse:.0f} pairs/s)")
    print(f"EMD, {dense_pairs} dense pairs: {t_dense:.2f} s ({dense_pairs / t_dense:.0f} pairs/s)")
    print(
        f"EMD to 20 references, {n_to_refs} sparse images: {t_refs:.2f} s ({20 * n_to_refs / t_refs:.0f} distances/s)"
    )


if __name__ == "__main__":
    main()
