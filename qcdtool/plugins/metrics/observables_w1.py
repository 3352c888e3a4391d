"""The ``observables-w1`` metric: Wasserstein-1 distances of jet observables computed from images.

For every image the metric computes the pixel multiplicity above a
threshold, the image mass, the girth, the pT dispersion, the angularities
lambda_beta and the radial profile (``common/observables.py`` defines
them). It compares their distributions over generated and true images by
W1:

- pooled over all test conditions;
- per parton configuration, against the true images of that configuration:
  does the model reproduce PYTHIA's spread of hadronizations for each given
  parton jet, rather than only the spread of the whole sample?

Each W1 has a bootstrap uncertainty and a truth-vs-truth baseline, the W1
between two disjoint halves of the true images. The true images are those
of the sampled test conditions.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from qcdtool.core.contracts import (
    Direction,
    Metric,
    MetricResult,
    MetricValue,
    PluginParams,
    References,
    Register,
    SampleSet,
)
from qcdtool.core.hookspecs import hookimpl
from qcdtool.plugins.metrics.common.features import ObservableSettings, compute_observables, observable_labels
from qcdtool.plugins.metrics.common.figures import Comparison, comparison_figure, profile_figure
from qcdtool.plugins.metrics.common.observables import DEFAULT_BETAS
from qcdtool.plugins.metrics.common.samples import (
    channel_names,
    flat_generated,
    flavour_name,
    per_sample,
    pixel_grid,
)
from qcdtool.plugins.metrics.common.wasserstein import wasserstein_1_metric

FloatArray = NDArray[np.float64]

#: Observables drawn per configuration in the per-configuration figure.
CONFIGURATION_FIGURE_OBSERVABLES = ("multiplicity", "mass", "girth", "pt_dispersion")


class ObservablesW1Params(PluginParams):
    """Options of the ``observables-w1`` metric."""

    threshold: float = Field(
        1e-3,
        ge=0.0,
        description=(
            "Pixel multiplicity counts pixels above this intensity (in the images' intensity units), because "
            "generated images carry small noise around zero."
        ),
    )
    radius: float | None = Field(
        None,
        gt=0.0,
        description=(
            "Jet radius R of the angularities and the radial profile, in the units of the image axes; unset means "
            "the run's jet radius (jets.radius)."
        ),
    )
    betas: list[Annotated[float, Field(gt=0.0)]] = Field(
        default_factory=lambda: list(DEFAULT_BETAS),
        min_length=1,
        description="Angular exponents beta of the angularities lambda_beta = sum_i z_i (r_i / R)^beta.",
    )
    annuli: int = Field(8, ge=1, le=64, description="Annuli of equal width from 0 to R in the radial profile.")
    n_bootstrap: int = Field(
        20,
        ge=2,
        le=1000,
        description=(
            "Bootstrap replicates behind each W1 uncertainty; the standard deviation of B replicates is known to "
            "about 1 / sqrt(2 B), 16% at 20."
        ),
    )
    per_configuration: bool = Field(
        True, description="Also compare each parton configuration's generated images with its own true images."
    )
    min_per_configuration: int = Field(
        20,
        ge=4,
        description="True images a configuration needs among the sampled conditions to get its own W1 values.",
    )
    bins: int = Field(40, ge=5, le=200, description="Histogram bins in the figures.")
    configuration_figures: int = Field(
        4, ge=0, le=20, description="Configurations drawn in the per-configuration histogram figure."
    )


class ObservablesW1(Metric):
    """W1 between generated and true distributions of image observables."""

    name: ClassVar[str] = "observables-w1"
    summary: ClassVar[str] = "W1 of jet observables from images, pooled and per configuration, with truth baselines"
    Params: ClassVar[type[PluginParams]] = ObservablesW1Params

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        """Score one model's samples; see the module docstring."""
        params = self.params
        if not isinstance(params, ObservablesW1Params):
            raise TypeError(f"expected ObservablesW1Params, got {type(params).__name__}")
        rng = np.random.default_rng(references.seed)
        grid = pixel_grid(samples)
        radius = params.radius if params.radius is not None else self.context.jet_radius
        settings = ObservableSettings(
            radius=radius,
            threshold=params.threshold,
            betas=tuple(params.betas),
            edges=np.linspace(0.0, radius, params.annuli + 1),
        )
        channels = channel_names(samples)
        labels = observable_labels(settings, str(samples.image.get("units", "")))

        # 1. Observables of every generated and every true image.
        generated, generated_profile = compute_observables(flat_generated(samples), grid, settings, channels)
        truth, truth_profile = compute_observables(samples.truth, grid, settings, channels)
        n, k = samples.generated.shape[:2]

        # 2. Pooled W1 of each scalar observable.
        values: dict[str, MetricValue] = {}
        pooled_note = (
            f"W1 between {n * k:,} generated and {n:,} true images; error: bootstrap std over "
            f"{params.n_bootstrap} replicates; baseline: W1 between two halves of the true images (truth vs truth)"
        )
        for index, name in enumerate(generated):
            # One generator per observable, from the seed alone, so that every
            # model sees the same truth-halves split whatever its sample count.
            observable_rng = np.random.default_rng([references.seed, index])
            w1 = wasserstein_1_metric(generated[name], truth[name], rng=observable_rng, n_bootstrap=params.n_bootstrap)
            values[f"w1_{name}"] = dataclasses.replace(
                w1, note=f"{_label(name, labels)}: {pooled_note}", better="lower"
            )
        values["w1_over_baseline"] = _over_baseline(values)

        # 3. Radial profile: W1 of each annulus share, averaged over annuli.
        tables: dict[str, list[list[str]]] = {}
        if generated_profile is not None and truth_profile is not None and settings.edges is not None:
            profile_values, tables["radial_profile"] = _profile_w1(
                generated_profile, truth_profile, settings.edges, channels, rng, params.n_bootstrap
            )
            values.update(profile_values)

        # 4. Per configuration, against the configuration's own true images.
        config = np.asarray(samples.labels["config_id"], dtype=np.int64)
        flavour = np.asarray(samples.labels["flavour"], dtype=np.int64)
        counts = {int(value): int(np.count_nonzero(config == value)) for value in np.unique(config)}
        chosen = [value for value, count in counts.items() if count >= params.min_per_configuration]
        if params.per_configuration and chosen:
            per_config, tables["per_configuration"] = _per_configuration(
                generated, truth, config, flavour, chosen, samples, rng, params.n_bootstrap
            )
            skipped = len(counts) - len(chosen)
            for name, value in per_config.items():
                note = value.note
                if skipped:
                    minimum = params.min_per_configuration
                    note += f"; {skipped} configurations with fewer than {minimum} true images left out"
                if samples.direction == Direction.INVERSE:
                    note += (
                        "; in the inverse direction a configuration has one true parton image, so this is the mean "
                        "distance of the generated value from the true one"
                    )
                values[name] = dataclasses.replace(value, note=note)

        # 5. Figures: histograms with ratio panels.
        figures: dict[str, Any] = {
            "histograms": comparison_figure(
                [
                    Comparison(
                        name=name,
                        truth=truth[name],
                        generated=generated[name],
                        xlabel=_label(name, labels),
                        integer=name.startswith("multiplicity"),
                    )
                    for name in generated
                ],
                samples.model,
                f"{samples.model}: jet observables of {samples.direction} samples against the truth",
                bins=params.bins,
            )
        }
        if generated_profile is not None and truth_profile is not None and settings.edges is not None:
            for c, channel in enumerate(channels):
                figures["radial_profile" if len(channels) == 1 else f"radial_profile_{channel}"] = profile_figure(
                    settings.edges,
                    truth_profile[:, c],
                    generated_profile[:, c],
                    samples.model,
                    f"{samples.model}: mean radial profile" + ("" if len(channels) == 1 else f" ({channel})"),
                    xlabel=f"distance r from the jet axis ({samples.image.get('units', '')})",
                    ylabel="mean share of the image intensity",
                )
        shown = chosen[: params.configuration_figures]
        if params.per_configuration and shown:
            figures["per_configuration"] = _configuration_figure(
                generated, truth, config, flavour, shown, samples, labels, params.bins
            )
        return MetricResult(values=values, figures=figures, tables=tables)


