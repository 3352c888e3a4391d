"""The train and sample stages: models learn from a dataset's image pairs and draw samples.

Files in the run folder::

    models/<label>/            the model's checkpoints and loss.csv (written by the model)
    models/<label>/training.json   the core's record: spec hash, status, summary
    models/<label>/loss.png    the loss curve, drawn from loss.csv
    samples/<label>.h5         conditions, truths, labels and generated images of the test set
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from qcdtool import __version__
from qcdtool.core.contracts import Direction, Model, TrainingProgress, TrainingRun
from qcdtool.core.dataset import TEMPORARY_SUFFIX, Dataset
from qcdtool.core.device import resolve_device
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.pairs import ImagePairs, levels
from qcdtool.core.seeds import derive_seed
from qcdtool.core.spec import PluginSpec, RunSpec
from qcdtool.core.split import SplitSettings, split_rows

log = logging.getLogger(__name__)

SAMPLES_FORMAT = "qcdtool-samples"
SAMPLES_FORMAT_VERSION = 1
#: Conditions handed to a model's ``sample`` at a time.
SAMPLE_CHUNK = 256


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling choices of one command; None takes the spec's [sampling] value."""

    sampler: str | None = None
    steps: int | None = None
    per_condition: int | None = None
    max_conditions: int | None = None


def model_dir(spec: RunSpec, label: str) -> Path:
    """Folder of one model's checkpoints and loss history."""
    return spec.run_dir / "models" / label


def samples_path(spec: RunSpec, label: str) -> Path:
    """Samples file of one model."""
    return spec.run_dir / "samples" / f"{label}.h5"


def dataset_file(spec: RunSpec) -> Path:
    """Return the path of the dataset file the run reads ([run] dataset, or the run folder's dataset.h5)."""
    return spec.dataset_path


def events_identity(spec: RunSpec) -> str:
    """Hash of the events the run's models learn from.

    For a dataset the run generates, it follows from the spec (seed,
    [generator], [jets]), so that a deleted dataset made again from the
    same spec keeps its models current. A dataset made elsewhere carries
    the hash of the spec that made it.
    """
    from qcdtool.core.generate import events_hash

    if not spec.external_dataset:
        return events_hash(spec, None)
    path = spec.dataset_path
    if not path.exists():
        raise QcdtoolError(f"the dataset file {path} named by [run] dataset does not exist")
    with Dataset(path) as dataset:
        return str(dataset.attrs.get("events_hash", ""))


def find_model(spec: RunSpec, label: str | None) -> list[PluginSpec]:
    """Return the model tables with this label (all of them for None)."""
    if label is None:
        return list(spec.models)
    chosen = [model for model in spec.models if model.label == label]
    if not chosen:
        labels = ", ".join(model.label for model in spec.models) or "none"
        raise QcdtoolError(f"the spec has no model labelled '{label}'; its models: {labels}")
    return chosen


def direction_of(model: PluginSpec) -> Direction:
    """Return the direction parameter of a model table."""
    return Direction(model.params.direction)  # type: ignore[attr-defined]


def model_pairs(spec: RunSpec, model: PluginSpec) -> dict[str, ImagePairs]:
    """Split a model's image pairs into train, validation and test sets as the spec's [split] table sets."""
    path = dataset_file(spec)
    if not path.exists():
        raise QcdtoolError(
            f"{path} does not exist yet; make it with 'qcdtool generate SPEC', "
            "or run every stage with 'qcdtool run SPEC'"
        )
    with Dataset(path) as dataset:
        if not spec.external_dataset and dataset.attrs.get("events_hash") != events_identity(spec):
            from qcdtool.core.generate import events_difference

            raise QcdtoolError(
                f"{path} contains {events_difference(spec, dataset)}; make it again "
                "with 'qcdtool run SPEC' (or remove it and run 'qcdtool generate SPEC')"
            )
        config = dataset.column("config_id")
        hadronization = dataset.column("hadronization")
        if model.imager not in dataset.image_labels:
            raise QcdtoolError(
                f"{path} has no images of imager '{model.imager}', which model '{model.label}' uses; "
                "run 'qcdtool images SPEC --add' or 'qcdtool run SPEC'"
            )
    split = SplitSettings(by=spec.split.by, validation=spec.split.validation, test=spec.split.test)
    rows = split_rows(config, hadronization, split, derive_seed(spec.run.seed, "split"))
    direction = direction_of(model)
    if model.imager is None:
        raise RuntimeError(f"model table {model.path} names no imager after validation")
    return {name: ImagePairs(path, model.imager, direction, indices) for name, indices in rows.items()}


