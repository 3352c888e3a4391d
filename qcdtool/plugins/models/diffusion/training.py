"""Training pieces shared by the diffusion models: loss, one optimizer step, EMA, AdamW and its LR schedule.

Everything random in a step (timesteps and noise) comes from the
``torch.Generator`` passed in, so a step is reproducible on the CPU given the
generator's seed and the model's initial weights. Dropout, if the network
has any, draws from torch's global generator, so seed that one too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LRScheduler

from qcdtool.plugins.models.diffusion.process import EpsModel, Shift, q_sample
from qcdtool.plugins.models.diffusion.schedules import NoiseSchedule


def diffusion_loss(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_0: Tensor,
    *,
    shift: Shift | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return the simplified DDPM loss of one batch, mean over all elements.

    Ho et al. 2020 (arXiv:2006.11239), algorithm 1 (their L_simple):
    || eps - eps_theta(x_t, t) ||^2 with t uniform in 1..T and x_t from eq. 4.
    With a :class:`Shift`, x_t carries k_t E(c), so gradients reach the shift
    predictor that produced ``shift.E`` through x_t (Zhang et al. 2023,
    arXiv:2302.02373). ``generator`` must live on the device of ``x_0``.
    """
    # 1. t ~ Uniform{0..T-1} (steps 1..T) and eps ~ N(0, I).
    t = torch.randint(schedule.num_steps, (x_0.shape[0],), generator=generator, device=x_0.device)
    eps = torch.randn(x_0.shape, generator=generator, dtype=x_0.dtype, device=x_0.device)

    # 2. x_t ~ q(x_t | x_0[, c]).
    x_t = q_sample(schedule, x_0, t, eps, shift)

    # 3. Mean squared error of the predicted noise.
    return F.mse_loss(eps_model(x_t, t), eps)


@dataclass(frozen=True)
class TrainingStepResult:
    """Loss, gradient norm and learning rate of one optimizer step."""

    loss: float
    #: Total gradient norm before clipping, or None when no clipping was requested.
    grad_norm: float | None
    #: Learning rate of the first parameter group used in this step.
    lr: float


def training_step(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_0: Tensor,
    optimizer: Optimizer,
    *,
    shift: Shift | None = None,
    generator: torch.Generator | None = None,
    lr_scheduler: LRScheduler | None = None,
    max_grad_norm: float | None = None,
    ema: EMA | None = None,
) -> TrainingStepResult:
    """Run one optimizer step on one batch: loss, backward, clip, step, LR schedule, EMA.

    ``eps_model`` and, for Shift-DDPM, the network that produced ``shift.E``
    must own the parameters that ``optimizer`` updates. Compute ``shift.E``
    with autograd on, from the batch's condition, right before this call.
    """
    lr = float(optimizer.param_groups[0]["lr"])

    # 1. Loss and gradients.
    optimizer.zero_grad(set_to_none=True)
    loss = diffusion_loss(eps_model, schedule, x_0, shift=shift, generator=generator)
    loss.backward()  # type: ignore[no-untyped-call]

    # 2. Clip, then update the weights, the learning rate and the average.
    grad_norm = None
    if max_grad_norm is not None:
        grad_norm = clip_gradients(_optimizer_parameters(optimizer), max_grad_norm)
    optimizer.step()
    if lr_scheduler is not None:
        lr_scheduler.step()
    if ema is not None:
        ema.update()
    return TrainingStepResult(loss=float(loss.detach()), grad_norm=grad_norm, lr=lr)


def clip_gradients(parameters: Iterable[Tensor], max_norm: float) -> float:
    """Scale gradients down to a total L2 norm of at most ``max_norm`` and return the norm before.

    Raises FloatingPointError when the norm is NaN or infinite, because a
    step with such gradients would destroy the weights.
    """
    if max_norm <= 0.0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norm = float(torch.nn.utils.clip_grad_norm_(list(parameters), max_norm))
    if not math.isfinite(norm):
        raise FloatingPointError(
            f"gradient norm is {norm}, so the loss diverged: lower the learning rate or check the data for NaN"
        )
    return norm


def make_adamw(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> AdamW:
    """Build AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101) over the trainable parameters of ``model``.

    Weight decay applies to weight matrices and convolution kernels only,
    not to biases and normalization scales (parameters with fewer than two
    dimensions), which are left undecayed as is usual.
    """
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    undecayed = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": params, "weight_decay": decay}
        for params, decay in ((decayed, weight_decay), (undecayed, 0.0))
        if params
    ]
    return AdamW(groups, lr=lr, betas=betas, eps=eps)


class WarmupLR(LRScheduler):
    """Linear warm-up of the learning rate, then constant or cosine decay.

    The factor applied to each base learning rate before optimizer step
    ``n`` (counting from 0) is (n + 1) / warmup_steps during the warm-up
    (the gradual warm-up of Goyal et al. 2017, arXiv:1706.02677), then 1
    (``constant``) or min_lr_ratio + (1 - min_lr_ratio) (1 + cos(pi p)) / 2
    with p = (n - warmup_steps) / (total_steps - warmup_steps), held at p = 1
    after ``total_steps`` (``cosine``: the annealing of SGDR, Loshchilov &
    Hutter 2017, arXiv:1608.03983, without restarts). Being a torch LR scheduler,
    its state_dict holds only numbers and strings and can be checkpointed.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        *,
        after_warmup: Literal["constant", "cosine"] = "constant",
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if after_warmup not in ("constant", "cosine"):
            raise ValueError(f"after_warmup must be 'constant' or 'cosine', got {after_warmup!r}")
        if after_warmup == "cosine" and (total_steps is None or total_steps <= warmup_steps):
            raise ValueError(
                f"cosine decay needs total_steps > warmup_steps = {warmup_steps}, got total_steps={total_steps}"
            )
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")
        self.warmup_steps = warmup_steps
        self.after_warmup = after_warmup
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, step: int) -> float:
        """Return the factor on the base learning rates for optimizer step ``step`` (from 0)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.after_warmup == "constant" or self.total_steps is None:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float | Tensor]:
        factor = self.lr_factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]


class EMA:
    """Exponential moving average of a module's parameters, kept in a frozen copy of the module.

    After each update, theta_ema <- d theta_ema + (1 - d) theta with
    d = min(decay, (1 + n) / (10 + n)) during warm-up, n being the number of
    earlier updates (the num_updates rule of TensorFlow's
    ``tf.train.ExponentialMovingAverage``). The random initial weights then
    keep a share of only 1 / binomial(n + 9, 9) after n updates (1e-5 after
    ten). Buffers are copied, not averaged.
    Sample with :attr:`module`.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.model = model
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """Return the decay that the next update will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current parameters."""
        decay = self.current_decay()
        averaged = dict(self.module.named_parameters())
        for name, parameter in self.model.named_parameters():
            averaged[name].lerp_(parameter.detach(), 1.0 - decay)
        averaged_buffers = dict(self.module.named_buffers())
        for name, buffer in self.model.named_buffers():
            averaged_buffers[name].copy_(buffer)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Return the averaged weights and the update count (tensors, numbers and bools only)."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "module": self.module.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["module"])


def _optimizer_parameters(optimizer: Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
