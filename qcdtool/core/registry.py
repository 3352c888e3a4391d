"""Discover plugins through entry points and keep one registry per command.

Every distribution that declares an entry point in the ``qcdtool`` group
(qcdtool itself included) names a module implementing the hooks of
:mod:`qcdtool.core.hookspecs`. Loading is fault-isolated: a module that fails
to import, a hook that raises, a malformed plugin class, an incompatible API
version or two plugins with the same kind and name are recorded as broken and
reported, and everything else keeps working.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import re
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import pluggy
from pydantic import BaseModel

from qcdtool.core import hookspecs
from qcdtool.core.contracts import API_VERSION, BASE_CLASSES, Plugin, PluginKind, PluginParams
from qcdtool.core.errors import PluginError

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

HOOK_NAMES: dict[PluginKind, str] = {
    PluginKind.GENERATOR: "register_generators",
    PluginKind.IMAGER: "register_imagers",
    PluginKind.MODEL: "register_models",
    PluginKind.METRIC: "register_metrics",
}


@dataclass(frozen=True)
class Source:
    """Where a plugin module comes from: its distribution and entry point."""

    distribution: str
    version: str
    entry_point: str
    module: str

    @property
    def label(self) -> str:
        """``distribution==version``, as pip writes it."""
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class PluginInfo:
    """A registered, usable plugin."""

    kind: PluginKind
    name: str
    cls: type[Plugin]
    source: Source

    @property
    def summary(self) -> str:
        """The plugin's one-line summary."""
        return self.cls.summary


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin, or a whole plugin module, that could not be registered.

    ``kind`` and ``name`` are known when the failure concerns one plugin
    class; for a module that failed to import they are ``None``, and the
    entry point's name stands in for the plugin's.
    """

    sources: tuple[Source, ...]
    error: str
    kind: PluginKind | None = None
    name: str | None = None

    @property
    def display_name(self) -> str:
        """The plugin name if known, else the entry point name."""
        return self.name if self.name is not None else self.sources[0].entry_point


@dataclass
class PluginRegistry:
    """All plugins found by one discovery pass, usable and broken."""

    plugins: dict[tuple[PluginKind, str], PluginInfo] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    def __iter__(self) -> Iterator[PluginInfo]:
        return iter(sorted(self.plugins.values(), key=lambda info: (list(PluginKind).index(info.kind), info.name)))

    def names(self, kind: PluginKind) -> list[str]:
        """Names of the usable plugins of one kind, sorted."""
        return sorted(name for (k, name) in self.plugins if k == kind)

    def find(self, name: str) -> list[PluginInfo]:
        """Usable plugins with this name, of any kind."""
        return [info for (_, n), info in self.plugins.items() if n == name]

    def get(self, kind: PluginKind, name: str) -> PluginInfo:
        """Return the plugin of this kind and name, or raise a PluginError that explains why not."""
        info = self.plugins.get((kind, name))
        if info is not None:
            return info
        for broken in self.broken:
            if broken.kind == kind and broken.name == name:
                raise PluginError(f"{kind} plugin '{name}' cannot be used: {broken.error}")
        for broken in self.broken:
            if broken.kind is None and broken.sources[0].entry_point == name:
                source = broken.sources[0]
                raise PluginError(
                    f"{kind} plugin '{name}' cannot be used: its module {source.module} "
                    f"from {source.label} failed to load: {broken.error}"
                )
        raise PluginError(self.unknown_message(kind, name))

    def unknown_message(self, kind: PluginKind, name: str) -> str:
        """Explain that no plugin of this kind has this name, with the closest installed ones."""
        installed = self.names(kind)
        message = f"unknown {kind} plugin '{name}'"
        close = difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
        if close:
            message += f"; did you mean '{close[0]}'?"
        if installed:
            ordered = sorted(installed, key=lambda other: -difflib.SequenceMatcher(None, name, other).ratio())
            message += f" Installed {kind} plugins: {', '.join(ordered)}."
        else:
            message += f". No {kind} plugin is installed."
        failed = sorted({source.label for broken in self.broken for source in broken.sources})
        if failed:
            message += f" Broken plugin packages ({', '.join(failed)}) are listed by 'qcdtool plugins list'."
        return message


def create_registry(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> PluginRegistry:
    """Discover and register every plugin; never raises for a faulty plugin.

    ``entry_points`` defaults to all entry points of the ``qcdtool`` group
    found by :mod:`importlib.metadata` on ``sys.path``.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    loader = _Loader()
    for entry_point in entry_points:
        loader.load(entry_point)
    loader.call_hooks()
    return loader.registry


