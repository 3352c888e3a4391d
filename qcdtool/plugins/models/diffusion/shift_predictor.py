"""The shift predictor E(c) of Shift-DDPM: a small convolutional network from condition to target image."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ShiftPredictor(nn.Module):
    """Map a condition image (B, in_channels, N, N) to E(c) of shape (B, out_channels, N, N).

    A 3x3 stem convolution is followed by ``depth`` residual blocks
    (GroupNorm, SiLU, 3x3 convolution) whose dilations double from block to
    block (1, 2, 4, ...), and by a GroupNorm, SiLU, 3x3 output convolution.
    The convolutions thus see 3 + 2 * 2**depth pixels (35 for depth 4) with
    only depth + 2 layers, and GroupNorm adds statistics of the whole image. Every
    convolution keeps the image size, odd sizes included. The output
    convolution starts at zero, so E(c) = 0 and a fresh Shift-DDPM is a
    plain DDPM until training moves it.
    """

    def __init__(
        self, in_channels: int, out_channels: int, width: int = 32, depth: int = 4, norm_groups: int = 8
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, width) < 1 or depth < 0:
            raise ValueError(
                f"ShiftPredictor needs channel counts >= 1 and depth >= 0, got in_channels={in_channels}, "
                f"out_channels={out_channels}, width={width}, depth={depth}"
            )
        if width % norm_groups != 0:
            raise ValueError(f"ShiftPredictor norm_groups={norm_groups} must divide width={width}")
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.norms = nn.ModuleList(nn.GroupNorm(norm_groups, width) for _ in range(depth))
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=2**i, dilation=2**i) for i in range(depth))
        self.output_norm = nn.GroupNorm(norm_groups, width)
        self.output_conv = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(self.output_conv.weight)
        if self.output_conv.bias is not None:
            nn.init.zeros_(self.output_conv.bias)

    def forward(self, c: Tensor) -> Tensor:
        h = self.stem(c)
        for norm, conv in zip(self.norms, self.convs, strict=True):
            h = h + conv(F.silu(norm(h)))
        shift: Tensor = self.output_conv(F.silu(self.output_norm(h)))
        return shift
