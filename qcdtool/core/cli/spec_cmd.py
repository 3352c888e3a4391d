"""``qcdtool spec``: check, resolve and start run specs."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

import click

from qcdtool.core.cli.base import get_state, verbosity_options
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.spec import load_spec

TEMPLATE_PACKAGE = "qcdtool.templates"


def template_names() -> list[str]:
    """Names of the bundled spec templates."""
    files = resources.files(TEMPLATE_PACKAGE).iterdir()
    return sorted(entry.name.removesuffix(".toml") for entry in files if entry.name.endswith(".toml"))


def template_text(name: str) -> str:
    """The text of a bundled template; raises QcdtoolError for an unknown name."""
    names = template_names()
    if name not in names:
        message = f"unknown template '{name}'"
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            message += f"; did you mean '{close[0]}'?"
        raise QcdtoolError(message + f" Templates: {', '.join(names)}.")
    return resources.files(TEMPLATE_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")


@click.group("spec")
@verbosity_options
def spec_group() -> None:
    """Validate, show and create run specs (TOML)."""


@spec_group.command("validate")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@verbosity_options
def validate(spec_path: Path) -> None:
    """Check SPEC in full and report every problem, one per line."""
    state = get_state()
    spec = load_spec(spec_path, state.registry)
    parts = [f"generator {spec.generator.plugin}" if spec.generator is not None else f"dataset {spec.dataset_path}"]
    for key in ("imagers", "models", "metrics"):
        labels = [table.label for table in getattr(spec, key)]
        parts.append(f"{len(labels)} {key}" + (f" ({', '.join(labels)})" if labels else ""))
    click.echo(f"{spec_path}: valid; {'; '.join(parts)}; run folder {spec.run_dir}")


@spec_group.command("show")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@verbosity_options
def show(spec_path: Path) -> None:
    """Print SPEC as TOML with every default filled in."""
    spec = load_spec(spec_path, get_state().registry)
    click.echo(spec.to_toml(), nl=False)


@spec_group.command("init")
@click.option(
    "--template",
    "template",
    default="quickstart",
    show_default=True,
    help="Bundled template to start from; 'qcdtool spec init --list' names them.",
)
@click.option("--list", "list_templates", is_flag=True, help="List the bundled templates and exit.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the spec to this file instead of standard output.",
)
@click.option("--force", is_flag=True, help="Overwrite the --output file if it exists.")
@verbosity_options
def init(template: str, list_templates: bool, output: Path | None, force: bool) -> None:
    """Print a starter spec that validates as it is."""
    if list_templates:
        for name in template_names():
            click.echo(name)
        return
    text = template_text(template)
    if output is None:
        click.echo(text, nl=False)
        return
    if output.exists() and not force:
        raise QcdtoolError(f"{output} exists; choose another file or pass --force to overwrite it")
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")
