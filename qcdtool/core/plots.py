"""Pictures of the images in a dataset file and of a model's samples (matplotlib, no display needed)."""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.contracts import SampleSet
from qcdtool.core.dataset import Dataset
from qcdtool.core.errors import DatasetError
from qcdtool.core.pairs import levels

#: Pixels below this fraction of the brightest pixel are drawn as empty on the log scale.
LOG_FLOOR = 1e-4


def show_images(dataset: Dataset, label: str, output: Path, configurations: int = 3, samples: int = 3) -> Path:
    """Draw the picture of :func:`images_figure` to ``output`` (.png, .pdf or .svg); return ``output``.

    A dataset without events is an error, and then nothing is written.
    """
    figure = images_figure(dataset, label, configurations=configurations, samples=samples)
    figure.savefig(output, dpi=110)
    return output


def image_groups(
    config: NDArray[np.int64], configurations: int, samples: int
) -> tuple[list[tuple[int, NDArray[np.int64]]], int]:
    """Choose the configurations to draw and their event rows; return them and how many share a row of panels.

    When some configuration has several hadronizations (rehadronize mode),
    each of the first ``configurations`` gets a row: its parton image, then
    up to ``samples`` hadron images. When every configuration has a single
    hadronization (independent mode), a row contains ``(samples + 2) // 2``
    parton/hadron pairs of consecutive configurations, so the picture keeps
    about the same width and shows more configurations.
    """
    values, counts = np.unique(config, return_counts=True)
    per_row = (samples + 2) // 2 if counts.size and int(counts.max()) == 1 else 1
    per_config = samples if per_row == 1 else 1
    groups: list[tuple[int, NDArray[np.int64]]] = []
    for value in values[: configurations * per_row]:
        groups.append((int(value), np.flatnonzero(config == value)[:per_config]))
    return groups, per_row


