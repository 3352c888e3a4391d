"""Forward process and posterior of plain DDPM and Shift-DDPM, checked against direct Gaussian algebra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from qcdtool.plugins.models.diffusion import (
    NoiseSchedule,
    Shift,
    ShiftMode,
    cosine_betas,
    eps_from_shifted_noise,
    posterior_mean_from_eps,
    predict_eps,
    predict_x0,
    prior_sample,
    q_posterior,
    q_sample,
    q_step_sample,
    shift_coefficients,
)

MODES: list[ShiftMode | None] = [None, *ShiftMode]
MODE_IDS = ["plain", *(mode.value for mode in ShiftMode)]
SHAPE = (3, 1, 2, 2)


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_betas(cosine_betas(50))


def make_shift(schedule: NoiseSchedule, mode: ShiftMode | None, E: torch.Tensor) -> Shift | None:
    return None if mode is None else Shift(shift_coefficients(schedule, mode), E)


def k_table(schedule: NoiseSchedule, mode: ShiftMode | None) -> NDArray[np.float64]:
    """k_t for t = 0..T, with k_0 = 0 (zeros for plain DDPM)."""
    k = np.zeros(schedule.num_steps + 1)
    if mode is not None:
        k[1:] = shift_coefficients(schedule, mode).numpy()
    return k


def condition_on_last(
    mean: NDArray[np.float64], cov: NDArray[np.float64], observed: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Condition a joint Gaussian over (a, b), b the last len(observed) entries, on b = observed."""
    n = len(mean) - len(observed)
    gain = np.linalg.solve(cov[n:, n:], cov[n:, :n]).T
    return mean[:n] + gain @ (observed - mean[n:]), cov[:n, :n] - gain @ cov[n:, :n]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("t", [0, 1, 24, 49])
def test_posterior_matches_gaussian_conditioning(schedule: NoiseSchedule, mode: ShiftMode | None, t: int) -> None:
    generator = torch.Generator().manual_seed(100 + t)
    x_0, E, x_t = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(3))
    steps = torch.full((SHAPE[0],), t)
    posterior = q_posterior(schedule, x_0, x_t, steps, make_shift(schedule, mode, E))

    # Joint of (x_{t-1}, x_t) given x_0 and c, built per image from the marginal of x_{t-1}
    # and the transition x_t = sqrt(alpha_t) x_{t-1} + (k_t - sqrt(alpha_t) k_{t-1}) E + sqrt(beta_t) z.
    alpha_bar = np.concatenate([[1.0], schedule.alpha_bar.numpy()])
    k = k_table(schedule, mode)
    step = t + 1
    a, beta = np.sqrt(1.0 - schedule.betas[t].item()), schedule.betas[t].item()
    pixels = int(np.prod(SHAPE[1:]))
    eye = np.eye(pixels)
    var_prev = 1.0 - alpha_bar[step - 1]
    cov = np.block([[var_prev * eye, a * var_prev * eye], [a * var_prev * eye, (a * a * var_prev + beta) * eye]])
    for image in range(SHAPE[0]):
        x0_i, E_i, xt_i = (v[image].flatten().numpy() for v in (x_0, E, x_t))
        mean_prev = np.sqrt(alpha_bar[step - 1]) * x0_i + k[step - 1] * E_i
        mean_t = a * mean_prev + (k[step] - a * k[step - 1]) * E_i
        mean, variance = condition_on_last(np.concatenate([mean_prev, mean_t]), cov, xt_i)

        np.testing.assert_allclose(posterior.mean[image].flatten().numpy(), mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            np.full(pixels, posterior.variance[image].item()), np.diag(variance), rtol=1e-9, atol=1e-12
        )


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_forward_chain_matches_marginal(schedule: NoiseSchedule, mode: ShiftMode | None) -> None:
    torch.manual_seed(7)
    n = 4000
    x_0 = torch.tensor([0.8, -0.4, 0.0, 0.3], dtype=torch.float64).reshape(1, 1, 2, 2).expand(n, 1, 2, 2)
    E = torch.tensor([1.5, -2.0, 0.5, 3.0], dtype=torch.float64).reshape(1, 1, 2, 2).expand(n, 1, 2, 2)
    shift = make_shift(schedule, mode, E)
    k = k_table(schedule, mode)
    checkpoints = {0, 9, 24, schedule.num_steps - 1}

    x = x_0
    for t in range(schedule.num_steps):
        steps = torch.full((n,), t)
        x = q_step_sample(schedule, x, steps, torch.randn(x.shape, dtype=torch.float64), shift)
        if t not in checkpoints:
            continue
        alpha_bar = schedule.alpha_bar[t].item()
        mean = np.sqrt(alpha_bar) * x_0[0].numpy() + k[t + 1] * E[0].numpy()
        variance = 1.0 - alpha_bar
        # Four standard errors of the mean and of the variance of n samples.
        np.testing.assert_allclose(x.mean(0).numpy(), mean, rtol=0, atol=4 * np.sqrt(variance / n))
        np.testing.assert_allclose(
            x.var(0).numpy(), np.full((1, 2, 2), variance), rtol=4 * np.sqrt(2 / (n - 1)), atol=0
        )


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_predict_x0_inverts_q_sample(schedule: NoiseSchedule, mode: ShiftMode | None) -> None:
    generator = torch.Generator().manual_seed(3)
    x_0, E, eps = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0, 20, 49])
    shift = make_shift(schedule, mode, E)
    x_t = q_sample(schedule, x_0, t, eps, shift)
    torch.testing.assert_close(predict_x0(schedule, x_t, t, eps, shift), x_0)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_predict_eps_inverts_q_sample(schedule: NoiseSchedule, mode: ShiftMode | None) -> None:
    generator = torch.Generator().manual_seed(4)
    x_0, E, eps = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0, 20, 49])
    shift = make_shift(schedule, mode, E)
    x_t = q_sample(schedule, x_0, t, eps, shift)
    torch.testing.assert_close(predict_eps(schedule, x_t, t, x_0, shift), eps)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_posterior_mean_from_eps_matches_x0_form(schedule: NoiseSchedule, mode: ShiftMode | None) -> None:
    generator = torch.Generator().manual_seed(5)
    x_t, E, eps = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0, 20, 49])
    shift = make_shift(schedule, mode, E)
    x0_hat = predict_x0(schedule, x_t, t, eps, shift)
    expected = q_posterior(schedule, x0_hat, x_t, t, shift).mean
    torch.testing.assert_close(posterior_mean_from_eps(schedule, x_t, t, eps, shift), expected)


