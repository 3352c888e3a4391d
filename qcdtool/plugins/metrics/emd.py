"""The ``emd`` metric: energy mover's distance between generated images and true ones.

Each generated image is paired with a true image: the true image of its
condition in the inverse direction, a random true hadronization of the same
configuration (another test condition) in the forward direction. Pixel
centres are the points, and the Euclidean distance between them, in the
angular units of the image axes, is the ground distance. Each image is
normalized to total weight 1, so the EMD compares shapes. The difference of
the total intensities is reported beside it (see ``common/emd.py``).

Pixels at or below a small threshold are set to zero first. The exact
solver runs on the non-zero pixels only, and a pair of two dense images
(unthresholded diffusion samples are dense) took about 40 times as long as
a pair of sparse ones (docs/benchmarks.md).

Baseline: inverse, the EMD from a true image to the true image of another,
random test condition (what a model that ignores its condition reaches);
forward, the EMD between two true hadronizations of the same configuration
(truth vs truth).
"""

from __future__ import annotations

from typing import Any, ClassVar

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
from qcdtool.plugins.metrics.common.figures import Comparison, comparison_figure
from qcdtool.plugins.metrics.common.samples import (
    channel_names,
    flat_generated,
    pixel_grid,
    random_positions,
    suffixed,
)

FloatArray = NDArray[np.float64]


class EmdParams(PluginParams):
    """Options of the ``emd`` metric."""

    threshold: float = Field(
        1e-3,
        ge=0.0,
        description=(
            "Pixels at or below this intensity are set to zero before the EMD; a pair of two dense images is "
            "about 40 times slower to solve than a pair of sparse ones."
        ),
    )
    max_pairs: int = Field(
        2000, ge=2, description="Pairs of (generated, true) images used at most, drawn at random (seeded)."
    )
    bins: int = Field(40, ge=5, le=200, description="Histogram bins in the figure.")


