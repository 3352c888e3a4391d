"""``qcdtool evaluate``: the metrics of a spec on its models' samples, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qcdtool.core.cli.base import get_state, verbosity_options
from qcdtool.core.evaluate import EvaluateOptions, evaluate_run
from qcdtool.core.logs import log_to_file
from qcdtool.core.pipeline import LOG_FILE
from qcdtool.core.report import comparable_groups, compare, comparison_rows, format_measurement
from qcdtool.core.spec import load_spec


@click.command("evaluate")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "labels",
    multiple=True,
    help="Label of a model to evaluate (repeat for several); default: every model of SPEC.",
)
@click.option("--force", is_flag=True, help="Compute again even when metrics.json and report.html are current.")
@verbosity_options
def evaluate(spec_path: Path, labels: tuple[str, ...], force: bool) -> None:
    """Score the models' samples with the spec's metrics; write metrics.json and report.html.

    Needs samples/<label>.h5 of every model evaluated ('qcdtool sample' or
    'qcdtool run' writes them). Prints the path of report.html; exits with
    status 1 when a metric failed (the report lists it).
    """
    state = get_state()
    spec = load_spec(spec_path, state.registry)
    progress = Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[what]}"),
        console=state.err,
        disable=state.verbosity < 0,
    )
    task = progress.add_task("steps", total=None, what="")
    with log_to_file(spec.run_dir / LOG_FILE), progress:
        outcome = evaluate_run(
            spec,
            EvaluateOptions(models=labels, force=force),
            on_progress=lambda done, total, what: progress.update(task, completed=done, total=total, what=what),
        )
    state.err.print(outcome.message)
    _print_comparison(outcome.metrics, state.err)
    for failure in outcome.failed:
        state.err.print(f"[bold red]failed:[/] {failure}", soft_wrap=True, markup=True)
    click.echo(str(outcome.report))
    if outcome.failed:
        click.get_current_context().exit(1)


def _print_comparison(metrics: Path, console: Console) -> None:
    """Print, per group of comparable models, the values that have a direction, models side by side."""
    record = json.loads(metrics.read_text(encoding="utf-8"))
    models = record["models"]
    metric_labels = list(dict.fromkeys(label for entry in models.values() for label in entry["metrics"]))
    for title, labels in comparable_groups(models).items():
        table = Table(title=f"{title} (value ± uncertainty; baseline)")
        for column in ("metric", "value", *labels, "baseline", "better"):
            table.add_column(column, overflow="fold")
        group = {label: models[label] for label in labels}
        for metric, name, cells, better in comparison_rows(group, metric_labels):
            if better is None:
                continue
            verdict, _ = compare(cells, better)
            shown = [
                format_measurement(cells[label]["value"], cells[label]["uncertainty"]) if label in cells else "-"
                for label in labels
            ]
            baseline = next(iter(cells.values())).get("baseline")
            table.add_row(metric, name, *shown, "-" if baseline is None else f"{baseline:.3g}", verdict)
        console.print(table)
