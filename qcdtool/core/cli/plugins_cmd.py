"""``qcdtool plugins``: what is installed, and each plugin's parameters."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import annotated_types
import click
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.markup import escape
from rich.table import Table

from qcdtool.core.cli.base import get_state, verbosity_options
from qcdtool.core.contracts import PluginKind
from qcdtool.core.errors import PluginError
from qcdtool.core.registry import PluginInfo

KIND_CHOICE = click.Choice([str(kind) for kind in PluginKind])


@click.group("plugins")
@verbosity_options
def plugins_group() -> None:
    """List installed plugins and show their parameters."""


@plugins_group.command("list")
@click.option("--kind", type=KIND_CHOICE, default=None, help="Show only plugins of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@verbosity_options
def list_plugins(kind: str | None, as_json: bool) -> None:
    """List every installed plugin, built-in and third-party, with its status."""
    state = get_state()
    registry = state.registry
    rows: list[dict[str, Any]] = []
    for info in registry:
        if kind is None or info.kind == kind:
            rows.append(
                {
                    "kind": str(info.kind),
                    "name": info.name,
                    "summary": info.summary,
                    "distribution": info.source.distribution,
                    "version": info.source.version,
                    "status": "ok",
                    "error": None,
                }
            )
    for broken in registry.broken:
        if kind is None or broken.kind in (None, kind):
            rows.append(
                {
                    "kind": str(broken.kind) if broken.kind else None,
                    "name": broken.display_name,
                    "summary": "",
                    "distribution": ", ".join(source.distribution for source in broken.sources),
                    "version": ", ".join(source.version for source in broken.sources),
                    "status": "broken",
                    "error": broken.error,
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return

    table = Table(title="qcdtool plugins", show_lines=False)
    for column in ("kind", "name", "summary", "distribution", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        distributions = [
            f"{dist}=={version}"
            for dist, version in zip(row["distribution"].split(", "), row["version"].split(", "), strict=True)
        ]
        status = "[green]ok[/]" if row["status"] == "ok" else f"[red]broken[/]: {escape(row['error'])}"
        cells = (row["kind"] or "?", row["name"], row["summary"], ", ".join(distributions))
        table.add_row(*(escape(cell) for cell in cells), status)
    state.out.print(table)


@plugins_group.command("show")
@click.argument("name")
@click.option("--kind", type=KIND_CHOICE, default=None, help="Kind of the plugin, when several kinds use NAME.")
@verbosity_options
def show_plugin(name: str, kind: str | None) -> None:
    """Show a plugin's parameters: type, default, allowed values and description."""
    state = get_state()
    registry = state.registry
    if kind is not None:
        info = registry.get(PluginKind(kind), name)
    else:
        matches = registry.find(name)
        if not matches:
            for broken in registry.broken:
                if broken.display_name == name:
                    source = broken.sources[0]
                    kind_text = f"{broken.kind} plugin" if broken.kind else "plugin"
                    raise PluginError(f"{kind_text} '{name}' from {source.label} cannot be used: {broken.error}")
            every = sorted(f"{info.name} ({info.kind})" for info in registry)
            raise PluginError(f"no plugin named '{name}'; installed plugins: {', '.join(every) or 'none'}")
        if len(matches) > 1:
            kinds = ", ".join(str(info.kind) for info in matches)
            raise PluginError(f"several plugins are named '{name}' (kinds: {kinds}); choose one with --kind")
        info = matches[0]
    print_plugin(info)


def print_plugin(info: PluginInfo) -> None:
    """Print one plugin's header and parameter table."""
    out = get_state().out
    out.print(f"[bold]{escape(info.name)}[/] ({info.kind}) from {escape(info.source.label)}")
    out.print(escape(info.summary))
    doc = (info.cls.__doc__ or "").strip()
    if doc and doc.splitlines()[0].strip() != info.summary.strip():
        out.print(escape(doc))
    fields = info.cls.Params.model_fields
    if not fields:
        out.print("This plugin has no parameters.")
        return
    table = Table(show_lines=True)
    table.add_column("parameter", no_wrap=True)
    for column in ("type", "default", "allowed", "description"):
        table.add_column(column, overflow="fold")
    for field_name, field_info in fields.items():
        cells = (
            field_name,
            type_name(field_info.annotation),
            default_text(field_info),
            allowed_text(field_info),
            field_info.description or "",
        )
        table.add_row(*(escape(cell) for cell in cells))
    out.print(table)


def type_name(annotation: Any) -> str:
    """Return a short, TOML-flavoured name for a parameter's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        kinds = {type(arg) for arg in args}
        return type_name(kinds.pop()) if len(kinds) == 1 else "value"
    if origin in (typing.Union, types.UnionType):
        names = [type_name(arg) for arg in args if arg is not type(None)]
        optional = type(None) in args
        return " or ".join(names) + (" (optional)" if optional else "")
    if origin in (list, tuple, set, frozenset):
        inner = type_name(args[0]) if args else "value"
        return f"array of {inner}"
    if origin is typing.Annotated:
        return type_name(args[0])
    toml_names: dict[type, str] = {bool: "boolean", int: "integer", float: "float", str: "string"}
    if isinstance(annotation, type):
        return toml_names.get(annotation, annotation.__name__)
    return str(annotation)


def default_text(field_info: FieldInfo) -> str:
    """Format the default as TOML would write it; a missing (None) default is derived at run time."""
    factory = field_info.default_factory
    default = factory() if factory is not None else field_info.default  # type: ignore[call-arg]
    if default is PydanticUndefined:
        return "(required)"
    if default is None:
        return "(derived)"
    return json.dumps(default)


def allowed_text(field_info: FieldInfo) -> str:
    """Allowed values: a range from the field's bounds, or the list of choices."""
    parts: list[str] = []
    for constraint in field_info.metadata:
        if isinstance(constraint, annotated_types.Gt):
            parts.append(f"> {constraint.gt}")
        elif isinstance(constraint, annotated_types.Ge):
            parts.append(f">= {constraint.ge}")
        elif isinstance(constraint, annotated_types.Lt):
            parts.append(f"< {constraint.lt}")
        elif isinstance(constraint, annotated_types.Le):
            parts.append(f"<= {constraint.le}")
        elif isinstance(constraint, annotated_types.MinLen):
            parts.append(f"at least {constraint.min_length} item" + ("s" if constraint.min_length != 1 else ""))
        elif isinstance(constraint, annotated_types.MaxLen):
            parts.append(f"at most {constraint.max_length} item" + ("s" if constraint.max_length != 1 else ""))
    choices = literal_choices(field_info.annotation)
    if choices:
        parts.append(", ".join(json.dumps(choice) for choice in choices))
    return "; ".join(parts) or "any"


def literal_choices(annotation: Any) -> list[Any]:
    """Collect the values of a Literal type, also inside Optional, lists and unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return list(typing.get_args(annotation))
    choices: list[Any] = []
    for arg in typing.get_args(annotation):
        choices.extend(literal_choices(arg))
    return choices
