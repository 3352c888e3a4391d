"""Wasserstein-1 distance between two sets of 1D samples, with uncertainty and baseline.

Inputs are always samples (one value per image or event), never histogram
contents: W1([0, 1, 3], [5, 6, 8]) is 5, the distance between the two
empirical distributions.

On the real line, W1 is the area between the two cumulative distribution
functions, W1(P, Q) = integral |F_P(t) - F_Q(t)| dt, which is also how
scipy.stats.wasserstein_distance computes it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qcdtool.core.contracts import MetricValue

FloatArray = NDArray[np.float64]

#: Bootstrap replicates drawn by default. The relative uncertainty of a
#: standard deviation estimated from B replicates is about 1 / sqrt(2 B),
#: so 10% at B = 50.
DEFAULT_BOOTSTRAP = 50

#: Replicates evaluated at once; bounds the working arrays to about
#: 20 x (n + m) float64 values.
_REPLICATE_CHUNK = 20


def _as_samples(values: ArrayLike, name: str) -> FloatArray:
    samples = np.asarray(values, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"{name} must be a 1D array of samples, got shape {samples.shape}")
    if len(samples) == 0:
        raise ValueError(f"{name} is empty; W1 needs at least one sample on each side")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{name} contains {np.count_nonzero(~np.isfinite(samples))} non-finite values")
    return samples


def wasserstein_1(u: ArrayLike, v: ArrayLike) -> float:
    """Return the Wasserstein-1 distance between the empirical distributions of ``u`` and ``v``."""
    # Imported here: scipy.stats takes about half a second to import, and plugin modules import this one.
    import scipy.stats

    return float(scipy.stats.wasserstein_distance(_as_samples(u, "u"), _as_samples(v, "v")))


def _merged_order(u: FloatArray, v: FloatArray) -> tuple[NDArray[np.intp], FloatArray]:
    """Sort ``u`` and ``v`` together: the sorting order and the gaps t_(k+1) - t_(k)."""
    values = np.concatenate([u, v])
    order = np.argsort(values, kind="stable")
    return order, np.diff(values[order])


def _cdf_area(order: NDArray[np.intp], dt: FloatArray, wu: FloatArray, wv: FloatArray) -> FloatArray:
    """Integrate |F_u - F_v| over t for each row of weights, on samples sorted by ``order``."""
    # F_u - F_v at t_(k) is the running sum of the signed, normalized
    # weights: +w for samples of u, -w for samples of v.
    signed = np.concatenate([wu / wu.sum(axis=1, keepdims=True), -wv / wv.sum(axis=1, keepdims=True)], axis=1)
    cdf_difference = np.cumsum(signed[:, order], axis=1)

    # The CDFs are step functions, so the integral is an exact sum.
    area: FloatArray = np.abs(cdf_difference[:, :-1]) @ dt
    return area


def weighted_wasserstein_1(u: ArrayLike, v: ArrayLike, u_weights: ArrayLike, v_weights: ArrayLike) -> FloatArray:
    """Return W1 between ``u`` and ``v`` for each row of sample weights.

    ``u_weights`` has shape ``(B, len(u))`` and ``v_weights`` shape
    ``(B, len(v))``; each row is normalized to sum 1. The samples are sorted
    once for all rows, which makes this much faster than B separate calls
    when the rows are bootstrap counts.
    """
    u_ = _as_samples(u, "u")
    v_ = _as_samples(v, "v")
    wu = np.atleast_2d(np.asarray(u_weights, dtype=np.float64))
    wv = np.atleast_2d(np.asarray(v_weights, dtype=np.float64))
    if wu.shape[1] != len(u_) or wv.shape[1] != len(v_) or len(wu) != len(wv):
        raise ValueError(f"weights of shapes {wu.shape} and {wv.shape} do not match {len(u_)} and {len(v_)} samples")
    order, dt = _merged_order(u_, v_)
    return _cdf_area(order, dt, wu, wv)


def _bootstrap_counts(rng: np.random.Generator, n: int, replicates: int) -> FloatArray:
    """Draw how often each of ``n`` samples is picked in each replicate of ``n`` draws with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def bootstrap_wasserstein_1(
    u: ArrayLike, v: ArrayLike, *, rng: np.random.Generator, n_bootstrap: int = DEFAULT_BOOTSTRAP
) -> FloatArray:
    """Return W1 of ``n_bootstrap`` bootstrap replicates, each resampling ``u`` and ``v`` independently.

    A replicate is a row of multinomial counts (how often each sample is
    drawn in n draws with replacement) used as weights, so the samples are
    sorted only once.
    """
    u_ = _as_samples(u, "u")
    v_ = _as_samples(v, "v")
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be at least 2, got {n_bootstrap}")
    order, dt = _merged_order(u_, v_)
    replicates = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, _REPLICATE_CHUNK):
        size = min(_REPLICATE_CHUNK, n_bootstrap - start)
        u_counts = _bootstrap_counts(rng, len(u_), size)
        v_counts = _bootstrap_counts(rng, len(v_), size)
        replicates[start : start + size] = _cdf_area(order, dt, u_counts, v_counts)
    return replicates


