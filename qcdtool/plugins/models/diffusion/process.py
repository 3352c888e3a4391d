"""Forward process, posterior and predictions of plain DDPM and of Shift-DDPM.

Every function takes an optional :class:`Shift`. Without it the formulas are
those of Ho et al. 2020 (arXiv:2006.11239). With it they are the Shift-DDPM
versions derived in docs/models.md from the forward marginal of Zhang et al.
2023 (arXiv:2302.02373),

    q(x_t | x_0, c) = N(sqrt(alpha_bar_t) x_0 + k_t E(c), (1 - alpha_bar_t) I).

The substitution y_t = x_t - k_t E(c) turns every Shift-DDPM formula into the
plain one, which is how the code below computes them.

Timestep tensors ``t`` contain one index in 0..T-1 per batch element, and
index ``i`` is step ``t = i + 1`` (see :mod:`.schedules`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qcdtool.plugins.models.diffusion.schedules import NoiseSchedule

#: A noise predictor: ``eps_model(x_t, t)`` returns eps_theta(x_t, t), shaped like x_t.
EpsModel = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Shift:
    """The Shift-DDPM mean shift k_t E(c) of one batch.

    ``k`` contains k_t for t = 1..T, as
    :func:`~qcdtool.plugins.models.diffusion.schedules.shift_coefficients`
    returns it. ``E`` is the shift predictor's output E(c), shaped like the
    batch of x_t.
    """

    k: Tensor
    E: Tensor

    def offset(self, t: Tensor) -> Tensor:
        """Return k_t E(c) for each batch element. Index -1 means t = 0, where k_0 = 0."""
        k_t = gather(self.k, t, self.E, boundary=0.0)
        return k_t * self.E


@dataclass(frozen=True)
class GaussianPosterior:
    """Mean and variance of q(x_{t-1} | x_t, x_0[, c]), with variances shaped (B, 1, ..., 1)."""

    mean: Tensor
    variance: Tensor
    #: log variance with the t = 1 value clipped to stay finite (see NoiseSchedule).
    log_variance: Tensor


def gather(values: Tensor, t: Tensor, like: Tensor, boundary: float | None = None) -> Tensor:
    """Pick ``values[t]`` per batch element, shaped (B, 1, ..., 1) to broadcast against ``like``.

    The result has the dtype and device of ``like``. When ``boundary`` is
    given, an index of -1 (step t = 0) returns ``boundary`` instead of wrapping.
    """
    values = values.to(like.device)
    t = t.to(like.device)
    if boundary is None:
        picked = values[t]
    else:
        picked = torch.where(t >= 0, values[t.clamp(min=0)], torch.full_like(values[:1], boundary))
    return picked.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(schedule: NoiseSchedule, x_0: Tensor, t: Tensor, noise: Tensor, shift: Shift | None = None) -> Tensor:
    """Draw x_t ~ q(x_t | x_0[, c]) by reparameterization with the given standard-normal ``noise``.

    Ho et al. 2020, eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
    Shift-DDPM adds k_t E(c).
    """
    x_t = gather(schedule.sqrt_alpha_bar, t, x_0) * x_0 + gather(schedule.sqrt_one_minus_alpha_bar, t, x_0) * noise
    if shift is not None:
        x_t = x_t + shift.offset(t)
    return x_t


def q_step_sample(
    schedule: NoiseSchedule, x_prev: Tensor, t: Tensor, noise: Tensor, shift: Shift | None = None
) -> Tensor:
    """Draw x_t ~ q(x_t | x_{t-1}[, c]), one forward transition from ``x_prev`` = x_{t-1}.

    Ho et al. 2020, eq. 2: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps. For
    Shift-DDPM the mean gains s_t = (k_t - sqrt(alpha_t) k_{t-1}) E(c), the
    only choice that keeps the marginal of :func:`q_sample` (docs/models.md).
    """
    sqrt_alpha_t = gather(schedule.sqrt_alphas, t, x_prev)
    x_t = sqrt_alpha_t * x_prev + gather(schedule.betas, t, x_prev).sqrt() * noise
    if shift is not None:
        x_t = x_t + shift.offset(t) - sqrt_alpha_t * shift.offset(t - 1)
    return x_t


def q_posterior(
    schedule: NoiseSchedule, x_0: Tensor, x_t: Tensor, t: Tensor, shift: Shift | None = None
) -> GaussianPosterior:
    """Return q(x_{t-1} | x_t, x_0[, c]).

    Ho et al. 2020, eq. 6 and 7: mean = c_0 x_0 + c_t x_t with
    c_0 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) and
    c_t = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), variance beta_tilde_t.
    Shift-DDPM adds (k_{t-1} - c_t k_t) E(c) to the mean and keeps the variance.
    """
    coef_xt = gather(schedule.posterior_mean_coef_xt, t, x_t)
    mean = gather(schedule.posterior_mean_coef_x0, t, x_t) * x_0 + coef_xt * x_t
    if shift is not None:
        mean = mean + shift.offset(t - 1) - coef_xt * shift.offset(t)
    return GaussianPosterior(
        mean=mean,
        variance=gather(schedule.posterior_variance, t, x_t),
        log_variance=gather(schedule.posterior_log_variance_clipped, t, x_t),
    )


def predict_x0(schedule: NoiseSchedule, x_t: Tensor, t: Tensor, eps: Tensor, shift: Shift | None = None) -> Tensor:
    """Return the x_0 that ``eps`` implies: eq. 4 of Ho et al. 2020 solved for x_0.

    x_0 = (x_t - k_t E(c) - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), the
    "predicted x_0" inside eq. 12 of Song et al. 2021 (DDIM, arXiv:2010.02502) when k_t = 0.
    """
    y_t = x_t if shift is None else x_t - shift.offset(t)
    return (y_t - gather(schedule.sqrt_one_minus_alpha_bar, t, x_t) * eps) / gather(schedule.sqrt_alpha_bar, t, x_t)


def predict_eps(schedule: NoiseSchedule, x_t: Tensor, t: Tensor, x_0: Tensor, shift: Shift | None = None) -> Tensor:
    """Return the eps that takes ``x_0`` to ``x_t``: the inverse of :func:`predict_x0`."""
    y_t = x_t if shift is None else x_t - shift.offset(t)
    return (y_t - gather(schedule.sqrt_alpha_bar, t, x_t) * x_0) / gather(schedule.sqrt_one_minus_alpha_bar, t, x_t)


def posterior_mean_from_eps(
    schedule: NoiseSchedule, x_t: Tensor, t: Tensor, eps: Tensor, shift: Shift | None = None
) -> Tensor:
    """Return the mean of q(x_{t-1} | x_t, x_0[, c]) with x_0 implied by ``eps``.

    Ho et al. 2020, eq. 11: mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t).
    Shift-DDPM adds (k_{t-1} - k_t / sqrt(alpha_t)) E(c) (docs/models.md). For
    prior-shift this is (1 - 1 / sqrt(alpha_t)) E(c), eq. 15 of Zhang et al. 2023.
    """
    sqrt_alpha_t = gather(schedule.sqrt_alphas, t, x_t)
    noise_coef = gather(schedule.betas, t, x_t) / gather(schedule.sqrt_one_minus_alpha_bar, t, x_t)
    mean = (x_t - noise_coef * eps) / sqrt_alpha_t
    if shift is not None:
        mean = mean + shift.offset(t - 1) - shift.offset(t) / sqrt_alpha_t
    return mean


def eps_from_shifted_noise(schedule: NoiseSchedule, noise_hat: Tensor, t: Tensor, shift: Shift) -> Tensor:
    """Turn a prediction of (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t) into eps.

    That quantity equals eps + k_t E(c) / sqrt(1 - alpha_bar_t). The x_0 it
    implies does not depend on E(c), so a network that does not see the
    condition can predict it from x_t alone. The reference implementation of
    Zhang et al. 2023 parameterizes its network this way.
    """
    return noise_hat - shift.offset(t) / gather(schedule.sqrt_one_minus_alpha_bar, t, noise_hat)


def prior_sample(
    shape: Sequence[int],
    *,
    shift: Shift | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw x_T from the prior N(k_T E(c), I), or N(0, I) without a shift.

    q(x_T | x_0, c) has mean sqrt(alpha_bar_T) x_0 + k_T E(c). The prior drops
    the x_0 term, which a schedule makes negligible by driving alpha_bar_T to
    about zero. k_T is about 1 for prior-shift and about 0 for the other modes.
    """
    x_T = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
    if shift is not None:
        last = torch.full((x_T.shape[0],), shift.k.numel() - 1, dtype=torch.long, device=x_T.device)
        x_T = x_T + shift.offset(last).to(x_T)
    return x_T
