"""The metric plugins end to end, on sample sets built from a real PYTHIA dataset.

The dataset has three parton configurations (b and light quarks), 300
hadronizations each, as 16x16 eta-phi images. Sample sets take the test
pairs of that dataset and replace the generated images with cases whose
scores are known. These are the truth itself, the truth of random other
events, the truth scaled by 2 and the truth shifted by one pixel column.
"""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pluggy
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from qcdtool.core import hookspecs
from qcdtool.core.contracts import Direction, Metric, MetricResult, Plugin, PluginContext, SampleSet
from qcdtool.core.pairs import ImagePairs
from qcdtool.plugins.metrics import emd, fpd, intensity_w1, inversion_accuracy, observables_w1, pixel_distance
from qcdtool.plugins.metrics.common.assignment import l2_distances
from qcdtool.plugins.metrics.common.classifiers import ClassifierResult
from qcdtool.plugins.metrics.common.grid import PixelGrid
from qcdtool.plugins.metrics.common.observables import image_observables
from qcdtool.plugins.metrics.common.samples import configuration_targets
from tests.evaluation_support import (
    REPO_ROOT,
    generate,
    other_truths,
    references,
    sample_set,
    split_pairs,
    with_generated,
    write_spec,
)

MODULES: dict[str, ModuleType] = {
    "inversion-accuracy": inversion_accuracy,
    "pixel-distance": pixel_distance,
    "observables-w1": observables_w1,
    "intensity-w1": intensity_w1,
    "fpd": fpd,
    "emd": emd,
}

SPEC = """
[run]
name = "metrics"
seed = 7

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 3
hadronizations = 300

[[imagers]]
plugin = "eta-phi"
size = 16

[[imagers]]
plugin = "eta-phi"
label = "two-channels"
size = 16
channels = "charged-neutral"
"""
IMAGER = "eta-phi"
PER_CONDITION = 4
#: Quick settings of the classifiers behind the accuracy ceiling.
QUICK_CEILING = {"cnn_epochs": 2, "max_train": 1000}
#: Column width of the 16x16 images over [-0.8, 0.8].
COLUMN_WIDTH = 0.1


def registered(module: ModuleType) -> list[type[Plugin]]:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(module)
    plugins: list[type[Plugin]] = []
    manager.hook.register_metrics(register=plugins.append)
    return plugins


def score(name: str, samples: SampleSet, pairs: dict[str, ImagePairs], **options: Any) -> MetricResult:
    plugin = registered(MODULES[name])[0]
    instance = plugin(plugin.Params.model_validate(options), PluginContext(jet_radius=0.8))
    assert isinstance(instance, Metric)
    return instance.compute(samples, references(pairs))


