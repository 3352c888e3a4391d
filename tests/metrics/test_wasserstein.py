import numpy as np
import pytest
import scipy.stats

from qcdtool.plugins.metrics.common.wasserstein import (
    bootstrap_wasserstein_1,
    grouped_bootstrap_wasserstein_1,
    truth_halves_wasserstein_1,
    wasserstein_1,
    wasserstein_1_metric,
    weighted_wasserstein_1,
)


def test_identical_samples_zero() -> None:
    samples = np.random.default_rng(0).normal(size=500)
    assert wasserstein_1(samples, samples) == 0.0


def test_shift_gives_distance() -> None:
    # Multiples of 1/8 keep every difference exact in binary.
    samples = np.random.default_rng(0).integers(0, 100, size=200) / 8.0
    assert wasserstein_1(samples, samples + 0.75) == pytest.approx(0.75, abs=1e-12)


def test_three_samples_are_samples() -> None:
    # Read as histogram contents these would give something else entirely.
    assert wasserstein_1([0.0, 1.0, 3.0], [5.0, 6.0, 8.0]) == 5.0


def test_unequal_sizes() -> None:
    # F_u - F_v: 1 on [0, 1), 1/2 on [1, 2): area 1.5.
    assert wasserstein_1([0.0], [1.0, 2.0]) == 1.5


def test_weighted_unit_weights_match_scipy() -> None:
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=300), rng.exponential(size=170)
    weighted = weighted_wasserstein_1(u, v, np.ones((1, 300)), np.ones((1, 170)))
    assert weighted[0] == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12)


def test_weighted_counts_match_repeats() -> None:
    rng = np.random.default_rng(2)
    u, v = rng.normal(size=40), rng.normal(1.0, size=30)
    u_counts, v_counts = rng.integers(0, 4, size=(2, 40)), rng.integers(0, 4, size=(2, 30))
    weighted = weighted_wasserstein_1(u, v, u_counts, v_counts)
    for row in range(2):
        repeated = wasserstein_1(np.repeat(u, u_counts[row]), np.repeat(v, v_counts[row]))
        assert weighted[row] == pytest.approx(repeated, rel=1e-12)


def test_weighted_rejects_mismatched_weights() -> None:
    with pytest.raises(ValueError, match="do not match"):
        weighted_wasserstein_1([0.0, 1.0], [0.0], np.ones((1, 3)), np.ones((1, 1)))


def test_bootstrap_reproducible() -> None:
    rng_data = np.random.default_rng(3)
    u, v = rng_data.normal(size=100), rng_data.normal(size=100)
    first = bootstrap_wasserstein_1(u, v, rng=np.random.default_rng(9), n_bootstrap=30)
    second = bootstrap_wasserstein_1(u, v, rng=np.random.default_rng(9), n_bootstrap=30)
    np.testing.assert_array_equal(first, second)


def test_bootstrap_count() -> None:
    replicates = bootstrap_wasserstein_1([0.0, 1.0], [2.0, 3.0], rng=np.random.default_rng(0), n_bootstrap=45)
    assert replicates.shape == (45,)


def test_bootstrap_spread_matches_resampling() -> None:
    # The spread from bootstrap weights agrees with that of explicit resampling.
    rng = np.random.default_rng(4)
    u, v = rng.normal(size=2000), rng.normal(0.2, size=2000)
    spread = np.std(bootstrap_wasserstein_1(u, v, rng=np.random.default_rng(5), n_bootstrap=400))
    explicit_rng = np.random.default_rng(6)
    explicit = [
        wasserstein_1(explicit_rng.choice(u, size=len(u)), explicit_rng.choice(v, size=len(v))) for _ in range(400)
    ]
    assert spread == pytest.approx(np.std(explicit), rel=0.2)


def test_halves_of_constant_truth_zero() -> None:
    assert truth_halves_wasserstein_1(np.full(11, 2.5), rng=np.random.default_rng(0)) == 0.0


def test_halves_are_disjoint() -> None:
    # Two distinct values, each once: disjoint halves are {0} and {1}.
    assert truth_halves_wasserstein_1([0.0, 1.0], rng=np.random.default_rng(0)) == 1.0


def test_metric_shifted_distribution() -> None:
    rng = np.random.default_rng(7)
    truth = rng.normal(size=5000)
    generated = truth + 0.5
    result = wasserstein_1_metric(generated, truth, rng=np.random.default_rng(8))
    assert result.value == pytest.approx(0.5, abs=1e-12)


def test_metric_uncertainty_positive() -> None:
    rng = np.random.default_rng(7)
    result = wasserstein_1_metric(rng.normal(size=2000), rng.normal(size=2000), rng=np.random.default_rng(8))
    assert result.uncertainty > 0.0


def test_metric_same_distribution_near_baseline() -> None:
    # Generated and truth from one distribution: W1 is of the order of the
    # truth-halves baseline (which uses half the samples), far from 0.5.
    rng = np.random.default_rng(10)
    result = wasserstein_1_metric(rng.normal(size=4000), rng.normal(size=4000), rng=np.random.default_rng(11))
    assert result.baseline is not None
    assert result.value < 3.0 * result.baseline


def test_empty_samples_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        wasserstein_1([], [1.0])


def test_non_finite_rejected() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        wasserstein_1([np.nan, 1.0], [1.0])


def test_two_dimensional_rejected() -> None:
    with pytest.raises(ValueError, match="1D"):
        wasserstein_1(np.zeros((3, 2)), [1.0])


def test_grouped_single_samples_match_bootstrap() -> None:
    # One sample per group and the same random stream: resampling groups is resampling samples.
    rng_data = np.random.default_rng(12)
    u, v = rng_data.normal(size=70), rng_data.normal(0.5, size=40)
    grouped = grouped_bootstrap_wasserstein_1(
        u, v, np.arange(70), np.arange(40), rng=np.random.default_rng(4), n_bootstrap=25, chunk=20
    )
    plain = bootstrap_wasserstein_1(u, v, rng=np.random.default_rng(4), n_bootstrap=25)
    assert np.array_equal(grouped, plain)


def test_grouped_identical_groups_zero() -> None:
    # Every group contains the same two values, so any resampling of groups leaves both distributions equal.
    u = np.tile([0.0, 1.0], 5)
    groups = np.repeat(np.arange(5), 2)
    replicates = grouped_bootstrap_wasserstein_1(u, u, groups, groups, rng=np.random.default_rng(0), n_bootstrap=6)
    # Normalizing the weights leaves rounding of order 1e-16.
    assert np.allclose(replicates, 0.0, rtol=0.0, atol=1e-15)


def test_grouped_rejects_mismatched_groups() -> None:
    with pytest.raises(ValueError, match="one group label per sample"):
        grouped_bootstrap_wasserstein_1([0.0, 1.0], [0.0], [0], [0], rng=np.random.default_rng(0))


def test_baseline_ignores_generated_size() -> None:
    truth = np.random.default_rng(0).normal(size=400)
    small = wasserstein_1_metric(truth[:50], truth, rng=np.random.default_rng(7), n_bootstrap=5)
    large = wasserstein_1_metric(np.tile(truth, 3), truth, rng=np.random.default_rng(7), n_bootstrap=5)
    assert small.baseline == large.baseline
