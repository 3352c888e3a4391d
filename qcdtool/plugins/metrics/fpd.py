"""The ``fpd`` metric: Frechet distance over the vector of image observables, at infinite sample size.

Each image is described by the vector of its scalar observables (pixel
multiplicity, image mass, girth, pT dispersion, angularities, per channel).
Gaussians fitted to the generated and the true vectors are compared by the
Frechet distance.
Its finite-sample bias falls as 1/N and is removed by extrapolating to
N -> infinity, as the Frechet physics distance of Kansal et al., PRD 107
(2023) 076017 does (see ``common/frechet.py``). Unlike the W1 of single
observables, FPD also sees the correlations between observables.

The baseline is the FPD between two disjoint halves of the true images.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from qcdtool.core.contracts import Metric, MetricResult, MetricValue, PluginParams, References, Register, SampleSet
from qcdtool.core.hookspecs import hookimpl
from qcdtool.plugins.metrics.common.features import ObservableSettings, compute_observables
from qcdtool.plugins.metrics.common.frechet import frechet_physics_distance
from qcdtool.plugins.metrics.common.observables import DEFAULT_BETAS
from qcdtool.plugins.metrics.common.samples import channel_names, flat_generated, pixel_grid

#: Minimum number of images on each side (half the true images) for an FPD fit.
MIN_SAMPLES = 20


class FpdParams(PluginParams):
    """Options of the ``fpd`` metric."""

    threshold: float = Field(
        1e-3, ge=0.0, description="Pixel multiplicity counts pixels above this intensity (images' intensity units)."
    )
    radius: float | None = Field(
        None,
        gt=0.0,
        description=(
            "Jet radius R of the angularities, in the units of the image axes; unset means the run's jet radius "
            "(jets.radius)."
        ),
    )
    betas: list[Annotated[float, Field(gt=0.0)]] = Field(
        default_factory=lambda: list(DEFAULT_BETAS),
        min_length=1,
        description="Angular exponents beta of the angularities in the feature vector.",
    )
    n_batches: int = Field(20, ge=1, le=1000, description="Batch pairs averaged at each batch size N.")


class Fpd(Metric):
    """Frechet physics distance between generated and true observable vectors."""

    name: ClassVar[str] = "fpd"
    summary: ClassVar[str] = "Frechet distance of the image-observable vectors, extrapolated to infinite samples"
    Params: ClassVar[type[PluginParams]] = FpdParams

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        """Score one model's samples; see the module docstring."""
        params = self.params
        if not isinstance(params, FpdParams):
            raise TypeError(f"expected FpdParams, got {type(params).__name__}")
        rng = np.random.default_rng(references.seed)
        settings = ObservableSettings(
            radius=params.radius if params.radius is not None else self.context.jet_radius,
            threshold=params.threshold,
            betas=tuple(params.betas),
        )
        grid = pixel_grid(samples)
        channels = channel_names(samples)
        generated, _ = compute_observables(flat_generated(samples), grid, settings, channels)
        truth, _ = compute_observables(samples.truth, grid, settings, channels)
        x = np.stack(list(generated.values()), axis=1)
        y = np.stack(list(truth.values()), axis=1)

        # One scale for the value and the baseline: each feature divided by its largest true value.
        scale = np.max(np.abs(y), axis=0)
        scale[scale == 0.0] = 1.0
        x, y = x / scale, y / scale

        half = len(y) // 2
        if min(len(x), half) < MIN_SAMPLES:
            note = (
                f"too few images for an FPD fit: {len(x)} generated, {len(y)} true; {2 * MIN_SAMPLES} true are needed"
            )
            return MetricResult(
                values={"fpd": MetricValue(value=float("nan"), uncertainty=float("nan"), note=note, better="lower")}
            )

        # The truth-vs-truth baseline: two disjoint halves of the true images.
        shuffled = y[rng.permutation(len(y))]
        baseline = frechet_physics_distance(
            shuffled[:half], shuffled[half : 2 * half], rng=rng, n_batches=params.n_batches, normalise=False
        )
        value = frechet_physics_distance(x, y, rng=rng, n_batches=params.n_batches, normalise=False)
        note = (
            f"{x.shape[1]} features ({', '.join(generated)}), each divided by its largest true value; {value.note}; "
            f"{len(x):,} generated against {len(y):,} true images; baseline: FPD between two halves of the true images "
            f"({baseline.value:.3g} ± {baseline.uncertainty:.2g})"
        )
        return MetricResult(
            values={"fpd": dataclasses.replace(value, baseline=baseline.value, note=note, better="lower")}
        )


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the ``fpd`` metric."""
    register(Fpd)
