"""Training and loading of the diffusion model plugins: the loop, loss.csv, checkpoints, resume.

Every random choice comes from a seed derived from ``TrainingRun.seed``:
network initialization and dropout from torch's global generator, timesteps
and noise from a ``torch.Generator``, and the batch order from a numpy
``Generator``. A checkpoint stores all three states and the position in the
batch order, so on the CPU a resumed run repeats the losses and weights of
an uninterrupted one exactly.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from qcdtool import __version__
from qcdtool.core.contracts import TrainingProgress, TrainingRun
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.pairs import ImagePairs
from qcdtool.core.seeds import derive_seed
from qcdtool.plugins.models.base import RUNTIME_PARAMS, DiffusionParams
from qcdtool.plugins.models.diffusion.checkpoint import (
    check_params,
    check_shapes,
    checkpoint_path,
    read_checkpoint,
    save_checkpoint,
)
from qcdtool.plugins.models.diffusion.denoisers import Denoiser, noise_schedule, with_autocast
from qcdtool.plugins.models.diffusion.schedules import NoiseSchedule
from qcdtool.plugins.models.diffusion.training import EMA, WarmupLR, diffusion_loss, make_adamw, training_step
from qcdtool.plugins.models.diffusion.transform import IntensityTransform

if TYPE_CHECKING:
    from qcdtool.plugins.models.base import DiffusionModel

log = logging.getLogger(__name__)

LOSS_FILE = "loss.csv"
LOSS_COLUMNS = ("step", "loss", "validation_loss", "learning_rate", "images_per_second")
#: Parameters that change neither the weights nor the losses, so a checkpoint may differ in them.
RUNTIME_KEYS = RUNTIME_PARAMS
#: Parameters of the optimization only, which sampling a checkpoint does not depend on.
OPTIMIZATION_KEYS = frozenset(
    {
        "training_steps",
        "batch_size",
        "learning_rate",
        "warmup_steps",
        "lr_decay",
        "weight_decay",
        "gradient_clip",
        "ema_decay",
    }
)
Shape = tuple[int, int, int]


@dataclass(frozen=True)
class TrainedModel:
    """The averaged network in eval mode, its schedule and the intensity transform: all that sampling needs."""

    plugin: str
    denoiser: Denoiser
    schedule: NoiseSchedule
    transform: IntensityTransform
    condition_shape: Shape
    target_shape: Shape
    device: torch.device
    sample_batch_size: int


# --------------------------------------------------------------------------
# Training


def train_model(
    model: DiffusionModel, train: ImagePairs, validation: ImagePairs, run: TrainingRun
) -> tuple[TrainedModel, dict[str, float]]:
    """Train ``model`` on ``train`` as its parameters specify and return it ready to sample, with a summary.

    Writes ``loss.csv`` and ``checkpoint.pt`` to ``run.folder``. With
    ``run.resume`` and a checkpoint there, training continues from it. Lines of
    loss.csv after the checkpoint's step are dropped and written again.
    """
    params = model.diffusion_params
    device = torch.device(run.device)
    condition_shape, target_shape = image_shapes(train)
    run.folder.mkdir(parents=True, exist_ok=True)

    # 1. The checkpoint to resume from, if any, and the intensity transform.
    checkpoint: dict[str, Any] | None = None
    if run.resume and checkpoint_path(run.folder).exists():
        checkpoint = read_checkpoint(run.folder, model.name, device)
        check_shapes(checkpoint, checkpoint_path(run.folder), condition_shape, target_shape)
        check_params(checkpoint, checkpoint_path(run.folder), model.checkpoint_params(), ignored=RUNTIME_KEYS)
        transform = IntensityTransform.from_state(checkpoint["transform"])
        log.info("resuming %s from step %d of %s", model.name, checkpoint["step"], checkpoint_path(run.folder))
    else:
        transform = IntensityTransform.fit(params.intensity_transform, train, params.log_floor)

    # 2. Networks, optimizer and generators, all seeded. A checkpoint then overwrites their state.
    torch.manual_seed(derive_seed(run.seed, "init"))
    denoiser = model.build_denoiser(condition_shape, target_shape).to(device)
    optimizer = make_adamw(denoiser, lr=params.learning_rate, weight_decay=params.weight_decay)
    state = TrainingState(
        denoiser=denoiser,
        ema=EMA(denoiser, decay=params.ema_decay),
        optimizer=optimizer,
        lr_scheduler=WarmupLR(
            optimizer, params.warmup_steps, after_warmup=params.lr_decay, total_steps=params.training_steps
        ),
        noise=torch.Generator(device).manual_seed(derive_seed(run.seed, "noise")),
        order=BatchOrder(train, params.batch_size, derive_seed(run.seed, "batches")),
        window=LossWindow(),
    )
    if checkpoint is not None:
        state.restore(checkpoint)
    if params.compile:
        compile_networks(denoiser, device)

    # 3. The fixed validation subset and the loss file.
    validation_set = ValidationSet.draw(validation, params.validation_pairs, transform, device, run.seed)
    losses = LossLog(run.folder / LOSS_FILE, keep_until=state.step if checkpoint is not None else None)
    schedule = noise_schedule(params).to(device)

    # 4. The loop.
    started, images_trained = time.perf_counter(), 0
    while state.step < params.training_steps:
        condition, target = state.order.next_batch()
        result = train_one_batch(state, schedule, transform, condition, target, params, device)
        state.step += 1
        images_trained += len(condition)
        state.window.add(result, len(condition))
        step = state.step
        last = step == params.training_steps

        validation_loss = None
        if validation_set is not None and (step % params.validation_interval == 0 or last):
            validation_loss = validation_set.loss(denoiser, schedule, params.batch_size)
        row = None
        if step % params.log_interval == 0 or validation_loss is not None or last:
            row = state.window.close(step, validation_loss)
            losses.append(row)
        if step % params.checkpoint_interval == 0 or last:
            save_checkpoint(run.folder, state.to_checkpoint(model, transform, condition_shape, target_shape))
        if row is not None and run.on_progress is not None:
            run.on_progress(TrainingProgress(step, params.training_steps, row.loss, row.images_per_second))

    # 5. The summary, read back from loss.csv so that a resumed run reports the same.
    elapsed = time.perf_counter() - started
    summary = losses.summary()
    summary["parameters"] = float(sum(p.numel() for p in denoiser.parameters()))
    if images_trained > 0 and elapsed > 0.0:
        summary["images_per_second"] = images_trained / elapsed
    averaged = state.ema.module
    if not isinstance(averaged, Denoiser):
        raise TypeError(f"the EMA copy of a Denoiser is a {type(averaged).__name__}")
    trained = TrainedModel(
        plugin=model.name,
        denoiser=averaged,
        schedule=schedule,
        transform=transform,
        condition_shape=condition_shape,
        target_shape=target_shape,
        device=device,
        sample_batch_size=params.sample_batch_size,
    )
    return trained, summary


def train_one_batch(
    state: TrainingState,
    schedule: NoiseSchedule,
    transform: IntensityTransform,
    condition: NDArray[np.float32],
    target: NDArray[np.float32],
    params: DiffusionParams,
    device: torch.device,
) -> TrainingStepSummary:
    """Run one optimizer step on a batch of stored images (transformed here)."""
    c = transform.condition_forward(torch.from_numpy(condition).to(device))
    x_0 = transform.target_forward(torch.from_numpy(target).to(device))
    with autocast(device):
        shift = state.denoiser.shift(c)
    eps_model = with_autocast(state.denoiser.eps_model(c, shift), device)
    result = training_step(
        eps_model,
        schedule,
        x_0,
        state.optimizer,
        shift=shift,
        generator=state.noise,
        lr_scheduler=state.lr_scheduler,
        max_grad_norm=params.gradient_clip if params.gradient_clip > 0.0 else None,
        ema=state.ema,
    )
    return TrainingStepSummary(loss=result.loss, learning_rate=result.lr)


@dataclass(frozen=True)
class TrainingStepSummary:
    """Loss and learning rate of one step."""

    loss: float
    learning_rate: float


@dataclass
class TrainingState:
    """Everything that changes during training and goes into a checkpoint."""

    denoiser: Denoiser
    ema: EMA
    optimizer: torch.optim.Optimizer
    lr_scheduler: WarmupLR
    #: Timesteps and noise of the loss.
    noise: torch.Generator
    order: BatchOrder
    window: LossWindow
    step: int = 0

    def to_checkpoint(
        self, model: DiffusionModel, transform: IntensityTransform, condition_shape: Shape, target_shape: Shape
    ) -> dict[str, Any]:
        """Return the checkpoint dict (without the format keys, which save_checkpoint adds)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "noise": self.noise.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "plugin": model.name,
            "qcdtool_version": __version__,
            "torch_version": str(torch.__version__),
            "condition_shape": list(condition_shape),
            "target_shape": list(target_shape),
            "params": model.checkpoint_params(),
            "transform": transform.to_state(),
            "step": self.step,
            "weights": self.denoiser.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "rng": rng,
            "data_order": self.order.state(),
            "loss_window": self.window.state(),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Load every state that :meth:`to_checkpoint` wrote."""
        self.denoiser.load_state_dict(checkpoint["weights"])
        self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        rng = checkpoint["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
        self.noise.set_state(rng["noise"].cpu())
        self.order.restore(checkpoint["data_order"])
        self.window.restore(checkpoint["loss_window"])
        self.step = int(checkpoint["step"])


def compile_networks(denoiser: Denoiser, device: torch.device) -> None:
    """Compile the denoiser's networks in place with torch.compile on cuda, and elsewhere log that it is skipped.

    ``nn.Module.compile`` keeps the parameter names, so checkpoints of
    compiled and plain networks are interchangeable.
    """
    if device.type != "cuda":
        log.info("compile = true has no effect on device %s; torch.compile is used on cuda only", device)
        return
    for module in denoiser.children():
        module.compile()


def autocast(device: torch.device) -> AbstractContextManager[Any]:
    """Return bfloat16 autocast on cuda, and a context that does nothing elsewhere."""
    # NOTE: the cuda path (autocast, compilation, cuda generator states) has not run on a GPU yet.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def image_shapes(pairs: ImagePairs) -> tuple[Shape, Shape]:
    """Return the (C, H, W) of condition and target images, which must share H and W."""
    condition, target = pairs.shapes
    if len(condition) != 3 or len(target) != 3:
        raise QcdtoolError(f"images of imager '{pairs.label}' are not (n, C, H, W) arrays")
    if condition[1:] != target[1:]:
        raise QcdtoolError(
            f"condition images {condition} and target images {target} of imager '{pairs.label}' differ in "
            "height or width; the diffusion models need both levels on the same pixel grid"
        )
    return (condition[0], condition[1], condition[2]), (target[0], target[1], target[2])


# --------------------------------------------------------------------------
# Batch order, validation and the loss file


class BatchOrder:
    """Shuffled minibatches of the training pairs, epoch after epoch, at a position a checkpoint can restore.

    The position is the numpy generator's state at the start of the current
    epoch and the number of batches drawn in it. Restoring replays that
    many batches from the same state, which reads them again but reproduces
    the order exactly.
    """

    def __init__(self, pairs: ImagePairs, batch_size: int, seed: int) -> None:
        self.pairs = pairs
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        # ImagePairs.batches draws lazily, so this is the state before any draw of the epoch.
        self.epoch_state: dict[str, Any] = copy.deepcopy(dict(self.rng.bit_generator.state))
        self.batches_done = 0
        self._batches: Iterator[tuple[NDArray[np.float32], NDArray[np.float32]]] = self.pairs.batches(
            self.batch_size, self.rng
        )

    def next_batch(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Return the next (conditions, targets), starting a new epoch when one ends."""
        for _ in range(2):
            batch = next(self._batches, None)
            if batch is not None:
                self.batches_done += 1
                return batch
            self.epoch += 1
            self._start_epoch()
        raise RuntimeError(f"an epoch of {len(self.pairs)} training pairs yielded no batch")

    def state(self) -> dict[str, Any]:
        """Return the position: epoch, the generator's state at its start, batches drawn since."""
        return {"epoch": self.epoch, "epoch_rng_state": self.epoch_state, "batches_done": self.batches_done}

    def restore(self, state: dict[str, Any]) -> None:
        """Move to the position that :meth:`state` returned."""
        self.rng.bit_generator.state = copy.deepcopy(state["epoch_rng_state"])
        self.epoch = int(state["epoch"])
        self._start_epoch()
        for _ in range(int(state["batches_done"])):
            next(self._batches)
        self.batches_done = int(state["batches_done"])


