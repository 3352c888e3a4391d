"""The intensity transform of the diffusion model plugins: fitted scales, range, inverse, rejections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import pairs_of
from numpy.typing import NDArray

from qcdtool.core.errors import QcdtoolError
from qcdtool.plugins.models.diffusion.transform import TRANSFORM_KINDS, IntensityTransform

Split = dict[str, NDArray[np.int64]]


@pytest.fixture(scope="module")
def images(dataset: Path, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Hadron (condition) and parton (target) images of the training pairs."""
    condition, target = pairs_of(dataset, split["train"]).read()
    return torch.from_numpy(condition), torch.from_numpy(target)


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_transform_fits_largest_intensity(
    kind: str, dataset: Path, split: Split, images: tuple[torch.Tensor, torch.Tensor]
) -> None:
    transform = IntensityTransform.fit(kind, pairs_of(dataset, split["train"]))  # type: ignore[arg-type]
    assert transform.condition_scale == (float(images[0].max()),)
    assert transform.target_scale == (float(images[1].max()),)


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_transform_range(kind: str, dataset: Path, split: Split, images: tuple[torch.Tensor, torch.Tensor]) -> None:
    transform = IntensityTransform.fit(kind, pairs_of(dataset, split["train"]))  # type: ignore[arg-type]
    y = transform.target_forward(images[1])
    assert float(y.min()) == -1.0
    assert float(y.max()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_transform_inverse(kind: str, dataset: Path, split: Split, images: tuple[torch.Tensor, torch.Tensor]) -> None:
    transform = IntensityTransform.fit(kind, pairs_of(dataset, split["train"]))  # type: ignore[arg-type]
    target = images[1].double()
    assert torch.allclose(transform.target_inverse(transform.target_forward(target)), target, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_transform_inverse_clips_at_zero(kind: str) -> None:
    transform = IntensityTransform(kind=kind, condition_scale=(1.0,), target_scale=(2.0,))  # type: ignore[arg-type]
    x = transform.target_inverse(torch.tensor([-1.5, -1.0, 1.0]).reshape(1, 1, 1, 3))
    assert x.flatten().tolist() == pytest.approx([0.0, 0.0, 2.0])


def test_sqrt_transform_values() -> None:
    transform = IntensityTransform(kind="sqrt", condition_scale=(4.0,), target_scale=(4.0,))
    y = transform.condition_forward(torch.tensor([0.0, 1.0, 4.0]).reshape(1, 1, 1, 3))
    # 2 sqrt(x / 4) - 1 for x = 0, 1, 4.
    assert y.flatten().tolist() == [-1.0, 0.0, 1.0]


def test_log_transform_midpoint() -> None:
    transform = IntensityTransform(kind="log", condition_scale=(1.0,), target_scale=(1.0,), log_floor=0.01)
    # log(1 + x / f) = log(1 + 1 / f) / 2 at x = f (sqrt(1 + 1 / f) - 1), the image of y = 0.
    x = 0.01 * (np.sqrt(101.0) - 1.0)
    y = transform.target_forward(torch.tensor([x], dtype=torch.float64).reshape(1, 1, 1, 1))
    assert float(y) == pytest.approx(0.0, abs=1e-12)


def test_transform_state_round_trip() -> None:
    transform = IntensityTransform(kind="log", condition_scale=(0.5, 2.0), target_scale=(1.5,), log_floor=0.02)
    assert IntensityTransform.from_state(transform.to_state()) == transform


def test_transform_channel_mismatch() -> None:
    transform = IntensityTransform(kind="sqrt", condition_scale=(1.0,), target_scale=(1.0,))
    with pytest.raises(QcdtoolError, match="images with 2 channel"):
        transform.condition_forward(torch.zeros(1, 2, 3, 3))
