"""Figures of the metric plugins: truth against a model, with a ratio panel.

Figures are built on :class:`matplotlib.figure.Figure` directly, without
pyplot, so no backend or global figure list is involved and nothing needs
closing. matplotlib is imported inside the functions, because importing it
costs about half a second and ``qcdtool plugins list`` imports every plugin
module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

TRUTH_COLOUR = "black"
MODEL_COLOUR = "tab:red"
#: Ratio panels show model / truth within this range.
RATIO_LIMITS = (0.0, 2.0)


@dataclass(frozen=True)
class Comparison:
    """One observable to draw: its per-image values for the truth and for the model.

    The values are samples, one per image (or per pixel), never histogram
    contents; the figure bins them.
    """

    name: str
    truth: FloatArray
    generated: FloatArray
    xlabel: str = ""
    integer: bool = False
    log_x: bool = False
    truth_label: str = "truth"


def histogram_edges(
    truth: ArrayLike, generated: ArrayLike, bins: int, integer: bool = False, log_x: bool = False
) -> FloatArray:
    """Return bin edges covering the central 99% of truth and model together.

    Integer observables get one bin per integer (centred on it) when that
    makes at most ``4 * bins`` bins. ``log_x`` spaces the edges evenly in
    log10 over the positive values.
    """
    values = np.concatenate([np.asarray(truth, dtype=np.float64), np.asarray(generated, dtype=np.float64)])
    values = values[np.isfinite(values)]
    if log_x:
        values = values[values > 0.0]
    if len(values) == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    low, high = np.percentile(values, [0.5, 99.5])
    if integer and high - low + 1 <= 4 * bins:
        return np.arange(np.floor(low), np.ceil(high) + 2) - 0.5
    if log_x:
        return np.logspace(np.log10(low), np.log10(high), bins + 1) if high > low else np.array([low / 2, low * 2])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def ratio_with_error(truth_counts: FloatArray, model_counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the ratio of normalized model to truth counts per bin, and its Poisson error.

    The relative error is sqrt(1 / N_model + 1 / N_truth) from the raw
    counts of the bin. Bins where either count is zero get NaN.
    """
    t = np.asarray(truth_counts, dtype=np.float64)
    m = np.asarray(model_counts, dtype=np.float64)
    both = (t > 0.0) & (m > 0.0)
    scale = t.sum() / m.sum() if m.sum() > 0.0 else np.nan
    ratio = np.full_like(t, np.nan)
    error = np.full_like(t, np.nan)
    ratio[both] = m[both] * scale / t[both]
    error[both] = ratio[both] * np.sqrt(1.0 / m[both] + 1.0 / t[both])
    return ratio, error


