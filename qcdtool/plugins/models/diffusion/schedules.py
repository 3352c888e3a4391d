"""Noise schedules and Shift-DDPM shift schedules, as pure functions of the step count.

Timestep indices run from 0 to T-1 in code: index ``i`` is step ``t = i + 1``
of Ho et al. 2020 (arXiv:2006.11239), so ``alpha_bar[i]`` is
``prod_{s <= t} alpha_s``. The boundary values at ``t = 0`` (``alpha_bar_0 = 1``,
``k_0 = 0``) are never stored in a table. Functions that need them take the
index ``-1`` for ``t = 0``.

All tables are float64 tensors on the CPU. :meth:`NoiseSchedule.to` moves them
to another device.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Return betas rising linearly from ``beta_start`` to ``beta_end`` (float64, shape (T,)).

    The defaults are those of Ho et al. 2020 (arXiv:2006.11239, sec. 4), chosen
    there for T = 1000. With far fewer steps, alpha_bar_T stays well above zero
    and the prior N(0, I) no longer matches q(x_T | x_0). Use
    :func:`cosine_betas` or larger betas then.
    """
    _check_num_steps(num_steps)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"linear betas need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Return the cosine schedule's betas (float64, shape (T,)).

    Nichol & Dhariwal 2021 (arXiv:2102.09672), eq. 17:
    alpha_bar_t = f(t) / f(0) with f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2),
    and beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, clipped to at most
    ``max_beta`` (0.999 in the paper) so that the last step stays invertible.
    """
    _check_num_steps(num_steps)
    if s < 0.0:
        raise ValueError(f"the cosine schedule's offset s must be >= 0, got {s}")
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")

    # 1. f(t) for t = 0..T (eq. 17).
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    f = torch.cos((t / num_steps + s) / (1.0 + s) * (math.pi / 2.0)) ** 2

    # 2. beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} = 1 - f(t) / f(t-1), clipped.
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(max=max_beta)


@dataclass(frozen=True)
class NoiseSchedule:
    """Quantities of a DDPM derived from its betas (float64 tensors of shape (T,)).

    Build with :meth:`from_betas`. Symbols follow Ho et al. 2020
    (arXiv:2006.11239): alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s
    (sec. 2, above eq. 4), and the posterior q(x_{t-1} | x_t, x_0) =
    N(posterior_mean_coef_x0 * x_0 + posterior_mean_coef_xt * x_t,
    posterior_variance) of eq. 6 and 7.
    """

    betas: Tensor
    alphas: Tensor
    alpha_bar: Tensor
    #: alpha_bar_{t-1}, with alpha_bar_0 = 1 at index 0.
    alpha_bar_prev: Tensor
    sqrt_alphas: Tensor
    sqrt_alpha_bar: Tensor
    sqrt_one_minus_alpha_bar: Tensor
    #: beta_tilde_t of eq. 7, zero at index 0, where x_0 is known exactly.
    posterior_variance: Tensor
    #: log beta_tilde_t with the zero at index 0 replaced by beta_tilde at index 1,
    #: so that it is finite everywhere (the value used at t = 1 never scales noise).
    posterior_log_variance_clipped: Tensor
    posterior_mean_coef_x0: Tensor
    posterior_mean_coef_xt: Tensor

    @classmethod
    def from_betas(cls, betas: Tensor) -> NoiseSchedule:
        """Derive every table from ``betas`` (1-D, at least two steps, each in (0, 1))."""
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 2:
            raise ValueError(f"betas must be a 1-D tensor of at least 2 steps, got shape {tuple(betas.shape)}")
        if not bool(torch.all((betas > 0.0) & (betas < 1.0))):
            raise ValueError(f"every beta must lie in (0, 1), got min {betas.min().item()}, max {betas.max().item()}")

        # 1. alpha_t and alpha_bar_t (Ho et al., sec. 2), alpha_bar_0 = 1.
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])

        # 2. Posterior variance beta_tilde_t (eq. 7) and its log, clipped at t = 1.
        posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
        posterior_log_variance_clipped = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))

        # 3. Posterior mean coefficients of x_0 and x_t (eq. 7).
        posterior_mean_coef_x0 = torch.sqrt(alpha_bar_prev) * betas / (1.0 - alpha_bar)
        posterior_mean_coef_xt = torch.sqrt(alphas) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)

        return cls(
            betas=betas,
            alphas=alphas,
            alpha_bar=alpha_bar,
            alpha_bar_prev=alpha_bar_prev,
            sqrt_alphas=torch.sqrt(alphas),
            sqrt_alpha_bar=torch.sqrt(alpha_bar),
            sqrt_one_minus_alpha_bar=torch.sqrt(1.0 - alpha_bar),
            posterior_variance=posterior_variance,
            posterior_log_variance_clipped=posterior_log_variance_clipped,
            posterior_mean_coef_x0=posterior_mean_coef_x0,
            posterior_mean_coef_xt=posterior_mean_coef_xt,
        )

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps."""
        return int(self.betas.numel())

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """Return a copy whose tables live on ``device`` (still float64)."""
        return NoiseSchedule(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class ShiftMode(enum.StrEnum):
    """How the Shift-DDPM mean shift k_t grows with t (Zhang et al. 2023, arXiv:2302.02373)."""

    #: k_t = 1 - sqrt(alpha_bar_t): the trajectory ends at N(E(c), I).
    PRIOR_SHIFT = "prior-shift"
    #: k_t = -sqrt(alpha_bar_t) for t >= 1: the diffused quantity is x_0 - E(c).
    DATA_NORMALIZATION = "data-normalization"
    #: k_t = sqrt(alpha_bar_t) (1 - sqrt(alpha_bar_t)): zero at both ends, largest mid-way.
    QUADRATIC_SHIFT = "quadratic-shift"


def shift_coefficients(schedule: NoiseSchedule, mode: ShiftMode | str) -> Tensor:
    """Return k_t for t = 1..T (float64, shape (T,)) of a Shift-DDPM shift mode.

    Zhang et al. 2023 (arXiv:2302.02373) diffuse with
    q(x_t | x_0, c) = N(sqrt(alpha_bar_t) x_0 + k_t E(c), (1 - alpha_bar_t) I)
    and name the three schedules of :class:`ShiftMode`. k_0 = 0 in every mode
    because x_0 is the data itself. For ``data-normalization`` the formula
    would give k_0 = -1, so the first transition carries the whole shift
    (see docs/models.md).
    """
    mode = _parse_shift_mode(mode)
    sqrt_alpha_bar = schedule.sqrt_alpha_bar
    if mode is ShiftMode.PRIOR_SHIFT:
        return 1.0 - sqrt_alpha_bar
    if mode is ShiftMode.DATA_NORMALIZATION:
        return -sqrt_alpha_bar
    return sqrt_alpha_bar * (1.0 - sqrt_alpha_bar)


def _parse_shift_mode(mode: ShiftMode | str) -> ShiftMode:
    try:
        return ShiftMode(mode)
    except ValueError:
        allowed = ", ".join(m.value for m in ShiftMode)
        raise ValueError(f"unknown shift mode {mode!r}, expected one of: {allowed}") from None


def _check_num_steps(num_steps: int) -> None:
    if num_steps < 2:
        raise ValueError(f"a noise schedule needs at least 2 steps, got {num_steps}")