class Emd(Metric):
    """Energy mover's distance between generated and true images."""

    name: ClassVar[str] = "emd"
    summary: ClassVar[str] = "Energy mover's distance between generated and true images (pixel centres as points)"
    Params: ClassVar[type[PluginParams]] = EmdParams

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        """Score one model's samples; see the module docstring."""
        params = self.params
        if not isinstance(params, EmdParams):
            raise TypeError(f"expected EmdParams, got {type(params).__name__}")
        from qcdtool.plugins.metrics.common.emd import ImageEmd, image_emd

        rng = np.random.default_rng(references.seed)
        grid = pixel_grid(samples)
        n, k = samples.generated.shape[:2]
        generated = flat_generated(samples)
        config = np.asarray(samples.labels["config_id"], dtype=np.int64)

        # 1. Pairs: generated images with a true image, and true images with another true image.
        chosen = random_positions(n * k, params.max_pairs, rng)
        conditions = chosen // k
        if samples.direction == Direction.INVERSE:
            model_partner = conditions
            truth_first = random_positions(n, params.max_pairs, rng)
            truth_partner = _other_condition(truth_first, n, rng)
            pairing = "the true parton image of its condition"
            baseline_text = "a true image against the true image of another, random test condition (chance)"
            baseline_short = "true images of two different conditions"
        else:
            model_partner = _same_configuration(conditions, config, rng, exclude_self=False)
            truth_first = random_positions(n, params.max_pairs, rng)
            truth_partner = _same_configuration(truth_first, config, rng, exclude_self=True)
            pairing = "a random true hadronization (test condition) of the same configuration"
            baseline_text = "two true hadronizations of the same configuration (truth vs truth)"
            baseline_short = "two true hadronizations of one configuration"
        model = image_emd(
            _zero_below(generated[chosen], params.threshold),
            _zero_below(samples.truth[model_partner], params.threshold),
            grid,
        )
        # In independent mode no configuration has a second true hadronization, and there is no baseline.
        keep = truth_partner >= 0
        channels = channel_names(samples)
        truth = ImageEmd(emd=np.zeros((0, len(channels))), intensity_difference=np.zeros((0, len(channels))))
        if keep.any():
            truth = image_emd(
                _zero_below(samples.truth[truth_first[keep]], params.threshold),
                _zero_below(samples.truth[truth_partner[keep]], params.threshold),
                grid,
            )

        # 2. Mean EMD and mean |difference of totals| per channel.
        units = str(samples.image.get("units", ""))
        values: dict[str, MetricValue] = {}
        panels = []
        for c, channel in enumerate(channels):
            emd_model, emd_truth = model.emd[:, c], truth.emd[:, c]
            undefined = int(np.count_nonzero(np.isnan(emd_model)))
            note = (
                f"mean EMD over {len(chosen) - undefined:,} pairs of a generated image and {pairing}, "
                f"in the units of the image axes ({units}); pixels at or below {params.threshold:g} zeroed first; "
                f"error: standard error of the mean; baseline: {baseline_text}, over {len(emd_truth):,} pairs"
            )
            if undefined:
                note += f"; {undefined} pairs with one empty image (EMD undefined) left out"
            values[suffixed("emd", channel, len(channels))] = _mean(emd_model, emd_truth, note)
            values[suffixed("total_difference", channel, len(channels))] = _mean(
                np.abs(model.intensity_difference[:, c]),
                np.abs(truth.intensity_difference[:, c]),
                "mean |difference of the total intensities| of the same pairs, which the normalized EMD leaves out; "
                f"baseline: {baseline_text}",
            )
            panels.append(
                Comparison(
                    name="EMD per pair" + ("" if len(channels) == 1 else f" ({channel})"),
                    truth=emd_truth[np.isfinite(emd_truth)],
                    generated=emd_model[np.isfinite(emd_model)],
                    xlabel=f"EMD ({units})",
                    truth_label="baseline pairs",
                )
            )
        figures: dict[str, Any] = {
            "emd": comparison_figure(
                panels,
                samples.model,
                f"{samples.model}: EMD per pair; baseline pairs: {baseline_short}",
                bins=params.bins,
                columns=2,
            )
        }
        return MetricResult(values=values, figures=figures)


def _zero_below(images: NDArray[np.float32], threshold: float) -> NDArray[np.float32]:
    return np.where(images > threshold, images, np.float32(0.0)).astype(np.float32)


def _mean(model: FloatArray, truth: FloatArray, note: str) -> MetricValue:
    finite = model[np.isfinite(model)]
    reference = truth[np.isfinite(truth)]
    if len(finite) == 0:
        return MetricValue(value=float("nan"), uncertainty=float("nan"), note=note, better="lower")
    return MetricValue(
        value=float(finite.mean()),
        uncertainty=float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else float("nan"),
        baseline=float(reference.mean()) if len(reference) else None,
        note=note,
        better="lower",
    )


def _other_condition(first: NDArray[np.int64], n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Draw a random condition other than each given one (the same one when there is only one condition)."""
    if n < 2:
        return first.copy()
    offset = rng.integers(1, n, size=len(first))
    partner: NDArray[np.int64] = (first + offset) % n
    return partner


def _same_configuration(
    first: NDArray[np.int64], config: NDArray[np.int64], rng: np.random.Generator, exclude_self: bool
) -> NDArray[np.int64]:
    """Draw a random condition of the same configuration for each given one, or -1 where there is none."""
    partner = np.full(len(first), -1, dtype=np.int64)
    for value in np.unique(config[first]):
        members = np.flatnonzero(config == value)
        mine = np.flatnonzero(config[first] == value)
        if exclude_self:
            if len(members) < 2:
                continue
            # Draw among the other members: skip over the condition itself.
            position = np.searchsorted(members, first[mine])
            draw = rng.integers(0, len(members) - 1, size=len(mine))
            partner[mine] = members[draw + (draw >= position)]
        else:
            partner[mine] = members[rng.integers(0, len(members), size=len(mine))]
    return partner


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the ``emd`` metric."""
    register(Emd)
