"""qcdtool.api on a tiny real run: PYTHIA events, a trained ddpm model, its samples and a metric.

The module's run (2 x 60 events, 8x8 eta-phi images, 20 training steps) is
made once through ``api.run`` and shared by the tests, which only read it,
except those that write a run folder of their own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pytest

import qcdtool
from qcdtool import api
from qcdtool.core.contracts import Direction, Model, References
from qcdtool.core.dataset import Dataset
from qcdtool.core.errors import DatasetError, PluginError, QcdtoolError, SpecError
from qcdtool.core.pipeline import RunReport
from qcdtool.core.seeds import derive_seed
from qcdtool.core.spec import RunSpec
from qcdtool.core.split import SPLITS, SplitSettings, split_rows

REPO_ROOT = Path(__file__).resolve().parents[1]

SPEC = """
[run]
name = "api"
seed = 1
device = "cpu"

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = 60

[[imagers]]
plugin = "eta-phi"
size = 8

[sampling]
sampler = "ddim"
steps = 5
per_condition = 2
max_conditions = 8

[[models]]
plugin = "ddpm"
label = "plain"
direction = "inverse"
timesteps = 20
base_channels = 8
channel_multipliers = [1, 2]
res_blocks = 1
mid_attention = false
training_steps = 20
batch_size = 8
warmup_steps = 2
log_interval = 2
validation_interval = 10
checkpoint_interval = 10

[[metrics]]
plugin = "pixel-distance"
"""


Split = Literal["train", "validation", "test"]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny spec, written as my.toml."""
    path = tmp_path_factory.mktemp("api") / "my.toml"
    path.write_text(SPEC)
    return path


#: (done, total) of every progress call of the first run.
PROGRESS: list[tuple[int, int]] = []


@pytest.fixture(scope="module")
def first_run(spec_file: Path) -> tuple[RunSpec, RunReport]:
    """The spec and the report of its first run through api.run, its progress calls kept in PROGRESS."""
    spec = api.load_spec(spec_file)
    return spec, api.run(spec, on_progress=lambda done, total: PROGRESS.append((done, total)))


@pytest.fixture(scope="module")
def spec(first_run: tuple[RunSpec, RunReport]) -> RunSpec:
    """The spec after its run, with a trained model, samples and metrics.json."""
    return first_run[0]


@pytest.fixture(scope="module")
def model(spec: RunSpec) -> Model:
    """The trained model 'plain', loaded on the CPU."""
    return api.load_model(spec, "plain")


# --------------------------------------------------------------------------
# Specs


def test_load_spec_file(spec_file: Path) -> None:
    assert api.load_spec(spec_file).models[0].label == "plain"


def test_load_spec_run_dir(spec_file: Path) -> None:
    assert api.load_spec(str(spec_file)).run_dir == spec_file.parent / "runs" / "api"