def keep_conditions(samples: SampleSet, keep: NDArray[np.bool_]) -> SampleSet:
    return dataclasses.replace(
        samples,
        conditions=samples.conditions[keep],
        truth=samples.truth[keep],
        generated=samples.generated[keep],
        labels={name: values[keep] for name, values in samples.labels.items()},
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(write_spec(tmp_path_factory.mktemp("metric-plugins"), SPEC))


@pytest.fixture(scope="module")
def inverse(dataset: Path) -> dict[str, ImagePairs]:
    return split_pairs(dataset, IMAGER, Direction.INVERSE)


@pytest.fixture(scope="module")
def forward(dataset: Path) -> dict[str, ImagePairs]:
    return split_pairs(dataset, IMAGER, Direction.FORWARD)


@pytest.fixture(scope="module")
def identical(inverse: dict[str, ImagePairs]) -> SampleSet:
    """Inverse samples equal to the truth of their condition."""
    return sample_set(inverse, per_condition=PER_CONDITION)


@pytest.fixture(scope="module")
def shared_parton_image(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImagePairs]:
    """A copy of the dataset in which configuration 1 has the parton image of configuration 0."""
    copy = tmp_path_factory.mktemp("shared") / "dataset.h5"
    copy.write_bytes(dataset.read_bytes())
    with h5py.File(copy, "r+") as file:
        config = np.asarray(file["events/config_id"])
        parton = file[f"images/{IMAGER}/parton"]
        first = int(np.flatnonzero(config == 0)[0])
        for row in np.flatnonzero(config == 1):
            parton[int(row)] = parton[first]
    return split_pairs(copy, IMAGER, Direction.INVERSE)


# --------------------------------------------------------------------------
# Registration and parameters


@pytest.mark.parametrize(("name", "module"), MODULES.items())
def test_module_registers_one_metric(name: str, module: ModuleType) -> None:
    plugins = registered(module)
    assert len(plugins) == 1
    assert issubclass(plugins[0], Metric)
    assert plugins[0].name == name


@pytest.mark.parametrize("name", MODULES)
def test_entry_point_names_module(name: str) -> None:
    entry_points = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["qcdtool"]
    assert importlib.import_module(entry_points[name]) is MODULES[name]


@pytest.mark.parametrize("module", MODULES.values())
def test_params_documented(module: ModuleType) -> None:
    plugin = registered(module)[0]
    for field_name, field in plugin.Params.model_fields.items():
        assert field.description, field_name
        assert not field.is_required(), field_name


@pytest.mark.parametrize("module", MODULES.values())
def test_params_reject_unknown_key(module: ModuleType) -> None:
    with pytest.raises(ValidationError):
        registered(module)[0].Params.model_validate({"no_such_option": 1})


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("inversion-accuracy", {"threshold": 0.0}),
        ("inversion-accuracy", {"distance": "l1"}),
        ("observables-w1", {"betas": [0.0]}),
        ("observables-w1", {"n_bootstrap": 1}),
        ("intensity-w1", {"threshold": -1.0}),
        ("fpd", {"n_batches": 0}),
        ("emd", {"max_pairs": 1}),
        ("pixel-distance", {"max_references": "all"}),
    ],
)
def test_params_reject_invalid(name: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        registered(MODULES[name])[0].Params.model_validate(options)


def test_import_leaves_heavy_modules() -> None:
    # qcdtool imports every plugin module to list plugins; torch, POT, matplotlib and scipy wait until used.
    modules = ", ".join(module.__name__ for module in MODULES.values())
    code = f"import sys, {modules}; print(sorted(set(sys.modules) & {{'torch', 'ot', 'matplotlib', 'scipy'}}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"


def test_inversion_accuracy_inverse_only() -> None:
    assert inversion_accuracy.InversionAccuracy.directions == frozenset({Direction.INVERSE})


@pytest.mark.parametrize(
    ("name", "options", "value"),
    [
        ("inversion-accuracy", {"nearest_mean": False, "cnn": False}, "accuracy"),
        ("pixel-distance", {}, "mse"),
        ("observables-w1", {"n_bootstrap": 5}, "w1_mass_neutral"),
        ("intensity-w1", {"n_bootstrap": 5}, "w1_intensity_charged"),
        ("fpd", {"n_batches": 5}, "fpd"),
        ("emd", {"max_pairs": 100}, "emd_neutral"),
    ],
)
def test_two_channel_images(dataset: Path, name: str, options: dict[str, Any], value: str) -> None:
    pairs = split_pairs(dataset, "two-channels", Direction.INVERSE)
    result = score(name, sample_set(pairs, per_condition=2), pairs, **options)
    assert value in result.values


INDEPENDENT_SPEC = """
[run]
name = "independent"
seed = 3

[generator]
plugin = "pythia-ee"
mode = "independent"
events = 600

[[imagers]]
plugin = "eta-phi"
size = 16
"""


@pytest.fixture(scope="module")
def independent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset in independent mode: every event is a configuration of its own."""
    return generate(write_spec(tmp_path_factory.mktemp("independent"), INDEPENDENT_SPEC))


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        (name, direction)
        for name, module in MODULES.items()
        for direction in (Direction.INVERSE, Direction.FORWARD)
        if direction in registered(module)[0].directions
    ],
)
def test_independent_mode_scores(independent: Path, name: str, direction: Direction) -> None:
    pairs = split_pairs(independent, IMAGER, direction)
    options = {"n_bootstrap": 5} if name in ("observables-w1", "intensity-w1") else {}
    result = score(name, sample_set(pairs, per_condition=2), pairs, **options)
    assert result.values


def test_independent_forward_nearest_undefined(independent: Path) -> None:
    pairs = split_pairs(independent, IMAGER, Direction.FORWARD)
    value = score("pixel-distance", sample_set(pairs), pairs).values["nearest_mse"]
    assert np.isnan(value.value)
    assert "no configuration has two or more true hadronizations" in value.note


# --------------------------------------------------------------------------
# inversion-accuracy


def test_parton_images_distinct(inverse: dict[str, ImagePairs]) -> None:
    # The expected values below need three configurations whose parton images differ by more than 0.5.
    candidates = configuration_targets(inverse["test"])
    distances = l2_distances(candidates.images, candidates.images)
    assert candidates.config_id.tolist() == [0, 1, 2]
    assert distances[np.triu_indices(3, k=1)].min() > 0.5


def test_accuracy_identical_samples_one(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("inversion-accuracy", identical, inverse, nearest_mean=False, cnn=False).values
    assert values["accuracy"].value == 1.0
    assert values["truth_accuracy"].value == 1.0
    assert values["accuracy"].baseline == pytest.approx(1.0 / 3.0)


def test_accuracy_other_events_near_chance(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    samples = with_generated(identical, other_truths(PER_CONDITION, seed=1)(identical.truth))
    accuracy = score("inversion-accuracy", samples, inverse, nearest_mean=False, cnn=False).values["accuracy"]
    assert abs(accuracy.value - 1.0 / 3.0) < 0.1
    assert accuracy.uncertainty == pytest.approx(
        np.sqrt(accuracy.value * (1.0 - accuracy.value) / samples.generated.shape[0] / PER_CONDITION)
    )


def test_accuracy_per_flavour(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("inversion-accuracy", identical, inverse, nearest_mean=False, cnn=False).values
    flavours = {
        "accuracy_" + {1: "d", 2: "u", 3: "s", 4: "c", 5: "b"}[int(f)] for f in np.unique(identical.labels["flavour"])
    }
    assert flavours <= set(values)
    assert all(values[name].value == 1.0 for name in flavours)


def test_confusion_table_diagonal(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    result = score("inversion-accuracy", identical, inverse, nearest_mean=False, cnn=False)
    table = result.tables["confusion_matrix"]
    counts = np.array([[int(cell) for cell in row[1:]] for row in table[1:]])
    per_configuration = np.bincount(identical.labels["config_id"].astype(np.int64)) * PER_CONDITION
    assert np.array_equal(counts, np.diag(per_configuration))
    assert "confusion_matrix" in result.figures


def test_threshold_chance_distinct_images_zero(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    threshold = score("inversion-accuracy", identical, inverse, nearest_mean=False, cnn=False).values["threshold_pass"]
    assert threshold.value == 1.0
    assert threshold.baseline == 0.0


def test_threshold_chance_shared_image_one(shared_parton_image: dict[str, ImagePairs]) -> None:
    samples = sample_set(shared_parton_image, per_condition=PER_CONDITION)
    keep = np.isin(samples.labels["config_id"], [0, 1])
    values = score(
        "inversion-accuracy", keep_conditions(samples, keep), shared_parton_image, nearest_mean=False, cnn=False
    ).values
    assert values["threshold_pass"].baseline == 1.0
    assert "passes any plausible parton image" in values["threshold_pass"].note
    assert values["truth_accuracy"].value < 1.0
    assert "0 and 1" in values["truth_accuracy"].note


def test_ceilings_are_references(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("inversion-accuracy", identical, inverse, **QUICK_CEILING).values
    for name in ("ceiling_nearest_mean", "ceiling_cnn"):
        assert values[name].better is None
        assert 0.0 <= values[name].value <= 1.0
    assert values["calibration_cnn"].better == "lower"


def test_emd_assignment_identical_one(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("inversion-accuracy", identical, inverse, distance="emd", nearest_mean=False, cnn=False).values
    assert values["accuracy"].value == 1.0


def test_calibration_known_shares() -> None:
    # Condition 0: shares (1/2, 1/2) against p = (1/2, 1/2), TV 0. Condition 1: all on class 1 against p = (1, 0), TV 1.
    classifier = ClassifierResult(
        classes=np.array([0, 1]),
        predicted=np.array([0, 0]),
        probabilities=np.array([[0.5, 0.5], [1.0, 0.0]]),
        accuracy=inversion_accuracy.binomial_accuracy([True, False]),
    )
    assigned = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    value = inversion_accuracy._calibration(assigned, classifier, "test", np.random.default_rng(0))
    assert value.value == 0.5


# --------------------------------------------------------------------------
# pixel-distance


def test_pixel_distance_identical_zero(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("pixel-distance", identical, inverse).values
    assert values["mse"].value == 0.0
    assert values["mae"].value == 0.0
    assert values["mse"].baseline is not None and values["mse"].baseline > 0.0


def test_pixel_distance_doubled_truth(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    # generated - truth = truth, so the errors are the mean of truth^2 and |truth|.
    samples = with_generated(identical, 2.0 * identical.generated)
    values = score("pixel-distance", samples, inverse).values
    truth = identical.truth.astype(np.float64)
    assert values["mse"].value == pytest.approx(np.mean(truth * truth), rel=1e-9)
    assert values["mae"].value == pytest.approx(np.mean(np.abs(truth)), rel=1e-9)


def test_pixel_distance_forward_nearest_zero(forward: dict[str, ImagePairs]) -> None:
    # Every true hadron image is in the pool it is compared with.
    values = score("pixel-distance", sample_set(forward), forward).values
    assert values["nearest_mse"].value == 0.0
    assert values["nearest_mse"].baseline is not None and values["nearest_mse"].baseline > 0.0


# --------------------------------------------------------------------------
# observables-w1


def test_observables_identical_w1_zero(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("observables-w1", identical, inverse, n_bootstrap=5).values
    for name, value in values.items():
        if name.startswith("w1_"):
            # Matrix products over arrays of different length may round differently (BLAS blocking).
            assert value.value == pytest.approx(0.0, abs=1e-12), name


def test_observables_doubled_mass_w1(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    # The image mass is linear in the intensity, so W1(2 m, m) = mean(m) for m >= 0.
    # Binned histogram contents would give another number.
    samples = with_generated(identical, 2.0 * identical.generated)
    values = score("observables-w1", samples, inverse, n_bootstrap=5).values
    grid = PixelGrid.from_extents(((-0.8, 0.8), (-0.8, 0.8)), 16, 16)
    mass = image_observables(identical.truth, grid, radius=0.8)["mass"][:, 0]
    assert values["w1_mass"].value == pytest.approx(float(mass.mean()), rel=1e-9)


def test_observables_per_configuration(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    result = score("observables-w1", identical, inverse, n_bootstrap=5)
    assert len(result.tables["per_configuration"]) == 1 + 3
    assert "w1_mass_per_configuration" in result.values
    assert {"histograms", "radial_profile", "per_configuration"} <= set(result.figures)


def test_observables_blind_model_per_configuration(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    # Truths of random other events reproduce the pooled distribution but not each configuration's.
    samples = with_generated(identical, other_truths(PER_CONDITION, seed=2)(identical.truth))
    value = score("observables-w1", samples, inverse, n_bootstrap=5).values["w1_mass_per_configuration"]
    assert value.value > 5.0 * value.uncertainty


# --------------------------------------------------------------------------
# intensity-w1


def test_intensity_identical_zero(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("intensity-w1", identical, inverse, n_bootstrap=5).values
    assert values["w1_intensity"].value == 0.0
    assert values["w1_log10_intensity"].value == 0.0


def test_intensity_doubled_known(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    # Doubling every pixel: W1 = mean intensity of the non-zero pixels, and log10 moves by log10(2).
    samples = with_generated(identical, 2.0 * identical.generated)
    values = score("intensity-w1", samples, inverse, threshold=0.0, n_bootstrap=5).values
    pixels = identical.truth[identical.truth > 0.0].astype(np.float64)
    assert values["w1_intensity"].value == pytest.approx(float(pixels.mean()), rel=1e-9)
    assert values["w1_log10_intensity"].value == pytest.approx(np.log10(2.0), rel=1e-6)


# --------------------------------------------------------------------------
# fpd


def test_fpd_identical_consistent_with_zero(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    value = score("fpd", identical, inverse, n_batches=5).values["fpd"]
    assert abs(value.value) < 3.0 * value.uncertainty + 1e-3
    assert value.baseline is not None


def test_fpd_doubled_far(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    samples = with_generated(identical, 2.0 * identical.generated)
    value = score("fpd", samples, inverse, n_batches=5).values["fpd"]
    assert value.value > 10.0 * value.uncertainty


# --------------------------------------------------------------------------
# emd


def test_emd_identical_zero(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    values = score("emd", identical, inverse).values
    assert values["emd"].value == 0.0
    assert values["total_difference"].value == 0.0


def test_emd_column_shift_is_width(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    # Moving every pixel one column over costs the column width, for images with an empty last column.
    keep = ~np.any(identical.truth[:, :, :, -1] > 0.0, axis=(1, 2))
    samples = keep_conditions(identical, keep)
    samples = with_generated(samples, np.roll(samples.generated, 1, axis=-1))
    value = score("emd", samples, inverse, threshold=0.0).values["emd"]
    assert value.value == pytest.approx(COLUMN_WIDTH, rel=1e-6)


def test_emd_note_counts_pairs(identical: SampleSet, inverse: dict[str, ImagePairs]) -> None:
    value = score("emd", identical, inverse, max_pairs=50).values["emd"]
    assert "over 50 pairs of a generated image" in value.note


def test_emd_forward_baseline(forward: dict[str, ImagePairs]) -> None:
    value = score("emd", sample_set(forward), forward).values["emd"]
    assert value.baseline is not None and value.baseline > 0.0
    assert np.isfinite(value.value)
