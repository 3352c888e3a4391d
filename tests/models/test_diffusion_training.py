"""Loss, training step, EMA, AdamW groups, LR schedule and gradient clipping."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from qcdtool.plugins.models.diffusion import (
    EMA,
    EpsModel,
    NoiseSchedule,
    Shift,
    ShiftMode,
    ShiftPredictor,
    UNet,
    UNetConfig,
    WarmupLR,
    clip_gradients,
    cosine_betas,
    diffusion_loss,
    make_adamw,
    predict_eps,
    shift_coefficients,
    training_step,
)


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_betas(cosine_betas(100))


def roundtrip(state: dict[str, object]) -> dict[str, object]:
    """Save and load with torch's safe loader, as a checkpoint would."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded: dict[str, object] = torch.load(buffer, weights_only=True)
    return loaded


def lr_sequence(scheduler: WarmupLR, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def one_parameter_optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize("mode", [None, *ShiftMode], ids=["plain", *(mode.value for mode in ShiftMode)])
def test_loss_zero_for_true_noise(schedule: NoiseSchedule, mode: ShiftMode | None) -> None:
    x_0 = torch.randn(8, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    E = torch.randn(8, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    shift = None if mode is None else Shift(shift_coefficients(schedule, mode), E)

    def true_noise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return predict_eps(schedule, x_t, t, x_0, shift)

    loss = diffusion_loss(true_noise, schedule, x_0, shift=shift, generator=torch.Generator().manual_seed(2))
    assert loss.item() == pytest.approx(0.0, abs=1e-20)


def test_loss_of_zero_predictor_near_one(schedule: NoiseSchedule) -> None:
    x_0 = torch.zeros(256, 1, 8, 8)
    loss = diffusion_loss(lambda x, t: torch.zeros_like(x), schedule, x_0, generator=torch.Generator().manual_seed(3))
    # E[eps^2] = 1; 16384 values give a standard error of about 0.011.
    assert loss.item() == pytest.approx(1.0, abs=0.05)


def test_shift_loss_reaches_shift_predictor(schedule: NoiseSchedule) -> None:
    torch.manual_seed(0)
    predictor = ShiftPredictor(1, 1, width=8)
    nn.init.normal_(predictor.output_conv.weight, std=0.1)
    condition = torch.randn(4, 1, 8, 8)
    shift = Shift(shift_coefficients(schedule, ShiftMode.PRIOR_SHIFT), predictor(condition))
    loss = diffusion_loss(lambda x, t: x, schedule, torch.randn(4, 1, 8, 8), shift=shift)
    loss.backward()  # type: ignore[no-untyped-call]
    assert predictor.stem.weight.grad is not None
    assert predictor.stem.weight.grad.abs().sum().item() > 0.0


def train(schedule: NoiseSchedule, steps: int, seed: int) -> tuple[list[float], UNet, ShiftPredictor]:
    """A few Shift-DDPM steps of a tiny UNet and shift predictor, all randomness seeded."""
    torch.manual_seed(seed)
    unet = UNet(UNetConfig(2, 1, base_channels=8, channel_mults=(1, 2), norm_groups=4))
    predictor = ShiftPredictor(1, 1, width=8, depth=2, norm_groups=4)
    model = nn.ModuleDict({"unet": unet, "shift": predictor})
    optimizer = make_adamw(model, lr=1e-3, weight_decay=0.01)
    scheduler = WarmupLR(optimizer, 2, after_warmup="cosine", total_steps=steps)
    ema = EMA(model, decay=0.99)
    generator = torch.Generator().manual_seed(seed)
    data = torch.Generator().manual_seed(seed + 1)
    k = shift_coefficients(schedule, ShiftMode.QUADRATIC_SHIFT)
    losses = []
    for _ in range(steps):
        x_0 = torch.randn(16, 1, 8, 8, generator=data)
        condition = x_0 + 0.1 * torch.randn(16, 1, 8, 8, generator=data)

        def eps_model(x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor = condition) -> torch.Tensor:
            out: torch.Tensor = unet(torch.cat([x_t, condition], dim=1), t)
            return out

        shift = Shift(k, predictor(condition))
        result = training_step(
            eps_model,
            schedule,
            x_0,
            optimizer,
            shift=shift,
            generator=generator,
            lr_scheduler=scheduler,
            max_grad_norm=1.0,
            ema=ema,
        )
        losses.append(result.loss)
    return losses, unet, predictor


def test_training_step_deterministic(schedule: NoiseSchedule) -> None:
    first_losses, *first = train(schedule, 4, seed=5)
    second_losses, *second = train(schedule, 4, seed=5)
    assert first_losses == second_losses
    for first_net, second_net in zip(first, second, strict=True):
        pairs = zip(first_net.named_parameters(), second_net.named_parameters(), strict=True)
        for (name, a), (_, b) in pairs:
            assert torch.equal(a, b), name


def test_training_step_updates_shift_predictor(schedule: NoiseSchedule) -> None:
    # Both output convolutions start at zero: the UNet's moves first, then E(c) gets gradients.
    _, _, predictor = train(schedule, 3, seed=6)
    assert predictor.output_conv.weight.abs().sum().item() > 0.0


def test_training_step_result_fields(schedule: NoiseSchedule) -> None:
    model = nn.Conv2d(1, 1, 3, padding=1)
    optimizer = make_adamw(model, lr=0.5)
    scheduler = WarmupLR(optimizer, 4)

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(x)
        return out

    x_0 = torch.randn(4, 1, 8, 8)
    result = training_step(eps_model, schedule, x_0, optimizer, lr_scheduler=scheduler, max_grad_norm=10.0)
    assert result.lr == pytest.approx(0.125)
    assert result.grad_norm is not None
    assert math.isfinite(result.loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)


def test_ema_warmup_decays() -> None:
    ema = EMA(nn.Linear(1, 1), decay=0.5)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update()
    assert decays == pytest.approx([0.1, 2 / 11, 0.25])


def test_ema_decay_capped_after_warmup() -> None:
    ema = EMA(nn.Linear(1, 1), decay=0.4)
    for _ in range(8):
        ema.update()
    # (1 + 8) / (10 + 8) = 0.5 exceeds the decay of 0.4.
    assert ema.current_decay() == 0.4


def test_ema_without_warmup() -> None:
    assert EMA(nn.Linear(1, 1), decay=0.9, warmup=False).current_decay() == 0.9


def test_ema_first_update_value() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(12.0)
    ema.update()
    # decay 0.1 at the first update: 0.1 * 2 + 0.9 * 12
    assert ema.module.state_dict()["weight"].item() == pytest.approx(11.0)


def test_ema_leaves_model_trainable() -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_state_roundtrip() -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    for _ in range(3):
        ema.update()
    restored = EMA(nn.Linear(2, 2), decay=0.5)
    restored.load_state_dict(roundtrip(ema.state_dict()))
    assert restored.num_updates == 3
    assert restored.decay == 0.9
    assert torch.equal(restored.module.state_dict()["weight"], ema.module.state_dict()["weight"])


def test_make_adamw_decays_only_matrices() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))
    optimizer = make_adamw(model, lr=1e-3, weight_decay=0.05)
    decays = {group["weight_decay"]: len(group["params"]) for group in optimizer.param_groups}
    assert decays == {0.05: 1, 0.0: 3}


def test_warmup_then_constant() -> None:
    optimizer = one_parameter_optimizer()
    scheduler = WarmupLR(optimizer, 4)
    assert lr_sequence(scheduler, optimizer, 6) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_warmup_then_cosine() -> None:
    optimizer = one_parameter_optimizer(lr=2.0)
    scheduler = WarmupLR(optimizer, 2, after_warmup="cosine", total_steps=6, min_lr_ratio=0.1)
    # Steps 2..6 run p = 0, 1/4, 1/2, 3/4, 1: factor 0.1 + 0.9 (1 + cos(pi p)) / 2.
    cosine = [0.1 + 0.9 * (1 + math.cos(math.pi * p)) / 2 for p in (0.0, 0.25, 0.5, 0.75, 1.0, 1.0)]
    expected = [2.0 * f for f in [0.5, 1.0, *cosine]]
    assert lr_sequence(scheduler, optimizer, 8) == pytest.approx(expected)


def test_no_warmup_starts_at_base() -> None:
    optimizer = one_parameter_optimizer(lr=0.3)
    WarmupLR(optimizer, 0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3)


def test_warmup_state_roundtrip() -> None:
    optimizer = one_parameter_optimizer()
    scheduler = WarmupLR(optimizer, 3, after_warmup="cosine", total_steps=10)
    lr_sequence(scheduler, optimizer, 5)
    state = roundtrip(scheduler.state_dict())

    resumed_optimizer = one_parameter_optimizer()
    resumed = WarmupLR(resumed_optimizer, 1)
    resumed.load_state_dict(state)
    resumed_optimizer.step()
    resumed.step()
    optimizer.step()
    scheduler.step()
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())


def test_cosine_needs_total_steps() -> None:
    with pytest.raises(ValueError, match="cosine decay needs total_steps > warmup_steps = 5"):
        WarmupLR(one_parameter_optimizer(), 5, after_warmup="cosine", total_steps=5)


def test_clip_gradients_scales_to_max() -> None:
    parameter = nn.Parameter(torch.zeros(2))
    parameter.grad = torch.tensor([3.0, 4.0])
    norm = clip_gradients([parameter], 1.0)
    assert norm == pytest.approx(5.0)
    torch.testing.assert_close(parameter.grad, torch.tensor([0.6, 0.8]), rtol=1e-5, atol=1e-6)


def test_clip_gradients_rejects_nan() -> None:
    parameter = nn.Parameter(torch.zeros(2))
    parameter.grad = torch.tensor([float("nan"), 1.0])
    with pytest.raises(FloatingPointError, match="gradient norm is nan"):
        clip_gradients([parameter], 1.0)


def test_eps_model_type_accepts_unet() -> None:
    net = UNet(UNetConfig(1, 1, base_channels=8, norm_groups=4))
    eps_model: EpsModel = net
    assert eps_model(torch.zeros(1, 1, 8, 8), torch.tensor([0])).shape == (1, 1, 8, 8)