@dataclass
class LossRow:
    """One line of loss.csv."""

    step: int
    loss: float
    validation_loss: float | None
    learning_rate: float
    images_per_second: float

    def cells(self) -> list[str]:
        validation = "" if self.validation_loss is None else f"{self.validation_loss:.10g}"
        return [
            str(self.step),
            f"{self.loss:.10g}",
            validation,
            f"{self.learning_rate:.10g}",
            f"{self.images_per_second:.1f}",
        ]


class LossWindow:
    """Losses of the steps since the last line of loss.csv."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.steps = 0
        self.images = 0
        self.learning_rate = math.nan
        self.started = time.perf_counter()

    def add(self, result: TrainingStepSummary, images: int) -> None:
        self.loss_sum += result.loss
        self.steps += 1
        self.images += images
        self.learning_rate = result.learning_rate

    def close(self, step: int, validation_loss: float | None) -> LossRow:
        """Return the line for ``step`` (mean loss of the window, last learning rate) and start a new window."""
        now = time.perf_counter()
        seconds = now - self.started
        row = LossRow(
            step=step,
            loss=self.loss_sum / max(self.steps, 1),
            validation_loss=validation_loss,
            learning_rate=self.learning_rate,
            images_per_second=self.images / seconds if seconds > 0.0 else math.nan,
        )
        self.loss_sum, self.steps, self.images, self.started = 0.0, 0, 0, now
        return row

    def state(self) -> dict[str, Any]:
        return {
            "loss_sum": self.loss_sum,
            "steps": self.steps,
            "images": self.images,
            "learning_rate": self.learning_rate,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.loss_sum = float(state["loss_sum"])
        self.steps = int(state["steps"])
        self.images = int(state["images"])
        self.learning_rate = float(state["learning_rate"])
        self.started = time.perf_counter()


class LossLog:
    """loss.csv: a header, then one line per logged step, appended and flushed as training goes.

    With ``keep_until`` None the file starts empty. With a step, the lines of
    an existing file up to that step are kept, as a resumed run needs.
    """

    def __init__(self, path: Path, keep_until: int | None) -> None:
        self.path = path
        kept: list[list[str]] = []
        if keep_until is not None and path.exists():
            with path.open(newline="") as file:
                rows = list(csv.reader(file))
            if rows and tuple(rows[0]) == LOSS_COLUMNS:
                kept = [row for row in rows[1:] if row and int(row[0]) <= keep_until]
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(LOSS_COLUMNS)
            writer.writerows(kept)
        os.replace(temporary, path)

    def append(self, row: LossRow) -> None:
        """Add one line and flush it to disk."""
        with self.path.open("a", newline="") as file:
            csv.writer(file).writerow(row.cells())

    def summary(self) -> dict[str, float]:
        """Return the last line's step and loss and the last validation loss in the file."""
        with self.path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        if not rows:
            return {}
        summary = {"steps": float(rows[-1]["step"]), "loss": float(rows[-1]["loss"])}
        validated = [row["validation_loss"] for row in rows if row["validation_loss"]]
        if validated:
            summary["validation_loss"] = float(validated[-1])
        return summary


