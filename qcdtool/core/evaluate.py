"""The evaluate stage: every metric of the spec on every model's samples, then metrics.json and report.html.

Files in the run folder::

    metrics.json     versions, and per model per metric: values with uncertainty,
                     baseline, note, and where the figures are
    figures/<model>/<metric>/<name>.png and .pdf, figures/<model>/samples/...,
    figures/training/loss.png and .pdf
    report.html      one self-contained page (figures embedded), see report.py

A metric runs on a model when its ``directions`` include the model's
direction; otherwise it is listed as skipped, with the reason. A metric that
raises is listed as failed, with its error, and the others still run. The
stage records a hash of everything its output depends on (the resolved spec,
the samples files, the loss histories, the qcdtool version), and a rerun
with the same hash does nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from qcdtool import __version__
from qcdtool.core.contracts import (
    Direction,
    Metric,
    MetricResult,
    MetricValue,
    PluginContext,
    References,
    SampleSet,
)
from qcdtool.core.dataset import TEMPORARY_SUFFIX, Dataset
from qcdtool.core.environment import package_version
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.seeds import derive_seed
from qcdtool.core.spec import PluginSpec, RunSpec
from qcdtool.core.train import (
    SAMPLES_FORMAT,
    SAMPLES_FORMAT_VERSION,
    dataset_file,
    direction_of,
    find_model,
    model_dir,
    model_pairs,
    samples_path,
    training_hash,
)

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
METRICS_FORMAT = "qcdtool-metrics"
METRICS_FORMAT_VERSION = 1
#: Distributions whose versions metrics.json records.
VERSIONED_PACKAGES = ("qcdtool", "torch", "numpy", "scipy", "pot", "matplotlib", "pythia8mc", "fastjet")

#: Called with (steps done, total steps, what runs now).
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class EvaluateOptions:
    """Options of an evaluation: the models to evaluate and whether to recompute current results."""

    #: Labels of the models to evaluate; empty means every model of the spec.
    models: tuple[str, ...] = ()
    force: bool = False


@dataclass
class EvaluationOutcome:
    """Result of an evaluation: the files written, a summary line and the metrics that failed."""

    metrics: Path
    report: Path
    message: str
    failed: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Samples


@dataclass(frozen=True)
class ModelSamples:
    """A model's samples as the metrics receive them, with what the samples file records."""

    model: PluginSpec
    path: Path
    samples: SampleSet
    attrs: dict[str, Any]


def missing_samples_message(spec: RunSpec, models: list[PluginSpec]) -> str:
    """Say which models have no samples file and which command draws them."""
    lines = [
        f"no samples of model '{model.label}' ({samples_path(spec, model.label)}); draw them with "
        f"'qcdtool sample SPEC --model {model.label}'"
        for model in models
    ]
    lines.append("or run every missing stage with 'qcdtool run SPEC'")
    return "\n".join(lines)


def check_samples(spec: RunSpec, model: PluginSpec) -> dict[str, Any]:
    """Check that a model's samples file belongs to this spec and model; return its attributes.

    Reads only the attributes, so that every file can be checked before any
    metric runs.
    """
    path = samples_path(spec, model.label)
    with h5py.File(path, "r") as file:
        attrs = {key: _plain(value) for key, value in file.attrs.items()}
    if attrs.get("format") != SAMPLES_FORMAT:
        raise QcdtoolError(f"{path} is not a qcdtool samples file (its format attribute is {attrs.get('format')!r})")
    if attrs.get("format_version") != SAMPLES_FORMAT_VERSION:
        raise QcdtoolError(
            f"{path} has samples format version {attrs.get('format_version')}; this qcdtool reads version "
            f"{SAMPLES_FORMAT_VERSION}; draw the samples again with 'qcdtool sample SPEC --model {model.label}'"
        )
    if attrs.get("model") != model.label:
        raise QcdtoolError(f"{path} contains samples of model '{attrs.get('model')}', not of '{model.label}'")
    if attrs.get("training_hash") != training_hash(spec, model):
        raise QcdtoolError(
            f"{path} was drawn from model '{model.label}' trained on a different spec, dataset or split; train "
            f"and sample it again ('qcdtool run SPEC', or 'qcdtool sample SPEC --model {model.label}' after "
            "training)"
        )
    if attrs.get("direction") != str(direction_of(model)):
        raise QcdtoolError(
            f"{path} contains {attrs.get('direction')} samples but model '{model.label}' is "
            f"{direction_of(model)} in the spec; sample it again"
        )
    return attrs


