"""Diffusion core shared by the ``ddpm`` and ``shift-ddpm`` model plugins.

Noise schedule, forward process, samplers and networks are separate pieces:

- :mod:`.schedules`: betas (linear, cosine), :class:`NoiseSchedule`, Shift-DDPM k_t.
- :mod:`.process`: q(x_t | x_0[, c]), the posterior, x_0 and eps predictions.
- :mod:`.samplers`: ancestral DDPM and DDIM sampling from any ``eps_model(x_t, t)``.
- :mod:`.unet` and :mod:`.shift_predictor`: the networks.
- :mod:`.training`: loss, optimizer step, EMA, AdamW and its LR schedule.

The plugins' own machinery, imported only when a plugin trains or samples:

- :mod:`.denoisers`: the conditional networks of ``ddpm`` and ``shift-ddpm``.
- :mod:`.transform`: the invertible map of pixel intensities to [-1, 1].
- :mod:`.trainer`, :mod:`.checkpoint` and :mod:`.sampling`: the training loop,
  the checkpoint file and sampling of a trained model.

This package imports no plugin module. docs/models.md derives the formulas
and describes the plugins.
"""

from qcdtool.plugins.models.diffusion.process import (
    EpsModel,
    GaussianPosterior,
    Shift,
    eps_from_shifted_noise,
    posterior_mean_from_eps,
    predict_eps,
    predict_x0,
    prior_sample,
    q_posterior,
    q_sample,
    q_step_sample,
)
from qcdtool.plugins.models.diffusion.samplers import ddim_sample, ddim_timesteps, ddpm_sample
from qcdtool.plugins.models.diffusion.schedules import (
    NoiseSchedule,
    ShiftMode,
    cosine_betas,
    linear_betas,
    shift_coefficients,
)
from qcdtool.plugins.models.diffusion.shift_predictor import ShiftPredictor
from qcdtool.plugins.models.diffusion.training import (
    EMA,
    TrainingStepResult,
    WarmupLR,
    clip_gradients,
    diffusion_loss,
    make_adamw,
    training_step,
)
from qcdtool.plugins.models.diffusion.unet import UNet, UNetConfig

__all__ = [
    "EMA",
    "EpsModel",
    "GaussianPosterior",
    "NoiseSchedule",
    "Shift",
    "ShiftMode",
    "ShiftPredictor",
    "TrainingStepResult",
    "UNet",
    "UNetConfig",
    "WarmupLR",
    "clip_gradients",
    "cosine_betas",
    "ddim_sample",
    "ddim_timesteps",
    "ddpm_sample",
    "diffusion_loss",
    "eps_from_shifted_noise",
    "linear_betas",
    "make_adamw",
    "posterior_mean_from_eps",
    "predict_eps",
    "predict_x0",
    "prior_sample",
    "q_posterior",
    "q_sample",
    "q_step_sample",
    "shift_coefficients",
    "training_step",
]
