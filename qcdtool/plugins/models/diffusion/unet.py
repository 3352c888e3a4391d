"""A UNet noise predictor for square images of 8x8 to 128x128 pixels, odd sizes included.

The layout follows the DDPM network of Ho et al. 2020 (arXiv:2006.11239,
appendix B). It has a sinusoidal time embedding, residual blocks with
GroupNorm and SiLU at every resolution and optional self-attention. Every
block of the down path feeds one block of the up path through a skip
connection. Stride-2 convolutions go down a level, and nearest-neighbour
upsampling plus a convolution goes up.

Odd sizes: the network halves the resolution ``len(channel_mults) - 1``
times, so it zero-pads each input on all four sides up to the next multiple
of ``2 ** (len(channel_mults) - 1)`` (the odd pixel of a padding goes to the
bottom and right) and crops the output back to the input's size. A 15x15
input with three levels runs at 16x16, 8x8 and 4x4, and a 33x33 input at
36x36, 18x18 and 9x9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`UNet`.

    Level ``i`` has ``base_channels * channel_mults[i]`` channels and runs at
    1 / 2**i of the (padded) input resolution. ``attention_levels`` lists the
    levels whose residual blocks are each followed by self-attention, and
    ``mid_attention`` puts one between the two residual blocks at the lowest
    resolution.
    """

    in_channels: int
    out_channels: int
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = ()
    mid_attention: bool = True
    attention_heads: int = 1
    norm_groups: int = 8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "base_channels", "num_res_blocks", "attention_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(
                f"UNetConfig.channel_mults must be a non-empty tuple of ints >= 1, got {self.channel_mults}"
            )
        levels = len(self.channel_mults)
        bad_levels = [level for level in self.attention_levels if not 0 <= level < levels]
        if bad_levels:
            raise ValueError(
                f"UNetConfig.attention_levels {self.attention_levels} has levels outside 0..{levels - 1}: {bad_levels}"
            )
        for channels in self.level_channels:
            if channels % self.norm_groups != 0:
                raise ValueError(
                    f"UNetConfig.norm_groups={self.norm_groups} must divide every level's channel count, "
                    f"got {channels} (base_channels={self.base_channels}, channel_mults={self.channel_mults})"
                )
            if channels % self.attention_heads != 0:
                raise ValueError(
                    f"UNetConfig.attention_heads={self.attention_heads} must divide every level's "
                    f"channel count, got {channels}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must lie in [0, 1), got {self.dropout}")

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channel count of each level."""
        return tuple(self.base_channels * mult for mult in self.channel_mults)

    @property
    def time_embedding_channels(self) -> int:
        """Width of the time embedding that every residual block receives (4 x base, as in DDPM)."""
        return 4 * self.base_channels

    @property
    def size_multiple(self) -> int:
        """Inputs are zero-padded to a multiple of this size (see the module docstring)."""
        return 1 << (len(self.channel_mults) - 1)


def sinusoidal_embedding(t: Tensor, channels: int) -> Tensor:
    """Embed timesteps as in Vaswani et al. 2017 (arXiv:1706.03762, sec. 3.5).

    Returns (B, channels): sin(t w_i) then cos(t w_i) with
    w_i = 10000^(-i / (channels / 2)), i = 0..channels/2 - 1. An odd
    ``channels`` gets a zero last column. The DDPM network of Ho et al. 2020
    embeds its timestep the same way.
    """
    half = channels // 2
    frequencies = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1)
    )
    angles = t.to(torch.float32)[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if channels % 2 == 1:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class ResidualBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, add the projected time embedding, repeat, add the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, time_channels: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_projection = nn.Linear(time_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )
        # conv2 starts at zero, so each block starts out as its shortcut.
        _zero_init(self.conv2)

    def forward(self, x: Tensor, time_embedding: Tensor) -> Tensor:
        h: Tensor = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_projection(time_embedding)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut: Tensor = self.shortcut(x)
        return shortcut + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.projection = nn.Conv2d(channels, channels, 1)
        _zero_init(self.projection)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, channels // self.heads, height * width)
        # (B, heads, pixels, head channels) for each of q, k, v.
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(-1, -2).reshape(batch, channels, height, width)
        projected: Tensor = self.projection(attended)
        return x + projected


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        downsampled: Tensor = self.conv(x)
        return downsampled


class Upsample(nn.Module):
    """Double the resolution by nearest-neighbour repetition, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        upsampled: Tensor = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return upsampled


