"""The bundled specs in specs/: each validates and sets up the study its header describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qcdtool.core.registry import PluginRegistry, create_registry
from qcdtool.core.spec import PluginSpec, RunSpec, load_spec
from tests.conftest import REPO_ROOT

SPECS_DIR = REPO_ROOT / "specs"
SPEC_FILES = sorted(SPECS_DIR.glob("*.toml"))


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return create_registry()


def load_bundled(name: str, registry: PluginRegistry) -> RunSpec:
    return load_spec(SPECS_DIR / f"{name}.toml", registry)


def parameter(table: PluginSpec, key: str) -> Any:
    """Return the validated value of one plugin parameter, default filled in."""
    return getattr(table.params, key)


def models_with_plugin(spec: RunSpec, plugin: str) -> list[PluginSpec]:
    return [model for model in spec.models if model.plugin == plugin]


def metric_plugins(spec: RunSpec) -> set[str]:
    return {metric.plugin for metric in spec.metrics}


def test_specs_folder_contents() -> None:
    names = {path.stem for path in SPEC_FILES}
    assert {"quickstart", "reference-inverse", "reference-inverse-gpu", "forward-many"} <= names


@pytest.mark.parametrize("path", SPEC_FILES, ids=[path.stem for path in SPEC_FILES])
def test_spec_validates(path: Path, registry: PluginRegistry) -> None:
    spec = load_spec(path, registry)
    assert spec.source == path


@pytest.mark.parametrize("path", SPEC_FILES, ids=[path.stem for path in SPEC_FILES])
def test_spec_run_folder(path: Path, registry: PluginRegistry) -> None:
    spec = load_spec(path, registry)
    assert spec.run_dir.resolve() == REPO_ROOT / "runs" / path.stem


@pytest.mark.parametrize("path", SPEC_FILES, ids=[path.stem for path in SPEC_FILES])
def test_spec_models_have_imager(path: Path, registry: PluginRegistry) -> None:
    spec = load_spec(path, registry)
    imager_labels = {imager.label for imager in spec.imagers}
    for model in spec.models:
        assert model.imager in imager_labels


def test_quickstart_models(registry: PluginRegistry) -> None:
    spec = load_bundled("quickstart", registry)
    assert sorted(model.plugin for model in spec.models) == ["ddpm", "shift-ddpm"]
    for model in spec.models:
        assert parameter(model, "direction") == "inverse"
        assert model.imager is not None
        assert spec.imager(model.imager).plugin == "eta-phi"


def test_quickstart_configurations(registry: PluginRegistry) -> None:
    generator = load_bundled("quickstart", registry).generator
    assert generator.plugin == "pythia-ee"
    assert parameter(generator, "mode") == "rehadronize"
    assert parameter(generator, "parton_events") == 2
    assert parameter(generator, "flavors") == ["b", "uds"]


def test_quickstart_metrics(registry: PluginRegistry) -> None:
    spec = load_bundled("quickstart", registry)
    assert "inversion-accuracy" in metric_plugins(spec)
    accuracy = next(metric for metric in spec.metrics if metric.plugin == "inversion-accuracy")
    assert parameter(accuracy, "nearest_mean") is True
    assert parameter(accuracy, "cnn") is True


@pytest.mark.parametrize("name", ["reference-inverse", "reference-inverse-gpu"])
def test_reference_image_size(name: str, registry: PluginRegistry) -> None:
    spec = load_bundled(name, registry)
    for model in spec.models:
        assert model.imager is not None
        imager = spec.imager(model.imager)
        assert imager.plugin == "eta-phi"
        assert parameter(imager, "size") == 16


@pytest.mark.parametrize("name", ["reference-inverse", "reference-inverse-gpu"])
def test_reference_models(name: str, registry: PluginRegistry) -> None:
    spec = load_bundled(name, registry)
    assert len(models_with_plugin(spec, "shift-ddpm")) == 1
    assert len(models_with_plugin(spec, "ddpm")) == 1
    for model in spec.models:
        assert parameter(model, "direction") == "inverse"


@pytest.mark.parametrize("name", ["reference-inverse", "reference-inverse-gpu"])
def test_reference_configurations(name: str, registry: PluginRegistry) -> None:
    generator = load_bundled(name, registry).generator
    assert parameter(generator, "mode") == "rehadronize"
    assert parameter(generator, "parton_events") == 2
    assert parameter(generator, "flavors") == ["b", "uds"]


def test_reference_gpu_device(registry: PluginRegistry) -> None:
    spec = load_bundled("reference-inverse-gpu", registry)
    assert spec.run.device == "cuda"


def test_reference_gpu_event_count(registry: PluginRegistry) -> None:
    generator = load_bundled("reference-inverse-gpu", registry).generator
    assert parameter(generator, "parton_events") * parameter(generator, "hadronizations") >= 1_000_000


def test_reference_gpu_trains_longer(registry: PluginRegistry) -> None:
    cpu = load_bundled("reference-inverse", registry)
    gpu = load_bundled("reference-inverse-gpu", registry)
    cpu_steps = {model.label: parameter(model, "training_steps") for model in cpu.models}
    for model in gpu.models:
        assert parameter(model, "training_steps") > cpu_steps[model.label]


def test_forward_many_configurations(registry: PluginRegistry) -> None:
    generator = load_bundled("forward-many", registry).generator
    assert parameter(generator, "mode") == "rehadronize"
    assert parameter(generator, "parton_events") >= 100


def test_forward_many_models(registry: PluginRegistry) -> None:
    spec = load_bundled("forward-many", registry)
    assert {model.plugin for model in spec.models} == {"ddpm", "shift-ddpm"}
    for model in spec.models:
        assert parameter(model, "direction") == "forward"


def test_forward_many_metrics(registry: PluginRegistry) -> None:
    spec = load_bundled("forward-many", registry)
    assert {"observables-w1", "intensity-w1", "fpd"} <= metric_plugins(spec)
    observables = next(metric for metric in spec.metrics if metric.plugin == "observables-w1")
    assert parameter(observables, "per_configuration") is True