def test_load_spec_missing(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        api.load_spec(tmp_path / "missing.toml")


def test_parse_spec_text(spec_file: Path) -> None:
    parsed = api.parse_spec(SPEC, base_dir=spec_file.parent)
    assert parsed.to_toml() == api.load_spec(spec_file).to_toml()


def test_parse_spec_base_dir(tmp_path: Path) -> None:
    assert api.parse_spec(SPEC, base_dir=tmp_path).run_dir == tmp_path / "runs" / "api"


def test_parse_spec_invalid_toml() -> None:
    with pytest.raises(SpecError, match="invalid TOML"):
        api.parse_spec("[run\nname = 1")


def test_validate_spec_dict(spec_file: Path) -> None:
    validated = api.validate_spec(tomllib.loads(SPEC), base_dir=spec_file.parent)
    assert validated.to_toml() == api.load_spec(spec_file).to_toml()


def test_validate_spec_round_trip(spec: RunSpec) -> None:
    assert api.validate_spec(spec.to_dict(), base_dir=spec.base_dir).hash() == spec.hash()


def test_validate_spec_problem_paths() -> None:
    data = tomllib.loads(SPEC)
    data["jets"] = {"radius": -1.0}
    data["models"][0]["timesteps"] = "20"
    with pytest.raises(SpecError) as error:
        api.validate_spec(data)
    assert [problem.path for problem in error.value.problems] == ["jets.radius", "models[0].timesteps"]


def test_validate_spec_no_pydantic_chain() -> None:
    with pytest.raises(SpecError) as error:
        api.validate_spec({"generator": {"plugin": "pythia-ee", "hadronizations": 0}})
    assert error.value.__context__ is None


# --------------------------------------------------------------------------
# Running


def test_run_stages_done(first_run: tuple[RunSpec, RunReport]) -> None:
    _, report = first_run
    # The images stage finds the images that generate drew current.
    assert [outcome.name for outcome in report.outcomes if outcome.status != "done"] == ["images"]


def test_run_stages_include_sample(first_run: tuple[RunSpec, RunReport]) -> None:
    _, report = first_run
    assert "sample" in [outcome.name for outcome in report.outcomes]


def test_run_report_folder(first_run: tuple[RunSpec, RunReport]) -> None:
    spec, report = first_run
    assert report.run_dir == spec.run_dir


def test_run_writes_metrics(spec: RunSpec) -> None:
    record = json.loads((spec.run_dir / "metrics.json").read_text())
    assert record["models"]["plain"]["metrics"]["pixel-distance"]["status"] == "done"


def test_run_log_has_info(spec: RunSpec) -> None:
    log = (spec.run_dir / "log.txt").read_text()
    assert re.search(r"INFO +qcdtool\.core\.pipeline: stage train", log) is not None


def test_run_restores_log_level(spec: RunSpec) -> None:
    assert logging.getLogger("qcdtool").level == logging.NOTSET


def test_run_again_current(spec_file: Path, spec: RunSpec) -> None:
    report = api.run(spec_file)
    statuses = {outcome.name: outcome.status for outcome in report.outcomes}
    assert statuses["sample"] == "current"


def test_run_progress_ends_complete(spec: RunSpec) -> None:
    done, total = PROGRESS[-1]
    assert done == total


def test_run_only_sample(spec: RunSpec) -> None:
    report = api.run(spec, only="sample", force=True)
    assert [outcome.name for outcome in report.outcomes if outcome.status == "done"] == ["sample"]


def test_run_from_evaluate(spec: RunSpec) -> None:
    report = api.run(spec, from_stage="evaluate")
    assert next(outcome.name for outcome in report.outcomes if outcome.status == "done") == "evaluate"


def test_run_external_dataset(spec: RunSpec, tmp_path: Path) -> None:
    dataset = spec.run_dir / "dataset.h5"
    other = api.parse_spec(SPEC.replace('name = "api"', 'name = "external"'), base_dir=tmp_path)
    api.run(other, dataset=dataset)
    external = other.with_dataset(dataset)
    rows = api.image_pairs(external, model="plain", split="train").rows
    assert np.array_equal(rows, api.image_pairs(spec, model="plain", split="train").rows)


# --------------------------------------------------------------------------
# Dataset and image pairs


def test_open_dataset_spec(spec: RunSpec) -> None:
    with api.open_dataset(spec) as dataset:
        assert len(dataset) == 2 * 60


def test_open_dataset_path(spec: RunSpec) -> None:
    with api.open_dataset(spec.run_dir / "dataset.h5") as dataset:
        assert dataset.image_labels == ["eta-phi"]


def test_open_dataset_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        api.open_dataset(tmp_path / "dataset.h5")


@pytest.mark.parametrize("split", SPLITS)
def test_image_pairs_split_size(spec: RunSpec, split: Split) -> None:
    with Dataset(spec.run_dir / "dataset.h5") as dataset:
        config, hadronization = dataset.column("config_id"), dataset.column("hadronization")
    rows = split_rows(config, hadronization, SplitSettings(), derive_seed(1, "split"))
    assert len(api.image_pairs(spec, model="plain", split=split)) == len(rows[split])


def test_image_pairs_cover_dataset(spec: RunSpec) -> None:
    splits: tuple[Split, ...] = ("train", "validation", "test")
    sizes = [len(api.image_pairs(spec, model="plain", split=split)) for split in splits]
    assert sum(sizes) == 2 * 60


@pytest.mark.parametrize("split", SPLITS)
def test_image_pairs_imager_same_rows(spec: RunSpec, split: Split) -> None:
    by_model = api.image_pairs(spec, model="plain", split=split)
    by_imager = api.image_pairs(spec, imager="eta-phi", direction="inverse", split=split)
    assert np.array_equal(by_model.rows, by_imager.rows)


def test_image_pairs_shapes(spec: RunSpec) -> None:
    assert api.image_pairs(spec, model="plain").shapes == ((1, 8, 8), (1, 8, 8))


def test_image_pairs_inverse_targets(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, model="plain", split="test")
    _, targets = pairs.read()
    with Dataset(spec.run_dir / "dataset.h5") as dataset:
        partons = np.asarray(dataset.images("eta-phi", "parton"))[pairs.rows]
    assert np.array_equal(targets, partons)


def test_image_pairs_batches_cover(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, model="plain", split="train")
    sizes = [len(conditions) for conditions, _ in pairs.batches(16, np.random.default_rng(2))]
    assert sum(sizes) == len(pairs)


def test_image_pairs_batch_shape(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, model="plain", split="train")
    conditions, _ = next(pairs.batches(16, np.random.default_rng(2)))
    assert conditions.shape == (16, 1, 8, 8)


def test_image_pairs_max_pairs_sampled(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, model="plain", split="test", max_pairs=spec.sampling.max_conditions)
    with h5py.File(spec.run_dir / "samples" / "plain.h5") as file:
        assert np.array_equal(pairs.rows, file["rows"][:])


def test_image_pairs_unknown_split(spec: RunSpec) -> None:
    with pytest.raises(QcdtoolError, match="unknown split 'training'"):
        api.image_pairs(spec, model="plain", split="training")  # type: ignore[arg-type]


def test_image_pairs_unknown_direction(spec: RunSpec) -> None:
    with pytest.raises(QcdtoolError, match="unknown direction 'backward'"):
        api.image_pairs(spec, imager="eta-phi", direction="backward")


def test_image_pairs_model_and_imager(spec: RunSpec) -> None:
    with pytest.raises(QcdtoolError, match="not both"):
        api.image_pairs(spec, model="plain", imager="eta-phi")


def test_image_pairs_unknown_imager(spec: RunSpec) -> None:
    with pytest.raises(DatasetError, match="no images of imager 'angular'"):
        api.image_pairs(spec, imager="angular", direction="inverse")


# --------------------------------------------------------------------------
# Models and sampling


def test_load_model_plugin(model: Model) -> None:
    assert model.name == "ddpm"


def test_load_model_untrained(spec: RunSpec) -> None:
    data = spec.to_dict()
    data["models"].append({**data["models"][0], "label": "untrained"})
    extended = api.validate_spec(data, base_dir=spec.base_dir)
    with pytest.raises(QcdtoolError, match="model untrained is not trained yet"):
        api.load_model(extended, "untrained")


def test_load_model_unknown_label(spec: RunSpec) -> None:
    with pytest.raises(QcdtoolError, match="no model labelled 'shifted'"):
        api.load_model(spec, "shifted")


def test_sample_shape(spec: RunSpec, model: Model) -> None:
    conditions, _ = api.image_pairs(spec, model="plain", split="test").read(0, 5)
    assert api.sample(model, conditions, 3, steps=5).shape == (5, 3, 1, 8, 8)


def test_sample_dtype(spec: RunSpec, model: Model) -> None:
    conditions, _ = api.image_pairs(spec, model="plain", split="test").read(0, 2)
    assert api.sample(model, conditions, 1, steps=5).dtype == np.float32


def test_sample_same_seed(spec: RunSpec, model: Model) -> None:
    conditions, _ = api.image_pairs(spec, model="plain", split="test").read(0, 3)
    first = api.sample(model, conditions, 2, steps=5, seed=3)
    assert np.array_equal(first, api.sample(model, conditions, 2, steps=5, seed=3))


def test_sample_equals_stage(spec: RunSpec, model: Model) -> None:
    with h5py.File(spec.run_dir / "samples" / "plain.h5") as file:
        conditions, stored, seed = file["conditions"][:], file["generated"][:], int(file.attrs["seed"])
    # The sample stage seeds each block of conditions with derive_seed(file seed, first row of the block).
    drawn = api.sample(model, conditions, 2, sampler="ddim", steps=5, seed=derive_seed(seed, 0))
    assert np.array_equal(drawn, stored)


def test_sample_flat_conditions(model: Model) -> None:
    with pytest.raises(QcdtoolError, match=r"shape \(n, C, H, W\)"):
        api.sample(model, np.zeros((8, 8)), 1)


# --------------------------------------------------------------------------
# Samples and metrics


def test_read_samples_shape(spec: RunSpec) -> None:
    assert api.read_samples(spec, "plain").generated.shape == (8, 2, 1, 8, 8)


def test_sample_set_truth(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, model="plain", split="test", max_pairs=4)
    _, truth = pairs.read()
    samples = api.sample_set(pairs, np.repeat(truth[:, None], 2, axis=1), model="plain")
    assert np.array_equal(samples.truth, truth)


def test_sample_set_wrong_count(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, model="plain", split="test", max_pairs=4)
    with pytest.raises(QcdtoolError, match=r"shape \(4, K, 1, 8, 8\)"):
        api.sample_set(pairs, np.zeros((3, 2, 1, 8, 8)), model="plain")


def test_compute_metric_names(spec: RunSpec) -> None:
    result = api.compute_metric("pixel-distance", api.read_samples(spec, "plain"), spec=spec)
    assert set(result.values) == {"mse", "mae"}


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_compute_metric_equals_stage(spec: RunSpec, name: str) -> None:
    result = api.compute_metric("pixel-distance", api.read_samples(spec, "plain"), spec=spec)
    record = json.loads((spec.run_dir / "metrics.json").read_text())
    assert result.values[name].value == record["models"]["plain"]["metrics"]["pixel-distance"]["values"][name]["value"]


def test_compute_metric_sampled_arrays(spec: RunSpec, model: Model) -> None:
    pairs = api.image_pairs(spec, model="plain", split="test", max_pairs=4)
    conditions, _ = pairs.read()
    samples = api.sample_set(pairs, api.sample(model, conditions, 2, steps=5), model="plain", plugin="ddpm")
    assert set(api.compute_metric("pixel-distance", samples, spec=spec).values) == {"mse", "mae"}


def test_compute_metric_perfect_zero(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, model="plain", split="test", max_pairs=4)
    _, truth = pairs.read()
    samples = api.sample_set(pairs, np.repeat(truth[:, None], 2, axis=1), model="plain")
    assert api.compute_metric("pixel-distance", samples, spec=spec).values["mse"].value == 0.0


def test_compute_metric_plugin_references(spec: RunSpec) -> None:
    pairs = {
        split: api.image_pairs(spec, imager="eta-phi", direction="forward", split=split) for split in ("train", "test")
    }
    _, truth = pairs["test"].read()
    samples = api.sample_set(pairs["test"], np.repeat(truth[:, None], 2, axis=1), model="truth")
    references = References(train=pairs["train"], test=pairs["test"], seed=4)
    result = api.compute_metric("pixel-distance", samples, references, max_references=10)
    assert set(result.values) == {"nearest_mse", "nearest_mae"}


def test_compute_metric_invalid_params(spec: RunSpec) -> None:
    with pytest.raises(SpecError) as error:
        api.compute_metric("pixel-distance", api.read_samples(spec, "plain"), spec=spec, max_references=1)
    assert [problem.path for problem in error.value.problems] == ["pixel-distance.max_references"]


def test_compute_metric_unknown_plugin(spec: RunSpec) -> None:
    with pytest.raises(PluginError, match="did you mean 'pixel-distance'"):
        api.compute_metric("pixel-distanse", api.read_samples(spec, "plain"), spec=spec)


def test_compute_metric_wrong_direction(spec: RunSpec) -> None:
    pairs = api.image_pairs(spec, imager="eta-phi", direction=Direction.FORWARD, split="test", max_pairs=4)
    _, truth = pairs.read()
    samples = api.sample_set(pairs, truth[:, None], model="forward")
    references = References(train=pairs, test=pairs, seed=4)
    with pytest.raises(QcdtoolError, match="applies to inverse models only"):
        api.compute_metric("inversion-accuracy", samples, references)


def test_compute_metric_needs_references(spec: RunSpec) -> None:
    with pytest.raises(QcdtoolError, match="missing references"):
        api.compute_metric("pixel-distance", api.read_samples(spec, "plain"))


# --------------------------------------------------------------------------
# Package


def test_import_loads_no_torch() -> None:
    code = "import sys, qcdtool, qcdtool.api; print(sorted({'torch', 'pythia8mc'} & set(sys.modules)))"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment)
    assert output.stdout.strip() == "[]"


@pytest.mark.parametrize("name", api.__all__)
def test_package_reexports(name: str) -> None:
    assert getattr(qcdtool, name) is getattr(api, name)


# --------------------------------------------------------------------------
# docs/api.md


def doc_blocks(language: str) -> list[str]:
    """Return the fenced code blocks of one language in docs/api.md, in order."""
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_docs_spec_valid(tmp_path: Path) -> None:
    [text] = doc_blocks("toml")
    assert api.parse_spec(text, base_dir=tmp_path).models[0].label == "plain"


def test_docs_example_runs(spec: RunSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the module's run folder makes the example's run find every stage current.
    (tmp_path / "my.toml").write_text(SPEC)
    shutil.copytree(spec.run_dir, tmp_path / "runs" / "api")
    (tmp_path / "runs" / "api" / "run.json").unlink()  # the copy belongs to my.toml, not to the module's spec
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for index, block in enumerate(doc_blocks("python")):
        exec(compile(block, f"docs/api.md, python block {index + 1}", "exec"), namespace)
    assert namespace["generated"].shape == (8, 4, 1, 8, 8)  # type: ignore[attr-defined]