class UNet(nn.Module):
    """Noise predictor eps_theta(x_t, t) for images of shape (B, in_channels, N, N).

    ``forward(x, t)`` takes integer timesteps of shape (B,) and returns
    (B, out_channels, N, N) in the dtype of ``x``. A conditional model feeds
    its condition as extra input channels.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        groups = config.norm_groups
        time_channels = config.time_embedding_channels
        channels = config.level_channels
        levels = len(channels)

        # 1. Time embedding: sinusoids, then a two-layer MLP (DDPM, appendix B).
        self.time_mlp = nn.Sequential(
            nn.Linear(config.base_channels, time_channels),
            nn.SiLU(),
            nn.Linear(time_channels, time_channels),
        )
        self.input_conv = nn.Conv2d(config.in_channels, config.base_channels, 3, padding=1)

        # 2. Down path. skip_channels records what each block hands to the up path.
        self.down = nn.ModuleList()
        skip_channels = [config.base_channels]
        current = config.base_channels
        for level in range(levels):
            for _ in range(config.num_res_blocks):
                self.down.append(self._level_block(current, channels[level], level))
                current = channels[level]
                skip_channels.append(current)
            if level < levels - 1:
                self.down.append(Downsample(current))
                skip_channels.append(current)

        # 3. Bottleneck at the lowest resolution.
        self.mid_block1 = ResidualBlock(current, current, time_channels, groups, config.dropout)
        self.mid_attention: nn.Module = (
            SelfAttention(current, config.attention_heads, groups) if config.mid_attention else nn.Identity()
        )
        self.mid_block2 = ResidualBlock(current, current, time_channels, groups, config.dropout)

        # 4. Up path: one more block per level than on the way down, each taking one skip.
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(self._level_block(current + skip_channels.pop(), channels[level], level))
                current = channels[level]
            if level > 0:
                self.up.append(Upsample(current))

        # 5. Output head, zero-initialized so that the untrained network predicts eps = 0.
        self.output_norm = nn.GroupNorm(groups, current)
        self.output_conv = nn.Conv2d(current, config.out_channels, 3, padding=1)
        _zero_init(self.output_conv)

    def _level_block(self, in_channels: int, out_channels: int, level: int) -> nn.Module:
        config = self.config
        block = ResidualBlock(
            in_channels, out_channels, config.time_embedding_channels, config.norm_groups, config.dropout
        )
        if level not in config.attention_levels:
            return block
        return _BlockWithAttention(block, SelfAttention(out_channels, config.attention_heads, config.norm_groups))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        config = self.config
        if x.ndim != 4 or x.shape[1] != config.in_channels:
            raise ValueError(f"UNet expects (B, {config.in_channels}, H, W) input, got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"UNet expects one timestep per image, shape ({x.shape[0]},), got {tuple(t.shape)}")
        height, width = x.shape[-2:]

        # 1. Pad to a multiple of size_multiple (zeros, odd pixel at the bottom and right).
        pad_h = -height % config.size_multiple
        pad_w = -width % config.size_multiple
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))

        # On the CPU, oneDNN convolutions run 5-40% faster on channels-last input, which the
        # layers then pass on (measured with benchmarks/bench_unet.py, 2 threads, torch 2.13).
        # NOTE: other devices keep the layout they are given, because channels-last is untested there.
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)

        # 2. Time embedding in the dtype of x.
        time_embedding = self.time_mlp(sinusoidal_embedding(t, config.base_channels).to(x.dtype))

        # 3. Down path, keeping every block's output for the skips.
        h = self.input_conv(x)
        skips = [h]
        for module in self.down:
            h = module(h) if isinstance(module, Downsample) else module(h, time_embedding)
            skips.append(h)

        # 4. Bottleneck.
        h = self.mid_block2(self.mid_attention(self.mid_block1(h, time_embedding)), time_embedding)

        # 5. Up path, concatenating the skips in reverse order.
        for module in self.up:
            if isinstance(module, Upsample):
                h = module(h)
            else:
                h = module(torch.cat([h, skips.pop()], dim=1), time_embedding)

        # 6. Output head, cropped back to the input size.
        out: Tensor = self.output_conv(F.silu(self.output_norm(h)))
        if pad_h or pad_w:
            out = out[..., pad_h // 2 : pad_h // 2 + height, pad_w // 2 : pad_w // 2 + width]
        return out.contiguous()


class _BlockWithAttention(nn.Module):
    """A residual block followed by self-attention."""

    def __init__(self, block: ResidualBlock, attention: SelfAttention) -> None:
        super().__init__()
        self.block = block
        self.attention = attention

    def forward(self, x: Tensor, time_embedding: Tensor) -> Tensor:
        attended: Tensor = self.attention(self.block(x, time_embedding))
        return attended


def _zero_init(conv: nn.Conv2d) -> None:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
