"""The third-party example package: discovered through its entry point, listed and used in a run."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result

from qcdtool.core.contracts import PluginKind
from qcdtool.core.dataset import Dataset
from qcdtool.core.registry import create_registry
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "qcdtool-plugin-example"
DISTRIBUTION = "qcdtool-plugin-example"

SPEC = """
[run]
name = "polar"
seed = 3

[generator]
plugin = "pythia-ee"
parton_events = 2
hadronizations = 100

[[imagers]]
plugin = "polar"
rings = 8
sectors = 12
"""


@pytest.fixture
def example_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The example package as an installed distribution; return how it got there.

    ``make test`` pip-installs it. Run without that, the test exposes the
    package's source through a real dist-info folder on sys.path, which
    importlib.metadata reads the same way.
    """
    try:
        importlib.metadata.distribution(DISTRIBUTION)
        return "pip"
    except importlib.metadata.PackageNotFoundError:
        pass
    site = tmp_path / "site"
    info = site / "qcdtool_plugin_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[qcdtool]\npolar = qcdtool_plugin_example.polar\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    return "dist-info"


@pytest.mark.usefixtures("example_installed")
def test_example_discovered() -> None:
    info = create_registry().get(PluginKind.IMAGER, "polar")
    assert info.source.distribution == DISTRIBUTION


@pytest.mark.usefixtures("example_installed")
def test_example_listed(run_cli: Callable[..., Result]) -> None:
    rows = json.loads(run_cli("plugins", "list", "--json").stdout)
    polar = [row for row in rows if row["name"] == "polar"]
    assert polar == [
        {
            "kind": "imager",
            "name": "polar",
            "summary": "Jet images on a (distance, angle) grid about the jet axis; pT fraction intensity.",
            "distribution": DISTRIBUTION,
            "version": "0.1.0",
            "status": "ok",
            "error": None,
        }
    ]


@pytest.mark.usefixtures("example_installed")
def test_example_used_in_run(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    assert run_cli("spec", "validate", str(spec)).exit_code == 0
    result = run_cli("generate", str(spec))
    assert result.exit_code == 0
    with Dataset(Path(result.stdout.strip())) as dataset:
        images = np.asarray(dataset.images("polar", "hadron"))
        dropped = np.asarray(dataset.file["images/polar/hadron_dropped_fraction"])
    assert images.shape == (200, 1, 8, 12)
    assert np.allclose(images.sum(axis=(1, 2, 3)), 1.0 - dropped, atol=1e-5)


@pytest.mark.usefixtures("example_installed")
def test_example_bad_parameter(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("sectors = 12", "sectors = 2"))
    result = run_cli("spec", "validate", str(spec))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {spec}: imagers[0].sectors: must be >= 4, got 2"
