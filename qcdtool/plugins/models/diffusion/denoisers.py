"""Conditional noise predictors: the networks of the ``ddpm`` and ``shift-ddpm`` plugins.

A :class:`Denoiser` turns a batch of condition images c into what the
training loss and the samplers take: an ``eps_model(x_t, t)`` closure and,
for Shift-DDPM, the :class:`~.process.Shift` k_t E(c). Everything the
trainer saves, averages and optimizes is a parameter of the denoiser.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qcdtool.plugins.models.base import NORM_GROUPS, DiffusionParams
from qcdtool.plugins.models.diffusion.process import EpsModel, Shift, eps_from_shifted_noise
from qcdtool.plugins.models.diffusion.schedules import (
    NoiseSchedule,
    ShiftMode,
    cosine_betas,
    linear_betas,
    shift_coefficients,
)
from qcdtool.plugins.models.diffusion.shift_predictor import ShiftPredictor
from qcdtool.plugins.models.diffusion.unet import UNet, UNetConfig


def noise_schedule(params: DiffusionParams) -> NoiseSchedule:
    """Build the noise schedule that the parameters name (on the CPU)."""
    betas = cosine_betas(params.timesteps) if params.schedule == "cosine" else linear_betas(params.timesteps)
    return NoiseSchedule.from_betas(betas)


def unet_from_params(params: DiffusionParams, in_channels: int, out_channels: int) -> UNet:
    """Build the UNet that the parameters describe, with the given input and output channels."""
    config = UNetConfig(
        in_channels=in_channels,
        out_channels=out_channels,
        base_channels=params.base_channels,
        channel_mults=tuple(params.channel_multipliers),
        num_res_blocks=params.res_blocks,
        attention_levels=tuple(params.attention_levels),
        mid_attention=params.mid_attention,
        norm_groups=NORM_GROUPS,
        dropout=params.dropout,
    )
    return UNet(config)


def with_autocast(eps_model: EpsModel, device: torch.device) -> EpsModel:
    """Wrap ``eps_model`` in bfloat16 autocast with a float32 result on cuda, and return it unchanged elsewhere."""
    if device.type != "cuda":
        return eps_model

    def predict(x_t: Tensor, t: Tensor) -> Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            eps = eps_model(x_t, t)
        return eps.float()

    return predict


class Denoiser(nn.Module):
    """A noise predictor eps_theta(x_t, t, c) and, optionally, a shift E(c)."""

    def shift(self, condition: Tensor) -> Shift | None:
        """Return the Shift-DDPM shift of this batch, or None for plain diffusion."""
        return None

    def eps_model(self, condition: Tensor, shift: Shift | None) -> EpsModel:
        """Return eps_theta(., ., c) for this batch of conditions, as the samplers and the loss call it."""
        raise NotImplementedError


class ConditionalDenoiser(Denoiser):
    """A UNet that receives the condition image as extra input channels: [x_t, c] -> eps."""

    def __init__(self, unet: UNet) -> None:
        super().__init__()
        self.unet = unet

    def eps_model(self, condition: Tensor, shift: Shift | None) -> EpsModel:
        def predict(x_t: Tensor, t: Tensor) -> Tensor:
            eps: Tensor = self.unet(torch.cat([x_t, condition.to(x_t.dtype)], dim=1), t)
            return eps

        return predict


class ShiftDenoiser(Denoiser):
    """Shift-DDPM (Zhang et al. 2023, arXiv:2302.02373): a shift predictor E(c) and a UNet.

    The UNet predicts (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t),
    the noise plus k_t E(c) / sqrt(1 - alpha_bar_t), from which eps follows
    exactly (:func:`~.process.eps_from_shifted_noise`). That target fixes
    x_0 without reference to E(c), so the UNet needs no condition input.
    This is how the authors' reference implementation parameterizes it. With
    ``condition_input`` the UNet also receives c as extra channels.
    """

    #: k_t for t = 1..T (float64).
    k: Tensor

    def __init__(
        self,
        unet: UNet,
        shift_predictor: ShiftPredictor,
        schedule: NoiseSchedule,
        mode: ShiftMode | str,
        condition_input: bool,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.shift_predictor = shift_predictor
        self.schedule = schedule
        self.mode = ShiftMode(mode)
        self.condition_input = condition_input
        # k_t depends only on the schedule and the mode, so it is rebuilt rather than saved.
        self.register_buffer("k", shift_coefficients(schedule, self.mode), persistent=False)

    def shift(self, condition: Tensor) -> Shift:
        # E(c) in the condition's dtype, also where autocast ran the predictor in bfloat16.
        return Shift(k=self.k, E=self.shift_predictor(condition).to(condition.dtype))

    def eps_model(self, condition: Tensor, shift: Shift | None) -> EpsModel:
        if shift is None:
            raise ValueError("a Shift-DDPM denoiser needs the batch's shift; compute it with shift(condition)")

        # Keep the schedule's tables on the device of the weights, so that no step copies them.
        self.schedule = self.schedule.to(self.k.device)
        schedule = self.schedule

        def predict(x_t: Tensor, t: Tensor) -> Tensor:
            inputs = torch.cat([x_t, condition.to(x_t.dtype)], dim=1) if self.condition_input else x_t
            noise_hat: Tensor = self.unet(inputs, t)
            return eps_from_shifted_noise(schedule, noise_hat, t, shift)

        return predict
