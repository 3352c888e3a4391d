"""The ``inversion-accuracy`` metric: does a generated parton image pick the right configuration?

An inverse model turns a hadron image into a parton image. Each generated
image is assigned to the nearest parton configuration among those of the
test set (the distance to the configuration's parton image, L2 by default)
and counts as right when that is the configuration it came from. The
accuracy comes with two references:

- a ceiling: how well classifiers trained on the training hadron images
  identify the configuration of a test hadron image (nearest class mean and
  a small CNN). Many configurations hadronize into hadron images that no
  classifier can distinguish, so an inverse model cannot beat such a
  classifier by much. With several samples per condition, the share of
  samples assigned to each configuration is also compared with the
  classifier's probabilities;
- the reference study's criterion, the L2 distance to the true parton image
  below a threshold, with its chance level. Parton images of different
  configurations can lie closer than the threshold, and then the criterion
  passes any plausible image.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from qcdtool.core.contracts import (
    Direction,
    Metric,
    MetricResult,
    MetricValue,
    PluginContext,
    PluginParams,
    References,
    Register,
    SampleSet,
)
from qcdtool.core.hookspecs import hookimpl
from qcdtool.plugins.metrics.common.assignment import (
    DEFAULT_THRESHOLD,
    assign_nearest,
    binomial_accuracy,
    confusion_matrix,
    l2_distances,
)
from qcdtool.plugins.metrics.common.classifiers import ClassifierResult, nearest_class_mean
from qcdtool.plugins.metrics.common.figures import matrix_figure
from qcdtool.plugins.metrics.common.samples import (
    ConfigurationImages,
    configuration_targets,
    flat_generated,
    flavour_name,
    per_sample,
    pixel_grid,
    random_positions,
    subset,
)

FloatArray = NDArray[np.float64]

#: Generated images compared at a time with their true images.
ASSIGN_CHUNK = 8192
#: Entries of a distance matrix computed at a time (128 MiB of float64): bounds memory when there are
#: many configurations, as in independent mode, where every test event is a configuration of its own.
DISTANCE_ENTRIES = 1 << 24
#: Largest number of configurations drawn in the confusion-matrix figure.
MAX_FIGURE_CONFIGURATIONS = 200
#: Repetitions of the simulated calibration noise.
CALIBRATION_REPEATS = 20


class InversionAccuracyParams(PluginParams):
    """Options of the ``inversion-accuracy`` metric."""

    distance: Literal["l2", "emd"] = Field(
        "l2",
        description=(
            "Distance from a generated parton image to each configuration's parton image: l2 over all pixels, "
            "or emd (energy mover's distance, pixel centres as points; much slower)."
        ),
    )
    emd_threshold: float = Field(
        1e-3,
        ge=0.0,
        description=(
            "With distance = emd: pixels at or below this intensity are set to zero first, because the exact "
            "solver works on the non-zero pixels only."
        ),
    )
    threshold: float = Field(
        DEFAULT_THRESHOLD,
        gt=0.0,
        description="L2 distance to the true parton image below which the reference study's criterion passes.",
    )
    high_chance: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Chance level of the threshold criterion from which its note says that the criterion passes any "
            "plausible image."
        ),
    )
    nearest_mean: bool = Field(
        True, description="Compute the ceiling of a nearest-class-mean classifier trained on hadron images."
    )
    cnn: bool = Field(True, description="Compute the ceiling of a small CNN classifier trained on hadron images.")
    cnn_epochs: int = Field(5, ge=1, le=200, description="Training epochs of the CNN classifier.")
    max_train: int = Field(
        20000,
        ge=10,
        description="Training hadron images used by the classifiers at most, drawn at random (seeded).",
    )
    table_configurations: int = Field(
        20,
        ge=2,
        le=200,
        description="Largest number of configurations for which the confusion matrix is also given as a table.",
    )


class InversionAccuracy(Metric):
    """Top-1 accuracy of assigning generated parton images to their configuration."""

    name: ClassVar[str] = "inversion-accuracy"
    summary: ClassVar[str] = "Assign each generated parton image to the nearest configuration; accuracy and ceilings"
    Params: ClassVar[type[PluginParams]] = InversionAccuracyParams
    directions: ClassVar[frozenset[Direction]] = frozenset({Direction.INVERSE})

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        super().__init__(params, context)
        # Classifier results by their inputs: one evaluation trains them once
        # for all models that share an imager and test conditions.
        self._ceilings: dict[str, dict[str, ClassifierResult]] = {}

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        """Score one inverse model's samples; see the module docstring."""
        params = self._params()
        n, k = samples.generated.shape[:2]
        true_config = np.asarray(samples.labels["config_id"], dtype=np.int64)
        flavour = np.asarray(samples.labels["flavour"], dtype=np.int64)

        # 1. The parton images of the test set's configurations, and the assignment.
        candidates = configuration_targets(references.test)
        configurations = candidates.configurations
        assigned = self._assign(flat_generated(samples), samples, candidates)

        # 2. Top-1 accuracy, overall and per flavour, and the confusion matrix.
        correct = assigned == per_sample(true_config, samples)
        chance = 1.0 / len(configurations)
        values: dict[str, MetricValue] = {}
        notes = [
            f"each of {n * k:,} generated images ({n:,} conditions x {k}) assigned to the nearest of "
            f"{len(configurations)} test-set configurations ({params.distance})",
            "the binomial error treats the samples of one condition as independent",
            f"baseline: chance, 1/{len(configurations)}",
        ]
        if candidates.max_per_configuration > 1:
            notes.append(
                f"configurations have up to {candidates.max_per_configuration} distinct parton images (an imager "
                "oriented by the hadron jet); the nearest of them decides"
            )
        for pdg_id in np.unique(flavour):
            chosen = per_sample(flavour == pdg_id, samples)
            values[f"accuracy_{flavour_name(pdg_id)}"] = _higher(
                binomial_accuracy(
                    correct[chosen], baseline=chance, note=f"conditions of flavour {flavour_name(pdg_id)}"
                )
            )
        matrix = None
        if len(configurations) <= MAX_FIGURE_CONFIGURATIONS:
            index = np.searchsorted(configurations, true_config)
            assigned_index = np.searchsorted(configurations, assigned)
            matrix = confusion_matrix(assigned_index, per_sample(index, samples), len(configurations))
        else:
            notes.append(
                f"no confusion matrix for {len(configurations):,} configurations (at most "
                f"{MAX_FIGURE_CONFIGURATIONS} are drawn)"
            )

        # 3. The ceiling: classifiers of configurations trained on hadron images.
        ceilings, ceiling_note = self._ceilings_for(samples, references, configurations)
        for name, result in ceilings.items():
            values[f"ceiling_{name}"] = dataclasses.replace(
                result.accuracy,
                note=(
                    f"{result.accuracy.note}, trained on training hadron images, tested on the {n:,} test hadron "
                    "images the model was given: no inverse model should be expected to do much better"
                ),
            )
            if k > 1:
                noise_rng = np.random.default_rng((references.seed, 2))
                values[f"calibration_{name}"] = _calibration(assigned.reshape(n, k), result, name, noise_rng)
        if ceiling_note:
            notes.append(ceiling_note)

        # 4. What the true parton images themselves reach: below 1 when configurations share a parton image.
        truth_correct = self._assign(samples.truth, samples, candidates) == true_config
        shared = _shared_images(candidates)
        truth_note = "the true parton images themselves, assigned by the same rule: the most any model can reach"
        if shared:
            truth_note += (
                f"; configurations {shared} have identical parton images (a jet of a single parton, for example), "
                "which no model can tell apart, and ties go to the lowest configuration id"
            )
            notes.append(f"configurations {shared} share a parton image, so read it against 'truth_accuracy'")
        values["truth_accuracy"] = binomial_accuracy(truth_correct, baseline=chance, note=truth_note)

        # 5. The reference study's criterion and its chance level.
        values["threshold_pass"] = _threshold_criterion(samples, candidates, params.threshold, params.high_chance)

        accuracy = binomial_accuracy(correct, baseline=chance)
        values = {"accuracy": _higher(dataclasses.replace(accuracy, note="; ".join(notes))), **values}
        figures: dict[str, Any] = {}
        tables: dict[str, list[list[str]]] = {}
        if len(configurations) <= params.table_configurations:
            tables["configurations"] = _configuration_table(correct, samples, configurations, candidates, ceilings)
        if matrix is not None:
            labels = [_configuration_label(c, candidates) for c in configurations]
            shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            figures["confusion_matrix"] = matrix_figure(
                shares,
                labels,
                f"{samples.model}: share of each true configuration's samples assigned to each configuration",
                xlabel="assigned configuration",
                ylabel="true configuration",
            )
            if len(configurations) <= params.table_configurations:
                tables["confusion_matrix"] = [
                    ["true \\ assigned", *labels],
                    *[[labels[row], *[str(int(count)) for count in matrix[row]]] for row in range(len(labels))],
                ]
        return MetricResult(values=values, figures=figures, tables=tables)

    def _params(self) -> InversionAccuracyParams:
        params = self.params
        if not isinstance(params, InversionAccuracyParams):
            raise TypeError(f"expected InversionAccuracyParams, got {type(params).__name__}")
        return params

    def _assign(
        self, generated: NDArray[np.float32], samples: SampleSet, candidates: ConfigurationImages
    ) -> NDArray[np.int64]:
        """Return the configuration id assigned to each of the (m, C, H, W) ``generated`` images."""
        params = self._params()
        references = candidates.images
        grid = pixel_grid(samples) if params.distance == "emd" else None
        if params.distance == "emd":
            references = np.where(references > params.emd_threshold, references, 0.0).astype(np.float32)
        nearest = np.empty(len(generated), dtype=np.int64)
        step = _rows_per_chunk(len(references))
        for start in range(0, len(generated), step):
            chunk = generated[start : start + step]
            if params.distance == "emd":
                chunk = np.where(chunk > params.emd_threshold, chunk, 0.0).astype(np.float32)
            nearest[start : start + len(chunk)] = assign_nearest(chunk, references, distance=params.distance, grid=grid)
        assigned: NDArray[np.int64] = candidates.config_id[nearest]
        return assigned

    def _ceilings_for(
        self,
        samples: SampleSet,
        references: References,
        configurations: NDArray[np.int64],
    ) -> tuple[dict[str, ClassifierResult], str]:
        """Train the classifiers on training hadron images; the text gives the reason when there are none."""
        params = self._params()
        if not (params.nearest_mean or params.cnn):
            return {}, ""
        train = references.train
        train_config = np.asarray(train.labels()["config_id"], dtype=np.int64)
        unseen = np.setdiff1d(configurations, train_config)
        if len(unseen):
            return {}, (
                f"no classifier ceiling: {len(unseen)} of the {len(configurations)} test configurations do not occur "
                "in the training set (split by configuration), so no classifier can learn them"
            )
        key = _digest(
            str(train.path),
            train.label,
            train.rows.tobytes(),
            samples.conditions.tobytes(),
            np.asarray(samples.labels["config_id"]).tobytes(),
            references.seed,
            params.model_dump_json(),
        )
        if key in self._ceilings:
            return self._ceilings[key], ""

        positions = random_positions(len(train), params.max_train, np.random.default_rng((references.seed, 1)))
        chosen = subset(train, positions)
        hadron, _ = chosen.read()
        labels = np.asarray(chosen.labels()["config_id"], dtype=np.int64)
        test_labels = np.asarray(samples.labels["config_id"], dtype=np.int64)
        results: dict[str, ClassifierResult] = {}
        if params.nearest_mean:
            results["nearest_mean"] = nearest_class_mean(hadron, labels, samples.conditions, test_labels)
        if params.cnn:
            from qcdtool.core.device import resolve_device
            from qcdtool.plugins.metrics.common.cnn import cnn_classifier

            results["cnn"] = cnn_classifier(
                hadron,
                labels,
                samples.conditions,
                test_labels,
                epochs=params.cnn_epochs,
                seed=references.seed,
                device=resolve_device(self.context.device),
            )
        self._ceilings[key] = results
        return results, ""