class _Loader:
    """One discovery pass: import modules, call their hooks, check what they register."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.registry = PluginRegistry()
        self.sources: dict[str, Source] = {}
        # Every registration of a (kind, name), to report conflicts with all sources.
        self.claims: dict[tuple[PluginKind, str], list[tuple[type[Plugin], Source]]] = {}

    def load(self, entry_point: importlib.metadata.EntryPoint) -> None:
        """Import one entry point's module and register its hook implementations."""
        dist = entry_point.dist
        source = Source(
            distribution=dist.name if dist is not None else "unknown",
            version=dist.version if dist is not None else "unknown",
            entry_point=entry_point.name,
            module=entry_point.value,
        )
        try:
            module = entry_point.load()
        except Exception as exc:  # any failure of third-party code must be isolated
            log.debug("plugin module %s from %s failed to import", source.module, source.label, exc_info=True)
            self._broken_module(source, f"import failed: {type(exc).__name__}: {exc}")
            return
        if not isinstance(module, types.ModuleType):
            self._broken_module(source, f"entry point '{entry_point.value}' is not a module")
            return
        if self.manager.is_registered(module):
            return  # the same module named by two entry points registers once
        try:
            self.manager.register(module, name=f"{source.distribution}:{source.entry_point}")
        except (pluggy.PluginValidationError, ValueError) as exc:
            self._broken_module(source, f"invalid hook implementation: {exc}")
            return
        self.sources[f"{source.distribution}:{source.entry_point}"] = source

    def call_hooks(self) -> None:
        """Call every hook implementation separately, so one failure stays contained."""
        for kind, hook_name in HOOK_NAMES.items():
            caller = getattr(self.manager.hook, hook_name)
            for impl in caller.get_hookimpls():
                source = self.sources[impl.plugin_name]
                registered: list[type[Plugin]] = []
                try:
                    impl.function(register=registered.append)
                except Exception as exc:  # isolate faulty third-party hooks
                    log.debug("hook %s of %s raised", hook_name, source.label, exc_info=True)
                    self._broken_module(source, f"{hook_name}() raised {type(exc).__name__}: {exc}")
                    continue
                for cls in registered:
                    self._check_and_claim(kind, cls, source, hook_name)
        self._resolve_claims()

    def _broken_module(self, source: Source, error: str) -> None:
        self.registry.broken.append(BrokenPlugin(sources=(source,), error=error))

    def _check_and_claim(self, kind: PluginKind, cls: object, source: Source, hook_name: str) -> None:
        problem = plugin_class_problem(kind, cls)
        name = getattr(cls, "name", None)
        if problem is not None:
            known_name = name if isinstance(name, str) else None
            self.registry.broken.append(
                BrokenPlugin(sources=(source,), error=f"{hook_name}() registered {problem}", kind=kind, name=known_name)
            )
            return
        plugin = cast(type[Plugin], cls)  # plugin_class_problem checked the class
        self.claims.setdefault((kind, plugin.name), []).append((plugin, source))

    def _resolve_claims(self) -> None:
        for (kind, name), claims in self.claims.items():
            classes = {cls for cls, _ in claims}
            if len(classes) == 1:
                cls, source = claims[0]
                self.registry.plugins[(kind, name)] = PluginInfo(kind=kind, name=name, cls=cls, source=source)
                continue
            sources = tuple(sorted(dict.fromkeys(source for _, source in claims), key=lambda source: source.label))
            labels = " and ".join(source.label for source in sources)
            others = [source.distribution for source in sources if source.distribution != "qcdtool"]
            advice = (
                f"rename the plugin in {', '.join(others)}, since qcdtool's own plugins keep their names"
                if len(others) < len(sources)
                else "uninstall one of them or ask its authors to rename the plugin"
            )
            self.registry.broken.append(
                BrokenPlugin(
                    sources=sources,
                    kind=kind,
                    name=name,
                    error=f"the {kind} name '{name}' is registered by both {labels}; {advice}",
                )
            )


def plugin_class_problem(kind: PluginKind, cls: object) -> str | None:
    """Describe what makes ``cls`` unusable as a plugin of ``kind``, or return None."""
    base = BASE_CLASSES[kind]
    if not isinstance(cls, type) or not issubclass(cls, base):
        return f"{cls!r}, which is not a subclass of {base.__module__}.{base.__qualname__}"
    where = f"{cls.__module__}.{cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        return f"{where} with invalid name {name!r}; a plugin name is kebab-case, like 'eta-phi'"
    summary = getattr(cls, "summary", None)
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary.strip():
        return f"{where} ('{name}') without a one-line summary"
    api_version = getattr(cls, "api_version", None)
    if api_version != API_VERSION:
        return (
            f"{where} ('{name}') written for plugin API version {api_version!r}; "
            f"this qcdtool supports version {API_VERSION}"
        )
    problem = params_problem(where, name, cls.Params)
    if problem is None and kind == PluginKind.MODEL and "direction" not in cls.Params.model_fields:
        problem = f"{where} ('{name}') without a 'direction' parameter (forward or inverse)"
    return problem


def params_problem(where: str, name: str, params: object) -> str | None:
    """Describe what is wrong with a plugin's parameter model, or return None."""
    if not isinstance(params, type) or not issubclass(params, PluginParams):
        return f"{where} ('{name}') whose Params is not a subclass of qcdtool.core.contracts.PluginParams"
    if params.model_config.get("extra") != "forbid":
        return f"{where} ('{name}') whose Params allows unknown keys; it must keep extra='forbid'"
    for field_name, info in params.model_fields.items():
        if info.is_required():
            return f"{where} ('{name}') whose parameter '{field_name}' has no default"
        if not info.description:
            return f"{where} ('{name}') whose parameter '{field_name}' has no description"
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            return f"{where} ('{name}') whose parameter '{field_name}' is a nested model; use flat parameters"
    return None