def read_samples(spec: RunSpec, model: PluginSpec) -> ModelSamples:
    """Read one model's samples file into a SampleSet, checking that it belongs to this spec."""
    attrs = check_samples(spec, model)
    path = samples_path(spec, model.label)
    with h5py.File(path, "r") as file:
        conditions = np.asarray(file["conditions"], dtype=np.float32)
        truth = np.asarray(file["truth"], dtype=np.float32)
        generated = np.asarray(file["generated"], dtype=np.float32)
        labels = {name: np.asarray(file[name]) for name in ("config_id", "flavour", "hadronization")}
    if model.imager is None:
        raise RuntimeError(f"model table {model.path} names no imager after validation")
    with Dataset(dataset_file(spec)) as dataset:
        described = dataset.image_attrs(model.imager)
    image = {key: _plain(value) for key, value in described.items()}
    samples = SampleSet(
        model=model.label,
        plugin=model.plugin,
        direction=Direction(str(attrs["direction"])),
        conditions=conditions,
        truth=truth,
        generated=generated,
        labels=labels,
        image=image,
    )
    return ModelSamples(model=model, path=path, samples=samples, attrs=attrs)


def _plain(value: Any) -> Any:
    """Turn an HDF5 attribute (numpy scalars and arrays, bytes) into plain Python data."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# --------------------------------------------------------------------------
# Hash of what the output depends on


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def model_evaluation_hash(spec: RunSpec, model: PluginSpec, samples_digest: str) -> str:
    """Hash of everything one model's metric results and figures depend on.

    The samples file records the training and sampling hashes, so its
    digest stands for the model, its data and its sampling. Other models of
    the spec do not enter: changing one model re-evaluates only that one.
    """
    loss = model_dir(spec, model.label) / "loss.csv"
    selected = {
        "samples": samples_digest,
        "loss": file_digest(loss) if loss.exists() else None,
        "model": model.to_dict(),
        "metrics": [metric.to_dict() for metric in spec.metrics],
        "split": spec.split.model_dump(mode="json"),
        "seed": spec.run.seed,
        "qcdtool": __version__,
    }
    return hashlib.sha256(json.dumps(selected, sort_keys=True).encode()).hexdigest()


def evaluation_hash(spec: RunSpec, models: list[PluginSpec], digests: Mapping[str, str]) -> str:
    """Hash of everything metrics.json depends on: each model's evaluation hash, in order."""
    selected = [[model.label, model_evaluation_hash(spec, model, digests[model.label])] for model in models]
    return hashlib.sha256(json.dumps(selected).encode()).hexdigest()


def _count(n: int, noun: str) -> str:
    """Return ``n`` and ``noun`` with the plural s where n is not 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def read_metrics_record(run_dir: Path) -> dict[str, Any]:
    """Read a run's metrics.json; return its content, or an empty dict when it is missing or unreadable."""
    try:
        record = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) and record.get("format") == METRICS_FORMAT else {}


def evaluation_current(spec: RunSpec) -> bool:
    """Return whether metrics.json contains the evaluation of every model of the spec as it is now."""
    models = list(spec.models)
    paths = [samples_path(spec, model.label) for model in models]
    if not models or not all(path.exists() for path in paths):
        return False
    digests = {model.label: file_digest(path) for model, path in zip(models, paths, strict=True)}
    return bool(read_metrics_record(spec.run_dir).get("evaluation_hash") == evaluation_hash(spec, models, digests))


