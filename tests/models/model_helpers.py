"""Helpers of the model plugin tests: tiny parameters, image pairs, training and reading loss.csv."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.contracts import Direction, PluginContext, TrainingProgress, TrainingRun
from qcdtool.core.pairs import ImagePairs
from qcdtool.plugins.models.base import DiffusionModel
from qcdtool.plugins.models.ddpm import DDPM
from qcdtool.plugins.models.shift_ddpm import ShiftDDPM

PLUGINS: dict[str, type[DiffusionModel]] = {"ddpm": DDPM, "shift-ddpm": ShiftDDPM}

#: Parameters of a network small enough for tests of a few seconds.
TINY: dict[str, object] = {
    "timesteps": 20,
    "base_channels": 8,
    "channel_multipliers": [1, 2],
    "res_blocks": 1,
    "mid_attention": False,
    "training_steps": 16,
    "batch_size": 32,
    "warmup_steps": 2,
    "log_interval": 2,
    "validation_interval": 4,
    "validation_pairs": 40,
    "checkpoint_interval": 6,
}
SHIFT_EXTRAS: dict[str, object] = {"shift_width": 8, "shift_depth": 1}


def make_model(plugin: str, **overrides: object) -> DiffusionModel:
    """Build a plugin with the tiny parameters and ``overrides``."""
    cls = PLUGINS[plugin]
    values = {**TINY, **(SHIFT_EXTRAS if plugin == "shift-ddpm" else {}), **overrides}
    return cls(cls.Params.model_validate(values), PluginContext())


def pairs_of(dataset: Path, rows: NDArray[np.int64], direction: str = "inverse") -> ImagePairs:
    """Return the eta-phi image pairs of these rows in this direction."""
    return ImagePairs(dataset, "eta-phi", Direction(direction), rows)


def train(
    model: DiffusionModel,
    train_pairs: ImagePairs,
    validation_pairs: ImagePairs,
    folder: Path,
    *,
    seed: int = 7,
    resume: bool = False,
    on_progress: Callable[[TrainingProgress], None] | None = None,
) -> dict[str, float]:
    """Fit ``model`` on the CPU into ``folder``."""
    run = TrainingRun(folder=folder, seed=seed, device="cpu", resume=resume, on_progress=on_progress)
    return model.fit(train_pairs, validation_pairs, run)


def loss_rows(
    folder: Path, columns: tuple[str, ...] = ("step", "loss", "validation_loss", "learning_rate")
) -> list[tuple[str, ...]]:
    """Return the given columns of every line of a model folder's loss.csv, as written."""
    with (folder / "loss.csv").open(newline="") as file:
        return [tuple(row[column] for column in columns) for row in csv.DictReader(file)]
