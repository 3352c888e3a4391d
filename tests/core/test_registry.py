"""Plugin discovery through entry points, with broken and conflicting plugins."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from click.testing import Result

from qcdtool.core.contracts import API_VERSION, PluginKind
from qcdtool.core.errors import PluginError
from qcdtool.core.registry import create_registry
from tests.conftest import MakeDistribution

GOOD_METRIC = """
from typing import ClassVar
from pydantic import Field
from qcdtool.core.contracts import Metric, PluginParams
from qcdtool.core.hookspecs import hookimpl

class Params(PluginParams):
    threshold: float = Field(0.5, gt=0, description="Pixel threshold.")

class {cls}(Metric):
    name: ClassVar[str] = "{name}"
    summary: ClassVar[str] = "A test metric"
    Params = Params
    api_version = {api}

@hookimpl
def register_metrics(register):
    register({cls})
"""

SPEC_WITHOUT_TEST_PLUGINS = """
[generator]
plugin = "pythia-ee"
"""


def metric_module(name: str, cls: str = "TestMetric", api: int = API_VERSION) -> str:
    return GOOD_METRIC.format(name=name, cls=cls, api=api)


def test_builtin_generator_found() -> None:
    registry = create_registry()
    info = registry.get(PluginKind.GENERATOR, "pythia-ee")
    assert info.source.distribution == "qcdtool"


def test_third_party_plugin_found(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "good-metrics", "1.2.0", {"good_metrics_mod": metric_module("good-metric")}, {"good": "good_metrics_mod"}
    )
    registry = create_registry()
    info = registry.get(PluginKind.METRIC, "good-metric")
    assert info.source.label == "good-metrics==1.2.0"
    assert registry.broken == []


def test_import_error_listed_as_broken(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "broken-import",
        "0.1",
        {"broken_import_mod": "import does_not_exist_anywhere\n"},
        {"bad-import": "broken_import_mod"},
    )
    registry = create_registry()
    [broken] = registry.broken
    assert broken.sources[0].label == "broken-import==0.1"
    assert "import failed: ModuleNotFoundError" in broken.error
    assert "does_not_exist_anywhere" in broken.error


def test_raising_hook_listed_as_broken(make_distribution: MakeDistribution) -> None:
    source = """
from qcdtool.core.hookspecs import hookimpl

@hookimpl
def register_imagers(register):
    raise RuntimeError("configuration file missing")
"""
    make_distribution("raising-hook", "2.0", {"raising_hook_mod": source}, {"raising": "raising_hook_mod"})
    registry = create_registry()
    [broken] = registry.broken
    assert broken.error == "register_imagers() raised RuntimeError: configuration file missing"


def test_wrong_api_version_listed_as_broken(make_distribution: MakeDistribution) -> None:
    module = metric_module("future-metric", api=API_VERSION + 1)
    make_distribution("future-metrics", "9.0", {"future_metrics_mod": module}, {"future": "future_metrics_mod"})
    registry = create_registry()
    [broken] = registry.broken
    assert broken.name == "future-metric"
    assert f"written for plugin API version {API_VERSION + 1}" in broken.error
    assert f"supports version {API_VERSION}" in broken.error


def test_malformed_name_listed_as_broken(make_distribution: MakeDistribution) -> None:
    make_distribution("bad-name", "1.0", {"bad_name_mod": metric_module("Bad_Name")}, {"bad": "bad_name_mod"})
    registry = create_registry()
    [broken] = registry.broken
    assert "invalid name 'Bad_Name'" in broken.error


def test_parameter_without_description_broken(make_distribution: MakeDistribution) -> None:
    module = metric_module("undocumented").replace(', description="Pixel threshold."', "")
    make_distribution("undocumented", "1.0", {"undocumented_mod": module}, {"u": "undocumented_mod"})
    registry = create_registry()
    [broken] = registry.broken
    assert "parameter 'threshold' has no description" in broken.error


def test_duplicate_name_names_both(make_distribution: MakeDistribution) -> None:
    make_distribution("first-dist", "1.0", {"first_mod": metric_module("twin")}, {"first": "first_mod"})
    make_distribution(
        "second-dist", "2.0", {"second_mod": metric_module("twin", cls="Other")}, {"second": "second_mod"}
    )
    registry = create_registry()
    [broken] = registry.broken
    assert "first-dist==1.0" in broken.error
    assert "second-dist==2.0" in broken.error
    assert (PluginKind.METRIC, "twin") not in registry.plugins


def test_duplicate_name_fails_spec_use(make_distribution: MakeDistribution) -> None:
    make_distribution("first-dist", "1.0", {"first_mod": metric_module("twin")}, {"first": "first_mod"})
    make_distribution(
        "second-dist", "2.0", {"second_mod": metric_module("twin", cls="Other")}, {"second": "second_mod"}
    )
    registry = create_registry()
    with pytest.raises(PluginError, match=re.escape("registered by both first-dist==1.0 and second-dist==2.0")):
        registry.get(PluginKind.METRIC, "twin")


def test_broken_import_fails_spec_use(make_distribution: MakeDistribution) -> None:
    make_distribution(
        "broken-import",
        "0.1",
        {"broken_import_mod": "raise ImportError('needs libfoo')\n"},
        {"bad-import": "broken_import_mod"},
    )
    registry = create_registry()
    with pytest.raises(PluginError, match="failed to load: import failed: ImportError: needs libfoo"):
        registry.get(PluginKind.IMAGER, "bad-import")


def test_unknown_name_suggests_closest() -> None:
    registry = create_registry()
    with pytest.raises(PluginError, match="did you mean 'pythia-ee'"):
        registry.get(PluginKind.GENERATOR, "pythia-e")


@pytest.fixture
def four_broken(make_distribution: MakeDistribution) -> None:
    """One distribution of each failure the registry must survive."""
    make_distribution(
        "broken-import", "0.1", {"broken_import_mod": "import does_not_exist_anywhere\n"}, {"a": "broken_import_mod"}
    )
    raising = (
        "from qcdtool.core.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def register_models(register):\n"
        "    raise ValueError('boom')\n"
    )
    make_distribution("raising-hook", "0.2", {"raising_hook_mod": raising}, {"b": "raising_hook_mod"})
    make_distribution("dup-one", "0.3", {"dup_one_mod": metric_module("twin")}, {"c": "dup_one_mod"})
    make_distribution("dup-two", "0.4", {"dup_two_mod": metric_module("twin", cls="Other")}, {"d": "dup_two_mod"})
    module = metric_module("old-api", api=API_VERSION + 7)
    make_distribution("old-api", "0.5", {"old_api_mod": module}, {"e": "old_api_mod"})


@pytest.mark.usefixtures("four_broken")
def test_list_survives_broken(run_cli: Callable[..., Result]) -> None:
    result = run_cli("plugins", "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    broken = {row["distribution"]: row for row in rows if row["status"] == "broken"}
    assert set(broken) == {"broken-import", "raising-hook", "dup-one, dup-two", "old-api"}
    assert any(row["name"] == "pythia-ee" and row["status"] == "ok" for row in rows)


@pytest.mark.usefixtures("four_broken")
def test_table_survives_broken(run_cli: Callable[..., Result]) -> None:
    result = run_cli("plugins", "list")
    assert result.exit_code == 0
    assert "broken" in result.stdout


@pytest.mark.usefixtures("four_broken")
def test_validate_survives_broken(run_cli: Callable[..., Result], tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_WITHOUT_TEST_PLUGINS)
    result = run_cli("spec", "validate", str(spec))
    assert result.exit_code == 0
