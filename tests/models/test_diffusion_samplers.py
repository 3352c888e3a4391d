"""DDPM and DDIM sampling with the analytic optimal noise predictor of Gaussian data.

For x_0 ~ N(mu, s^2 I) the forward marginal is Gaussian, and the optimal
predictor E[eps | x_t] is linear in x_t:
eps*(x_t) = sqrt(1 - alpha_bar_t) (x_t - sqrt(alpha_bar_t) mu - k_t E) / (alpha_bar_t s^2 + 1 - alpha_bar_t).
"""

from __future__ import annotations

import pytest
import torch

from qcdtool.plugins.models.diffusion import (
    EpsModel,
    NoiseSchedule,
    Shift,
    ShiftMode,
    cosine_betas,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    prior_sample,
    shift_coefficients,
)

MODES: list[ShiftMode | None] = [None, *ShiftMode]
MODE_IDS = ["plain", *(mode.value for mode in ShiftMode)]
DATA_VARIANCE = 0.25
N_SAMPLES = 2000
IMAGE = (1, 4, 4)


def data_mean() -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, 16, dtype=torch.float64).reshape(1, *IMAGE)


def make_shift(schedule: NoiseSchedule, mode: ShiftMode | None, n: int) -> Shift | None:
    if mode is None:
        return None
    E = torch.linspace(2.0, -1.0, 16, dtype=torch.float64).reshape(1, *IMAGE).expand(n, *IMAGE)
    return Shift(shift_coefficients(schedule, mode), E)


def optimal_eps_model(schedule: NoiseSchedule, shift: Shift | None) -> EpsModel:
    mu = data_mean()

    def eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
        mean = alpha_bar.sqrt() * mu + (0.0 if shift is None else shift.offset(t))
        return (1.0 - alpha_bar).sqrt() * (x_t - mean) / (alpha_bar * DATA_VARIANCE + 1.0 - alpha_bar)

    return eps_model


