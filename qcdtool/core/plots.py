"""Pictures of the images in a dataset file (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.dataset import Dataset

#: Pixels below this fraction of the brightest pixel are drawn as empty on the log scale.
LOG_FLOOR = 1e-4


def show_images(dataset: Dataset, label: str, output: Path, configurations: int = 3, samples: int = 3) -> Path:
    """Draw parton/hadron image pairs of a few configurations and the mean image per level.

    Each row shows one configuration and channel: its parton image, then
    ``samples`` of its hadron images. The last rows hold the mean parton
    and mean hadron image over the whole file. Colours are on a log scale,
    because jet images span several orders of magnitude between the core and
    the edges.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    attrs = dataset.image_attrs(label)
    parton_table = dataset.images(label, "parton")
    hadron_table = dataset.images(label, "hadron")
    config = dataset.column("config_id")
    channels = [str(name) for name in attrs["channels"]]
    extents = np.asarray(attrs["extents"], dtype=np.float64)
    axes_names = [str(name) for name in attrs["axes"]]

    # 1. A few configurations, each with its first hadronizations.
    chosen: list[tuple[int, NDArray[np.int64]]] = []
    for value in np.unique(config)[:configurations]:
        rows = np.flatnonzero(config == value)[:samples]
        chosen.append((int(value), rows))

    # 2. The mean image of each level, read slice by slice.
    means = {level: _mean_image(dataset, label, level) for level in ("parton", "hadron")}

    n_columns = 1 + samples
    n_rows = len(chosen) * len(channels) + len(channels)
    figure, grid = plt.subplots(
        n_rows, n_columns, figsize=(2.6 * n_columns, 2.4 * n_rows), squeeze=False, constrained_layout=True
    )
    peak = max(float(means["parton"].max()), float(means["hadron"].max()), 1e-12)
    norm = LogNorm(vmin=peak * LOG_FLOOR, vmax=1.0 if peak <= 1.0 else peak)
    extent = (extents[1][0], extents[1][1], extents[0][0], extents[0][1])
    image_artist: Any = None

    row = 0
    for value, rows in chosen:
        parton = np.asarray(parton_table[int(rows[0])])
        hadrons = [np.asarray(hadron_table[int(r)]) for r in rows]
        for channel, name in enumerate(channels):
            panels = [("parton", parton[channel])] + [(f"hadron #{k + 1}", h[channel]) for k, h in enumerate(hadrons)]
            for column in range(n_columns):
                axis = grid[row][column]
                if column < len(panels):
                    title, picture = panels[column]
                    image_artist = _draw(axis, picture, extent, norm)
                    axis.set_title(f"config {value}, {title}" + (f", {name}" if len(channels) > 1 else ""), fontsize=8)
                else:
                    axis.axis("off")
            row += 1
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
        colourbar.set_label(str(attrs["intensity"]), fontsize=8)
    figure.suptitle(f"{dataset.path.name}: images '{label}' ({attrs['units']})", fontsize=10)
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output


def _draw(axis: Any, picture: NDArray[np.float32], extent: tuple[float, ...], norm: Any) -> Any:
    """Draw one image with rows along the vertical axis, empty pixels left blank."""
    masked = np.ma.masked_less_equal(picture, norm.vmin)
    artist = axis.imshow(masked, origin="lower", extent=extent, norm=norm, cmap="viridis", aspect="auto")
    axis.tick_params(labelsize=6)
    return artist


def _mean_image(dataset: Dataset, label: str, level: str, rows_per_read: int = 20_000) -> NDArray[np.float64]:
    """Mean image of one level over all events, read in slices."""
    table = dataset.images(label, level)
    total = np.zeros(table.shape[1:], dtype=np.float64)
    for rows in dataset.iter_slices(rows_per_read):
        total += np.asarray(table[rows], dtype=np.float64).sum(axis=0)
    return total / max(len(dataset), 1)
