"""Shared fixtures: installed plugin distributions built on the fly, and the CLI runner."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qcdtool.core.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[1]

MakeDistribution = Callable[..., Path]


@pytest.fixture
def make_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeDistribution:
    """Build a real installed distribution (module files plus a dist-info folder) on sys.path.

    ``importlib.metadata`` finds it like any pip-installed package, so the
    registry discovers its entry points through the normal path.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(name: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
        for module, source in modules.items():
            file = site / (module.replace(".", "/") + ".py")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(textwrap.dedent(source))
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = ["[qcdtool]"] + [f"{key} = {value}" for key, value in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        return site

    return make


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the qcdtool CLI in-process; stdout and stderr are kept apart."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke
