"""Sampling a trained model plugin: batches of conditions, the prior, the sampler and the inverse transform.

The numerical samplers themselves are in :mod:`.samplers`. This module
repeats each condition K times, draws x_T from the prior (shifted by
k_T E(c) for Shift-DDPM), runs ancestral DDPM or DDIM with eta = 0 on the
EMA weights, and maps the result back to stored intensities.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from qcdtool.core.errors import QcdtoolError
from qcdtool.plugins.models.diffusion.checkpoint import CHECKPOINT_FILE
from qcdtool.plugins.models.diffusion.denoisers import with_autocast
from qcdtool.plugins.models.diffusion.process import prior_sample
from qcdtool.plugins.models.diffusion.samplers import ddim_sample, ddpm_sample
from qcdtool.plugins.models.diffusion.trainer import TrainedModel, autocast

SAMPLERS = ("ddpm", "ddim")
#: DDIM steps when the caller gives none.
DEFAULT_DDIM_STEPS = 50
#: Range of the transformed intensities (see :mod:`.transform`), to which every x_0 prediction is clamped.
X0_RANGE = (-1.0, 1.0)


def sample_trained(
    trained: TrainedModel,
    conditions: NDArray[np.float32],
    n_per_condition: int,
    sampler: str,
    steps: int | None,
    seed: int,
    device: str,
) -> NDArray[np.float32]:
    """Draw ``n_per_condition`` target images per condition: (n, K, C, H, W) float32, intensities >= 0.

    Images are drawn condition by condition, K in a row, in batches of
    ``trained.sample_batch_size``. The result depends only on the weights,
    the conditions, the arguments and the batch size.
    """
    # 1. Check the request.
    if sampler not in SAMPLERS:
        raise QcdtoolError(f"unknown sampler {sampler!r}; use one of: {', '.join(SAMPLERS)}")
    if n_per_condition < 1:
        raise QcdtoolError(f"n_per_condition must be >= 1, got {n_per_condition}")
    conditions = np.asarray(conditions, dtype=np.float32)
    if conditions.ndim != 4 or tuple(conditions.shape[1:]) != trained.condition_shape:
        raise QcdtoolError(
            f"the model in {CHECKPOINT_FILE} was trained on condition images of shape {trained.condition_shape} "
            f"(C, H, W), but the conditions given have shape {tuple(conditions.shape)}; sample with conditions "
            "of the imager it was trained on"
        )
    num_steps = trained.schedule.num_steps
    ddim_steps = min(DEFAULT_DDIM_STEPS, num_steps) if steps is None else steps
    if sampler == "ddim" and not 1 <= ddim_steps <= num_steps:
        raise QcdtoolError(f"DDIM needs 1 to {num_steps} steps (the model's T), got {ddim_steps}")

    # 2. The network on the requested device, and a generator seeded for this call.
    target_device = torch.device(device)
    denoiser = trained.denoiser.to(target_device)
    schedule = trained.schedule.to(target_device)
    generator = torch.Generator(target_device).manual_seed(seed)

    # 3. Condition-major order: image i of the flat output belongs to condition i // K.
    n = len(conditions)
    total = n * n_per_condition
    drawn = np.empty((total, *trained.target_shape), dtype=np.float32)
    for start in range(0, total, trained.sample_batch_size):
        stop = min(start + trained.sample_batch_size, total)
        chosen = np.arange(start, stop) // n_per_condition
        c = trained.transform.condition_forward(torch.from_numpy(conditions[chosen]).to(target_device))
        with torch.no_grad(), autocast(target_device):
            shift = denoiser.shift(c)
        eps_model = with_autocast(denoiser.eps_model(c, shift), target_device)

        # 4. x_T from the prior N(k_T E(c), I), or N(0, I) without a shift, then the sampler.
        x_T = prior_sample(
            (stop - start, *trained.target_shape), shift=shift, generator=generator, device=target_device
        )
        if sampler == "ddpm":
            x_0 = ddpm_sample(eps_model, schedule, x_T, shift=shift, generator=generator, x0_range=X0_RANGE)
        else:
            x_0 = ddim_sample(
                eps_model, schedule, x_T, steps=ddim_steps, eta=0.0, shift=shift, generator=generator, x0_range=X0_RANGE
            )

        # 5. Back to stored intensities, which the inverse transform clips at zero.
        drawn[start:stop] = trained.transform.target_inverse(x_0.float()).cpu().numpy()
    return drawn.reshape(n, n_per_condition, *trained.target_shape)
