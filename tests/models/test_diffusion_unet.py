"""UNet and shift predictor: shapes, dtypes, odd sizes and parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcdtool.plugins.models.diffusion import ShiftPredictor, UNet, UNetConfig
from qcdtool.plugins.models.diffusion.unet import sinusoidal_embedding


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(kernel: int, c_in: int, c_out: int) -> int:
    return kernel * kernel * c_in * c_out + c_out


def norm(channels: int) -> int:
    return 2 * channels


def linear(c_in: int, c_out: int) -> int:
    return c_in * c_out + c_out


def residual(c_in: int, c_out: int, time_channels: int) -> int:
    shortcut = conv(1, c_in, c_out) if c_in != c_out else 0
    return (
        norm(c_in)
        + conv(3, c_in, c_out)
        + linear(time_channels, c_out)
        + norm(c_out)
        + conv(3, c_out, c_out)
        + shortcut
    )


def attention(channels: int) -> int:
    return norm(channels) + conv(1, channels, 3 * channels) + conv(1, channels, channels)


def expected_parameters(config: UNetConfig) -> int:
    """Count the parameters of the documented architecture, layer by layer."""
    base, time_channels = config.base_channels, 4 * config.base_channels
    widths = [base * mult for mult in config.channel_mults]
    total = linear(base, time_channels) + linear(time_channels, time_channels) + conv(3, config.in_channels, base)

    skips, current = [base], base
    for level, width in enumerate(widths):
        for _ in range(config.num_res_blocks):
            total += residual(current, width, time_channels)
            total += attention(width) if level in config.attention_levels else 0
            current = width
            skips.append(current)
        if level < len(widths) - 1:
            total += conv(3, current, current)
            skips.append(current)

    total += 2 * residual(current, current, time_channels)
    total += attention(current) if config.mid_attention else 0

    for level in reversed(range(len(widths))):
        for _ in range(config.num_res_blocks + 1):
            total += residual(current + skips.pop(), widths[level], time_channels)
            total += attention(widths[level]) if level in config.attention_levels else 0
            current = widths[level]
        if level > 0:
            total += conv(3, current, current)

    return total + norm(current) + conv(3, current, config.out_channels)


@pytest.mark.parametrize(
    ("size", "config"),
    [
        (8, UNetConfig(2, 1, base_channels=16, channel_mults=(1, 2), attention_levels=(1,))),
        (15, UNetConfig(2, 1, base_channels=16, channel_mults=(1, 2, 2))),
        (16, UNetConfig(2, 1, base_channels=16, channel_mults=(1, 2, 2), attention_levels=(2,))),
        (32, UNetConfig(3, 2, base_channels=16, channel_mults=(1, 2, 2, 2), num_res_blocks=1)),
        (128, UNetConfig(1, 1, base_channels=8, channel_mults=(1, 1, 2, 2, 4), num_res_blocks=1)),
    ],
    ids=["8", "15", "16", "32", "128"],
)
def test_unet_output_shape(size: int, config: UNetConfig) -> None:
    torch.manual_seed(0)
    net = UNet(config)
    out = net(torch.randn(2, config.in_channels, size, size), torch.tensor([0, 999]))
    assert out.shape == (2, config.out_channels, size, size)


@pytest.mark.parametrize("size", [15, 33])
def test_unet_odd_size_float64(size: int) -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(1, 1, base_channels=8, channel_mults=(1, 2, 2), norm_groups=4)).double()
    out = net(torch.randn(2, 1, size, size, dtype=torch.float64), torch.tensor([3, 7]))
    assert out.dtype == torch.float64
    assert out.shape == (2, 1, size, size)


def test_unet_float32_output_dtype() -> None:
    net = UNet(UNetConfig(1, 1, base_channels=8, norm_groups=4))
    assert net(torch.randn(1, 1, 16, 16), torch.tensor([5])).dtype == torch.float32


def test_unet_untrained_predicts_zero() -> None:
    net = UNet(UNetConfig(2, 1, base_channels=8, norm_groups=4))
    out = net(torch.randn(3, 2, 16, 16), torch.tensor([0, 1, 2]))
    assert torch.count_nonzero(out) == 0


def test_unet_output_depends_on_time() -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(1, 1, base_channels=8, norm_groups=4))
    for parameter in net.parameters():
        nn.init.normal_(parameter, std=0.1)
    x = torch.randn(1, 1, 16, 16).expand(2, 1, 16, 16)
    out = net(x, torch.tensor([10, 500]))
    assert not torch.allclose(out[0], out[1])


def test_unet_gradients_reach_input_conv() -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(1, 1, base_channels=8, norm_groups=4, attention_levels=(1,)))
    for parameter in net.parameters():
        nn.init.normal_(parameter, std=0.1)
    net(torch.randn(2, 1, 15, 15), torch.tensor([1, 2])).square().mean().backward()
    assert net.input_conv.weight.grad is not None
    assert net.input_conv.weight.grad.abs().sum().item() > 0.0


def test_unet_parameters_tiny_config() -> None:
    # Worked by hand: time MLP 1344, input conv 80, one down block 1464, bottleneck 2928,
    # two up blocks of 2192 (16 -> 8 channels with a 1x1 shortcut), output head 89.
    config = UNetConfig(1, 1, base_channels=8, channel_mults=(1,), num_res_blocks=1, mid_attention=False, norm_groups=4)
    assert count_parameters(UNet(config)) == 10289


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(2, 1),
        UNetConfig(2, 1, base_channels=64, channel_mults=(1, 2, 2, 2), attention_levels=(2, 3)),
        UNetConfig(4, 3, base_channels=16, channel_mults=(1, 3), num_res_blocks=3, mid_attention=False),
        UNetConfig(1, 1, base_channels=32, attention_levels=(0, 1, 2), attention_heads=4),
    ],
    ids=["default", "wide-attention", "three-blocks", "heads"],
)
def test_unet_parameters_match_config(config: UNetConfig) -> None:
    assert count_parameters(UNet(config)) == expected_parameters(config)


def test_unet_config_rejects_norm_groups() -> None:
    with pytest.raises(ValueError, match="norm_groups=8 must divide"):
        UNetConfig(1, 1, base_channels=12)


def test_unet_config_rejects_attention_level() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.2: \[3\]"):
        UNetConfig(1, 1, attention_levels=(3,))


def test_unet_config_rejects_empty_mults() -> None:
    with pytest.raises(ValueError, match="channel_mults"):
        UNetConfig(1, 1, channel_mults=())


def test_unet_rejects_wrong_channels() -> None:
    net = UNet(UNetConfig(2, 1, base_channels=8, norm_groups=4))
    with pytest.raises(ValueError, match=r"expects \(B, 2, H, W\)"):
        net(torch.randn(1, 1, 16, 16), torch.tensor([0]))


def test_unet_rejects_timestep_shape() -> None:
    net = UNet(UNetConfig(1, 1, base_channels=8, norm_groups=4))
    with pytest.raises(ValueError, match="one timestep per image"):
        net(torch.randn(2, 1, 16, 16), torch.tensor(3))


def test_size_multiple_three_levels() -> None:
    assert UNetConfig(1, 1, channel_mults=(1, 2, 2)).size_multiple == 4


def test_sinusoidal_embedding_at_zero() -> None:
    embedding = sinusoidal_embedding(torch.tensor([0]), 8)
    torch.testing.assert_close(embedding, torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]]))


def test_sinusoidal_embedding_first_frequency_is_one() -> None:
    embedding = sinusoidal_embedding(torch.tensor([2]), 8)
    assert embedding[0, 0].item() == pytest.approx(torch.sin(torch.tensor(2.0)).item())


def test_shift_predictor_odd_size_shape() -> None:
    predictor = ShiftPredictor(2, 1, width=16, depth=4)
    assert predictor(torch.randn(3, 2, 15, 15)).shape == (3, 1, 15, 15)


def test_shift_predictor_untrained_is_zero() -> None:
    predictor = ShiftPredictor(1, 1, width=16)
    assert torch.count_nonzero(predictor(torch.randn(2, 1, 16, 16))) == 0


def test_shift_predictor_rejects_groups() -> None:
    with pytest.raises(ValueError, match="norm_groups=8 must divide width=12"):
        ShiftPredictor(1, 1, width=12)
