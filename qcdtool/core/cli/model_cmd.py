"""``qcdtool train`` and ``qcdtool sample``: the models of a spec."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from qcdtool.core.cli.base import CliState, get_state, verbosity_options
from qcdtool.core.contracts import TrainingProgress
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.logs import log_to_file
from qcdtool.core.pipeline import LOG_FILE
from qcdtool.core.spec import load_spec
from qcdtool.core.train import SamplingOptions, find_model, sample_model, train_model


def training_progress(state: CliState, label: str) -> tuple[Progress, object]:
    """Make a progress bar over training steps that shows the loss and images/s."""
    progress = Progress(
        TextColumn(f"training {label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} images/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=state.err,
        disable=state.verbosity < 0,
    )
    task = progress.add_task("steps", total=None, loss="-", rate="-")
    return progress, task


@click.command("train")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--model", "label", default=None, help="Label of the model to train; default: every model of SPEC.")
@click.option("--resume", is_flag=True, help="Continue an interrupted training from its last checkpoint.")
@click.option(
    "--force",
    is_flag=True,
    help="Train again from scratch, replacing a trained model (also one trained with other settings).",
)
@verbosity_options
def train(spec_path: Path, label: str | None, resume: bool, force: bool) -> None:
    """Train the models of SPEC on the run's dataset; checkpoints go to models/<label>/."""
    state = get_state()
    spec = load_spec(spec_path, state.registry)
    if not spec.models:
        raise QcdtoolError(f"{spec_path} has no [[models]] table; add one naming a model plugin to train")
    for model in find_model(spec, label):
        progress, task = training_progress(state, model.label)

        def report(update: TrainingProgress, progress: Progress = progress, task: object = task) -> None:
            progress.update(
                task,  # type: ignore[arg-type]
                completed=update.step,
                total=update.total_steps,
                loss=f"{update.loss:.4g}",
                rate=f"{update.images_per_second:,.0f}",
            )

        with log_to_file(spec.run_dir / LOG_FILE), progress:
            summary = train_model(spec, model, resume=resume, on_progress=report, force=force)
        state.err.print(summary)


@click.command("sample")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--model", "label", required=True, help="Label of the trained model to sample.")
@click.option(
    "--sampler", type=click.Choice(["ddpm", "ddim"]), default=None, help="Sampler; default: the spec's [sampling]."
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Sampling steps; default: the spec's [sampling]."
)
@click.option(
    "--per-condition",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per test condition; default: the spec's [sampling].",
)
@click.option(
    "--max-conditions",
    type=click.IntRange(min=0),
    default=None,
    help="Test conditions sampled (0: all); default: the spec's [sampling].",
)
@verbosity_options
def sample(
    spec_path: Path,
    label: str,
    sampler: str | None,
    steps: int | None,
    per_condition: int | None,
    max_conditions: int | None,
) -> None:
    """Sample a trained model on the test conditions; write samples/<label>.h5."""
    state = get_state()
    spec = load_spec(spec_path, state.registry)
    [model] = find_model(spec, label)
    options = SamplingOptions(sampler=sampler, steps=steps, per_condition=per_condition, max_conditions=max_conditions)
    progress = Progress(
        TextColumn(f"sampling {model.label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=state.err,
        disable=state.verbosity < 0,
    )
    task = progress.add_task("conditions", total=None)
    with log_to_file(spec.run_dir / LOG_FILE), progress:
        path, summary = sample_model(
            spec, model, options, on_progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    state.err.print(summary)
    click.echo(str(path))