class ValidationSet:
    """A fixed random subset of the validation pairs, transformed and kept on the device.

    Its loss draws timesteps and noise from a generator reseeded at every
    evaluation, so losses at different steps differ only by the weights.
    """

    def __init__(self, condition: Tensor, target: Tensor, seed: int) -> None:
        self.condition = condition
        self.target = target
        self.seed = seed

    @classmethod
    def draw(
        cls, pairs: ImagePairs, size: int, transform: IntensityTransform, device: torch.device, run_seed: int
    ) -> ValidationSet | None:
        """Draw ``size`` pairs (all if fewer) with a seed derived from ``run_seed``, or return None for none."""
        if size == 0 or len(pairs) == 0:
            return None
        rng = np.random.default_rng(derive_seed(run_seed, "validation-subset"))
        chosen = np.sort(rng.choice(len(pairs), size=min(size, len(pairs)), replace=False))
        subset = ImagePairs(pairs.path, pairs.label, pairs.direction, pairs.rows[chosen])
        condition, target = subset.read()
        return cls(
            transform.condition_forward(torch.from_numpy(condition).to(device)),
            transform.target_forward(torch.from_numpy(target).to(device)),
            derive_seed(run_seed, "validation-noise"),
        )

    @torch.no_grad()
    def loss(self, denoiser: Denoiser, schedule: NoiseSchedule, batch_size: int) -> float:
        """Return the mean loss of the denoiser (in eval mode) over the subset."""
        device = self.target.device
        generator = torch.Generator(device).manual_seed(self.seed)
        denoiser.eval()
        total = 0.0
        try:
            for start in range(0, len(self.target), batch_size):
                c = self.condition[start : start + batch_size]
                x_0 = self.target[start : start + batch_size]
                with autocast(device):
                    shift = denoiser.shift(c)
                eps_model = with_autocast(denoiser.eps_model(c, shift), device)
                loss = diffusion_loss(eps_model, schedule, x_0, shift=shift, generator=generator)
                total += float(loss) * len(x_0)
        finally:
            denoiser.train()
        return total / len(self.target)