def _base(name: str, labels: dict[str, str]) -> str:
    """Return the observable of a column name, without its channel suffix."""
    for base in labels:
        if name == base or name.startswith(base + "_"):
            return base
    return name


def _label(name: str, labels: dict[str, str]) -> str:
    """Axis label of an observable column, with its channel for channel-suffixed names."""
    base = _base(name, labels)
    label = labels.get(base, name)
    return label if name == base else f"{label}, {name[len(base) + 1 :]}"


def _over_baseline(values: dict[str, MetricValue]) -> MetricValue:
    """Average W1 / baseline over the pooled observables whose baseline is positive."""
    ratios, errors = [], []
    for value in values.values():
        if value.baseline is not None and value.baseline > 0.0 and np.isfinite(value.value):
            ratios.append(value.value / value.baseline)
            errors.append(value.uncertainty / value.baseline)
    if not ratios:
        return MetricValue(
            value=float("nan"),
            uncertainty=float("nan"),
            note="no observable has a positive truth baseline",
            better="lower",
        )
    return MetricValue(
        value=float(np.mean(ratios)),
        uncertainty=float(np.sqrt(np.sum(np.square(errors))) / len(errors)),
        baseline=1.0,
        note=(
            f"mean over {len(ratios)} observables of W1 divided by its truth-vs-truth baseline, a unit-free summary; "
            "1 means as far from the truth as two halves of the truth are from each other"
        ),
        better="lower",
    )