def test_prior_shift_reverse_term_is_eq15(schedule: NoiseSchedule) -> None:
    # Zhang et al. 2023, eq. 15: the prior-shift reverse step adds (1 - 1 / sqrt(alpha_t)) E(c).
    E = torch.ones(SHAPE, dtype=torch.float64)
    t = torch.tensor([0, 20, 49])
    shift = Shift(shift_coefficients(schedule, ShiftMode.PRIOR_SHIFT), E)
    zeros = torch.zeros(SHAPE, dtype=torch.float64)
    term = posterior_mean_from_eps(schedule, zeros, t, zeros, shift)
    expected = (1.0 - 1.0 / schedule.sqrt_alphas[t]).reshape(-1, 1, 1, 1).expand(SHAPE)
    torch.testing.assert_close(term, expected)


@pytest.mark.parametrize("mode", list(ShiftMode), ids=[mode.value for mode in ShiftMode])
def test_eps_from_shifted_noise(schedule: NoiseSchedule, mode: ShiftMode) -> None:
    generator = torch.Generator().manual_seed(6)
    x_0, E, eps = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0, 20, 49])
    shift = Shift(shift_coefficients(schedule, mode), E)
    x_t = q_sample(schedule, x_0, t, eps, shift)
    sqrt_alpha_bar = schedule.sqrt_alpha_bar[t].reshape(-1, 1, 1, 1)
    sqrt_one_minus = schedule.sqrt_one_minus_alpha_bar[t].reshape(-1, 1, 1, 1)
    total_noise = (x_t - sqrt_alpha_bar * x_0) / sqrt_one_minus
    torch.testing.assert_close(eps_from_shifted_noise(schedule, total_noise, t, shift), eps)


def test_prior_sample_mean_is_k_T_E(schedule: NoiseSchedule) -> None:
    E = torch.full(SHAPE, 2.0)
    shift = Shift(shift_coefficients(schedule, ShiftMode.PRIOR_SHIFT), E)
    x_T = prior_sample(SHAPE, shift=shift, generator=torch.Generator().manual_seed(9))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    k_T = shift.k[-1].item()
    torch.testing.assert_close(x_T, noise + k_T * E)


def test_shift_offset_zero_at_step_zero(schedule: NoiseSchedule) -> None:
    E = torch.ones(SHAPE, dtype=torch.float64)
    shift = Shift(shift_coefficients(schedule, ShiftMode.DATA_NORMALIZATION), E)
    assert torch.count_nonzero(shift.offset(torch.full((SHAPE[0],), -1))) == 0
