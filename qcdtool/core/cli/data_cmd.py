"""``qcdtool generate``, ``merge`` and ``inspect``: the dataset file."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from qcdtool.core.add_images import add_images, images_for_dataset
from qcdtool.core.cli.base import CliState, get_state, verbosity_options
from qcdtool.core.dataset import LEVELS, Dataset, merge_shards
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.logs import log_to_file
from qcdtool.core.pipeline import LOG_FILE
from qcdtool.core.plots import show_images
from qcdtool.core.spec import load_spec

FLAVOUR_NAMES = {1: "d", 2: "u", 3: "s", 4: "c", 5: "b"}


class EventRateColumn(TextColumn):
    """Items per second of a rich progress task, in the task's own unit."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[no-untyped-def]
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "events")
        return super().render(task) if speed is None else f"{speed:,.0f} {unit}/s"


def event_progress(state: CliState) -> Progress:
    """Make a progress display whose bars show items done, items/s, elapsed time and ETA."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        EventRateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=state.err,
        transient=False,
        disable=state.verbosity < 0,
    )


class LazyProgress:
    """A progress bar over events that appears only once there is progress to show.

    Used as a callback ``(done, total)``; a command that finds nothing to do
    or fails first prints no bar.
    """

    def __init__(self, state: CliState, action: str, unit: str = "events") -> None:
        self.progress = event_progress(state)
        self.action = action
        self.unit = unit
        self.started = False
        self.task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        if self.task is None:
            self.task = self.progress.add_task(self.action, total=total, unit=self.unit)
        self.progress.update(self.task, completed=done, total=total)

    def relabel(self, action: str, unit: str) -> None:
        """Start a new bar with another label and unit at the next update (a new stage of a run)."""
        if self.task is not None:
            self.progress.update(self.task, visible=False)
        self.task = None
        self.action = action
        self.unit = unit

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()


@click.command("generate")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=None,
    help=(
        "Events to generate instead of the spec's count: per configuration in rehadronize mode, "
        "in all in independent mode."
    ),
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of local worker processes; the file's content does not depend on it.",
)
@click.option(
    "--shard",
    "shard_text",
    default=None,
    metavar="K/N",
    help=(
        "Write only shard K of N (K from 1 to N), e.g. as one task of a Slurm job array; "
        "join the shards with 'qcdtool merge'."
    ),
)
@click.option("--resume", is_flag=True, help="Continue an interrupted file from its last committed unit.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Dataset file to write; default: dataset.h5 (or dataset.shard-K-of-N.h5) in the run folder.",
)
@verbosity_options
def generate(
    spec_path: Path, events: int | None, workers: int, shard_text: str | None, resume: bool, output: Path | None
) -> None:
    """Generate events, find jets and draw images as SPEC says; write the dataset file."""
    from qcdtool.core.generate import GenerateOptions, Shard, check_options, generate_dataset

    state = get_state()
    shard = Shard.parse(shard_text) if shard_text is not None else None
    spec = load_spec(spec_path, state.registry)
    options = GenerateOptions(
        n_events=events, workers=workers, shard=shard, resume=resume, output=output, verbosity=state.verbosity
    )
    check_options(spec, options)  # before the log file creates the run folder
    with log_to_file(spec.run_dir / LOG_FILE), LazyProgress(state, "generating") as progress:
        path, summary = generate_dataset(spec, options, progress)
    state.err.print(summary)
    click.echo(str(path))


@click.command("merge")
@click.argument("output", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@verbosity_options
def merge(output: Path, inputs: tuple[Path, ...]) -> None:
    """Join the shard files INPUTS of one spec into OUTPUT, in shard order."""
    count, rows = merge_shards(output, list(inputs))
    click.echo(f"{output}: {rows} events from {count} shards")


@click.command("inspect")
@click.argument("path", metavar="FILE", type=click.Path(path_type=Path))
@verbosity_options
def inspect(path: Path) -> None:
    """Summarize a dataset file: counts, flavours, multiplicities, jets, images."""
    out = get_state().out
    with Dataset(path) as dataset:
        attrs = dataset.attrs
        out.print(f"[bold]{path}[/]  qcdtool dataset format {int(attrs['format_version'])}")
        header = Table(show_header=False, box=None)
        header.add_row("written by", f"qcdtool {attrs.get('qcdtool_version')} on {attrs.get('created')}")
        header.add_row("complete", str(bool(attrs.get("complete"))))
        header.add_row("seed", str(attrs.get("seed")))
        header.add_row("generator", str(attrs.get("generator")))
        if attrs.get("shard"):
            header.add_row("shard", str(attrs.get("shard")))
        out.print(header)

        n = len(dataset)
        config = dataset.column("config_id")
        flavour = dataset.column("flavour")
        configs, per_config = np.unique(config, return_counts=True)
        table = Table(title="events")
        table.add_column("quantity")
        table.add_column("value", overflow="fold")
        table.add_row("events", f"{n}")
        table.add_row("parton configurations", f"{len(configs)}")
        if len(configs):
            table.add_row(
                "events per configuration",
                f"min {per_config.min()}, mean {per_config.mean():.1f}, max {per_config.max()}",
            )
        codes, counts = np.unique(flavour, return_counts=True)
        table.add_row(
            "flavour of the hard quark",
            ", ".join(
                f"{FLAVOUR_NAMES.get(int(c), c)}: {k} ({k / max(n, 1):.1%})" for c, k in zip(codes, counts, strict=True)
            ),
        )
        for level in LEVELS:
            multiplicity, charged = _multiplicities(dataset, level)
            # At parton level the charged particles are the quarks and antiquarks,
            # and the rare leptons from photon splittings.
            charged_label = "charged (mostly quarks)" if level == "parton" else "charged"
            table.add_row(
                f"{level}-level particles per event",
                f"mean {multiplicity:.2f}, {charged_label} mean {charged:.2f}",
            )
        for key, value in sorted(dataset.counters.items()):
            table.add_row(f"counter {key}", str(value))
        out.print(table)

        if n:
            jets = Table(title="jets (GeV, radians)")
            for column in ("level", "quantity", "mean", "std", "min", "max"):
                jets.add_column(column)
            for level in LEVELS:
                columns = dataset.jet_columns(level)
                _, offsets = dataset.jet_constituent_index(level)
                columns["constituents"] = np.diff(offsets).astype(np.float64)
                for name in ("E", "pt", "mass", "constituents"):
                    values = columns[name]
                    jets.add_row(
                        level,
                        name,
                        f"{values.mean():.3f}",
                        f"{values.std():.3f}",
                        f"{values.min():.3f}",
                        f"{values.max():.3f}",
                    )
            angle = dataset.pair_distances()["delta_angle"]
            jets.add_row(
                "both",
                "angle between axes",
                f"{angle.mean():.4f}",
                f"{angle.std():.4f}",
                f"{angle.min():.4f}",
                f"{angle.max():.4f}",
            )
            out.print(jets)

        if dataset.image_labels:
            images = Table(title="images")
            for column in ("label", "shape (C, H, W)", "axes", "intensity", "units"):
                images.add_column(column, overflow="fold")
            for label in dataset.image_labels:
                image_attrs = dataset.image_attrs(label)
                images.add_row(
                    label,
                    str(tuple(int(x) for x in image_attrs["shape"])),
                    ", ".join(str(a) for a in image_attrs["axes"]),
                    str(image_attrs["intensity"]),
                    str(image_attrs["units"]),
                )
            out.print(images)


PICTURE_SUFFIXES = (".png", ".pdf", ".svg")


def check_picture_path(path: Path) -> None:
    """Reject a picture path whose type matplotlib cannot write or whose folder does not exist."""
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise QcdtoolError(
            f"--show {path}: unsupported picture type; use a file name ending in {', '.join(PICTURE_SUFFIXES)}"
        )
    if not path.parent.is_dir():
        raise QcdtoolError(f"--show {path}: folder {path.parent} does not exist; create it first")


def _multiplicities(dataset: Dataset, level: str, rows_per_read: int = 1 << 16) -> tuple[float, float]:
    """Mean number of particles and of charged particles per event, read slice by slice."""
    n = len(dataset)
    if n == 0:
        return 0.0, 0.0
    total = 0
    charged = 0
    for rows in dataset.iter_slices(rows_per_read):
        particles = dataset.particles(level, rows)
        total += len(particles.charge)
        charged += int(np.count_nonzero(particles.charge))
    return total / n, charged / n


@click.command("images")
@click.argument("target", metavar="SPEC-OR-DATASET", type=click.Path(path_type=Path))
@click.option("--add", is_flag=True, help="Draw the spec's imagers that the dataset lacks and add their images.")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path),
    default=None,
    help=(
        "Spec whose [[imagers]] --add draws, when the target is a dataset file. Only its [[imagers]] "
        "are used: the file keeps its events, jets and the settings it records for them."
    ),
)
@click.option("--force", is_flag=True, help="With --add: replace images made with other parameters.")
@click.option(
    "--show",
    "show_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=(
        "Draw image pairs and mean images of one imager to this picture file "
        f"({', '.join(PICTURE_SUFFIXES[:-1])} or {PICTURE_SUFFIXES[-1]})."
    ),
)
@click.option("--imager", "label", default=None, help="Label of the imager to draw with --show.")
@click.option(
    "--configurations",
    type=click.IntRange(min=1, max=20),
    default=3,
    show_default=True,
    help="Number of parton configurations drawn with --show.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1, max=12),
    default=3,
    show_default=True,
    help="Hadron-level images drawn per configuration with --show.",
)
@verbosity_options
def images(
    target: Path,
    add: bool,
    spec_path: Path | None,
    force: bool,
    show_path: Path | None,
    label: str | None,
    configurations: int,
    samples: int,
) -> None:
    """Add images to a dataset without generating events again, or draw them.

    SPEC-OR-DATASET is a spec (its run folder's dataset.h5, or the file of
    its [run] dataset, is used) or a dataset file (then --add needs --spec).
    Images are drawn for the jets stored in the file: an imager's unset
    extent is the radius those jets were found with.
    """
    state = get_state()
    if not add and show_path is None:
        raise QcdtoolError("nothing to do: pass --add to add images, or --show FILE to draw them")
    if show_path is not None:
        check_picture_path(show_path)
    spec = None
    if target.suffix == ".toml":
        spec = load_spec(target, state.registry)
        dataset_file = spec.dataset_path
    else:
        dataset_file = target
        if spec_path is not None:
            spec = load_spec(spec_path, state.registry)
    if add:
        if spec is None:
            raise QcdtoolError("--add needs the imagers of a spec: give a spec, or a dataset and --spec SPEC")
        with Dataset(dataset_file) as dataset:
            imagers = images_for_dataset(spec, dataset)
        with LazyProgress(state, "drawing images") as progress:
            summary = add_images(dataset_file, spec, imagers, force=force, on_progress=progress)
        state.err.print(summary)
    if show_path is not None:
        with Dataset(dataset_file) as dataset:
            if label is None:
                if len(dataset.image_labels) != 1:
                    raise QcdtoolError(
                        f"{dataset_file} holds images of {', '.join(dataset.image_labels) or 'no imager'}; "
                        "choose one with --imager LABEL"
                    )
                label = dataset.image_labels[0]
            show_images(dataset, label, show_path, configurations=configurations, samples=samples)
        click.echo(str(show_path))
