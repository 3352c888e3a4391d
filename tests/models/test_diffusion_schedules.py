"""Noise schedules, their derived tables and the Shift-DDPM shift coefficients."""

from __future__ import annotations

import math

import pytest
import torch

from qcdtool.plugins.models.diffusion import (
    NoiseSchedule,
    ShiftMode,
    cosine_betas,
    linear_betas,
    shift_coefficients,
)

FOUR_BETAS = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)


def f64(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.fixture
def four_steps() -> NoiseSchedule:
    return NoiseSchedule.from_betas(FOUR_BETAS)


def test_alpha_bar_four_steps(four_steps: NoiseSchedule) -> None:
    torch.testing.assert_close(four_steps.alpha_bar, f64([0.9, 0.72, 0.504, 0.3024]))


def test_alpha_bar_prev_four_steps(four_steps: NoiseSchedule) -> None:
    torch.testing.assert_close(four_steps.alpha_bar_prev, f64([1.0, 0.9, 0.72, 0.504]))


def test_posterior_variance_four_steps(four_steps: NoiseSchedule) -> None:
    # beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
    expected = f64([0.0, 0.2 * 0.1 / 0.28, 0.3 * 0.28 / 0.496, 0.4 * 0.496 / 0.6976])
    torch.testing.assert_close(four_steps.posterior_variance, expected)


def test_clipped_log_variance_finite_at_first_step(four_steps: NoiseSchedule) -> None:
    assert math.isfinite(float(four_steps.posterior_log_variance_clipped[0]))


def test_clipped_log_variance_first_step_value(four_steps: NoiseSchedule) -> None:
    assert float(four_steps.posterior_log_variance_clipped[0]) == pytest.approx(math.log(0.2 * 0.1 / 0.28))


def test_clipped_log_variance_later_steps(four_steps: NoiseSchedule) -> None:
    expected = torch.log(four_steps.posterior_variance[1:])
    torch.testing.assert_close(four_steps.posterior_log_variance_clipped[1:], expected)


def test_posterior_mean_coefficients_second_step(four_steps: NoiseSchedule) -> None:
    # Ho et al. 2020, eq. 7 at t = 2: alpha_bar_1 = 0.9, alpha_bar_2 = 0.72, beta_2 = 0.2.
    assert float(four_steps.posterior_mean_coef_x0[1]) == pytest.approx(math.sqrt(0.9) * 0.2 / 0.28)
    assert float(four_steps.posterior_mean_coef_xt[1]) == pytest.approx(math.sqrt(0.8) * 0.1 / 0.28)


def test_posterior_mean_first_step_is_x0(four_steps: NoiseSchedule) -> None:
    assert float(four_steps.posterior_mean_coef_x0[0]) == pytest.approx(1.0)
    assert float(four_steps.posterior_mean_coef_xt[0]) == 0.0


def test_from_betas_rejects_beta_one() -> None:
    with pytest.raises(ValueError, match=r"every beta must lie in \(0, 1\)"):
        NoiseSchedule.from_betas(f64([0.1, 1.0]))


def test_from_betas_rejects_single_step() -> None:
    with pytest.raises(ValueError, match="at least 2 steps"):
        NoiseSchedule.from_betas(f64([0.1]))


def test_from_betas_rejects_matrix() -> None:
    with pytest.raises(ValueError, match="1-D"):
        NoiseSchedule.from_betas(torch.full((2, 2), 0.1, dtype=torch.float64))


def test_num_steps(four_steps: NoiseSchedule) -> None:
    assert four_steps.num_steps == 4


def test_schedule_to_cpu_keeps_tables(four_steps: NoiseSchedule) -> None:
    moved = four_steps.to("cpu")
    torch.testing.assert_close(moved.alpha_bar_prev, four_steps.alpha_bar_prev)


def test_linear_betas_endpoints() -> None:
    betas = linear_betas(1000)
    assert float(betas[0]) == pytest.approx(1e-4)
    assert float(betas[-1]) == pytest.approx(0.02)


def test_linear_betas_rejects_reversed_range() -> None:
    with pytest.raises(ValueError, match="beta_start <= beta_end"):
        linear_betas(10, beta_start=0.02, beta_end=1e-4)


def test_cosine_alpha_bar_matches_eq17() -> None:
    # alpha_bar_t = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s) pi / 2), away from the clip.
    num_steps, s = 100, 0.008
    schedule = NoiseSchedule.from_betas(cosine_betas(num_steps, s=s))
    t = torch.arange(1, num_steps + 1, dtype=torch.float64)

    def f(time: torch.Tensor) -> torch.Tensor:
        return torch.cos((time / num_steps + s) / (1 + s) * math.pi / 2) ** 2

    expected = f(t) / f(torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(schedule.alpha_bar[:-1], expected[:-1])


def test_cosine_last_beta_clipped() -> None:
    assert float(cosine_betas(1000)[-1]) == 0.999


def test_cosine_betas_below_clip_before_end() -> None:
    assert float(cosine_betas(1000)[:-1].max()) < 0.999


def test_prior_shift_coefficients(four_steps: NoiseSchedule) -> None:
    expected = 1.0 - torch.sqrt(f64([0.9, 0.72, 0.504, 0.3024]))
    torch.testing.assert_close(shift_coefficients(four_steps, ShiftMode.PRIOR_SHIFT), expected)


def test_data_normalization_coefficients(four_steps: NoiseSchedule) -> None:
    expected = -torch.sqrt(f64([0.9, 0.72, 0.504, 0.3024]))
    torch.testing.assert_close(shift_coefficients(four_steps, ShiftMode.DATA_NORMALIZATION), expected)


def test_quadratic_shift_coefficients(four_steps: NoiseSchedule) -> None:
    root = torch.sqrt(f64([0.9, 0.72, 0.504, 0.3024]))
    torch.testing.assert_close(shift_coefficients(four_steps, ShiftMode.QUADRATIC_SHIFT), root * (1.0 - root))


def test_prior_shift_ends_near_one() -> None:
    schedule = NoiseSchedule.from_betas(cosine_betas(1000))
    assert float(shift_coefficients(schedule, "prior-shift")[-1]) == pytest.approx(1.0, abs=1e-4)


def test_shift_mode_by_name(four_steps: NoiseSchedule) -> None:
    by_name = shift_coefficients(four_steps, "quadratic-shift")
    torch.testing.assert_close(by_name, shift_coefficients(four_steps, ShiftMode.QUADRATIC_SHIFT))


def test_unknown_shift_mode_lists_choices(four_steps: NoiseSchedule) -> None:
    with pytest.raises(ValueError, match="prior-shift, data-normalization, quadratic-shift"):
        shift_coefficients(four_steps, "prior_shift")