def prior(schedule: NoiseSchedule, shift: Shift | None, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return prior_sample((N_SAMPLES, *IMAGE), shift=shift, generator=generator, dtype=torch.float64)


def assert_recovers_data(samples: torch.Tensor, variance_rtol: float) -> None:
    """Check per-pixel means within four standard errors and the pooled variance within ``variance_rtol``."""
    n = samples.shape[0]
    standard_error = (DATA_VARIANCE / n) ** 0.5
    torch.testing.assert_close(samples.mean(0, keepdim=True), data_mean(), rtol=0.0, atol=4 * standard_error)
    variance = (samples - data_mean()).pow(2).mean().item()
    assert variance == pytest.approx(DATA_VARIANCE, rel=variance_rtol)


@pytest.fixture(scope="module")
def schedule_1000() -> NoiseSchedule:
    return NoiseSchedule.from_betas(cosine_betas(1000))


@pytest.fixture(scope="module")
def schedule_100() -> NoiseSchedule:
    return NoiseSchedule.from_betas(cosine_betas(100))


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_ddpm_optimal_denoiser_recovers_data(schedule_1000: NoiseSchedule, mode: ShiftMode | None) -> None:
    shift = make_shift(schedule_1000, mode, N_SAMPLES)
    eps_model = optimal_eps_model(schedule_1000, shift)
    generator = torch.Generator().manual_seed(11)
    samples = ddpm_sample(eps_model, schedule_1000, prior(schedule_1000, shift, 1), shift=shift, generator=generator)
    # Exact moment propagation puts the variance of this chain 0.8% below s^2 (posterior variance
    # beta_tilde ignores Var[x_0 | x_t]); its standard error over 32000 values is 0.8%.
    assert_recovers_data(samples, variance_rtol=0.04)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_ddim_optimal_denoiser_recovers_data(schedule_1000: NoiseSchedule, mode: ShiftMode | None) -> None:
    shift = make_shift(schedule_1000, mode, N_SAMPLES)
    eps_model = optimal_eps_model(schedule_1000, shift)
    samples = ddim_sample(eps_model, schedule_1000, prior(schedule_1000, shift, 2), steps=1000, shift=shift)
    # Deterministic DDIM over all 1000 steps loses 0.3% of the variance to discretization.
    assert_recovers_data(samples, variance_rtol=0.04)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_ddim_eta1_matches_ddpm_distribution(schedule_100: NoiseSchedule, mode: ShiftMode | None) -> None:
    shift = make_shift(schedule_100, mode, N_SAMPLES)
    eps_model = optimal_eps_model(schedule_100, shift)
    ddpm = ddpm_sample(
        eps_model,
        schedule_100,
        prior(schedule_100, shift, 3),
        shift=shift,
        generator=torch.Generator().manual_seed(4),
    )
    ddim = ddim_sample(
        eps_model,
        schedule_100,
        prior(schedule_100, shift, 5),
        steps=100,
        eta=1.0,
        shift=shift,
        generator=torch.Generator().manual_seed(6),
    )
    # Two independent sample sets: four standard errors of a difference of means and of variances.
    n = N_SAMPLES
    torch.testing.assert_close(ddim.mean(0), ddpm.mean(0), rtol=0.0, atol=4 * (2 * DATA_VARIANCE / n) ** 0.5)
    torch.testing.assert_close(ddim.var(0), ddpm.var(0), rtol=0.0, atol=4 * DATA_VARIANCE * (4 / (n - 1)) ** 0.5)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_ddim_eta1_matches_ddpm_pathwise(schedule_100: NoiseSchedule, mode: ShiftMode | None) -> None:
    # Both samplers draw one normal tensor per step except the last, so equal seeds give equal paths.
    shift = make_shift(schedule_100, mode, N_SAMPLES)
    eps_model = optimal_eps_model(schedule_100, shift)
    x_T = prior(schedule_100, shift, 7)
    ddpm = ddpm_sample(eps_model, schedule_100, x_T, shift=shift, generator=torch.Generator().manual_seed(8))
    ddim = ddim_sample(
        eps_model,
        schedule_100,
        x_T,
        steps=100,
        eta=1.0,
        shift=shift,
        generator=torch.Generator().manual_seed(8),
    )
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_ddim_eta0_deterministic(schedule_100: NoiseSchedule, mode: ShiftMode | None) -> None:
    shift = make_shift(schedule_100, mode, N_SAMPLES)
    eps_model = optimal_eps_model(schedule_100, shift)
    x_T = prior(schedule_100, shift, 9)
    first = ddim_sample(eps_model, schedule_100, x_T, steps=20, shift=shift, generator=torch.Generator().manual_seed(1))
    second = ddim_sample(
        eps_model, schedule_100, x_T, steps=20, shift=shift, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(first, second)


def test_ddim_x0_range_clamps_output(schedule_100: NoiseSchedule) -> None:
    def far_eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x_t, -50.0)

    samples = ddim_sample(far_eps_model, schedule_100, prior(schedule_100, None, 10), steps=10, x0_range=(-1.0, 1.0))
    assert samples.abs().max().item() <= 1.0


def test_ddpm_x0_range_clamps_last_step(schedule_100: NoiseSchedule) -> None:
    def far_eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x_t, -50.0)

    samples = ddpm_sample(
        far_eps_model,
        schedule_100,
        prior(schedule_100, None, 11),
        generator=torch.Generator().manual_seed(12),
        x0_range=(-1.0, 1.0),
    )
    assert samples.abs().max().item() <= 1.0


def test_ddpm_progress_counts_steps(schedule_100: NoiseSchedule) -> None:
    calls: list[tuple[int, int]] = []
    x_T = torch.zeros(2, 1, 2, 2)
    ddpm_sample(
        lambda x, t: torch.zeros_like(x),
        schedule_100,
        x_T,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(step, 100) for step in range(1, 101)]


def test_ddim_rejects_wrong_eps_shape(schedule_100: NoiseSchedule) -> None:
    with pytest.raises(ValueError, match="eps_model returned shape"):
        ddim_sample(lambda x, t: x[:, :0], schedule_100, torch.zeros(2, 1, 2, 2), steps=5)


def test_ddim_rejects_negative_eta(schedule_100: NoiseSchedule) -> None:
    with pytest.raises(ValueError, match="eta must be >= 0"):
        ddim_sample(lambda x, t: x, schedule_100, torch.zeros(2, 1, 2, 2), steps=5, eta=-0.5)


def test_ddim_timesteps_fifty_of_thousand() -> None:
    timesteps = ddim_timesteps(1000, 50)
    assert len(timesteps) == 50
    assert timesteps[0].item() == 0
    assert timesteps[-1].item() == 999
    assert bool(torch.all(timesteps.diff() > 0))


def test_ddim_timesteps_all_steps() -> None:
    assert torch.equal(ddim_timesteps(100, 100), torch.arange(100))


def test_ddim_timesteps_single_step() -> None:
    assert ddim_timesteps(100, 1).tolist() == [99]


def test_ddim_timesteps_rejects_too_many() -> None:
    with pytest.raises(ValueError, match="sampling steps <= T = 100"):
        ddim_timesteps(100, 101)
