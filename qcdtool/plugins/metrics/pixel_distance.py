"""The ``pixel-distance`` metric: mean squared and mean absolute pixel error.

Inverse direction: a hadron image has one true parton image, so each
generated image is compared with the true image of its condition. The
baseline is a guess that ignores the condition: the true image of another,
randomly chosen test condition.

Forward direction: a parton image hadronizes into many hadron images, so the
true image paired with a condition is only one of them. Each generated image
is compared with the nearest (in L2) true hadronization of the same
configuration in the test set. The baseline is the same distance for true
hadronizations, each against the others of its configuration.
"""

from __future__ import annotations

from typing import ClassVar

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
from qcdtool.plugins.metrics.common.samples import LabelledTargets, flat_generated, targets_per_configuration

FloatArray = NDArray[np.float64]

#: Images compared at a time; bounds the (chunk, references) distance matrix.
CHUNK = 4096


class PixelDistanceParams(PluginParams):
    """Options of the ``pixel-distance`` metric."""

    max_references: int = Field(
        2000,
        ge=2,
        description=(
            "Forward direction: true hadronizations per configuration, drawn at random from the test set, among "
            "which the nearest is searched."
        ),
    )


class PixelDistance(Metric):
    """Pixel-wise squared and absolute error against the truth."""

    name: ClassVar[str] = "pixel-distance"
    summary: ClassVar[str] = "Mean squared and absolute pixel error to the true image (forward: to the nearest one)"
    Params: ClassVar[type[PluginParams]] = PixelDistanceParams

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        """Score one model's samples; see the module docstring."""
        if samples.direction == Direction.INVERSE:
            return MetricResult(values=_paired_errors(samples, np.random.default_rng(references.seed)))
        params = self.params
        if not isinstance(params, PixelDistanceParams):
            raise TypeError(f"expected PixelDistanceParams, got {type(params).__name__}")
        rng = np.random.default_rng(references.seed)
        pool = targets_per_configuration(references.test, params.max_references, rng)
        return MetricResult(values=_nearest_errors(samples, pool))


def _condition_mean(values: FloatArray, n: int, note: str, baseline: float) -> MetricValue:
    """Average per-sample errors; the uncertainty is the standard error of the per-condition means."""
    per_condition = values.reshape(n, -1).mean(axis=1)
    return MetricValue(
        value=float(per_condition.mean()),
        uncertainty=float(per_condition.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        baseline=baseline,
        note=note,
        better="lower",
    )


def _paired_errors(samples: SampleSet, rng: np.random.Generator) -> dict[str, MetricValue]:
    """MSE and MAE of each generated image against its condition's true image, and the chance baseline."""
    n, k = samples.generated.shape[:2]
    generated = flat_generated(samples)
    squared = np.empty(n * k)
    absolute = np.empty(n * k)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        difference = generated[start * k : stop * k].astype(np.float64) - np.repeat(
            samples.truth[start:stop], k, axis=0
        )
        flat = difference.reshape(len(difference), -1)
        squared[start * k : stop * k] = np.mean(flat * flat, axis=1)
        absolute[start * k : stop * k] = np.mean(np.abs(flat), axis=1)

    # Chance: the true image of another condition, each condition paired with a different one.
    truth = samples.truth.reshape(n, -1).astype(np.float64)
    order = rng.permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = order[(np.arange(n) + 1) % n]
    guess = truth[partner] - truth
    chance_squared = float(np.mean(guess * guess))
    chance_absolute = float(np.mean(np.abs(guess)))

    common = (
        f"per pixel, averaged over {n * k:,} generated images against the true image of their condition; the error "
        f"is the standard error over {n:,} conditions; baseline: the true image of another test condition as the "
        "guess (what a model that ignores its condition reaches), 0 is perfect"
    )
    return {
        "mse": _condition_mean(squared, n, f"mean squared error {common}", chance_squared),
        "mae": _condition_mean(absolute, n, f"mean absolute error {common}", chance_absolute),
    }


def _nearest(
    images: FloatArray, pool: FloatArray, exclude: NDArray[np.bool_] | None = None
) -> tuple[FloatArray, FloatArray]:
    """Per image: the mean squared error to the nearest pool image, and the mean absolute error to that image."""
    squared = (images * images).sum(axis=1)[:, None] - 2.0 * images @ pool.T + (pool * pool).sum(axis=1)[None, :]
    if exclude is not None:
        squared = np.where(exclude, np.inf, squared)
    nearest = np.argmin(squared, axis=1)
    # The expansion above only ranks the candidates; the errors are computed directly, without its rounding.
    difference = images - pool[nearest]
    return np.mean(difference * difference, axis=1), np.mean(np.abs(difference), axis=1)


def _nearest_errors(samples: SampleSet, pool: LabelledTargets) -> dict[str, MetricValue]:
    """Forward direction: errors to the nearest true hadronization of the same configuration."""
    n, k = samples.generated.shape[:2]
    generated = flat_generated(samples).reshape(n * k, -1)
    truth = samples.truth.reshape(n, -1)
    config = np.asarray(samples.labels["config_id"], dtype=np.int64)
    hadronization = np.asarray(samples.labels["hadronization"], dtype=np.int64)
    squared, absolute = np.full(n * k, np.nan), np.full(n * k, np.nan)
    truth_squared, truth_absolute = np.full(n, np.nan), np.full(n, np.nan)
    pool_flat = pool.images.reshape(len(pool.images), -1).astype(np.float64)

    for value in np.unique(config):
        candidates = pool.config_id == value
        references = pool_flat[candidates]
        conditions = np.flatnonzero(config == value)
        if len(references) < 2:
            continue
        # 1. Each generated image against the configuration's true hadronizations.
        for start in range(0, len(conditions), CHUNK):
            chunk = conditions[start : start + CHUNK]
            rows = (chunk[:, None] * k + np.arange(k)[None, :]).ravel()
            squared[rows], absolute[rows] = _nearest(generated[rows].astype(np.float64), references)
            # 2. Each true image against the others, leaving out the event itself.
            same = hadronization[chunk][:, None] == pool.hadronization[candidates][None, :]
            truth_squared[chunk], truth_absolute[chunk] = _nearest(
                truth[chunk].astype(np.float64), references, exclude=same
            )

    used = np.isfinite(squared.reshape(n, k)).all(axis=1)
    if not used.any():
        note = "no configuration has two or more true hadronizations in the test set to compare with"
        nan = MetricValue(value=float("nan"), uncertainty=float("nan"), note=note, better="lower")
        return {"nearest_mse": nan, "nearest_mae": nan}
    per_configuration = int(np.bincount(np.searchsorted(np.unique(pool.config_id), pool.config_id)).max())
    common = (
        f"to the nearest (L2) of up to {per_configuration:,} true test hadronizations of the same configuration, "
        f"per pixel, over {int(used.sum()) * k:,} generated images; the error is the standard error over conditions; "
        "baseline: the same for true hadronizations against the others of their configuration (truth vs truth)"
    )
    values = {}
    for name, model, reference, what in (
        ("nearest_mse", squared, truth_squared, "mean squared error"),
        ("nearest_mae", absolute, truth_absolute, "mean absolute error (to the L2-nearest image)"),
    ):
        kept = model.reshape(n, k)[used]
        values[name] = _condition_mean(
            kept.ravel(), int(used.sum()), f"{what} {common}", float(np.nanmean(reference[used]))
        )
    return values


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the ``pixel-distance`` metric."""
    register(PixelDistance)