def training_table(model: PluginSpec) -> dict[str, Any]:
    """Return the model's table without the parameters that do not change what training produces."""
    ignored: frozenset[str] = getattr(model.info.cls, "runtime_params", frozenset())
    return {key: value for key, value in model.to_dict().items() if key not in ignored}


def training_hash(spec: RunSpec, model: PluginSpec) -> str:
    """Hash of what decides a model's training: the events, its imager, the split and its table.

    Other imagers of the spec do not enter: adding one leaves the models current.
    """
    imager = spec.imager(model.imager).to_dict() if model.imager is not None else None
    selected = {
        "events": events_identity(spec),
        "imager": imager,
        "split": spec.split.model_dump(mode="json"),
        "model": training_table(model),
        "seed": spec.run.seed,
    }
    return hashlib.sha256(json.dumps(selected, sort_keys=True).encode()).hexdigest()


def out_of_date_reason(record: dict[str, Any], model: PluginSpec) -> str:
    """Say what differs between a trained model's record and the spec's table now."""
    stored = record.get("model")
    if not isinstance(stored, dict):
        return "the spec, the dataset or the split differ"
    current = training_table(model)
    changed = [
        f"{key} = {stored.get(key)!r} then, {current.get(key)!r} now"
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    ]
    return "; ".join(changed) if changed else "the dataset, the split or the run seed differ"


def instantiate(spec: RunSpec, model: PluginSpec) -> Model:
    """Build a model plugin from its table."""
    instance = model.info.cls(model.params, spec.context())
    if not isinstance(instance, Model):
        raise QcdtoolError(f"model plugin '{model.plugin}' does not subclass the Model contract")
    return instance


# --------------------------------------------------------------------------
# Training


def read_training_record(folder: Path) -> dict[str, Any]:
    """Read the core's record of a model's training, or return an empty dict."""
    record = folder / "training.json"
    return json.loads(record.read_text()) if record.exists() else {}


