"""The qcdtool command line: help, version, plugin listing, run folders, the installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import Result

from qcdtool import __version__
from qcdtool.core import generate as generate_module
from qcdtool.core.cli import cli
from qcdtool.core.cli.base import continuation
from qcdtool.core.dataset import Dataset
from tests.conftest import MakeDistribution

SMALL_SPEC = """
[run]
name = "cli-test"
seed = 11

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = 50
"""


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    commands = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            commands.extend(all_commands(command, (*prefix, name)))
        else:
            commands.append((*prefix, name))
    return commands


def test_version(run_cli: Callable[..., Result]) -> None:
    result = run_cli("--version")
    assert result.stdout.strip() == f"qcdtool {__version__}"


@pytest.mark.parametrize("command", all_commands(cli), ids=lambda c: " ".join(c) or "qcdtool")
def test_help_everywhere(command: tuple[str, ...], run_cli: Callable[..., Result]) -> None:
    result = run_cli(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


@pytest.mark.parametrize("command", [c for c in all_commands(cli) if c], ids=" ".join)
def test_verbosity_everywhere(command: tuple[str, ...], run_cli: Callable[..., Result]) -> None:
    result = run_cli(*command, "--help")
    assert "--verbose" in result.stdout
    assert "--quiet" in result.stdout


def test_plugins_show_parameters(run_cli: Callable[..., Result]) -> None:
    result = run_cli("plugins", "show", "pythia-ee")
    assert result.exit_code == 0
    for text in ("hadronizations", ">= 1", '"rehadronize", "independent"', "Centre-of-mass energy in GeV."):
        assert text in result.stdout


def test_plugins_show_unknown(run_cli: Callable[..., Result]) -> None:
    result = run_cli("plugins", "show", "no-such-plugin")
    assert result.exit_code == 2
    assert "no plugin named 'no-such-plugin'" in result.stderr


def test_plugins_list_kind_filter(run_cli: Callable[..., Result]) -> None:
    rows = json.loads(run_cli("plugins", "list", "--kind", "generator", "--json").stdout)
    assert {row["kind"] for row in rows} == {"generator"}


def test_run_writes_folder(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC)
    result = run_cli("run", str(spec))
    assert result.exit_code == 0
    run_dir = tmp_path / "runs" / "cli-test"
    assert (run_dir / "spec.resolved.toml").read_text() == run_cli("spec", "show", str(spec)).stdout
    environment = json.loads((run_dir / "environment.json").read_text())
    assert set(environment["packages"]) >= {"qcdtool", "torch", "pythia8mc", "fastjet"}
    assert environment["plugins"][0]["name"] == "pythia-ee"
    assert (run_dir / "dataset.h5").is_file()
    assert (run_dir / "log.txt").is_file()


def test_run_regenerates_changed_generator(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC)
    assert run_cli("run", str(spec)).exit_code == 0
    spec.write_text(SMALL_SPEC.replace("hadronizations = 50", "hadronizations = 60"))
    assert run_cli("run", str(spec)).exit_code == 0
    with Dataset(tmp_path / "runs" / "cli-test" / "dataset.h5") as dataset:
        assert len(dataset) == 120


def test_run_refuses_other_spec_file(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(SMALL_SPEC)
    second.write_text(SMALL_SPEC.replace("seed = 11", "seed = 12"))
    assert run_cli("run", str(first)).exit_code == 0
    result = run_cli("run", str(second))
    assert result.exit_code == 2
    assert f"contains the run of another spec file, {first.resolve()}" in result.stderr


def test_run_force_takes_folder_over(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(SMALL_SPEC)
    second.write_text(SMALL_SPEC.replace("seed = 11", "seed = 12"))
    assert run_cli("run", str(first)).exit_code == 0
    assert run_cli("run", str(second), "--force").exit_code == 0
    with Dataset(tmp_path / "runs" / "cli-test" / "dataset.h5") as dataset:
        assert int(dataset.attrs["seed"]) == 12


def test_run_accepts_new_imager(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC)
    assert run_cli("run", str(spec)).exit_code == 0
    spec.write_text(SMALL_SPEC + '\n[[imagers]]\nplugin = "eta-phi"\n')
    assert run_cli("run", str(spec)).exit_code == 0
    resolved = (tmp_path / "runs" / "cli-test" / "spec.resolved.toml").read_text()
    assert 'plugin = "eta-phi"' in resolved


def test_installed_script_runs(tmp_path: Path) -> None:
    script = shutil.which("qcdtool", path=str(Path(sys.executable).parent))
    assert script is not None, "the qcdtool console script is not installed next to this Python"
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC)
    listing = subprocess.run([script, "plugins", "list"], capture_output=True, text=True, check=False)
    assert listing.returncode == 0
    assert "pythia-ee" in listing.stdout
    bad = subprocess.run(
        [script, "spec", "validate", str(tmp_path / "nope.toml")], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'nope.toml'}: spec file not found"


def test_pythia_output_goes_to_log(tmp_path: Path) -> None:
    script = shutil.which("qcdtool", path=str(Path(sys.executable).parent))
    assert script is not None
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC)
    result = subprocess.run([script, "generate", str(spec)], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "PYTHIA" not in result.stdout
    assert "PYTHIA" not in result.stderr
    log = (tmp_path / "runs" / "cli-test" / "log.txt").read_text()
    assert "PYTHIA Process Initialization" in log


def test_pythia_output_shown_with_verbose(tmp_path: Path) -> None:
    script = shutil.which("qcdtool", path=str(Path(sys.executable).parent))
    assert script is not None
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC)
    result = subprocess.run([script, "-v", "generate", str(spec)], capture_output=True, text=True, check=False)
    assert "PYTHIA Process Initialization" in result.stdout


def test_plugins_show_keeps_brackets(make_distribution: MakeDistribution, run_cli: Callable[..., Result]) -> None:
    # A description may name a TOML table; rich must print it, not read it as markup.
    module = (
        "from typing import ClassVar\n"
        "from pydantic import Field\n"
        "from qcdtool.core.contracts import Metric, PluginParams\n"
        "from qcdtool.core.hookspecs import hookimpl\n"
        "class Params(PluginParams):\n"
        "    radius: float = Field(0.8, description='Same as radius in [jets] by default.')\n"
        "class Bracketed(Metric):\n"
        "    name: ClassVar[str] = 'bracketed'\n"
        "    summary: ClassVar[str] = 'Reads [jets] and [split]'\n"
        "    Params = Params\n"
        "@hookimpl\n"
        "def register_metrics(register):\n"
        "    register(Bracketed)\n"
    )
    make_distribution("bracketed", "1.0", {"bracketed_mod": module}, {"bracketed": "bracketed_mod"})
    result = run_cli("plugins", "show", "bracketed")
    assert "Same as radius in [jets] by default." in result.stdout
    assert "Reads [jets] and [split]" in result.stdout


def interrupt_generation(*args: object, **kwargs: object) -> None:
    """Stand in for the unit writer, raising what Ctrl-C raises."""
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("command", "continued"),
    [
        (["generate", "{spec}", "--workers", "2"], "qcdtool generate {spec} --workers 2 --resume"),
        (["run", "{spec}"], "qcdtool run {spec}"),
    ],
    ids=["generate", "run"],
)
def test_interrupt_names_command(
    command: list[str],
    continued: str,
    tmp_path: Path,
    run_cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SMALL_SPEC)
    monkeypatch.setattr(generate_module, "_write_parts", interrupt_generation)
    result = run_cli(*(word.format(spec=spec) for word in command))
    assert result.exit_code == 130
    assert f"To continue, run: {continued.format(spec=spec)}" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("arguments", "command", "kept"),
    [
        (["generate", "s.toml"], "qcdtool generate s.toml --resume", "Finished units of events are kept."),
        (["-v", "generate", "s.toml", "--resume"], "qcdtool -v generate s.toml --resume", "Finished units"),
        (["train", "s.toml", "--force"], "qcdtool train s.toml --resume", "last checkpoint"),
        (["train", "s.toml", "--model", "m"], "qcdtool train s.toml --model m --resume", "last checkpoint"),
        (["run", "s.toml"], "qcdtool run s.toml", "Finished stages and units of events are kept."),
        (["run", "s.toml", "--from", "train"], "qcdtool run s.toml --from train", "also redoes the stages"),
        (["run", "s.toml", "--force"], "qcdtool run s.toml --force", "also redoes the stages"),
        (["merge", "out.h5", "a b.h5"], "qcdtool merge out.h5 'a b.h5'", ""),
    ],
)
def test_continuation_command(arguments: list[str], command: str, kept: str) -> None:
    going_on = continuation(arguments)
    assert going_on.command == command
    assert kept in going_on.kept
    assert bool(going_on.kept) == bool(kept)