def _as_groups(groups: ArrayLike, n: int, name: str) -> tuple[NDArray[np.intp], int]:
    """Map group labels of ``n`` samples to indices 0..G-1; return them and G."""
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have one group label per sample ({n}), got shape {labels.shape}")
    _, index = np.unique(labels, return_inverse=True)
    return index.astype(np.intp), int(index.max()) + 1


def grouped_bootstrap_wasserstein_1(
    u: ArrayLike,
    v: ArrayLike,
    u_groups: ArrayLike,
    v_groups: ArrayLike,
    *,
    rng: np.random.Generator,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    chunk: int = 4,
) -> FloatArray:
    """Return W1 of ``n_bootstrap`` replicates that resample whole groups of samples.

    Use it when samples come in correlated groups, such as the pixels of one
    image: a replicate draws as many groups as there are, with replacement,
    and every sample of a group drawn c times gets weight c. Resampling
    single samples would treat the pixels of an image as independent and
    understate the spread. ``chunk`` replicates (at most 20) are evaluated
    at once, and memory grows with ``chunk * (len(u) + len(v))``. With one
    sample per group, ``chunk = 20`` and the same ``rng`` state, this
    returns the values of :func:`bootstrap_wasserstein_1`.
    """
    u_ = _as_samples(u, "u")
    v_ = _as_samples(v, "v")
    u_index, u_count = _as_groups(u_groups, len(u_), "u_groups")
    v_index, v_count = _as_groups(v_groups, len(v_), "v_groups")
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be at least 2, got {n_bootstrap}")
    order, dt = _merged_order(u_, v_)
    replicates = np.empty(n_bootstrap)
    step = min(chunk, _REPLICATE_CHUNK)
    for start in range(0, n_bootstrap, step):
        size = min(step, n_bootstrap - start)
        u_weights = _bootstrap_counts(rng, u_count, size)[:, u_index]
        v_weights = _bootstrap_counts(rng, v_count, size)[:, v_index]
        replicates[start : start + size] = _cdf_area(order, dt, u_weights, v_weights)
    return replicates


def truth_halves_wasserstein_1(truth: ArrayLike, *, rng: np.random.Generator) -> float:
    """Return W1 between two disjoint random halves of ``truth``.

    This is the W1 that finite samples give when both come from the true
    distribution, at half the truth's size. Because W1 from sampling
    noise falls roughly as 1/sqrt(n), it is about sqrt(2) larger than the
    noise floor of a comparison at full size: a generated sample that
    reaches this baseline is good, but not necessarily indistinguishable.
    """
    truth_ = _as_samples(truth, "truth")
    if len(truth_) < 2:
        raise ValueError(f"truth needs at least 2 samples to be split in halves, got {len(truth_)}")
    half = len(truth_) // 2
    shuffled = rng.permutation(truth_)
    return wasserstein_1(shuffled[:half], shuffled[half : 2 * half])


def wasserstein_1_metric(
    generated: ArrayLike,
    truth: ArrayLike,
    *,
    rng: np.random.Generator,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
) -> MetricValue:
    """Compare generated and true samples of one observable by W1.

    The value is W1(generated, truth), the uncertainty the standard
    deviation of W1 over ``n_bootstrap`` bootstrap replicates, and the
    baseline W1 between two disjoint halves of the truth
    (:func:`truth_halves_wasserstein_1`).
    """
    generated_ = _as_samples(generated, "generated")
    truth_ = _as_samples(truth, "truth")
    value = wasserstein_1(generated_, truth_)
    # The halves are drawn from a generator split off before the bootstrap, so
    # the baseline depends on the truth alone and is the same for every model
    # scored against it, whatever the number of generated samples.
    halves_rng = rng.spawn(1)[0]
    baseline = truth_halves_wasserstein_1(truth_, rng=halves_rng) if len(truth_) >= 2 else None
    replicates = bootstrap_wasserstein_1(generated_, truth_, rng=rng, n_bootstrap=n_bootstrap)
    return MetricValue(
        value=value,
        uncertainty=float(np.std(replicates, ddof=1)),
        baseline=baseline,
        note=f"bootstrap std over {n_bootstrap} replicates; baseline: W1 between truth halves",
    )