def comparison_figure(panels: Sequence[Comparison], model: str, title: str, bins: int = 40, columns: int = 4) -> Any:
    """Draw one histogram per observable, truth against the model, each with a ratio panel below."""
    from matplotlib.figure import Figure

    columns = max(1, min(columns, len(panels)))
    rows = (len(panels) + columns - 1) // columns
    figure = Figure(figsize=(3.6 * columns, 3.3 * rows), layout="constrained")
    outer = figure.add_gridspec(rows, columns)
    for index, panel in enumerate(panels):
        cell = outer[index // columns, index % columns].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)
        top = figure.add_subplot(cell[0])
        bottom = figure.add_subplot(cell[1], sharex=top)
        draw_comparison(top, bottom, panel, model, bins)
    figure.suptitle(title, fontsize=10)
    return figure


def draw_comparison(top: Any, bottom: Any, panel: Comparison, model: str, bins: int) -> None:
    """Fill one histogram axis and its ratio axis."""
    edges = histogram_edges(panel.truth, panel.generated, bins, panel.integer, panel.log_x)
    truth_counts, _ = np.histogram(panel.truth, bins=edges)
    model_counts, _ = np.histogram(panel.generated, bins=edges)
    widths = np.diff(edges)
    for counts, colour, label in (
        (truth_counts, TRUTH_COLOUR, f"{panel.truth_label} ({len(panel.truth):,})"),
        (model_counts, MODEL_COLOUR, f"{model} ({len(panel.generated):,})"),
    ):
        total = counts.sum()
        density = counts / (total * widths) if total > 0 else np.zeros_like(widths)
        top.stairs(density, edges, color=colour, label=label, linewidth=1.2)
    top.set_title(panel.name, fontsize=9)
    top.tick_params(labelbottom=False, labelsize=7)
    top.set_ylabel("density", fontsize=7)
    top.legend(fontsize=6, frameon=False)
    if panel.log_x:
        top.set_xscale("log")

    ratio, error = ratio_with_error(truth_counts.astype(np.float64), model_counts.astype(np.float64))
    centres = 0.5 * (edges[:-1] + edges[1:]) if not panel.log_x else np.sqrt(edges[:-1] * edges[1:])
    bottom.axhline(1.0, color=TRUTH_COLOUR, linewidth=0.8)
    bottom.errorbar(centres, ratio, yerr=error, fmt=".", markersize=3, color=MODEL_COLOUR, elinewidth=0.8)
    bottom.set_ylim(*RATIO_LIMITS)
    bottom.set_ylabel(f"model / {panel.truth_label}" if len(panel.truth_label) < 8 else "ratio", fontsize=7)
    bottom.set_xlabel(panel.xlabel or panel.name, fontsize=7)
    bottom.tick_params(labelsize=7)


def matrix_figure(matrix: ArrayLike, labels: Sequence[str], title: str, xlabel: str, ylabel: str) -> Any:
    """Draw a matrix of shares in [0, 1] (a row-normalized confusion matrix), with numbers when it is small."""
    from matplotlib.figure import Figure

    values = np.asarray(matrix, dtype=np.float64)
    size = len(labels)
    side = min(2.0 + 0.5 * size, 12.0)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axis = figure.add_subplot()
    artist = axis.imshow(values, vmin=0.0, vmax=1.0, cmap="Blues")
    if size <= 12:
        for (row, column), value in np.ndenumerate(values):
            colour = "white" if value > 0.6 else "black"
            axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color=colour)
    if size <= 30:
        axis.set_xticks(range(size), labels, rotation=90, fontsize=7)
        axis.set_yticks(range(size), labels, fontsize=7)
    axis.set_xlabel(xlabel, fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.set_title(title, fontsize=9)
    figure.colorbar(artist, ax=axis, shrink=0.8)
    return figure


def profile_figure(
    edges: ArrayLike,
    truth: ArrayLike,
    generated: ArrayLike,
    model: str,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Any:
    """Draw the mean of a per-image profile (one value per bin and image), truth against the model.

    ``truth`` and ``generated`` have shape (n, bins): one profile per image.
    Error bars are standard errors of the mean; the ratio panel shows
    model / truth.
    """
    from matplotlib.figure import Figure

    edges_ = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges_[:-1] + edges_[1:])
    figure = Figure(figsize=(5.0, 4.4), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.0})
    means = {}
    for values, colour, label in ((truth, TRUTH_COLOUR, "truth"), (generated, MODEL_COLOUR, model)):
        array = np.asarray(values, dtype=np.float64)
        mean = array.mean(axis=0)
        error = array.std(axis=0, ddof=1) / np.sqrt(len(array)) if len(array) > 1 else np.zeros_like(mean)
        means[label] = (mean, error)
        top.stairs(mean, edges_, color=colour, label=f"{label} ({len(array):,})")
        top.errorbar(centres, mean, yerr=error, fmt="none", color=colour, elinewidth=0.8)
    top.set_ylabel(ylabel, fontsize=8)
    top.set_yscale("log")
    top.legend(fontsize=7, frameon=False)
    top.set_title(title, fontsize=9)
    (truth_mean, truth_error), (model_mean, model_error) = means["truth"], means[model]
    shown = truth_mean > 0.0
    ratio = np.full_like(truth_mean, np.nan)
    ratio_error = np.full_like(truth_mean, np.nan)
    ratio[shown] = model_mean[shown] / truth_mean[shown]
    ratio_error[shown] = np.abs(ratio[shown]) * np.hypot(
        model_error[shown] / np.maximum(np.abs(model_mean[shown]), 1e-300), truth_error[shown] / truth_mean[shown]
    )
    bottom.axhline(1.0, color=TRUTH_COLOUR, linewidth=0.8)
    bottom.errorbar(centres, ratio, yerr=ratio_error, fmt=".", color=MODEL_COLOUR, elinewidth=0.8)
    bottom.set_ylim(*RATIO_LIMITS)
    bottom.set_ylabel("model / truth", fontsize=8)
    bottom.set_xlabel(xlabel, fontsize=8)
    return figure
