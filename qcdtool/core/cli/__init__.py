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
from qcdtool.core.pipeline import STAGE_NAMES
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
    "images": ("drawing images", "events"),
    "train": ("training", "steps"),
    "sample": ("sampling", "conditions"),
    "evaluate": ("evaluating", "tasks"),
    "report": ("writing the report", "pages"),
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
@click.option(
    "--dataset",
    "dataset_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Train and evaluate on this dataset file (made elsewhere) instead of generating one; overrides [run] dataset.",
)
@click.option(
    "--from",
    "from_stage",
    type=click.Choice(STAGE_NAMES),
    default=None,
    help="Redo this stage and every later one, even where current; the stages before must be current.",
)
@click.option(
    "--only",
    type=click.Choice(STAGE_NAMES),
    default=None,
    help="Run only this stage (skipped when current, unless --force); the stages before must be current.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Redo every stage that runs, even where current; also lets SPEC take over a run folder of another spec file.",
)
@verbosity_options
def run(
    spec_path: Path,
    workers: int,
    dataset_path: Path | None,
    from_stage: str | None,
    only: str | None,
    force: bool,
) -> None:
    """Run the stages of SPEC: generate, images, train, sample, evaluate, report.

    Everything is validated before any work starts. Results go to the run
    folder <output>/<name>/ named by the spec's [run] table. Each stage's
    results record what they depend on: a rerun skips the stages that are
    current and redoes what a changed spec made stale (a changed model is
    trained, sampled and evaluated again, alone). An interrupted run goes
    on from where it stopped when given the same command again.
    """
    from qcdtool import api
    from qcdtool.core.evaluate import REPORT_FILE

    state = get_state()
    spec = load_spec(spec_path, state.registry)
    with LazyProgress(state, "generating") as progress:

        def on_stage(name: str, what: str) -> None:
            action, unit = STAGE_PROGRESS.get(name, (name, "items"))
            position = STAGE_NAMES.index(name) + 1 if name in STAGE_NAMES else 0
            progress.relabel(f"[{position}/{len(STAGE_NAMES)}] {action} {what}".rstrip(), unit)

        report = api.run(
            spec,
            only=only,
            from_stage=from_stage,
            force=force,
            workers=workers,
            dataset=dataset_path,
            on_progress=progress,
            on_stage=on_stage,
            registry=state.registry,
            verbosity=state.verbosity,
        )
    run_dir = report.run_dir
    table = Table(title=f"run {spec.run.name}")
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("details", overflow="fold")
    colours = {"done": "green", "current": "green", "skipped": "dim", "not run": "dim"}
    for outcome in report.outcomes:
        colour = colours.get(outcome.status, "white")
        table.add_row(outcome.name, f"[{colour}]{outcome.status}[/]", outcome.message)
    if state.verbosity >= 0:
        state.err.print(table)
        state.err.print(f"run folder: {run_dir}", soft_wrap=True, highlight=False)
    report_path = run_dir / REPORT_FILE
    if report_path.is_file():
        click.echo(str(report_path))


def main() -> None:
    """Entry point of the ``qcdtool`` console script."""
    cli(prog_name="qcdtool")
