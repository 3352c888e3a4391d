"""Frechet distance between Gaussians fitted to feature vectors, and its N -> infinity limit (FPD).

The Frechet (Wasserstein-2) distance between N(mu_1, Sigma_1) and
N(mu_2, Sigma_2) is

    FD = |mu_1 - mu_2|^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2)),

as used for the FID by Heusel et al., NeurIPS 2017 (arXiv:1706.08500).
Estimated from N samples, FD is biased upward by a term that falls as 1/N.
The Frechet physics distance (FPD) of Kansal et al., "Evaluating generative
models in high energy physics", PRD 107 (2023) 076017 (arXiv:2211.10295)
removes it: FD is measured at several batch sizes N, fitted linearly in
1/N, and the intercept is reported. The batch sizes, batch counts and
feature scaling used by default here follow the reference implementation
``jetnet.evaluation.fpd``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qcdtool.core.contracts import MetricValue

FloatArray = NDArray[np.float64]


def _as_features(values: ArrayLike, name: str) -> FloatArray:
    """Read ``(n,)`` or ``(n, d)`` samples as an ``(n, d)`` float64 array."""
    features = np.asarray(values, dtype=np.float64)
    if features.ndim == 1:
        features = features[:, None]
    if features.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {features.shape}")
    if len(features) < 2:
        raise ValueError(f"{name} needs at least 2 samples to fit a covariance, got {len(features)}")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contains {np.count_nonzero(~np.isfinite(features))} non-finite values")
    return features


def fit_gaussian(features: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return the sample mean ``(d,)`` and covariance ``(d, d)`` (divided by n - 1) of ``(n, d)`` features."""
    x = _as_features(features, "features")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sqrt_psd(matrix: FloatArray) -> FloatArray:
    """Symmetric square root of a positive semi-definite matrix; rounding below zero is clipped."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    root: FloatArray = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    return root


def frechet_distance_gaussians(mu_1: ArrayLike, sigma_1: ArrayLike, mu_2: ArrayLike, sigma_2: ArrayLike) -> float:
    """Return the Frechet distance between N(mu_1, sigma_1) and N(mu_2, sigma_2).

    Tr (Sigma_1 Sigma_2)^(1/2) is the sum of the square roots of the
    eigenvalues of the symmetric matrix Sigma_1^(1/2) Sigma_2 Sigma_1^(1/2),
    which has the same eigenvalues as Sigma_1 Sigma_2. Unlike a general
    matrix square root, this never produces complex rounding noise.
    """
    mu_1_, mu_2_ = (
        np.atleast_1d(np.asarray(mu_1, dtype=np.float64)),
        np.atleast_1d(np.asarray(mu_2, dtype=np.float64)),
    )
    sigma_1_ = np.atleast_2d(np.asarray(sigma_1, dtype=np.float64))
    sigma_2_ = np.atleast_2d(np.asarray(sigma_2, dtype=np.float64))
    d = len(mu_1_)
    if mu_2_.shape != (d,) or sigma_1_.shape != (d, d) or sigma_2_.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu_1 {mu_1_.shape}, sigma_1 {sigma_1_.shape}, "
            f"mu_2 {mu_2_.shape}, sigma_2 {sigma_2_.shape}"
        )

    # 1. |mu_1 - mu_2|^2
    difference = mu_1_ - mu_2_
    mean_term = float(difference @ difference)

    # 2. Tr (Sigma_1 Sigma_2)^(1/2) from the eigenvalues of S Sigma_2 S, S = Sigma_1^(1/2).
    s = _sqrt_psd(sigma_1_)
    product = s @ sigma_2_ @ s
    eigenvalues = np.linalg.eigvalsh(0.5 * (product + product.T))
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))

    # 3. FD = |mu_1 - mu_2|^2 + Tr Sigma_1 + Tr Sigma_2 - 2 Tr (Sigma_1 Sigma_2)^(1/2)
    return mean_term + float(np.trace(sigma_1_) + np.trace(sigma_2_)) - 2.0 * trace_sqrt


def frechet_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Return the Frechet distance between Gaussians fitted to ``(n, d)`` samples ``x`` and ``y``."""
    mu_x, sigma_x = fit_gaussian(x)
    mu_y, sigma_y = fit_gaussian(y)
    return frechet_distance_gaussians(mu_x, sigma_x, mu_y, sigma_y)


