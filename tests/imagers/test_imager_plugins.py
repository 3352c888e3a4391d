"""Tests of how the imager plugins register and validate their options."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from types import ModuleType

import pluggy
import pytest
from pydantic import ValidationError

from qcdtool.core import hookspecs
from qcdtool.core.contracts import Imager, ImagerInput, Plugin, PluginContext, PluginParams
from qcdtool.plugins.imagers import angular, eta_phi, event

MODULES = {"eta-phi": eta_phi, "angular": angular, "event": event}
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def registered_plugins(module: ModuleType) -> list[type[Plugin]]:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(module)
    plugins: list[type[Plugin]] = []
    manager.hook.register_imagers(register=plugins.append)
    return plugins


@pytest.mark.parametrize(("name", "module"), MODULES.items())
def test_module_registers_one_imager(name: str, module: ModuleType) -> None:
    plugins = registered_plugins(module)
    assert len(plugins) == 1
    assert issubclass(plugins[0], Imager)
    assert plugins[0].name == name


@pytest.mark.parametrize("name", MODULES)
def test_entry_point_names_module(name: str) -> None:
    entry_points = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]["qcdtool"]
    module = importlib.import_module(entry_points[name])
    assert module is MODULES[name]


@pytest.mark.parametrize("module", MODULES.values())
def test_params_fields_documented(module: ModuleType) -> None:
    plugin = registered_plugins(module)[0]
    assert issubclass(plugin.Params, PluginParams)
    for field_name, field in plugin.Params.model_fields.items():
        assert field.description, field_name
        assert not field.is_required(), field_name


@pytest.mark.parametrize("module", MODULES.values())
def test_default_size_odd(module: ModuleType) -> None:
    plugin = registered_plugins(module)[0]
    assert plugin.Params().size % 2 == 1  # type: ignore[attr-defined]


def test_event_imager_takes_events() -> None:
    assert event.EventImager.input == ImagerInput.EVENT
    assert eta_phi.EtaPhiImager.input == ImagerInput.JET


@pytest.mark.parametrize(
    ("params", "options", "field"),
    [
        (eta_phi.EtaPhiParams, {"size": 0}, "size"),
        (eta_phi.EtaPhiParams, {"size": 7}, "size"),
        (eta_phi.EtaPhiParams, {"size": 129}, "size"),
        (eta_phi.EtaPhiParams, {"size": 15.0}, "size"),
        (eta_phi.EtaPhiParams, {"extent": -0.4}, "extent"),
        (eta_phi.EtaPhiParams, {"extent": 0.0}, "extent"),
        (eta_phi.EtaPhiParams, {"channels": "charged"}, "channels"),
        (eta_phi.EtaPhiParams, {"intensity": "pt"}, "intensity"),
        (eta_phi.EtaPhiParams, {"center": "middle"}, "center"),
        (eta_phi.EtaPhiParams, {"rotate": "yes"}, "rotate"),
        (eta_phi.EtaPhiParams, {"frame_from": "both"}, "frame_from"),
        (eta_phi.EtaPhiParams, {"pixels": 16}, "pixels"),
        (angular.AngularParams, {"intensity": "pt-fraction"}, "intensity"),
        (angular.AngularParams, {"rotate": True}, "rotate"),
        (angular.AngularParams, {"extent": -1.0}, "extent"),
        (event.EventParams, {"extent": 2.0}, "extent"),
        (event.EventParams, {"coordinates": "sphere"}, "coordinates"),
        (event.EventParams, {"channels": "neutral"}, "channels"),
        (event.EventParams, {"thrust_leading": 0}, "thrust_leading"),
    ],
)
def test_params_reject_invalid(params: type[PluginParams], options: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        params(**options)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_params_accept_integer_extent() -> None:
    assert eta_phi.EtaPhiParams(extent=1).extent == 1.0


def test_imager_rejects_other_params() -> None:
    with pytest.raises(TypeError, match="EtaPhiParams"):
        eta_phi.EtaPhiImager(angular.AngularParams(), PluginContext())