def images_figure(dataset: Dataset, label: str, configurations: int = 3, samples: int = 3) -> Any:
    """Draw parton/hadron image pairs of a few configurations and the mean image per level.

    In rehadronize mode each row shows one configuration and channel: its
    parton image, then ``samples`` of its hadron images. In independent
    mode (one hadronization per configuration) a row contains several
    parton/hadron pairs (see :func:`image_groups`). The last rows hold the
    mean parton and mean hadron image over the whole file. Colours are on a
    log scale, because jet images span several orders of magnitude between
    the core and the edges. Raises DatasetError for a dataset without events.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    if len(dataset) == 0:
        raise DatasetError(
            f"{dataset.path} contains no events (a shard without work units, for example), so it has no images "
            "to draw; draw a dataset with events, such as the file that 'qcdtool merge' makes of all shards"
        )
    attrs = dataset.image_attrs(label)
    parton_table = dataset.images(label, "parton")
    hadron_table = dataset.images(label, "hadron")
    channels = [str(name) for name in attrs["channels"]]
    extents = np.asarray(attrs["extents"], dtype=np.float64)
    axes_names = [str(name) for name in attrs["axes"]]

    # 1. A few configurations with their first hadronizations, and how many share a row.
    groups, per_row = image_groups(dataset.column("config_id"), configurations, samples)
    rows_of_groups = [groups[start : start + per_row] for start in range(0, len(groups), per_row)]

    # 2. The mean image of each level, read slice by slice.
    means = {level: _mean_image(dataset, label, level) for level in ("parton", "hadron")}

    n_columns = 1 + samples if per_row == 1 else 2 * per_row
    n_rows = len(rows_of_groups) * len(channels) + len(channels)
    figure = Figure(figsize=(2.6 * n_columns, 2.4 * n_rows), layout="constrained")
    grid = figure.subplots(n_rows, n_columns, squeeze=False)
    peak = max(float(means["parton"].max()), float(means["hadron"].max()), 1e-12)
    norm = LogNorm(vmin=peak * LOG_FLOOR, vmax=1.0 if peak <= 1.0 else peak)
    extent = (extents[1][0], extents[1][1], extents[0][0], extents[0][1])
    image_artist: Any = None

    # 3. One row of panels per row of groups and channel; unused panels are hidden.
    row = 0
    for row_groups in rows_of_groups:
        for channel, name in enumerate(channels):
            suffix = f", {name}" if len(channels) > 1 else ""
            panels: list[tuple[str, NDArray[np.float32]]] = []
            for value, rows in row_groups:
                panels.append((f"config {value}, parton{suffix}", np.asarray(parton_table[int(rows[0])])[channel]))
                for k, event in enumerate(rows):
                    title = "hadron" if per_row > 1 else f"hadron #{k + 1}"
                    panels.append((f"config {value}, {title}{suffix}", np.asarray(hadron_table[int(event)])[channel]))
            for column in range(n_columns):
                axis = grid[row][column]
                if column < len(panels):
                    title, picture = panels[column]
                    image_artist = _draw(axis, picture, extent, norm)
                    axis.set_title(title, fontsize=8)
                else:
                    axis.axis("off")
            row += 1

    # 4. The mean images.
    for channel, name in enumerate(channels):
        for column in range(n_columns):
            axis = grid[row][column]
            if column < 2:
                level = ("parton", "hadron")[column]
                image_artist = _draw(axis, means[level][channel], extent, norm)
                axis.set_title(f"mean {level}" + (f", {name}" if len(channels) > 1 else ""), fontsize=8)
            else:
                axis.axis("off")
        row += 1

    for axis in grid[:, 0]:
        axis.set_ylabel(axes_names[0], fontsize=8)
    for axis in grid[-1, :]:
        axis.set_xlabel(axes_names[1], fontsize=8)
    if image_artist is not None:
        colourbar = figure.colorbar(image_artist, ax=grid, shrink=0.6)
        colourbar.set_label(f"{attrs['intensity']}; empty pixels white", fontsize=8)
    # Roughly 11 characters of 10-point text fit in an inch (an estimate), so long units wrap onto more lines.
    units = textwrap.fill(f"units: {attrs['units']}", width=int(2.6 * n_columns * 11))
    figure.suptitle(f"{dataset.path.name}: images '{label}'\n{units}", fontsize=10)
    return figure


def _draw(axis: Any, picture: NDArray[np.float32], extent: tuple[float, ...], norm: Any) -> Any:
    """Draw one image with rows along the vertical axis, empty pixels left blank."""
    from matplotlib.ticker import MaxNLocator

    masked = np.ma.masked_less_equal(picture, norm.vmin)
    artist = axis.imshow(masked, origin="lower", extent=extent, norm=norm, cmap="viridis", aspect="auto")
    axis.tick_params(labelsize=6)
    # Five ticks per axis keep the labels of small panels apart.
    axis.xaxis.set_major_locator(MaxNLocator(5))
    axis.yaxis.set_major_locator(MaxNLocator(5))
    return artist


def _mean_image(dataset: Dataset, label: str, level: str, rows_per_read: int = 20_000) -> NDArray[np.float64]:
    """Mean image of one level over all events, read in slices."""
    table = dataset.images(label, level)
    total = np.zeros(table.shape[1:], dtype=np.float64)
    for rows in dataset.iter_slices(rows_per_read):
        total += np.asarray(table[rows], dtype=np.float64).sum(axis=0)
    return total / max(len(dataset), 1)


# --------------------------------------------------------------------------
# Figures of the evaluation report: samples of a model against the truth

#: Quark flavours by the PDG id in the dataset's ``flavour`` column.
FLAVOUR_NAMES: dict[int, str] = {1: "d", 2: "u", 3: "s", 4: "c", 5: "b"}


def _log_norm(images: list[NDArray[np.float32]]) -> Any:
    """Build a log colour scale from LOG_FLOOR times the brightest pixel up to that pixel."""
    from matplotlib.colors import LogNorm

    peak = max((float(np.max(image)) for image in images if image.size), default=1.0)
    peak = max(peak, 1e-12)
    return LogNorm(vmin=peak * LOG_FLOOR, vmax=peak)


def _extent_and_names(samples: SampleSet) -> tuple[tuple[float, ...], list[str], list[str]]:
    extents = np.asarray(samples.image["extents"], dtype=np.float64)
    extent = (extents[1][0], extents[1][1], extents[0][0], extents[0][1])
    axes_names = [str(name) for name in samples.image.get("axes", ("rows", "columns"))]
    channels = [str(name) for name in samples.image.get("channels", ())]
    if len(channels) != samples.truth.shape[1]:
        channels = [f"channel {c}" for c in range(samples.truth.shape[1])]
    return extent, axes_names, channels


def _outer_labels(grid: Any, axes_names: list[str]) -> None:
    """Label the axes of the left column and the bottom row only; inner panels share their scales.

    Hidden tick labels are not laid out: saving a 3 x 6 grid as PNG and
    PDF took 1.4 s instead of 1.8 s.
    """
    for row, axes in enumerate(grid):
        for column, axis in enumerate(axes):
            axis.tick_params(labelleft=column == 0, labelbottom=row == len(grid) - 1)
    for axis in grid[:, 0]:
        axis.set_ylabel(axes_names[0], fontsize=7)
    for axis in grid[-1, :]:
        axis.set_xlabel(axes_names[1], fontsize=7)


def sample_grid_figure(samples: SampleSet, configurations: int = 4, shown_samples: int = 4) -> Any:
    """Draw, for the first condition of a few configurations: condition | truth | generated samples.

    One row per configuration and channel, on one log colour scale, so that
    the generated images can be read against the true one beside them.
    Pixels at or below the floor of the scale (negative ones included) are
    left blank.
    """
    from matplotlib.figure import Figure

    condition_level, target_level = levels(samples.direction)
    extent, axes_names, channels = _extent_and_names(samples)
    config = np.asarray(samples.labels["config_id"])
    flavour = np.asarray(samples.labels["flavour"])
    k = min(samples.generated.shape[1], shown_samples)
    chosen = [int(np.flatnonzero(config == value)[0]) for value in np.unique(config)[:configurations]]

    columns = 2 + k
    rows = len(chosen) * len(channels)
    figure = Figure(figsize=(2.3 * columns + 1.0, 2.2 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    shown = [samples.truth[i] for i in chosen] + [samples.generated[i, :k] for i in chosen]
    norm = _log_norm([np.asarray(image) for image in shown])
    artist: Any = None
    row = 0
    for i in chosen:
        tag = f"config {int(config[i])} ({FLAVOUR_NAMES.get(int(flavour[i]), str(flavour[i]))})"
        for c, channel in enumerate(channels):
            panels = [
                (f"condition ({condition_level})", samples.conditions[i, c], _log_norm([samples.conditions[i, c]])),
                (f"truth ({target_level})", samples.truth[i, c], norm),
                *[(f"generated #{s + 1}", samples.generated[i, s, c], norm) for s in range(k)],
            ]
            for column, (title, picture, scale) in enumerate(panels):
                drawn = _draw(grid[row][column], picture, extent, scale)
                if column > 0:
                    artist = drawn
                suffix = f", {channel}" if len(channels) > 1 else ""
                grid[row][column].set_title(f"{tag}: {title}{suffix}" if column == 0 else title + suffix, fontsize=7)
            row += 1
    _outer_labels(grid, axes_names)
    if artist is not None:
        colourbar = figure.colorbar(artist, ax=grid[:, 1:], shrink=0.7)
        colourbar.set_label(f"{target_level}: {samples.image.get('intensity', '')}", fontsize=7)
    figure.suptitle(f"{samples.model}: condition, truth and generated samples (log colour scale)", fontsize=9)
    return figure


def mean_images_figure(samples: SampleSet) -> Any:
    """Draw the mean condition, mean true and mean generated image, and generated minus true.

    The means are over all sampled conditions (and all samples of each);
    the difference is on a linear, symmetric scale.
    """
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    condition_level, target_level = levels(samples.direction)
    extent, axes_names, channels = _extent_and_names(samples)
    mean_condition = samples.conditions.mean(axis=0, dtype=np.float64)
    mean_truth = samples.truth.mean(axis=0, dtype=np.float64)
    mean_generated = samples.generated.mean(axis=(0, 1), dtype=np.float64)
    difference = mean_generated - mean_truth

    figure = Figure(figsize=(11.0, 2.6 * len(channels) + 0.6), layout="constrained")
    grid = figure.subplots(len(channels), 4, squeeze=False)
    norm = _log_norm([mean_truth.astype(np.float32), mean_generated.astype(np.float32)])
    reach = max(float(np.max(np.abs(difference))), 1e-12)
    for c, channel in enumerate(channels):
        suffix = f", {channel}" if len(channels) > 1 else ""
        _draw(grid[c][0], mean_condition[c], extent, _log_norm([mean_condition[c].astype(np.float32)]))
        grid[c][0].set_title(f"mean condition ({condition_level}){suffix}", fontsize=8)
        artist = _draw(grid[c][1], mean_truth[c], extent, norm)
        grid[c][1].set_title(f"mean truth ({target_level}){suffix}", fontsize=8)
        _draw(grid[c][2], mean_generated[c], extent, norm)
        grid[c][2].set_title(f"mean generated{suffix}", fontsize=8)
        shift = grid[c][3].imshow(
            difference[c],
            origin="lower",
            extent=extent,
            norm=Normalize(vmin=-reach, vmax=reach),
            cmap="RdBu_r",
            aspect="auto",
        )
        grid[c][3].set_title(f"generated - truth{suffix}", fontsize=8)
        grid[c][3].tick_params(labelsize=6)
        figure.colorbar(artist, ax=grid[c][:3], shrink=0.8)
        figure.colorbar(shift, ax=grid[c][3], shrink=0.8)
    _outer_labels(grid, axes_names)
    figure.suptitle(f"{samples.model}: mean images (log colour scale; the difference is linear)", fontsize=9)
    return figure


def loss_figure(curves: Mapping[str, Path]) -> Any | None:
    """Draw the loss columns of each model's loss.csv against the training step, or return None without any."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    axis = figure.add_subplot()
    drawn = False
    for label, path in curves.items():
        if not path.exists():
            continue
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        if not rows or "step" not in rows[0]:
            continue
        steps = np.array([float(row["step"]) for row in rows])
        for column in rows[0]:
            if column == "step" or "loss" not in column:
                continue
            values = np.array([float(row[column]) if row[column] not in ("", "nan") else np.nan for row in rows])
            shown = np.isfinite(values) & (values > 0.0)
            if shown.any():
                axis.plot(steps[shown], values[shown], label=f"{label}: {column}", linewidth=1.0)
                drawn = True
    if not drawn:
        return None
    axis.set_xlabel("training step")
    axis.set_ylabel("loss (as each model logs it)")
    axis.set_yscale("log")
    axis.legend(fontsize=7)
    axis.set_title("training loss of each model (models/<label>/loss.csv)", fontsize=9)
    return figure
