"""Real runs to evaluate: a small PYTHIA dataset, test plugins and samples files.

The registry of these tests is built from the entry points declared in this
repository's pyproject.toml, plus this module's ``mean-target`` model and
``always-fails`` metric. The
metric plugins are found exactly as an installed qcdtool finds them, even
where the installed metadata predates them.

``mean-target`` is a real if simple model: it learns the mean target image
of its training pairs and draws that image for every condition. The tests
let it train and sample through the core (so its samples file is written by
``qcdtool.core.train.sample_model`` itself) and then replace the generated
images, to get models of known quality in the exact file format.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.metadata
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

import h5py
import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from qcdtool.core.contracts import (
    Direction,
    Metric,
    MetricResult,
    Model,
    PluginContext,
    PluginParams,
    References,
    Register,
    SampleSet,
    TrainingRun,
)
from qcdtool.core.dataset import Dataset
from qcdtool.core.generate import GenerateOptions, generate_dataset
from qcdtool.core.hookspecs import hookimpl
from qcdtool.core.pairs import ImagePairs
from qcdtool.core.registry import PluginRegistry, create_registry
from qcdtool.core.spec import RunSpec, load_spec
from qcdtool.core.split import SplitSettings, split_rows
from qcdtool.core.train import SamplingOptions, sample_model, samples_path, train_model

REPO_ROOT = Path(__file__).resolve().parents[1]
MEAN_FILE = "mean-target.npy"


class MeanTargetParams(PluginParams):
    """Options of the ``mean-target`` test model."""

    direction: Literal["forward", "inverse"] = Field("inverse", description="forward (parton -> hadron) or inverse.")


class MeanTargetModel(Model):
    """Draws the mean training target for every condition."""

    name: ClassVar[str] = "mean-target"
    summary: ClassVar[str] = "Test model: the mean target image of the training pairs"
    Params: ClassVar[type[PluginParams]] = MeanTargetParams

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        super().__init__(params, context)
        self.mean: NDArray[np.float32] | None = None

    def fit(self, train: ImagePairs, validation: ImagePairs, run: TrainingRun) -> dict[str, float]:
        _, targets = train.read()
        mean = targets.mean(axis=0, dtype=np.float64)
        np.save(run.folder / MEAN_FILE, mean.astype(np.float32), allow_pickle=False)
        with (run.folder / "loss.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["step", "loss"])
            for step in range(1, 6):
                writer.writerow([step, float(np.mean((targets - mean) ** 2)) / step])
        return {"pairs": float(len(train))}

    def load(self, folder: Path, device: str) -> None:
        self.mean = np.load(folder / MEAN_FILE, allow_pickle=False)

    def sample(
        self,
        conditions: NDArray[np.float32],
        n_per_condition: int,
        sampler: str,
        steps: int | None,
        seed: int,
        device: str,
    ) -> NDArray[np.float32]:
        if self.mean is None:
            raise RuntimeError("load the model before sampling")
        shape = (len(conditions), n_per_condition, *self.mean.shape)
        return np.broadcast_to(self.mean, shape).astype(np.float32)


@hookimpl
def register_models(register: Register) -> None:
    """Register the ``mean-target`` test model."""
    register(MeanTargetModel)


class AlwaysFailsMetric(Metric):
    """A metric whose compute raises, as a faulty third-party metric might."""

    name: ClassVar[str] = "always-fails"
    summary: ClassVar[str] = "Test metric: raises on every model"

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        raise RuntimeError(f"no score for {samples.model}")


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the ``always-fails`` test metric."""
    register(AlwaysFailsMetric)


# --------------------------------------------------------------------------
# Registry and runs


def source_registry() -> PluginRegistry:
    """The plugins declared in this repository's pyproject.toml, and this module's test plugins."""
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["qcdtool"]
    entry_points = [importlib.metadata.EntryPoint(name, value, "qcdtool") for name, value in declared.items()]
    entry_points.append(importlib.metadata.EntryPoint("test-plugins", __name__, "qcdtool"))
    return create_registry(entry_points)


def write_spec(folder: Path, text: str) -> RunSpec:
    """Write ``text`` as folder/spec.toml and load it with the source registry."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.toml"
    path.write_text(text)
    return load_spec(path, source_registry())


def generate(spec: RunSpec) -> Path:
    """Generate the spec's dataset; return its path."""
    path, _ = generate_dataset(spec, GenerateOptions())
    return path


def train_and_sample(spec: RunSpec) -> None:
    """Train every model of the spec and write its samples file through the core."""
    for model in spec.models:
        train_model(spec, model)
        sample_model(spec, model, SamplingOptions())


def replace_generated(spec: RunSpec, label: str, make: Callable[[NDArray[np.float32]], NDArray[np.float32]]) -> None:
    """Replace the generated images of a samples file by ``make(truth)``, keeping every other field."""
    with h5py.File(samples_path(spec, label), "r+") as file:
        truth = np.asarray(file["truth"])
        generated = make(truth)
        if generated.shape != file["generated"].shape:
            raise ValueError(f"generated images of shape {generated.shape}, expected {file['generated'].shape}")
        file["generated"][...] = generated


def perfect(per_condition: int) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
    """Generated images equal to the truth of their condition, ``per_condition`` times."""

    def make(truth: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.repeat(truth[:, None], per_condition, axis=1)

    return make


def other_truths(per_condition: int, seed: int) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
    """Generated images that are the truths of random other conditions: a model that ignores its condition."""

    def make(truth: NDArray[np.float32]) -> NDArray[np.float32]:
        n = len(truth)
        offset = np.random.default_rng(seed).integers(1, n, size=(n, per_condition))
        return truth[(np.arange(n)[:, None] + offset) % n]

    return make


# --------------------------------------------------------------------------
# Sample sets without a model


def split_pairs(dataset: Path, imager: str, direction: Direction, seed: int = 5) -> dict[str, ImagePairs]:
    """Train and test pairs of a dataset, split by hadronization with the default fractions."""
    with Dataset(dataset) as file:
        config = file.column("config_id")
        hadronization = file.column("hadronization")
    rows = split_rows(config, hadronization, SplitSettings(), seed)
    return {name: ImagePairs(dataset, imager, direction, rows[name]) for name in ("train", "test")}


def sample_set(pairs: dict[str, ImagePairs], model: str = "model", per_condition: int = 4) -> SampleSet:
    """A sample set of the test pairs whose generated images are the truth (replace them as a test needs)."""
    test = pairs["test"]
    conditions, truth = test.read()
    with Dataset(test.path) as dataset:
        attrs = dataset.image_attrs(test.label)
    image = {key: attrs[key] for key in ("axes", "extents", "units", "intensity", "channels", "shape")}
    return SampleSet(
        model=model,
        plugin="mean-target",
        direction=test.direction,
        conditions=conditions,
        truth=truth,
        generated=perfect(per_condition)(truth),
        labels=test.labels(),
        image=image,
    )


def with_generated(samples: SampleSet, generated: NDArray[np.float32]) -> SampleSet:
    """The same sample set with other generated images."""
    return dataclasses.replace(samples, generated=generated.astype(np.float32))


def references(pairs: dict[str, ImagePairs], seed: int = 11) -> References:
    """References of a metric over these pairs."""
    return References(train=pairs["train"], test=pairs["test"], seed=seed)
