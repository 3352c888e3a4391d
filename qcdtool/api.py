"""Python functions for notebooks: load a spec, run it, read its data, sample its models, score samples.

Each function is a thin layer over the core (``qcdtool.core``), as each
command of the ``qcdtool`` CLI is, so both give the same results and raise
the same errors. A mistake the user can fix raises one of qcdtool's own exceptions
(:class:`~qcdtool.core.errors.QcdtoolError` and its subclasses, such as
:class:`~qcdtool.core.errors.SpecError`, which lists every problem of a spec
with its TOML path).

Importing this module imports neither torch nor PYTHIA. The functions that
need them import them when called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import ValidationError

from qcdtool.core import spec as core_spec
from qcdtool.core.contracts import (
    Direction,
    Metric,
    MetricResult,
    Model,
    PluginContext,
    PluginKind,
    References,
    SampleSet,
)
from qcdtool.core.dataset import Dataset
from qcdtool.core.errors import QcdtoolError, SpecError
from qcdtool.core.logs import log_to_file
from qcdtool.core.pairs import ImagePairs, split_pairs
from qcdtool.core.pipeline import LOG_FILE, RunOptions, RunReport, StageContext, prepare_run_dir, run_pipeline
from qcdtool.core.registry import PluginRegistry, create_registry
from qcdtool.core.seeds import derive_seed
from qcdtool.core.spec import PluginSpec, RunSpec
from qcdtool.core.split import SPLITS, SplitSettings

__all__ = [
    "compute_metric",
    "image_pairs",
    "load_model",
    "load_spec",
    "open_dataset",
    "parse_spec",
    "read_samples",
    "run",
    "sample",
    "sample_set",
    "validate_spec",
]

#: A run spec, or the path of its TOML file.
SpecSource = RunSpec | str | PathLike[str]


# --------------------------------------------------------------------------
# Specs


def load_spec(path: str | PathLike[str], *, registry: PluginRegistry | None = None) -> RunSpec:
    """Read and validate the TOML spec file at ``path``; return the validated RunSpec.

    Relative paths in the spec (``[run] output``) are taken from the file's
    folder. Raises SpecError listing every problem, each with its TOML path.
    ``registry`` is the set of installed plugins, discovered anew when None.
    """
    return core_spec.load_spec(Path(path), registry or create_registry())


def parse_spec(
    text: str, *, base_dir: str | PathLike[str] | None = None, registry: PluginRegistry | None = None
) -> RunSpec:
    """Parse and validate spec ``text`` (TOML); return the validated RunSpec.

    Relative paths in the spec are taken from ``base_dir`` (default: the
    current folder). Raises SpecError for invalid TOML and for every problem
    of the spec.
    """
    return core_spec.parse_spec(text, registry or create_registry(), base_dir=_folder(base_dir))


def validate_spec(
    data: Mapping[str, Any],
    *,
    base_dir: str | PathLike[str] | None = None,
    registry: PluginRegistry | None = None,
) -> RunSpec:
    """Validate a spec given as a dict of TOML tables (as ``tomllib.loads`` returns); return the RunSpec.

    ``RunSpec.to_dict()`` gives such a dict of an existing spec, to change
    and validate again. Relative paths are taken from ``base_dir`` (default:
    the current folder). Raises SpecError listing every problem.
    """
    return core_spec.validate_spec(data, registry or create_registry(), base_dir=_folder(base_dir))


def _folder(path: str | PathLike[str] | None) -> Path | None:
    return None if path is None else Path(path)


def _as_spec(spec: SpecSource, registry: PluginRegistry | None = None) -> RunSpec:
    """Return ``spec`` itself, or the spec loaded from the file it names."""
    if isinstance(spec, RunSpec):
        return spec
    return load_spec(spec, registry=registry)


# --------------------------------------------------------------------------
# Running


def run(
    spec: SpecSource,
    *,
    only: str | None = None,
    from_stage: str | None = None,
    force: bool = False,
    workers: int = 1,
    dataset: str | PathLike[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_stage: Callable[[str, str], None] | None = None,
    registry: PluginRegistry | None = None,
    verbosity: int = 0,
) -> RunReport:
    """Run the stages of a spec, as ``qcdtool run`` does; return the RunReport of every stage.

    ``spec`` is a RunSpec or the path of a spec file. ``only`` runs one
    stage, and ``from_stage`` redoes that stage and the ones after it (stage
    names: generate, images, train, sample, evaluate, report). ``force``
    computes results again even when they are current, and lets the spec
    take over a run folder made by another spec file. ``workers`` is the
    number of processes that generate events. ``dataset`` is the path of an
    existing dataset file to use instead of generating one. ``on_progress``
    is called with (done, total) as a long stage advances, and ``on_stage``
    with a stage's name and the model it works on ("" for none) when that
    changes. ``verbosity`` above 0 shows PYTHIA's own output.

    Files go to the run folder ``spec.run_dir``. While the run lasts, its
    ``log.txt`` receives every record of qcdtool's loggers, debug included.
    Handlers of your own on the root logger receive those records too.
    """
    registry = registry or create_registry()
    run_spec = _as_spec(spec, registry)
    options = RunOptions(workers=workers, force=force, from_stage=from_stage, only=only)
    if dataset is not None:
        if not Path(dataset).exists():
            raise QcdtoolError(f"--dataset {dataset}: no such file")
        run_spec = run_spec.with_dataset(Path(dataset))
    run_dir = prepare_run_dir(run_spec, force=force)
    with _debug_log(run_dir / LOG_FILE):
        context = StageContext(
            spec=run_spec,
            registry=registry,
            options=options,
            run_dir=run_dir,
            verbosity=verbosity,
            on_progress=on_progress,
            on_stage=on_stage,
        )
        return run_pipeline(context)


@contextmanager
def _debug_log(path: Path) -> Iterator[None]:
    """Write every record of qcdtool's loggers to ``path`` while inside, as the CLI's ``log.txt`` has them.

    Python's root logger passes only warnings unless configured, so the
    ``qcdtool`` logger is lowered to DEBUG for the duration and restored
    afterwards.
    """
    logger = logging.getLogger("qcdtool")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with log_to_file(path):
            yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------
# Data


def open_dataset(source: SpecSource) -> Dataset:
    """Open a dataset file for reading; return the Dataset (close it, or use it in a ``with`` block).

    ``source`` is the path of a dataset file, or a RunSpec whose run's
    dataset to open. Tables are read lazily: ``dataset.column(name)``,
    ``dataset.images(imager, level)``, ``dataset.jets(level, rows)``.
    Raises DatasetError for a missing, incomplete or foreign file.
    """
    from qcdtool.core.train import dataset_file

    path = dataset_file(source) if isinstance(source, RunSpec) else Path(source)
    return Dataset(path)


def image_pairs(
    spec: SpecSource,
    *,
    model: str | None = None,
    imager: str | None = None,
    direction: Direction | str | None = None,
    split: Literal["train", "validation", "test"] = "train",
    max_pairs: int | None = None,
) -> ImagePairs:
    """Return the (condition, target) image pairs of one split of the run's dataset, read lazily.

    ``model`` names a model of the spec by its label, and the pairs are
    those it trains, validates or tests on. Without a model, ``imager`` (an
    imager label) and ``direction`` (forward: parton to hadron images,
    inverse: hadron to parton) choose them. The split is the spec's
    ``[split]``, the same for every model. ``max_pairs`` keeps that many
    pairs, drawn at random with a seed derived from the run seed. On the
    test split with the spec's ``[sampling] max_conditions``, these are the
    conditions that the sample stage draws from.

    Nothing is read until asked: ``pairs.read(start, stop)`` returns
    conditions and targets as float32 arrays (n, C, H, W) in dataset
    order, and ``pairs.batches(size, rng)`` yields shuffled batches.
    """
    from qcdtool.core.train import dataset_file, find_model, model_pairs, test_conditions

    spec = _as_spec(spec)
    if split not in SPLITS:
        raise QcdtoolError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    if model is not None:
        if imager is not None or direction is not None:
            raise QcdtoolError(
                "pass either model, or imager and direction, not both, because a model's table sets its imager "
                "and direction"
            )
        [table] = find_model(spec, model)
        pairs = model_pairs(spec, table)[split]
    else:
        if imager is None or direction is None:
            raise QcdtoolError(
                "missing arguments: pass a model label, or both an imager label and a direction (forward or inverse)"
            )
        # NOTE: train.model_pairs derives the split settings and seed in the same way, and tests/test_api.py
        # checks that both give the same rows.
        settings = SplitSettings(by=spec.split.by, validation=spec.split.validation, test=spec.split.test)
        seed = derive_seed(spec.run.seed, "split")
        pairs = split_pairs(dataset_file(spec), imager, _direction(direction), settings, seed)[split]
    if max_pairs is not None:
        if max_pairs < 1:
            raise QcdtoolError(f"max_pairs must be >= 1, got {max_pairs}")
        pairs = test_conditions(spec, pairs, max_pairs)
    return pairs


def _direction(value: Direction | str) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        allowed = ", ".join(str(direction) for direction in Direction)
        raise QcdtoolError(f"unknown direction {value!r}; use one of: {allowed}") from None


# --------------------------------------------------------------------------
# Models


def load_model(spec: SpecSource, label: str, device: str = "cpu") -> Model:
    """Load the trained model with this label from the run folder onto ``device``; return the plugin's Model.

    ``device`` is cpu, cuda, mps or auto. Raises QcdtoolError when the model
    is not trained yet, or was trained with other settings than the spec's.
    """
    from qcdtool.core.device import resolve_device
    from qcdtool.core.train import (
        find_model,
        instantiate,
        model_dir,
        out_of_date_reason,
        read_training_record,
        training_hash,
    )

    spec = _as_spec(spec)
    [table] = find_model(spec, label)
    folder = model_dir(spec, table.label)
    # NOTE: train.sample_model checks the training record the same way before it samples.
    record = read_training_record(folder)
    if record.get("status") != "complete":
        raise QcdtoolError(
            f"model {table.label} is not trained yet; train it with run(spec) or 'qcdtool train SPEC --model {label}'"
        )
    if record.get("spec_hash") != training_hash(spec, table):
        raise QcdtoolError(
            f"model {table.label} in {folder} was trained with other settings "
            f"({out_of_date_reason(record, table)}); restore them, or remove the folder and train it again"
        )
    instance = instantiate(spec, table)
    instance.load(folder, resolve_device(device))
    return instance


def sample(
    model: Model,
    conditions: ArrayLike,
    per_condition: int = 4,
    *,
    sampler: Literal["ddim", "ddpm"] = "ddim",
    steps: int | None = None,
    seed: int = 1,
    device: str = "cpu",
) -> NDArray[np.float32]:
    """Draw ``per_condition`` target images for each condition image; return them as (n, K, C, H, W) float32.

    ``conditions`` has shape (n, C, H, W), in the dataset's intensities.
    ``sampler`` is ddim (deterministic, ``steps`` steps) or ddpm (every step
    of the model's chain); ``steps`` None takes the model's default.
    ``device`` must be the one the model was loaded on. The same seed gives
    the same images on the same device.
    """
    from qcdtool.core.device import resolve_device

    array = np.ascontiguousarray(conditions, dtype=np.float32)
    if array.ndim != 4:
        raise QcdtoolError(f"conditions must have shape (n, C, H, W), got shape {array.shape}")
    return model.sample(array, per_condition, sampler, steps, seed, resolve_device(device))


# --------------------------------------------------------------------------
# Samples and metrics


def read_samples(spec: SpecSource, label: str) -> SampleSet:
    """Read the samples file ``samples/<label>.h5`` of a model; return its SampleSet.

    Raises QcdtoolError when the file belongs to another model, spec or
    training of the model.
    """
    from qcdtool.core.evaluate import read_samples as read_model_samples
    from qcdtool.core.train import find_model

    spec = _as_spec(spec)
    [table] = find_model(spec, label)
    return read_model_samples(spec, table).samples


def sample_set(pairs: ImagePairs, generated: ArrayLike, *, model: str, plugin: str = "") -> SampleSet:
    """Bundle generated images with the conditions, truths and labels of ``pairs``; return a SampleSet for metrics.

    ``generated`` has shape (n, K, C, H, W): K images for each of the n
    pairs, in the order of ``pairs``. ``model`` is the label that names the
    samples; when it is a model label of the spec, :func:`compute_metric`
    finds the reference pairs through it. ``plugin`` is the model plugin's
    name, for display.
    """
    from qcdtool.core.evaluate import _plain

    conditions, truth = pairs.read()
    images = np.asarray(generated, dtype=np.float32)
    if images.ndim != 5 or images.shape[0] != len(pairs) or images.shape[2:] != truth.shape[1:]:
        raise QcdtoolError(
            f"generated images must have shape ({len(pairs)}, K, {', '.join(map(str, truth.shape[1:]))}) "
            f"for these {len(pairs)} pairs, got shape {images.shape}"
        )
    with Dataset(pairs.path) as dataset:
        described = dataset.image_attrs(pairs.label)
    return SampleSet(
        model=model,
        plugin=plugin,
        direction=pairs.direction,
        conditions=conditions,
        truth=truth,
        generated=images,
        labels=pairs.labels(),
        image={key: _plain(value) for key, value in described.items()},
    )


def compute_metric(
    metric: str,
    samples: SampleSet,
    references: References | None = None,
    *,
    spec: SpecSource | None = None,
    registry: PluginRegistry | None = None,
    **params: Any,
) -> MetricResult:
    """Score ``samples`` with one metric; return its MetricResult (named values and figures).

    ``metric`` is the label of one of the spec's ``[[metrics]]`` tables, and
    ``params`` override the table's parameters. Without a spec, or when the
    spec has no such label, ``metric`` is the name of a metric plugin and
    ``params`` are its parameters. ``references`` are the true image pairs the metric may compare with.
    When None, they are the train and test pairs of the spec's model named
    ``samples.model``, seeded as the evaluate stage seeds this metric, so
    that a spec's metric on a run's samples gives the values of metrics.json.

    Raises SpecError for invalid parameters and QcdtoolError for a metric
    that does not apply to the samples' direction. Exceptions raised by the
    metric itself are passed on.
    """
    from qcdtool.core.train import find_model, model_pairs

    run_spec = None if spec is None else _as_spec(spec, registry)
    table = _metric_table(metric, run_spec, registry, params)
    context = run_spec.context() if run_spec is not None else PluginContext()
    instance = table.info.cls(table.params, context)
    if not isinstance(instance, Metric):
        raise QcdtoolError(f"metric plugin '{table.plugin}' does not subclass the Metric contract")
    directions = type(instance).directions
    if samples.direction not in directions:
        allowed = " and ".join(sorted(str(direction) for direction in directions))
        raise QcdtoolError(
            f"metric {table.label} applies to {allowed} models only; the samples of {samples.model} "
            f"are {samples.direction}"
        )

    if references is None:
        if run_spec is None:
            raise QcdtoolError(
                "missing references: pass references=References(...), or the spec whose model drew the samples "
                "(spec=...)"
            )
        if samples.model not in {model.label for model in run_spec.models}:
            raise QcdtoolError(
                f"the spec has no model labelled '{samples.model}' whose pairs could serve as references; "
                "pass references=References(train=..., test=..., seed=...)"
            )
        [model] = find_model(run_spec, samples.model)
        pairs = model_pairs(run_spec, model)
        seed = derive_seed(run_spec.run.seed, "evaluate", table.label)
        references = References(train=pairs["train"], test=pairs["test"], seed=seed)
    return instance.compute(samples, references)


def _metric_table(
    metric: str, spec: RunSpec | None, registry: PluginRegistry | None, params: Mapping[str, Any]
) -> PluginSpec:
    """Return the spec's metric table labelled ``metric``, or else a table of the plugin of that name.

    ``params`` override the table's parameters.
    """
    tables = {table.label: table for table in spec.metrics} if spec is not None else {}
    if metric in tables:
        table = tables[metric]
        info = table.info
        # The resolved table's values, as a spec file contains them, are valid input to the Params model.
        values = {key: value for key, value in table.to_dict().items() if key not in core_spec.CORE_KEYS[table.kind]}
    else:
        info = (registry or create_registry()).get(PluginKind.METRIC, metric)
        values = {}
    values.update(params)
    try:
        validated = info.cls.Params.model_validate(values)
    except ValidationError as exc:
        problems = core_spec.problems_from_validation_error(exc, metric, info.cls.Params)
        raise SpecError("compute_metric", problems) from None
    return PluginSpec(kind=PluginKind.METRIC, path=metric, label=metric, info=info, params=validated)
