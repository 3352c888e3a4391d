"""The ``qcdtool`` command."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from qcdtool import __version__
from qcdtool.core.cli.base import QcdtoolGroup, get_state, verbosity_options
from qcdtool.core.cli.data_cmd import LazyProgress, generate, images, inspect, merge
from qcdtool.core.cli.evaluate_cmd import evaluate
from qcdtool.core.cli.model_cmd import sample, train
from qcdtool.core.cli.plugins_cmd import plugins_group
from qcdtool.core.cli.spec_cmd import spec_group
from qcdtool.core.logs import log_to_file
from qcdtool.core.pipeline import LOG_FILE, RunOptions, StageContext, prepare_run_dir, run_pipeline
from qcdtool.core.spec import load_spec


@click.group(cls=QcdtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="qcdtool", message="%(prog)s %(version)s")
@verbosity_options
def cli() -> None:
    """Simulate e+e- -> hadrons, make jet images and learn hadronization with diffusion models.

    Start with 'qcdtool spec init > my.toml', then 'qcdtool run my.toml'.
    """


cli.add_command(plugins_group)
cli.add_command(spec_group)
cli.add_command(generate)
cli.add_command(merge)
cli.add_command(inspect)
cli.add_command(images)
cli.add_command(train)
cli.add_command(sample)
cli.add_command(evaluate)


#: Progress bar label and unit of each stage of a run.
STAGE_PROGRESS = {
    "generate": ("generating", "events"),
    "train": ("training", "steps"),
    "sample": ("sampling", "conditions"),
    "evaluate": ("evaluating", "tasks"),
}


@cli.command("run")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of local processes for event generation.",
)
@verbosity_options
def run(spec_path: Path, workers: int) -> None:
    """Run every stage of SPEC: generate, train, sample, evaluate.

    Everything is validated before any work starts. Results go to the run
    folder <output>/<name>/ named by the spec's [run] table; a stage whose
    results there are current is skipped.
    """
    state = get_state()
    spec = load_spec(spec_path, state.registry)
    run_dir = prepare_run_dir(spec)
    with log_to_file(run_dir / LOG_FILE), LazyProgress(state, "generating") as progress:
        context = StageContext(
            spec=spec,
            registry=state.registry,
            options=RunOptions(workers=workers),
            run_dir=run_dir,
            verbosity=state.verbosity,
            on_progress=progress,
            on_stage=lambda name: progress.relabel(*STAGE_PROGRESS.get(name, (name, "items"))),
        )
        report = run_pipeline(context)
    table = Table(title=f"run {spec.run.name}: {run_dir}")
    for column in ("stage", "status", "details"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "skipped": "dim", "not available": "yellow", "not run": "yellow"}
    for outcome in report.outcomes:
        colour = colours.get(outcome.status, "white")
        table.add_row(outcome.name, f"[{colour}]{outcome.status}[/]", outcome.message)
    if state.verbosity >= 0:
        state.err.print(table)


def main() -> None:
    """Entry point of the ``qcdtool`` console script."""
    cli(prog_name="qcdtool")