def default_batch_sizes(n_available: int, n_points: int = 10) -> NDArray[np.int64]:
    """Return ``n_points`` batch sizes evenly spaced in 1/N from 0.4 N_max to N_max.

    N_max is ``n_available`` capped at 50,000; the reference implementation
    uses 20,000 to 50,000.
    """
    n_max = min(50_000, n_available)
    n_min = max(2, int(0.4 * n_max))
    if n_max <= n_min:
        raise ValueError(f"need more than {n_min} samples for an FPD fit, got {n_available}")
    inverse = np.linspace(1.0 / n_min, 1.0 / n_max, n_points)
    return np.unique(np.round(1.0 / inverse).astype(np.int64))


def _fit_line(x: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """Least-squares fit y = a + b x; return a, b and the standard error of a.

    The error comes from the residual scatter, s^2 = RSS / (m - 2), as in
    scipy.optimize.curve_fit without absolute sigmas.
    """
    design = np.stack([np.ones_like(x), x], axis=1)
    coefficients, _, _, _ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - design @ coefficients
    s2 = float(residuals @ residuals) / (len(x) - 2)
    covariance = s2 * np.linalg.inv(design.T @ design)
    return float(coefficients[0]), float(coefficients[1]), float(np.sqrt(covariance[0, 0]))


def frechet_physics_distance(
    generated: ArrayLike,
    truth: ArrayLike,
    *,
    rng: np.random.Generator,
    batch_sizes: Sequence[int] | None = None,
    n_batches: int = 20,
    normalise: bool = True,
) -> MetricValue:
    """Estimate the Frechet distance at infinite sample size (FPD) and its uncertainty.

    ``generated`` and ``truth`` are ``(n, d)`` feature vectors, for example
    the observables of each image. With ``normalise``, every feature of both
    sets is divided by the largest absolute value of that feature in the
    truth, so that features of different units weigh alike. For each batch
    size N (by default :func:`default_batch_sizes`), ``n_batches`` pairs of
    batches of N samples are drawn with replacement and their FD averaged.
    A straight line in 1/N through these means gives FPD as its intercept,
    and the intercept's standard error is the uncertainty.

    NOTE: unlike the reference implementation, the intercept is not forced
    to be non-negative, so that a result consistent with zero shows as such.
    """
    x = _as_features(generated, "generated")
    y = _as_features(truth, "truth")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"generated has {x.shape[1]} features but truth has {y.shape[1]}")
    sizes = np.asarray(default_batch_sizes(min(len(x), len(y))) if batch_sizes is None else batch_sizes, dtype=np.int64)
    if len(sizes) < 3 or np.any(sizes < 2):
        raise ValueError(f"need at least 3 batch sizes of 2 or more samples, got {sizes.tolist()}")
    if n_batches < 1:
        raise ValueError(f"n_batches must be at least 1, got {n_batches}")

    # 1. Put the features on a common scale.
    if normalise:
        scale = np.max(np.abs(y), axis=0)
        scale[scale == 0.0] = 1.0
        x, y = x / scale, y / scale

    # 2. Mean FD over n_batches batch pairs at each batch size N.
    mean_fd = np.empty(len(sizes))
    for k, n in enumerate(sizes):
        values = [
            frechet_distance(x[rng.integers(0, len(x), n)], y[rng.integers(0, len(y), n)]) for _ in range(n_batches)
        ]
        mean_fd[k] = np.mean(values)

    # 3. FD(N) = FPD + slope / N; FPD is the intercept.
    intercept, _, intercept_error = _fit_line(1.0 / sizes.astype(np.float64), mean_fd)
    return MetricValue(
        value=intercept,
        uncertainty=intercept_error,
        note=(
            f"FD at N = {int(sizes.min())}..{int(sizes.max())} "
            f"({len(sizes)} sizes, {n_batches} batches each) "
            "extrapolated linearly in 1/N to N -> infinity"
        ),
    )