def _reusable(previous: Mapping[str, Any], label: str, digest: str, run_dir: Path) -> dict[str, Any] | None:
    """Return the previous metrics.json entry of a model when its hash matches and its figures exist, else None."""
    entry = previous.get("models", {}).get(label)
    if not isinstance(entry, dict) or entry.get("evaluation_hash") != digest:
        return None
    if not (run_dir / FIGURES_DIR / _file_name(label)).is_dir():
        return None
    return entry


def _number(value: float | None) -> float | None:
    """Convert to a float for JSON, with NaN and infinities as null."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def value_record(value: MetricValue) -> dict[str, Any]:
    """Convert one metric value to its metrics.json form."""
    return {
        "value": _number(value.value),
        "uncertainty": _number(value.uncertainty),
        "baseline": _number(value.baseline),
        "note": value.note,
        "better": value.better,
    }


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "figure"


def save_figure(figure: Any, root: Path, folder: Path, name: str) -> dict[str, str]:
    """Save a matplotlib figure as PNG and PDF in ``folder``; return both paths relative to ``root``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / _file_name(name)
    figure.savefig(stem.with_suffix(".png"), dpi=100)
    # The layout is fixed by the first save; laying out again for the PDF would double the time.
    figure.set_layout_engine("none")
    figure.savefig(stem.with_suffix(".pdf"))
    return {
        "png": stem.with_suffix(".png").relative_to(root).as_posix(),
        "pdf": stem.with_suffix(".pdf").relative_to(root).as_posix(),
    }


