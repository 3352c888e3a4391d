"""Ancestral DDPM and DDIM sampling for plain and shifted diffusion.

Samplers know nothing of the network: they call ``eps_model(x_t, t)`` with a
batch of timestep indices ``t`` (0..T-1, see :mod:`.schedules`) and expect
eps_theta(x_t, t) back. A conditional model closes over its condition.
Sampling runs without autograd but leaves the network's mode alone, so put
a network with dropout into eval mode first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from qcdtool.plugins.models.diffusion.process import (
    EpsModel,
    Shift,
    gather,
    posterior_mean_from_eps,
    predict_eps,
    predict_x0,
)
from qcdtool.plugins.models.diffusion.schedules import NoiseSchedule

#: Called after every sampling step with (steps done, total steps).
ProgressCallback = Callable[[int, int], None]


@torch.no_grad()
def ddpm_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_T: Tensor,
    *,
    shift: Shift | None = None,
    generator: torch.Generator | None = None,
    x0_range: tuple[float, float] | None = None,
    progress: ProgressCallback | None = None,
) -> Tensor:
    """Run ancestral sampling through all T steps, starting from ``x_T``.

    Ho et al. 2020 (arXiv:2006.11239), algorithm 2 with sigma_t^2 = beta_tilde_t:
    x_{t-1} = mu_theta(x_t, t) + sigma_t z, where mu_theta is eq. 11 (plus the
    Shift-DDPM term of docs/models.md) and no noise is added at t = 1.
    ``x0_range`` clamps the x_0 implied by each eps prediction to that range
    first, as is common for data scaled to [-1, 1].
    """
    num_steps = schedule.num_steps
    schedule = schedule.to(x_T.device)
    x_t = x_T
    for step, index in enumerate(range(num_steps - 1, -1, -1), start=1):
        t = torch.full((x_t.shape[0],), index, dtype=torch.long, device=x_t.device)

        # 1. eps_theta(x_t, t), optionally made consistent with a clamped x_0.
        eps = _predict_eps(eps_model, schedule, x_t, t, shift, x0_range)

        # 2. The posterior mean with x_0 implied by eps (eq. 11).
        mean = posterior_mean_from_eps(schedule, x_t, t, eps, shift)

        # 3. Add sigma_t z with sigma_t^2 = beta_tilde_t, except at the last step.
        if index > 0:
            z = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
            x_t = mean + gather(schedule.posterior_variance, t, x_t).sqrt() * z
        else:
            x_t = mean
        if progress is not None:
            progress(step, num_steps)
    return x_t


def ddim_timesteps(num_steps: int, sampling_steps: int) -> Tensor:
    """Return the increasing sub-sequence tau of 0..T-1 that DDIM visits (int64).

    The indices are evenly spaced and always contain T-1, so that sampling
    starts where the prior is defined, and 0, so that it ends at x_0. One
    sampling step visits T-1 alone.
    """
    if not 1 <= sampling_steps <= num_steps:
        raise ValueError(f"DDIM needs 1 <= sampling steps <= T = {num_steps}, got {sampling_steps}")
    if sampling_steps == 1:
        return torch.tensor([num_steps - 1], dtype=torch.long)
    # Spacing >= 1 makes the rounded indices strictly increasing.
    return torch.linspace(0, num_steps - 1, sampling_steps, dtype=torch.float64).round().long()


@torch.no_grad()
def ddim_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_T: Tensor,
    *,
    steps: int,
    eta: float = 0.0,
    shift: Shift | None = None,
    generator: torch.Generator | None = None,
    x0_range: tuple[float, float] | None = None,
    progress: ProgressCallback | None = None,
) -> Tensor:
    """Run DDIM sampling over ``steps`` timesteps of :func:`ddim_timesteps`, starting from ``x_T``.

    Song et al. 2021 (arXiv:2010.02502), eq. 12 on the sub-sequence tau, with
    sigma(eta) of eq. 16. Their alpha is our alpha_bar. For each
    pair s = tau_{i-1} < t = tau_i:

        x_s = sqrt(alpha_bar_s) x0_hat + k_s E(c) + sqrt(1 - alpha_bar_s - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s),

    where the k_s E(c) term is the Shift-DDPM extension derived in
    docs/models.md. The last step goes to t = 0 (alpha_bar_0 = 1, k_0 = 0)
    and returns x0_hat. ``eta = 0`` is deterministic given ``x_T``, and
    ``eta = 1`` with all T steps is ancestral DDPM sampling.
    """
    if eta < 0.0:
        raise ValueError(f"DDIM eta must be >= 0, got {eta}")
    timesteps = ddim_timesteps(schedule.num_steps, steps).tolist()
    previous = [-1, *timesteps[:-1]]
    schedule = schedule.to(x_T.device)
    x_t = x_T
    for step, (index, prev_index) in enumerate(zip(reversed(timesteps), reversed(previous), strict=True), 1):
        t = torch.full((x_t.shape[0],), index, dtype=torch.long, device=x_t.device)
        s = t.new_full((x_t.shape[0],), prev_index)
        alpha_bar_t = gather(schedule.alpha_bar, t, x_t)
        alpha_bar_s = gather(schedule.alpha_bar, s, x_t, boundary=1.0)

        # 1. eps and the x_0 it implies ("predicted x_0" in eq. 12), optionally clamped.
        eps = _predict_eps(eps_model, schedule, x_t, t, shift, x0_range)
        x0_hat = predict_x0(schedule, x_t, t, eps, shift)

        # 2. sigma(eta) (eq. 16).
        sigma = eta * torch.sqrt((1.0 - alpha_bar_s) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_s))

        # 3. x_s from eq. 12, shifted by k_s E(c), with noise only where sigma > 0.
        direction = torch.sqrt((1.0 - alpha_bar_s - sigma**2).clamp(min=0.0)) * eps
        x_t = alpha_bar_s.sqrt() * x0_hat + direction
        if shift is not None:
            x_t = x_t + shift.offset(s)
        if eta > 0.0 and prev_index >= 0:
            z = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
            x_t = x_t + sigma * z
        if progress is not None:
            progress(step, len(timesteps))
    return x_t


def _predict_eps(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_t: Tensor,
    t: Tensor,
    shift: Shift | None,
    x0_range: tuple[float, float] | None,
) -> Tensor:
    """Call the model, and with ``x0_range`` return the eps of the clamped x_0 instead."""
    eps = eps_model(x_t, t)
    if eps.shape != x_t.shape:
        raise ValueError(f"eps_model returned shape {tuple(eps.shape)} for x_t of shape {tuple(x_t.shape)}")
    if x0_range is None:
        return eps
    x0_hat = predict_x0(schedule, x_t, t, eps, shift).clamp(*x0_range)
    return predict_eps(schedule, x_t, t, x0_hat, shift)
