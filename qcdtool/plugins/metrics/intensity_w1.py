"""The ``intensity-w1`` metric: W1 between the distributions of pixel intensities.

All pixels above a small threshold, from all generated images, form one
sample, and those of the true images form another. The reference study
plotted the histograms of these two samples. The metric gives W1 between them, on
the intensity itself (dominated by the bright core pixels) and on its log10
(which weighs the faint pixels at the jet's edge as much).

The pixels of one image are not independent, so the bootstrap resamples
whole images. The baseline is the W1 between the pixels of two disjoint
halves of the true images.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from qcdtool.core.contracts import Metric, MetricResult, MetricValue, PluginParams, References, Register, SampleSet
from qcdtool.core.hookspecs import hookimpl
from qcdtool.plugins.metrics.common.figures import Comparison, comparison_figure
from qcdtool.plugins.metrics.common.samples import channel_names, flat_generated, random_positions, suffixed
from qcdtool.plugins.metrics.common.wasserstein import grouped_bootstrap_wasserstein_1, wasserstein_1

FloatArray = NDArray[np.float64]


class IntensityW1Params(PluginParams):
    """Options of the ``intensity-w1`` metric."""

    threshold: float = Field(
        1e-3,
        ge=0.0,
        description=(
            "Only pixels above this intensity (in the images' intensity units) count; generated images carry "
            "small noise around zero that would otherwise swamp the distribution."
        ),
    )
    n_bootstrap: int = Field(
        20, ge=2, le=1000, description="Bootstrap replicates (over images) behind each uncertainty."
    )
    max_images: int = Field(
        100000,
        ge=10,
        description="Generated and true images used at most, each drawn at random (seeded) when there are more.",
    )
    bins: int = Field(50, ge=5, le=200, description="Histogram bins in the figure (log-spaced).")


class IntensityW1(Metric):
    """W1 between generated and true pixel-intensity distributions."""

    name: ClassVar[str] = "intensity-w1"
    summary: ClassVar[str] = "W1 between the pixel-intensity distributions of generated and true images"
    Params: ClassVar[type[PluginParams]] = IntensityW1Params

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        """Score one model's samples; see the module docstring."""
        params = self.params
        if not isinstance(params, IntensityW1Params):
            raise TypeError(f"expected IntensityW1Params, got {type(params).__name__}")
        rng = np.random.default_rng(references.seed)
        generated = flat_generated(samples)
        generated = generated[random_positions(len(generated), params.max_images, rng)]
        truth = samples.truth[random_positions(len(samples.truth), params.max_images, rng)]
        channels = channel_names(samples)

        values: dict[str, MetricValue] = {}
        panels = []
        for c, channel in enumerate(channels):
            model_pixels, model_images = _pixels(generated[:, c], params.threshold)
            true_pixels, true_images = _pixels(truth[:, c], params.threshold)
            if len(model_pixels) == 0 or len(true_pixels) < 2:
                note = f"no pixels above {params.threshold:g} in the generated or the true images"
                empty = MetricValue(value=float("nan"), uncertainty=float("nan"), note=note, better="lower")
                values[suffixed("w1_intensity", channel, len(channels))] = empty
                values[suffixed("w1_log10_intensity", channel, len(channels))] = empty
                continue
            note = (
                f"{len(model_pixels):,} pixels above {params.threshold:g} of {len(generated):,} generated images "
                f"against {len(true_pixels):,} of {len(truth):,} true images; error: bootstrap over images "
                f"({params.n_bootstrap} replicates); baseline: W1 between the pixels of two halves of the true images"
            )
            for name, transform in (("w1_intensity", _identity), ("w1_log10_intensity", np.log10)):
                value = _grouped_w1(
                    transform(model_pixels), model_images, transform(true_pixels), true_images, rng, params.n_bootstrap
                )
                what = "intensity" if name == "w1_intensity" else "log10 of the intensity"
                values[suffixed(name, channel, len(channels))] = dataclasses.replace(
                    value, note=f"W1 of the {what}: {note}"
                )
            panels.append(
                Comparison(
                    name="pixel intensity" + ("" if len(channels) == 1 else f" ({channel})"),
                    truth=true_pixels,
                    generated=model_pixels,
                    xlabel=f"pixel intensity above {params.threshold:g}: {samples.image.get('intensity', '')}",
                    log_x=True,
                )
            )
        figures: dict[str, Any] = {}
        if panels:
            figures["intensity"] = comparison_figure(
                panels,
                samples.model,
                f"{samples.model}: pixel intensities against the truth",
                bins=params.bins,
                columns=2,
            )
        return MetricResult(values=values, figures=figures)


def _identity(values: FloatArray) -> FloatArray:
    return values


def _pixels(images: NDArray[np.float32], threshold: float) -> tuple[FloatArray, NDArray[np.int64]]:
    """Intensities of the pixels above ``threshold`` in (n, H, W) images, and the image each belongs to."""
    flat = images.reshape(len(images), -1)
    image, pixel = np.nonzero(flat > threshold)
    return flat[image, pixel].astype(np.float64), image.astype(np.int64)


def _grouped_w1(
    model: FloatArray,
    model_images: NDArray[np.int64],
    truth: FloatArray,
    truth_images: NDArray[np.int64],
    rng: np.random.Generator,
    n_bootstrap: int,
) -> MetricValue:
    """W1 with an image-level bootstrap uncertainty and the truth-halves baseline."""
    replicates = grouped_bootstrap_wasserstein_1(
        model, truth, model_images, truth_images, rng=rng, n_bootstrap=n_bootstrap
    )

    # Baseline: the pixels of two disjoint random halves of the true images.
    owners = np.unique(truth_images)
    shuffled = rng.permutation(owners)
    first = np.isin(truth_images, shuffled[: len(owners) // 2])
    baseline = wasserstein_1(truth[first], truth[~first]) if first.any() and (~first).any() else None
    return MetricValue(
        value=wasserstein_1(model, truth),
        uncertainty=float(np.std(replicates, ddof=1)),
        baseline=baseline,
        better="lower",
    )


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the ``intensity-w1`` metric."""
    register(IntensityW1)