def run_metric(
    metric: PluginSpec,
    instance: Metric,
    samples: SampleSet,
    references: References,
    figures_dir: Path,
) -> dict[str, Any]:
    """Run one metric on one model's samples; return its metrics.json record.

    Figures are saved to ``figures_dir``, whose name is final once the
    evaluation completes; the record gives their paths under ``figures/``.
    """
    record: dict[str, Any] = {"plugin": metric.plugin, "summary": metric.info.summary}
    directions = sorted(str(direction) for direction in type(instance).directions)
    if samples.direction not in type(instance).directions:
        message = f"applies to {' and '.join(directions)} models only; model {samples.model} is {samples.direction}"
        log.warning("metric %s skipped: %s", metric.label, message)
        record.update(status="skipped", message=message)
        return record

    start = time.perf_counter()
    try:
        result = instance.compute(samples, references)
        if not isinstance(result, MetricResult):
            raise TypeError(f"compute returned {type(result).__name__}, expected a MetricResult")
    except Exception as exc:  # isolate a faulty metric plugin: the report still shows the others
        log.debug("metric %s failed on model %s", metric.label, samples.model, exc_info=True)
        log.error("metric %s failed on model %s: %s: %s", metric.label, samples.model, type(exc).__name__, exc)
        record.update(status="failed", message=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
        return record
    seconds = time.perf_counter() - start

    folder = figures_dir / _file_name(samples.model) / _file_name(metric.label)
    figures = {}
    for name, figure in result.figures.items():
        paths = save_figure(figure, figures_dir, folder, name)
        figures[name] = {key: f"{FIGURES_DIR}/{path}" for key, path in paths.items()}
    record.update(
        status="done",
        message="",
        seconds=round(seconds, 3),
        values={name: value_record(value) for name, value in result.values.items()},
        tables={name: [[str(cell) for cell in row] for row in rows] for name, rows in result.tables.items()},
        figures=figures,
    )
    log.info("metric %s on model %s: %d values in %.1f s", metric.label, samples.model, len(result.values), seconds)
    return record


def _core_figures(model: ModelSamples, figures_dir: Path) -> dict[str, dict[str, str]]:
    """Draw the report's own figures of one model (image grid and mean images); return their paths."""
    from qcdtool.core.plots import mean_images_figure, sample_grid_figure

    folder = figures_dir / _file_name(model.model.label) / "samples"
    figures = {}
    for name, figure in (
        ("image_grid", sample_grid_figure(model.samples)),
        ("mean_images", mean_images_figure(model.samples)),
    ):
        paths = save_figure(figure, figures_dir, folder, name)
        figures[name] = {key: f"{FIGURES_DIR}/{path}" for key, path in paths.items()}
    return figures


def _model_record(model: ModelSamples, digest: str) -> dict[str, Any]:
    samples = model.samples
    n, k = samples.generated.shape[:2]
    attrs = model.attrs
    return {
        "plugin": model.model.plugin,
        "direction": str(samples.direction),
        "imager": model.model.imager,
        "params": model.model.to_dict(),
        "samples": {
            "path": f"samples/{model.path.name}",
            "sha256": digest,
            "conditions": n,
            "per_condition": k,
            "sampler": attrs.get("sampler"),
            "steps": attrs.get("steps"),
            "seed": attrs.get("seed"),
            "sampling_hash": attrs.get("sampling_hash"),
            "training_hash": attrs.get("training_hash"),
        },
        "metrics": {},
    }


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that shaped the results."""
    recorded = {"python": sys.version.split()[0]}
    recorded.update({name: package_version(name) for name in VERSIONED_PACKAGES})
    return recorded


def evaluate_run(
    spec: RunSpec,
    options: EvaluateOptions = EvaluateOptions(),
    on_progress: ProgressCallback | None = None,
    report: bool = True,
) -> EvaluationOutcome:
    """Run every metric of the spec on the chosen models' samples; write metrics.json and figures.

    A model whose samples, loss history and metrics are those of the last
    evaluation keeps its results and figures; only the others are
    computed. ``report`` also writes report.html.
    """
    from qcdtool.core.report import write_report

    run_dir = spec.run_dir
    models = [model for label in (options.models or (None,)) for model in find_model(spec, label)]
    models = list({model.label: model for model in models}.values())
    if not models:
        raise QcdtoolError("the spec has no [[models]] table, so there is nothing to evaluate")
    missing = [model for model in models if not samples_path(spec, model.label).exists()]
    if missing:
        raise QcdtoolError(missing_samples_message(spec, missing))
    for model in models:
        check_samples(spec, model)

    digests = {model.label: file_digest(samples_path(spec, model.label)) for model in models}
    digest = evaluation_hash(spec, models, digests)
    metrics_path, report_path = run_dir / METRICS_FILE, run_dir / REPORT_FILE
    previous = {} if options.force else read_metrics_record(run_dir)
    if previous.get("evaluation_hash") == digest and (report_path.exists() or not report):
        return EvaluationOutcome(metrics_path, report_path, f"metrics and report of {len(models)} models are current")
    if not spec.metrics:
        log.warning("the spec has no [[metrics]] tables; the report shows samples and losses only")

    # 1. Figures go to a fresh folder that replaces figures/ only once everything is written.
    figures_dir = run_dir / (FIGURES_DIR + TEMPORARY_SUFFIX)
    shutil.rmtree(figures_dir, ignore_errors=True)
    figures_dir.mkdir(parents=True)
    context = dataset_context(spec)
    instances = {metric.label: _instantiate(metric, context) for metric in spec.metrics}
    total = len(models) * (len(spec.metrics) + 2)
    done = 0
    record: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "format_version": METRICS_FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run": spec.run.name,
        "spec_hash": spec.hash(),
        "evaluation_hash": digest,
        "versions": versions(),
        "models": {},
        "figures": {},
    }
    failed: list[str] = []
    reused: list[str] = []

    # 2. Each model: keep the results of the last evaluation when they are current,
    #    otherwise read its samples, run every metric and draw its images.
    for model in models:
        model_hash = model_evaluation_hash(spec, model, digests[model.label])
        entry = _reusable(previous, model.label, model_hash, run_dir)
        if entry is not None:
            shutil.copytree(run_dir / FIGURES_DIR / _file_name(model.label), figures_dir / _file_name(model.label))
            record["models"][model.label] = entry
            reused.append(model.label)
            done += len(spec.metrics) + 2
            continue
        if on_progress:
            on_progress(done, total, f"{model.label}: reading samples")
        loaded = read_samples(spec, model)
        entry = _model_record(loaded, digests[model.label])
        entry["evaluation_hash"] = model_hash
        pairs = model_pairs(spec, model)
        done += 1
        for metric in spec.metrics:
            if on_progress:
                on_progress(done, total, f"{model.label}: {metric.label}")
            references = References(
                train=pairs["train"], test=pairs["test"], seed=derive_seed(spec.run.seed, "evaluate", metric.label)
            )
            result = run_metric(metric, instances[metric.label], loaded.samples, references, figures_dir)
            entry["metrics"][metric.label] = result
            done += 1
        if on_progress:
            on_progress(done, total, f"{model.label}: drawing samples")
        entry["figures"] = _core_figures(loaded, figures_dir)
        record["models"][model.label] = entry
        done += 1
    for label, entry in record["models"].items():
        for metric_label, result in entry["metrics"].items():
            if result.get("status") == "failed":
                failed.append(f"{metric_label} on {label}: {result.get('message')}")

    # 3. The loss curves of all models in one figure.
    from qcdtool.core.plots import loss_figure

    curves = {model.label: model_dir(spec, model.label) / "loss.csv" for model in models}
    losses = loss_figure(curves)
    if losses is not None:
        paths = save_figure(losses, figures_dir, figures_dir / "training", "loss")
        record["figures"]["loss"] = {key: f"{FIGURES_DIR}/{path}" for key, path in paths.items()}

    # 4. Swap in the figures, then write metrics.json (and report.html), each via a temporary file.
    final_figures = run_dir / FIGURES_DIR
    shutil.rmtree(final_figures, ignore_errors=True)
    os.replace(figures_dir, final_figures)
    _write_text(metrics_path, json.dumps(record, indent=2, allow_nan=False) + "\n")
    if report:
        from qcdtool.core.pipeline import record_report

        write_report(record, spec, run_dir, report_path)
        record_report(spec)
    if on_progress:
        on_progress(total, total, "done")
    computed = len(models) - len(reused)
    message = f"{_count(computed, 'model')} x {_count(len(spec.metrics), 'metric')} evaluated"
    if reused:
        message += f", results of {', '.join(reused)} current and kept"
    message += f"; wrote {report_path.name}" if report else f"; wrote {metrics_path.name}"
    if failed:
        message += f"; {len(failed)} metric runs failed (see {METRICS_FILE})"
    return EvaluationOutcome(metrics_path, report_path, message, failed)


def dataset_context(spec: RunSpec) -> PluginContext:
    """Return the plugin context of the run, with the jet settings its dataset was made with.

    A metric's default jet radius must be that of the stored jets, which
    differs from the spec's [jets] when ``[run] dataset`` names a file made
    with other settings.
    """
    from qcdtool.core.add_images import stored_jets

    with Dataset(dataset_file(spec)) as dataset:
        jets = stored_jets(dataset)
    return spec.context(jet_radius=jets.radius, jet_algorithm=jets.algorithm)


def _instantiate(metric: PluginSpec, context: PluginContext) -> Metric:
    instance = metric.info.cls(metric.params, context)
    if not isinstance(instance, Metric):
        raise QcdtoolError(f"metric plugin '{metric.plugin}' does not subclass the Metric contract")
    return instance


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# --------------------------------------------------------------------------
# Pipeline stage


def evaluate_stage(context: Any, force: bool = False) -> str:
    """Run the pipeline's evaluate stage: every model and metric of the spec, kept where current."""
    progress = context.on_progress

    def report(done: int, total: int, what: str) -> None:
        if progress is not None:
            progress(done, total)

    outcome = evaluate_run(context.spec, EvaluateOptions(force=force), on_progress=report, report=False)
    return outcome.message
