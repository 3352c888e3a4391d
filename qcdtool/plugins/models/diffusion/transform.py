"""The invertible map between stored pixel intensities and the network's range [-1, 1].

With u = x / s, where s is the largest intensity of the training images of
one level and channel:

    linear   y = 2 u - 1
    sqrt     y = 2 sqrt(u) - 1
    log      y = 2 log(1 + u / f) / log(1 + 1 / f) - 1

All three map [0, s] onto [-1, 1] and increase monotonically, so the inverse
is unique on [-1, 1]. The sqrt and log maps spread the many faint pixels of
a jet image over more of the range than the linear map does. Condition and
target images get their own scales, because they come from different
levels. The scales are fitted once, on the training images, and stored in
the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from qcdtool.core.errors import QcdtoolError
from qcdtool.core.pairs import BLOCK_ROWS, ImagePairs

TransformKind = Literal["sqrt", "log", "linear"]
TRANSFORM_KINDS: tuple[TransformKind, ...] = ("sqrt", "log", "linear")


@dataclass(frozen=True)
class IntensityTransform:
    """One transform kind with the per-channel scales s of the condition and of the target images."""

    kind: TransformKind
    condition_scale: tuple[float, ...]
    target_scale: tuple[float, ...]
    #: f of the log transform, a fraction of s.
    log_floor: float = 1e-3

    @classmethod
    def fit(cls, kind: TransformKind, pairs: ImagePairs, log_floor: float = 1e-3) -> IntensityTransform:
        """Fit the scales to the largest intensity of each channel of the pairs' images.

        Reads the pairs in blocks. Raises a QcdtoolError when a channel is
        empty in every image (no scale exists) or, for sqrt and log, when an
        intensity is negative.
        """
        condition_max: NDArray[np.float64] | None = None
        target_max: NDArray[np.float64] | None = None
        lowest = math.inf
        for start in range(0, len(pairs), BLOCK_ROWS):
            condition, target = pairs.read(start, start + BLOCK_ROWS)
            block_condition = condition.max(axis=(0, 2, 3)).astype(np.float64)
            block_target = target.max(axis=(0, 2, 3)).astype(np.float64)
            condition_max = block_condition if condition_max is None else np.maximum(condition_max, block_condition)
            target_max = block_target if target_max is None else np.maximum(target_max, block_target)
            lowest = min(lowest, float(condition.min()), float(target.min()))
        if condition_max is None or target_max is None:
            raise QcdtoolError(f"no training images in {pairs.path} to fit the intensity transform on")
        if kind != "linear" and lowest < 0.0:
            raise QcdtoolError(
                f"the {kind} intensity transform needs intensities >= 0, but the training images of imager "
                f"'{pairs.label}' contain {lowest:g}; set intensity_transform = 'linear'"
            )
        for level, scales in (("condition", condition_max), ("target", target_max)):
            empty = [channel for channel, scale in enumerate(scales) if not scale > 0.0]
            if empty:
                raise QcdtoolError(
                    f"channel(s) {empty} of the {level} images of imager '{pairs.label}' are zero in every "
                    "training image, so no intensity scale can be fitted; check the imager's settings"
                )
        return cls(
            kind=kind,
            condition_scale=tuple(float(value) for value in condition_max),
            target_scale=tuple(float(value) for value in target_max),
            log_floor=log_floor,
        )

    def to_state(self) -> dict[str, Any]:
        """Plain numbers and strings for a checkpoint."""
        return {
            "kind": self.kind,
            "condition_scale": list(self.condition_scale),
            "target_scale": list(self.target_scale),
            "log_floor": self.log_floor,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> IntensityTransform:
        """Restore what :meth:`to_state` returned."""
        kind = state["kind"]
        if kind not in TRANSFORM_KINDS:
            raise ValueError(f"unknown intensity transform {kind!r}; expected one of {', '.join(TRANSFORM_KINDS)}")
        return cls(
            kind=kind,
            condition_scale=tuple(float(value) for value in state["condition_scale"]),
            target_scale=tuple(float(value) for value in state["target_scale"]),
            log_floor=float(state["log_floor"]),
        )

    def condition_forward(self, x: Tensor) -> Tensor:
        """Map condition images (B, C, H, W) to [-1, 1]."""
        return self._forward(x, self.condition_scale)

    def target_forward(self, x: Tensor) -> Tensor:
        """Map target images (B, C, H, W) to [-1, 1]."""
        return self._forward(x, self.target_scale)

    def target_inverse(self, y: Tensor) -> Tensor:
        """Map network outputs back to target intensities, clipping y to >= -1 so that intensities are >= 0."""
        scale = _per_channel(self.target_scale, y)
        v = ((y + 1.0) / 2.0).clamp(min=0.0)
        if self.kind == "linear":
            return scale * v
        if self.kind == "sqrt":
            return scale * v.square()
        f = self.log_floor
        return scale * f * torch.expm1(v * math.log1p(1.0 / f))

    def _forward(self, x: Tensor, scales: tuple[float, ...]) -> Tensor:
        if x.shape[1] != len(scales):
            raise QcdtoolError(
                f"images with {x.shape[1]} channel(s) given to a model trained on {len(scales)} channel(s)"
            )
        u = x / _per_channel(scales, x)
        if self.kind == "linear":
            return 2.0 * u - 1.0
        if self.kind == "sqrt":
            return 2.0 * u.clamp(min=0.0).sqrt() - 1.0
        f = self.log_floor
        return 2.0 * torch.log1p(u.clamp(min=0.0) / f) / math.log1p(1.0 / f) - 1.0


def _per_channel(scales: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(scales, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)
