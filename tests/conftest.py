"""Shared fixtures: this checkout's entry points, plugin distributions built on the fly, the CLI runner."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qcdtool import __version__
from qcdtool.core.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[1]

MakeDistribution = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def checkout_entry_points(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Let plugin discovery see the entry points of this checkout's pyproject.toml.

    An editable install writes the entry points into its metadata once, at
    install time, so plugins added to pyproject.toml since stay invisible
    until the next ``pip install -e``. When the installed entry points differ
    from the checkout's, or qcdtool is not installed at all, this puts
    metadata with the checkout's entry points first on sys.path, where
    importlib.metadata finds it before any installed copy.
    """
    declared: dict[str, str] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "qcdtool"
    ]
    try:
        installed = importlib.metadata.distribution("qcdtool")
    except importlib.metadata.PackageNotFoundError:
        version = __version__
    else:
        if {entry.name: entry.value for entry in installed.entry_points.select(group="qcdtool")} == declared:
            return
        version = installed.version
    site = tmp_path_factory.mktemp("checkout-metadata")
    info = site / f"qcdtool-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: qcdtool\nVersion: {version}\n")
    lines = ["[console_scripts]", "qcdtool = qcdtool.core.cli:main", "", "[qcdtool]"]
    lines += [f"{name} = {module}" for name, module in declared.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()


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