def train_model(
    spec: RunSpec,
    model: PluginSpec,
    resume: bool = False,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    replace_stale: bool = False,
    force: bool = False,
) -> str:
    """Train one model, or resume or skip it; return a summary line.

    A model folder trained with other settings is an error, unless
    ``replace_stale`` is set: then it is removed and the model trained
    again. ``force`` trains again from scratch even a current model.
    """
    folder = model_dir(spec, model.label)
    digest = training_hash(spec, model)
    record = read_training_record(folder)
    if force or (record and record.get("spec_hash") != digest and replace_stale):
        model_pairs(spec, model)  # a dataset that is missing or stale is an error before a model is removed
    stale = bool(record) and record.get("spec_hash") != digest
    if record and (force or (stale and replace_stale)):
        why = "as asked" if force and not stale else f"its settings changed ({out_of_date_reason(record, model)})"
        log.warning("training model %s again from scratch: %s", model.label, why)
        shutil.rmtree(folder)
        record = {}
    if record:
        if record.get("spec_hash") != digest:
            raise QcdtoolError(
                f"{folder} contains model {model.label} trained with other settings "
                f"({out_of_date_reason(record, model)}); restore them, give the model another label, "
                "or pass --force to train it again ('qcdtool run SPEC' does that by itself)"
            )
        if record.get("status") == "complete":
            return f"model {model.label} is trained and current ({_summary_text(record.get('summary', {}))})"
        if not resume:
            raise QcdtoolError(
                f"the training of model {model.label} in {folder} was interrupted; pass --resume to continue it, "
                "or remove the folder to start again"
            )
    pairs = model_pairs(spec, model)  # fails before anything is written when the dataset is missing
    batch_size = getattr(model.params, "batch_size", None)
    if isinstance(batch_size, int) and batch_size > len(pairs["train"]):
        log.warning(
            "model %s: batch_size %d is larger than the %d training pairs; each step uses all of them",
            model.label,
            batch_size,
            len(pairs["train"]),
        )
    device = resolve_device(spec.run.device)
    folder.mkdir(parents=True, exist_ok=True)
    _write_record(
        folder, {"spec_hash": digest, "status": "training", "plugin": model.plugin, "model": training_table(model)}
    )
    run = TrainingRun(
        folder=folder,
        seed=derive_seed(spec.run.seed, "train", model.label),
        device=device,
        resume=bool(record),
        on_progress=on_progress,
    )
    log.info(
        "training %s (%s, %s) on %d pairs, validating on %d, device %s",
        model.label,
        model.plugin,
        direction_of(model),
        len(pairs["train"]),
        len(pairs["validation"]),
        device,
    )
    summary = instantiate(spec, model).fit(pairs["train"], pairs["validation"], run)
    plot_loss(folder / "loss.csv", folder / "loss.png", title=f"{model.label} ({model.plugin})")
    _write_record(
        folder,
        {
            "spec_hash": digest,
            "status": "complete",
            "plugin": model.plugin,
            "model": training_table(model),
            "summary": summary,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    return f"model {model.label} trained: {_summary_text(summary)}"


def _summary_text(summary: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4g}" for key, value in summary.items())


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    temporary = folder / ("training.json" + TEMPORARY_SUFFIX)
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, folder / "training.json")


def plot_loss(csv_path: Path, output: Path, title: str) -> None:
    """Draw the columns of a loss.csv against its step column (log scale)."""
    if not csv_path.exists():
        log.warning("no %s to plot", csv_path)
        return
    with csv_path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([float(row["step"]) for row in rows])
    figure, axis = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for column in rows[0]:
        if column == "step" or "loss" not in column:
            continue
        values = np.array([float(row[column]) if row[column] not in ("", "nan") else np.nan for row in rows])
        shown = np.isfinite(values)
        axis.plot(steps[shown], values[shown], label=column, marker="." if shown.sum() < 50 else None)
    axis.set_xlabel("training step")
    axis.set_ylabel("loss (mean squared error of the predicted noise)")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.legend()
    figure.savefig(output, dpi=110)
    figure.savefig(output.with_suffix(".pdf"))
    plt.close(figure)


# --------------------------------------------------------------------------
# Sampling


def test_conditions(spec: RunSpec, pairs: ImagePairs, max_conditions: int) -> ImagePairs:
    """Choose the test pairs to sample: at most ``max_conditions`` of them, drawn at random (seeded)."""
    if max_conditions <= 0 or len(pairs) <= max_conditions:
        return pairs
    rng = np.random.default_rng(derive_seed(spec.run.seed, "test-conditions"))
    chosen = np.sort(rng.choice(pairs.rows, size=max_conditions, replace=False))
    return ImagePairs(pairs.path, pairs.label, pairs.direction, chosen)


def sample_model(
    spec: RunSpec,
    model: PluginSpec,
    options: SamplingOptions,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, str]:
    """Sample a trained model on test conditions; write samples/<label>.h5."""
    sampling = spec.sampling
    sampler = options.sampler or sampling.sampler
    # Ancestral DDPM runs every step of the model's chain; a step count means DDIM steps only.
    steps: int | None = options.steps if options.steps is not None else sampling.steps
    if sampler == "ddpm":
        steps = None
    per_condition = options.per_condition or sampling.per_condition
    max_conditions = options.max_conditions if options.max_conditions is not None else sampling.max_conditions

    folder = model_dir(spec, model.label)
    record = read_training_record(folder)
    if record.get("status") != "complete":
        raise QcdtoolError(f"model {model.label} is not trained yet; run 'qcdtool train SPEC --model {model.label}'")
    if record.get("spec_hash") != training_hash(spec, model):
        raise QcdtoolError(
            f"model {model.label} in {folder} was trained with other settings ({out_of_date_reason(record, model)}); "
            "restore them, or remove the folder and train it again"
        )

    device = resolve_device(spec.run.device)
    instance = instantiate(spec, model)
    instance.load(folder, device)
    pairs = test_conditions(spec, model_pairs(spec, model)["test"], max_conditions)
    labels = pairs.labels()
    output = samples_path(spec, model.label)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + TEMPORARY_SUFFIX)
    seed = derive_seed(spec.run.seed, "sample", model.label, sampler, "all" if steps is None else steps)
    n = len(pairs)
    try:
        _write_samples(
            temporary,
            spec,
            model,
            instance,
            pairs,
            labels,
            record,
            sampler,
            steps,
            per_condition,
            max_conditions,
            seed,
            device,
            on_progress,
        )
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, output)
    how = f"{sampler}, {steps} steps" if steps is not None else f"{sampler}, every step of the model's chain"
    return output, f"samples of {model.label}: {n} conditions x {per_condition} ({how}) in {output}"


def _write_samples(
    temporary: Path,
    spec: RunSpec,
    model: PluginSpec,
    instance: Model,
    pairs: ImagePairs,
    labels: dict[str, NDArray[np.generic]],
    record: dict[str, Any],
    sampler: str,
    steps: int | None,
    per_condition: int,
    max_conditions: int,
    seed: int,
    device: str,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """Draw the samples of every condition of ``pairs`` and write them, with truths and labels, to ``temporary``."""
    condition_shape, target_shape = pairs.shapes
    n = len(pairs)
    with h5py.File(temporary, "w") as file:
        attrs = file.attrs
        attrs["format"] = SAMPLES_FORMAT
        attrs["format_version"] = SAMPLES_FORMAT_VERSION
        attrs["qcdtool_version"] = __version__
        attrs["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        attrs["model"] = model.label
        attrs["plugin"] = model.plugin
        attrs["direction"] = str(pairs.direction)
        attrs["condition_level"], attrs["target_level"] = levels(pairs.direction)
        attrs["imager"] = pairs.label
        attrs["sampler"] = sampler
        attrs["steps"] = -1 if steps is None else steps
        attrs["per_condition"] = per_condition
        attrs["seed"] = seed
        attrs["training_hash"] = record["spec_hash"]
        attrs["sampling_hash"] = sampling_hash(record["spec_hash"], sampler, steps, per_condition, max_conditions)
        attrs["spec"] = spec.to_toml()
        file["rows"] = pairs.rows
        for name, values in labels.items():
            file[name] = values
        conditions = file.create_dataset("conditions", (n, *condition_shape), np.float32, compression="lzf")
        truth = file.create_dataset("truth", (n, *target_shape), np.float32, compression="lzf")
        generated = file.create_dataset(
            "generated",
            (n, per_condition, *target_shape),
            np.float32,
            chunks=(min(max(n, 1), 64), per_condition, *target_shape),
            compression="lzf",
        )
        for start in range(0, n, SAMPLE_CHUNK):
            stop = min(start + SAMPLE_CHUNK, n)
            condition, target = pairs.read(start, stop)
            drawn: NDArray[np.float32] = instance.sample(
                condition, per_condition, sampler, steps, derive_seed(seed, start), device
            )
            expected = (stop - start, per_condition, *target_shape)
            if drawn.shape != expected:
                raise RuntimeError(f"model {model.label} returned samples of shape {drawn.shape}, expected {expected}")
            conditions[start:stop] = condition
            truth[start:stop] = target
            generated[start:stop] = drawn
            if on_progress:
                on_progress(stop, n)


# --------------------------------------------------------------------------
# Pipeline stages


def train_stage(context: Any, force: bool = False) -> str:
    """Run the pipeline's train stage: every model of the spec, resuming where one stopped.

    A model trained with other settings is trained again; ``force`` trains every model again.
    """
    on_progress = context.on_progress

    def report(update: TrainingProgress) -> None:
        if on_progress:
            on_progress(update.step, update.total_steps)

    lines = []
    for model in context.spec.models:
        if context.on_stage:
            context.on_stage("train", model.label)
        lines.append(train_model(context.spec, model, resume=True, on_progress=report, replace_stale=True, force=force))
    return "; ".join(lines)


def training_stale(spec: RunSpec) -> str | None:
    """Return the reason some model is not trained as the spec sets it, or None when all are."""
    for model in spec.models:
        record = read_training_record(model_dir(spec, model.label))
        if record.get("status") != "complete":
            return f"model {model.label} is not trained"
        if record.get("spec_hash") != training_hash(spec, model):
            return f"model {model.label} was trained with other settings"
    return None


def sample_stage(context: Any, force: bool = False) -> str:
    """Run the pipeline's sample stage: every model of the spec on its test conditions."""
    lines = []
    for model in context.spec.models:
        path = samples_path(context.spec, model.label)
        if not force and path.exists() and _samples_current(path, context.spec, model):
            lines.append(f"samples of {model.label} are current")
            continue
        if path.exists() and not force:
            log.warning("samples of %s are stale (the model or [sampling] changed); drawing them again", model.label)
        if context.on_stage:
            context.on_stage("sample", model.label)
        lines.append(sample_model(context.spec, model, SamplingOptions(), on_progress=context.on_progress)[1])
    return "; ".join(lines)


def samples_stale(spec: RunSpec) -> str | None:
    """Why some model's samples do not match the spec, or None when all do."""
    for model in spec.models:
        path = samples_path(spec, model.label)
        if not path.exists():
            return f"model {model.label} has no samples"
        if not _samples_current(path, spec, model):
            return f"the samples of model {model.label} are stale"
    return None


def sampling_hash(training: str, sampler: str, steps: int | None, per_condition: int, max_conditions: int) -> str:
    """Hash of what decides a samples file: the trained model and the sampling options."""
    selected = [training, sampler, steps, per_condition, max_conditions]
    return hashlib.sha256(json.dumps(selected).encode()).hexdigest()


def _samples_current(path: Path, spec: RunSpec, model: PluginSpec) -> bool:
    sampling = spec.sampling
    steps = None if sampling.sampler == "ddpm" else sampling.steps
    expected = sampling_hash(
        training_hash(spec, model), sampling.sampler, steps, sampling.per_condition, sampling.max_conditions
    )
    with h5py.File(path, "r") as file:
        return bool(file.attrs.get("sampling_hash") == expected)