# --------------------------------------------------------------------------
# Loading for sampling


def load_trained(model: DiffusionModel, folder: Path, device: str) -> TrainedModel:
    """Read the checkpoint in ``folder`` and return its EMA network, ready to sample on ``device``."""
    params = model.diffusion_params
    target_device = torch.device(device)
    checkpoint = read_checkpoint(folder, model.name, target_device)
    path = checkpoint_path(folder)
    check_params(checkpoint, path, model.checkpoint_params(), ignored=RUNTIME_KEYS | OPTIMIZATION_KEYS)
    condition_shape = _shape(checkpoint["condition_shape"])
    target_shape = _shape(checkpoint["target_shape"])

    denoiser = model.build_denoiser(condition_shape, target_shape)
    denoiser.load_state_dict(checkpoint["ema"]["module"])
    denoiser = denoiser.to(target_device).eval().requires_grad_(False)
    if params.compile:
        compile_networks(denoiser, target_device)
    return TrainedModel(
        plugin=model.name,
        denoiser=denoiser,
        schedule=noise_schedule(params).to(target_device),
        transform=IntensityTransform.from_state(checkpoint["transform"]),
        condition_shape=condition_shape,
        target_shape=target_shape,
        device=target_device,
        sample_batch_size=params.sample_batch_size,
    )


def _shape(values: list[int]) -> Shape:
    channels, height, width = (int(value) for value in values)
    return channels, height, width