def _mean_of(values: list[MetricValue], note: str) -> MetricValue:
    """Average several W1 values; uncertainties add in quadrature, baselines are averaged."""
    baselines = [value.baseline for value in values if value.baseline is not None]
    return MetricValue(
        value=float(np.mean([value.value for value in values])),
        uncertainty=float(np.sqrt(np.sum(np.square([value.uncertainty for value in values]))) / len(values)),
        baseline=float(np.mean(baselines)) if len(baselines) == len(values) else None,
        note=note,
        better="lower",
    )


def _profile_w1(
    generated: FloatArray,
    truth: FloatArray,
    edges: FloatArray,
    channels: list[str],
    rng: np.random.Generator,
    n_bootstrap: int,
) -> tuple[dict[str, MetricValue], list[list[str]]]:
    """W1 of the intensity share in each annulus, and their mean per channel."""
    values: dict[str, MetricValue] = {}
    table = [["channel", "annulus", "W1", "baseline"]]
    for c, channel in enumerate(channels):
        per_annulus = []
        for a in range(len(edges) - 1):
            w1 = wasserstein_1_metric(generated[:, c, a], truth[:, c, a], rng=rng, n_bootstrap=n_bootstrap)
            per_annulus.append(w1)
            table.append([channel, f"{edges[a]:.3g} to {edges[a + 1]:.3g}", _text(w1), f"{w1.baseline:.3g}"])
        name = "w1_radial_profile" if len(channels) == 1 else f"w1_radial_profile_{channel}"
        values[name] = _mean_of(
            per_annulus,
            f"mean over {len(per_annulus)} annuli of the W1 of the share of intensity in the annulus (see the table); "
            "baseline: the same for two halves of the true images",
        )
    return values, table


def _per_configuration(
    generated: dict[str, FloatArray],
    truth: dict[str, FloatArray],
    config: NDArray[np.int64],
    flavour: NDArray[np.int64],
    chosen: list[int],
    samples: SampleSet,
    rng: np.random.Generator,
    n_bootstrap: int,
) -> tuple[dict[str, MetricValue], list[list[str]]]:
    """W1 per configuration for each observable, their mean over configurations, and the table of all."""
    sample_config = per_sample(config, samples)
    header = ["configuration", "true images", "generated images", *[f"W1 {name} (baseline)" for name in generated]]
    table = [header]
    collected: dict[str, list[MetricValue]] = {name: [] for name in generated}
    for value in chosen:
        mine, own = sample_config == value, config == value
        row = [
            f"{value} ({flavour_name(int(flavour[own][0]))})",
            str(int(own.sum())),
            str(int(mine.sum())),
        ]
        for name in generated:
            w1 = wasserstein_1_metric(generated[name][mine], truth[name][own], rng=rng, n_bootstrap=n_bootstrap)
            collected[name].append(w1)
            row.append(f"{_text(w1)} ({w1.baseline:.3g})")
        table.append(row)
    values = {
        f"w1_{name}_per_configuration": _mean_of(
            found,
            f"mean over {len(found)} configurations of the W1 between a configuration's generated and true images "
            "(see the table); baseline: mean of the truth-halves W1 of each configuration",
        )
        for name, found in collected.items()
    }
    return values, table


def _text(value: MetricValue) -> str:
    return f"{value.value:.3g} ± {value.uncertainty:.2g}"


def _configuration_figure(
    generated: dict[str, FloatArray],
    truth: dict[str, FloatArray],
    config: NDArray[np.int64],
    flavour: NDArray[np.int64],
    shown: list[int],
    samples: SampleSet,
    labels: dict[str, str],
    bins: int,
) -> Any:
    """Histograms of a few observables for a few configurations, one row per configuration."""
    sample_config = per_sample(config, samples)
    names = [name for name in generated if _base(name, labels) in CONFIGURATION_FIGURE_OBSERVABLES]
    panels = []
    for value in shown:
        own = config == value
        tag = f"configuration {value} ({flavour_name(int(flavour[own][0]))})"
        for name in names:
            panels.append(
                Comparison(
                    name=f"{tag}: {name}",
                    truth=truth[name][own],
                    generated=generated[name][sample_config == value],
                    xlabel=_label(name, labels),
                    integer=name.startswith("multiplicity"),
                )
            )
    return comparison_figure(
        panels,
        samples.model,
        f"{samples.model}: observables per parton configuration (the spread of hadronizations of one parton jet)",
        bins=bins,
        columns=len(names),
    )


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the ``observables-w1`` metric."""
    register(ObservablesW1)
