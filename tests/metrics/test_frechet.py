import numpy as np
import pytest

from qcdtool.plugins.metrics.common.frechet import (
    default_batch_sizes,
    fit_gaussian,
    frechet_distance,
    frechet_distance_gaussians,
    frechet_physics_distance,
)


def test_gaussians_identical_zero() -> None:
    sigma = np.array([[2.0, 0.3], [0.3, 1.0]])
    assert frechet_distance_gaussians([1.0, 2.0], sigma, [1.0, 2.0], sigma) == pytest.approx(0.0, abs=1e-12)


def test_gaussians_mean_shift() -> None:
    identity = np.eye(3)
    assert frechet_distance_gaussians([0.0, 0.0, 0.0], identity, [0.0, 3.0, 0.0], identity) == 9.0


def test_gaussians_width_only() -> None:
    # 1D: FD = (sigma_1 - sigma_2)^2 = (1 - 2)^2.
    assert frechet_distance_gaussians([0.0], [[1.0]], [0.0], [[4.0]]) == pytest.approx(1.0, rel=1e-12)


def test_gaussians_non_commuting_covariances() -> None:
    # For 2x2 matrices, Tr sqrt(A B) = sqrt(Tr(A B) + 2 sqrt(det(A B))).
    a = np.array([[2.0, 0.5], [0.5, 1.0]])
    b = np.array([[1.0, -0.3], [-0.3, 3.0]])
    trace_sqrt = np.sqrt(np.trace(a @ b) + 2.0 * np.sqrt(np.linalg.det(a @ b)))
    expected = np.trace(a) + np.trace(b) - 2.0 * trace_sqrt
    assert frechet_distance_gaussians([0.0, 0.0], a, [0.0, 0.0], b) == pytest.approx(expected, rel=1e-12)


def test_samples_mean_shift() -> None:
    x = np.random.default_rng(0).normal(size=(1000, 3))
    shifted = x + np.array([0.0, 0.0, 0.5])
    assert frechet_distance(x, shifted) == pytest.approx(0.25, abs=1e-9)


def test_fit_gaussian_one_feature() -> None:
    mu, sigma = fit_gaussian([1.0, 2.0, 3.0])
    assert sigma.shape == (1, 1)
    assert mu[0] == 2.0
    assert sigma[0, 0] == 1.0


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance_gaussians([0.0, 0.0], np.eye(2), [0.0], np.eye(1))


def test_default_batch_sizes_reference_range() -> None:
    sizes = default_batch_sizes(200_000)
    assert sizes[0] == 20_000
    assert sizes[-1] == 50_000
    assert len(sizes) == 10


def test_default_batch_sizes_even_in_inverse() -> None:
    steps = np.diff(1.0 / default_batch_sizes(200_000))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-3)


def test_default_batch_sizes_capped_by_samples() -> None:
    assert default_batch_sizes(5000)[-1] == 5000


def test_finite_sample_bias_falls_with_n() -> None:
    rng = np.random.default_rng(1)
    small = np.mean([frechet_distance(rng.normal(size=(200, 4)), rng.normal(size=(200, 4))) for _ in range(20)])
    large = np.mean([frechet_distance(rng.normal(size=(5000, 4)), rng.normal(size=(5000, 4))) for _ in range(20)])
    assert large < small / 5.0


def test_fpd_same_gaussian_consistent_with_zero() -> None:
    rng = np.random.default_rng(2)
    generated, truth = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3))
    result = frechet_physics_distance(generated, truth, rng=np.random.default_rng(3), n_batches=10)
    assert abs(result.value) < 3.0 * result.uncertainty


def test_fpd_uncertainty_positive() -> None:
    rng = np.random.default_rng(2)
    generated, truth = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3))
    result = frechet_physics_distance(generated, truth, rng=np.random.default_rng(3), n_batches=10)
    assert result.uncertainty > 0.0


def test_fpd_mean_shift() -> None:
    rng = np.random.default_rng(4)
    truth = rng.normal(size=(20_000, 2))
    generated = rng.normal(size=(20_000, 2)) + np.array([0.3, 0.0])
    result = frechet_physics_distance(generated, truth, rng=np.random.default_rng(5), n_batches=10, normalise=False)
    assert result.value == pytest.approx(0.09, abs=3.0 * result.uncertainty + 1e-3)


def test_fpd_normalise_is_scale_free() -> None:
    rng = np.random.default_rng(6)
    truth = rng.normal(size=(3000, 2))
    generated = rng.normal(size=(3000, 2)) + 0.2
    scale = np.array([1.0, 1000.0])
    plain = frechet_physics_distance(generated, truth, rng=np.random.default_rng(7), n_batches=3)
    scaled = frechet_physics_distance(generated * scale, truth * scale, rng=np.random.default_rng(7), n_batches=3)
    assert scaled.value == pytest.approx(plain.value, rel=1e-9)


def test_fpd_too_few_batch_sizes_rejected() -> None:
    x = np.zeros((100, 2))
    with pytest.raises(ValueError, match="at least 3 batch sizes"):
        frechet_physics_distance(x, x, rng=np.random.default_rng(0), batch_sizes=[50, 100])