def _higher(value: MetricValue) -> MetricValue:
    return dataclasses.replace(value, better="higher")


def _digest(*parts: Any) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else str(part).encode())
        hasher.update(b"\0")
    return hasher.hexdigest()


def _configuration_label(config: int, candidates: ConfigurationImages) -> str:
    return f"{int(config)} ({flavour_name(candidates.flavour_of()[int(config)])})"


def _calibration(
    assigned: NDArray[np.int64], result: ClassifierResult, classifier: str, rng: np.random.Generator
) -> MetricValue:
    """Compare the share of a condition's samples assigned to each configuration with a classifier's probabilities.

    For condition i with K samples, s_ik is the share assigned to
    configuration k and p_ik the classifier's probability. The value is the
    mean over conditions of the total variation distance
    TV_i = (1/2) sum_k |s_ik - p_ik|, between 0 (the same) and 1. Even a
    model whose samples follow p_i exactly shows TV > 0 from drawing only K
    samples; the baseline is that noise level, simulated by drawing K
    assignments per condition from p_i itself.
    """
    n, k = assigned.shape
    classes = np.asarray(result.classes, dtype=np.int64)
    p = result.probabilities
    columns = np.searchsorted(classes, assigned)
    shares = np.zeros_like(p)
    np.add.at(shares, (np.repeat(np.arange(n), k), columns.ravel()), 1.0 / k)
    tv = 0.5 * np.abs(shares - p).sum(axis=1)

    # The noise of K draws from p itself; renormalize p against rounding before multinomial draws.
    p_drawn = p / p.sum(axis=1, keepdims=True)
    noise = [
        float(np.mean(0.5 * np.abs(rng.multinomial(k, p_drawn) / k - p).sum(axis=1)))
        for _ in range(CALIBRATION_REPEATS)
    ]
    return MetricValue(
        value=float(tv.mean()),
        uncertainty=float(tv.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        baseline=float(np.mean(noise)),
        note=(
            f"mean total variation distance between the share of each condition's {k} samples assigned to each "
            f"configuration and the probabilities of the {classifier.replace('_', ' ')} classifier; baseline: the "
            f"value that {k} draws from those probabilities give by chance. Meaningful to the extent that the "
            "classifier's probabilities are the true posterior"
        ),
        better="lower",
    )


def _shared_images(candidates: ConfigurationImages, shown: int = 5) -> str:
    """Name the groups of configurations whose parton images are identical (``0 and 2; 1 and 4``), if any.

    At most ``shown`` groups of at most ``shown`` configurations are named, followed by the counts.
    """
    flat = candidates.images.reshape(len(candidates.images), -1)
    _, group = np.unique(flat, axis=0, return_inverse=True)
    groups = []
    for value in np.unique(group):
        members = np.unique(candidates.config_id[group == value])
        if len(members) > 1:
            named = " and ".join(str(int(member)) for member in members[:shown])
            groups.append(named if len(members) <= shown else f"{named} and {len(members) - shown} more")
    if len(groups) > shown:
        return "; ".join(groups[:shown]) + f" (and {len(groups) - shown} more groups)"
    return "; ".join(groups)


def _threshold_criterion(
    samples: SampleSet, candidates: ConfigurationImages, threshold: float, high_chance: float
) -> MetricValue:
    """Score the reference study's criterion: L2 distance to the true parton image below ``threshold``.

    The chance level is the share of test conditions whose true parton image
    has a parton image of another configuration within ``threshold`` as
    well, so that an image of the wrong configuration would also pass.
    """
    generated = flat_generated(samples)
    truth = samples.truth
    n, k = samples.generated.shape[:2]
    true_config = np.asarray(samples.labels["config_id"], dtype=np.int64)

    # 1. Pass: the generated image lies within the threshold of its condition's true image.
    distance = np.empty(n * k)
    for start in range(0, n, ASSIGN_CHUNK):
        stop = min(start + ASSIGN_CHUNK, n)
        difference = generated[start * k : stop * k].astype(np.float64) - np.repeat(truth[start:stop], k, axis=0)
        flat = difference.reshape(len(difference), -1)
        distance[start * k : stop * k] = np.sqrt(np.einsum("ij,ij->i", flat, flat))
    passed = distance < threshold

    # 2. Chance: another configuration's parton image lies within the threshold of the true one.
    to_other = _nearest_other(truth, true_config, candidates)
    chance = float(np.mean(to_other < threshold))
    nearest_pair = _nearest_other(candidates.images, candidates.config_id, candidates)
    closest = float(nearest_pair.min()) if np.isfinite(nearest_pair).any() else float("nan")

    if chance >= high_chance:
        note = (
            f"chance level {chance:.2f}: for that share of test conditions another configuration's parton image "
            f"also lies within L2 {threshold:g} of the true one (the closest two configurations are {closest:.3g} "
            "apart), so this criterion passes any plausible parton image and is not an accuracy; read 'accuracy'"
        )
    else:
        note = (
            f"share of generated images within L2 {threshold:g} of the true parton image (the reference study's "
            f"criterion); baseline: chance level, the share of test conditions where another configuration's parton "
            f"image passes too (closest two configurations: {closest:.3g} apart)"
        )
    value = binomial_accuracy(passed, baseline=chance, note=note)
    # At a high chance level the criterion does not rank models, so the report does not use it to.
    return value if chance >= high_chance else _higher(value)


def _rows_per_chunk(columns: int) -> int:
    """Rows of a (rows, columns) distance matrix that fit in DISTANCE_ENTRIES entries."""
    return max(1, DISTANCE_ENTRIES // max(columns, 1))


def _nearest_other(
    images: NDArray[np.float32], config: NDArray[np.int64], candidates: ConfigurationImages
) -> FloatArray:
    """Return the L2 distance from each image to the nearest candidate image of another configuration."""
    nearest = np.full(len(images), np.inf)
    step = _rows_per_chunk(len(candidates.images))
    for start in range(0, len(images), step):
        distances = l2_distances(images[start : start + step], candidates.images)
        other = candidates.config_id[None, :] != config[start : start + step, None]
        nearest[start : start + step] = np.where(other, distances, np.inf).min(axis=1)
    return nearest


def _configuration_table(
    correct: NDArray[np.bool_],
    samples: SampleSet,
    configurations: NDArray[np.int64],
    candidates: ConfigurationImages,
    ceilings: dict[str, ClassifierResult],
) -> list[list[str]]:
    """Tabulate per configuration its samples, their accuracy and the classifiers' accuracy on its conditions."""
    true_config = np.asarray(samples.labels["config_id"], dtype=np.int64)
    sample_config = per_sample(true_config, samples)
    header = ["configuration", "conditions", "generated images", "accuracy"]
    header += [f"ceiling ({name.replace('_', ' ')})" for name in ceilings]
    rows = [header]
    for config in configurations:
        mine = sample_config == config
        if not mine.any():
            continue
        accuracy = binomial_accuracy(correct[mine])
        row = [
            _configuration_label(config, candidates),
            str(int(np.count_nonzero(true_config == config))),
            str(int(mine.sum())),
            f"{accuracy.value:.3f} ± {accuracy.uncertainty:.3f}",
        ]
        for result in ceilings.values():
            own = true_config == config
            ceiling = binomial_accuracy(np.asarray(result.predicted)[own] == config)
            row.append(f"{ceiling.value:.3f} ± {ceiling.uncertainty:.3f}")
        rows.append(row)
    return rows


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the ``inversion-accuracy`` metric."""
    register(InversionAccuracy)
