"""The checkpoint file of the diffusion model plugins: writing, reading and checking it.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which refuses to build arbitrary Python objects. Its keys
(docs/models.md lists them):

    format, format_version, plugin, qcdtool_version, torch_version,
    condition_shape, target_shape, params, transform, step,
    weights, ema, optimizer, lr_scheduler, rng, data_order, loss_window

It is written to a temporary name and then renamed, so an interruption
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from qcdtool.core.errors import QcdtoolError

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "qcdtool-diffusion-checkpoint"
#: Raised whenever a key is added, removed or changes meaning.
CHECKPOINT_FORMAT_VERSION = 1


def checkpoint_path(folder: Path) -> Path:
    """Return the path of the checkpoint in a model folder."""
    return folder / CHECKPOINT_FILE


def save_checkpoint(folder: Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``folder/checkpoint.pt`` atomically, adding the format keys."""
    path = checkpoint_path(folder)
    temporary = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION, **checkpoint}, temporary)
    os.replace(temporary, path)
    return path


def read_checkpoint(folder: Path, plugin: str, device: torch.device) -> dict[str, Any]:
    """Read and check the checkpoint in ``folder``, with its tensors on ``device``.

    Raises a QcdtoolError for a missing or unreadable file, a file of another
    format, a newer format version or a checkpoint of another plugin.
    """
    path = checkpoint_path(folder)
    if not path.exists():
        raise QcdtoolError(f"no checkpoint {path}; train the model first with 'qcdtool train SPEC'")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise QcdtoolError(f"cannot read the checkpoint {path}: {exc}") from exc

    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise QcdtoolError(f"{path} is not a qcdtool diffusion checkpoint")
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise QcdtoolError(
            f"{path} has checkpoint format version {version}, newer than the version {CHECKPOINT_FORMAT_VERSION} "
            "that this qcdtool reads; update qcdtool to use it"
        )
    if checkpoint.get("plugin") != plugin:
        raise QcdtoolError(
            f"{path} is a checkpoint of model plugin '{checkpoint.get('plugin')}', not of '{plugin}'; "
            "give each model its own label, or remove the folder and train again"
        )
    return checkpoint


def check_shapes(
    checkpoint: dict[str, Any],
    path: Path,
    condition_shape: tuple[int, ...] | None,
    target_shape: tuple[int, ...] | None,
) -> None:
    """Raise a QcdtoolError when the images given differ in shape (C, H, W) from the checkpoint's."""
    for level, given in (("condition", condition_shape), ("target", target_shape)):
        trained = tuple(checkpoint[f"{level}_shape"])
        if given is not None and tuple(given) != trained:
            raise QcdtoolError(
                f"{path} was trained on {level} images of shape {trained} (C, H, W), but the images given "
                f"have shape {tuple(given)}; train a model for these images"
            )


def check_params(
    checkpoint: dict[str, Any], path: Path, params: dict[str, Any], ignored: frozenset[str] = frozenset()
) -> None:
    """Raise a QcdtoolError naming every parameter outside ``ignored`` that differs from the checkpoint's."""
    stored: dict[str, Any] = checkpoint["params"]
    changed = [
        f"{key} = {stored.get(key)!r} in the checkpoint, {params.get(key)!r} now"
        for key in sorted((set(stored) | set(params)) - ignored)
        if stored.get(key) != params.get(key)
    ]
    if changed:
        raise QcdtoolError(
            f"{path} was trained with other parameters: {'; '.join(changed)}. Restore them, or remove the "
            "folder and train again"
        )
