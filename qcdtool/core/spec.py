"""Read, validate and resolve a TOML run spec.

A spec has a ``[run]`` table, a ``[generator]`` table, a ``[jets]`` table and
arrays of ``[[imagers]]``, ``[[models]]`` and ``[[metrics]]`` tables. Each
plugin table names its plugin with ``plugin = "<name>"``; its other keys are
that plugin's parameters. Validation reports every problem at once, each
located by its TOML path (``models[0].shift``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qcdtool.core.contracts import PluginContext, PluginKind, PluginParams
from qcdtool.core.errors import PluginError, SpecError, SpecProblem
from qcdtool.core.registry import PluginInfo, PluginRegistry

#: Largest seed PYTHIA accepts (``Random:seed``); the run seed shares its range.
MAX_SEED = 900_000_000

LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class SpecSection(BaseModel):
    """Strict model for the spec's own tables (same rules as plugin parameters)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


class RunSection(SpecSection):
    """The ``[run]`` table."""

    name: str = Field(
        "qcdtool-run",
        pattern=LABEL_PATTERN,
        description="Name of the run; its files go to <output>/<name>/.",
    )
    output: str = Field(
        "runs",
        min_length=1,
        description="Folder that holds run folders; a relative path is taken from the spec file's folder.",
    )
    seed: int = Field(
        12345,
        ge=1,
        le=MAX_SEED,
        description="Seed of the whole run; every PYTHIA and torch seed is derived from it.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Device for training and sampling; auto picks cuda, then mps, then cpu."
    )
    dataset: str | None = Field(
        None,
        min_length=1,
        description=(
            "A dataset file made elsewhere (merged shards, a colleague's file) to train and evaluate on "
            "instead of generating events; a relative path is taken from the spec file's folder. "
            "The [generator] table is then optional and not used."
        ),
    )


class JetsSection(SpecSection):
    """The ``[jets]`` table: jet reconstruction at both levels."""

    algorithm: Literal["antikt", "kt", "cambridge", "ee-genkt", "durham"] = Field(
        "antikt",
        description=(
            "Jet algorithm: antikt, kt and cambridge in (rapidity, phi); ee-genkt and durham are the "
            "e+e- algorithms in angles."
        ),
    )
    radius: float = Field(
        0.8,
        gt=0.0,
        le=3.2,
        description=(
            "Jet radius R: a distance in (rapidity, phi) for antikt/kt/cambridge, an angle in radians for ee-genkt."
        ),
    )
    p: float = Field(-1.0, description="Exponent p of ee-genkt: -1 is anti-kt-like, 0 Cambridge-like, 1 kt-like.")
    n_exclusive: int = Field(2, ge=1, le=20, description="Number of exclusive jets for durham, which has no radius.")
    matching: Literal["matched", "leading"] = Field(
        "matched",
        description=(
            "Hadron-level jet paired with the leading parton-level jet: the one whose axis is nearest "
            "(matched) or the leading one (leading)."
        ),
    )
    match_radius: float | None = Field(
        None,
        gt=0.0,
        description="Largest axis distance for a match, in the algorithm's own distance; default: the radius.",
    )


class SplitSection(SpecSection):
    """The ``[split]`` table: which events train, validate and test the models."""

    by: Literal["hadronization", "configuration"] = Field(
        "hadronization",
        description=(
            "hadronization: every configuration's hadronizations are shared out over the sets; "
            "configuration: whole configurations go to one set (test on unseen configurations)."
        ),
    )
    validation: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of events (or configurations) for validation.")
    test: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of events (or configurations) for testing.")

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> SplitSection:
        if self.validation + self.test >= 1.0:
            raise ValueError(
                f"validation + test = {self.validation + self.test:g} leaves no events for training; "
                "their sum must be below 1"
            )
        return self


class SamplingSection(SpecSection):
    """The ``[sampling]`` table: how every model is sampled on its test conditions."""

    sampler: Literal["ddim", "ddpm"] = Field(
        "ddim", description="ddim (deterministic with eta 0, few steps) or ddpm (ancestral, all steps)."
    )
    steps: int = Field(50, ge=1, le=10000, description="Sampling steps (DDIM); DDPM uses the model's full chain.")
    per_condition: int = Field(4, ge=1, le=1000, description="Samples drawn for each test condition.")
    max_conditions: int = Field(
        2000, ge=0, description="Test conditions sampled, drawn at random (seeded) from the test set; 0 means all."
    )


TOP_LEVEL_KEYS = ("run", "generator", "jets", "split", "sampling", "imagers", "models", "metrics")
PLUGIN_ARRAYS: dict[str, PluginKind] = {
    "imagers": PluginKind.IMAGER,
    "models": PluginKind.MODEL,
    "metrics": PluginKind.METRIC,
}
#: Keys that the core reads in a plugin table besides the plugin's parameters.
CORE_KEYS: dict[PluginKind, tuple[str, ...]] = {
    PluginKind.GENERATOR: ("plugin",),
    PluginKind.IMAGER: ("plugin", "label"),
    PluginKind.MODEL: ("plugin", "label", "imager"),
    PluginKind.METRIC: ("plugin", "label"),
}


@dataclass(frozen=True)
class PluginSpec:
    """A validated plugin table: which plugin, under which label, with which parameters."""

    kind: PluginKind
    path: str
    label: str
    info: PluginInfo
    params: PluginParams
    #: For models: the label of the imager whose images the model uses.
    imager: str | None = None

    @property
    def plugin(self) -> str:
        """The plugin's name."""
        return self.info.name

    def to_dict(self) -> dict[str, Any]:
        """The table as it appears in a resolved spec, every default filled in."""
        table: dict[str, Any] = {"plugin": self.plugin}
        if self.kind != PluginKind.GENERATOR:
            table["label"] = self.label
        if self.imager is not None:
            table["imager"] = self.imager
        table.update(_drop_none(self.params.model_dump(mode="json")))
        return table


@dataclass(frozen=True)
class RunSpec:
    """A fully validated run spec."""

    source: Path | None
    base_dir: Path
    run: RunSection
    jets: JetsSection
    #: None only when ``run.dataset`` names a dataset made elsewhere.
    generator: PluginSpec | None
    split: SplitSection = field(default_factory=SplitSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    imagers: tuple[PluginSpec, ...] = ()
    models: tuple[PluginSpec, ...] = ()
    metrics: tuple[PluginSpec, ...] = ()
    plugins_used: tuple[PluginInfo, ...] = field(default=(), repr=False)

    @property
    def run_dir(self) -> Path:
        """Folder of this run's files."""
        output = Path(self.run.output).expanduser()
        if not output.is_absolute():
            output = (self.base_dir / output).resolve()
        return output / self.run.name

    @property
    def dataset_path(self) -> Path:
        """The dataset file the run reads: ``run.dataset`` when set, else the run folder's dataset.h5."""
        if self.run.dataset is None:
            return self.run_dir / "dataset.h5"
        path = Path(self.run.dataset).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def external_dataset(self) -> bool:
        """Whether the run reads a dataset made elsewhere instead of generating one."""
        return self.run.dataset is not None

    def with_dataset(self, path: Path | str) -> RunSpec:
        """A copy of this spec that reads the dataset file ``path`` instead of generating events."""
        resolved = Path(path).expanduser().resolve()
        return replace(self, run=self.run.model_copy(update={"dataset": str(resolved)}))

    def context(self, **overrides: Any) -> PluginContext:
        """The run-wide settings handed to plugins."""
        values: dict[str, Any] = {
            "seed": self.run.seed,
            "device": self.run.device,
            "jet_radius": self.jets.radius,
            "jet_algorithm": self.jets.algorithm,
            "run_dir": self.run_dir,
        }
        values.update(overrides)
        return PluginContext(**values)

    def imager(self, label: str) -> PluginSpec:
        """The imager table with this label."""
        for imager in self.imagers:
            if imager.label == label:
                return imager
        raise KeyError(label)

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain data, every default filled in."""
        data: dict[str, Any] = {
            "run": _drop_none(self.run.model_dump(mode="json")),
            "generator": self.generator.to_dict() if self.generator is not None else None,
            "jets": _drop_none(self.jets.model_dump(mode="json")),
            "split": self.split.model_dump(mode="json"),
            "sampling": self.sampling.model_dump(mode="json"),
        }
        if data["generator"] is None:
            del data["generator"]
        for key in PLUGIN_ARRAYS:
            tables = getattr(self, key)
            if tables:
                data[key] = [table.to_dict() for table in tables]
        return data

    def to_toml(self) -> str:
        """The resolved spec as TOML text."""
        return tomli_w.dumps(self.to_dict())

    def hash(self, *parts: str) -> str:
        """SHA-256 over the named top-level parts of the resolved spec (all when none are named)."""
        data = self.to_dict()
        selected = {part: data.get(part) for part in (parts or tuple(data))}
        return hashlib.sha256(json.dumps(selected, sort_keys=True).encode()).hexdigest()


def _drop_none(table: Mapping[str, Any]) -> dict[str, Any]:
    """TOML has no null: leave out values that mean "derived from elsewhere"."""
    return {key: value for key, value in table.items() if value is not None}


# --------------------------------------------------------------------------
# Loading


def load_spec(path: Path | str, registry: PluginRegistry) -> RunSpec:
    """Read and validate a spec file; raise SpecError listing every problem."""
    path = Path(path)
    if not path.exists():
        raise SpecError(path, [SpecProblem("", "spec file not found")])
    if path.is_dir():
        raise SpecError(path, [SpecProblem("", "is a directory; expected a TOML spec file")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, [SpecProblem("", f"cannot read the spec file: {exc}")]) from exc
    return parse_spec(text, registry, source=path, base_dir=path.resolve().parent)


def parse_spec(
    text: str, registry: PluginRegistry, source: Path | str = "<spec>", base_dir: Path | None = None
) -> RunSpec:
    """Parse and validate spec text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, [SpecProblem("", f"invalid TOML: {exc}")]) from exc
    return validate_spec(data, registry, source=source, base_dir=base_dir or Path.cwd())


def validate_spec(
    data: Mapping[str, Any], registry: PluginRegistry, source: Path | str = "<spec>", base_dir: Path | None = None
) -> RunSpec:
    """Validate parsed spec data in full; raise SpecError listing every problem."""
    checker = _SpecChecker(registry)
    spec = checker.check(
        data, source=Path(source) if isinstance(source, Path) else None, base_dir=base_dir or Path.cwd()
    )
    if checker.problems or spec is None:
        raise SpecError(source, checker.problems)
    return spec


class _SpecChecker:
    """Collects problems while walking the spec, so that all are reported together."""

    def __init__(self, registry: PluginRegistry) -> None:
        self.registry = registry
        self.problems: list[SpecProblem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(SpecProblem(path, message))

    def check(self, data: Mapping[str, Any], source: Path | None, base_dir: Path) -> RunSpec | None:
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.problem(key, unknown_key_message(key, TOP_LEVEL_KEYS))

        run = self.section("run", data.get("run", {}), RunSection)
        jets = self.section("jets", data.get("jets", {}), JetsSection)
        split = self.section("split", data.get("split", {}), SplitSection)
        sampling = self.section("sampling", data.get("sampling", {}), SamplingSection)

        generator: PluginSpec | None = None
        reads_dataset = isinstance(data.get("run"), dict) and data["run"].get("dataset") is not None
        if "generator" not in data and reads_dataset:
            pass  # a run that reads a dataset made elsewhere generates nothing
        elif "generator" not in data:
            installed = ", ".join(self.registry.names(PluginKind.GENERATOR)) or "none installed"
            self.problem(
                "generator",
                f'missing table [generator]; add one with plugin = "<name>" (generator plugins: {installed})',
            )
        elif not isinstance(data["generator"], dict):
            self.problem("generator", f"expected a table [generator], got {toml_type(data['generator'])}")
        else:
            generator = self.plugin_table(PluginKind.GENERATOR, "generator", data["generator"])

        arrays: dict[str, list[PluginSpec]] = {}
        for key, kind in PLUGIN_ARRAYS.items():
            arrays[key] = self.plugin_array(key, kind, data.get(key, []))
        self.check_references(arrays["imagers"], arrays["models"])

        if run is None or jets is None or split is None or sampling is None or self.problems:
            return None
        if generator is None and run.dataset is None:
            return None
        used = [generator.info] if generator is not None else []
        used += [table.info for tables in arrays.values() for table in tables]
        return RunSpec(
            source=source,
            base_dir=base_dir,
            run=run,
            jets=jets,
            generator=generator,
            split=split,
            sampling=sampling,
            imagers=tuple(arrays["imagers"]),
            models=tuple(arrays["models"]),
            metrics=tuple(arrays["metrics"]),
            plugins_used=tuple(dict.fromkeys(used)),
        )

    def section(self, path: str, value: Any, model: type[SpecSection]) -> Any:
        if not isinstance(value, dict):
            self.problem(path, f"expected a table [{path}], got {toml_type(value)}")
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            self.problems.extend(problems_from_validation_error(exc, path, model))
            return None

    def plugin_array(self, key: str, kind: PluginKind, value: Any) -> list[PluginSpec]:
        if isinstance(value, dict):
            self.problem(key, f"expected an array of tables; write [[{key}]] instead of [{key}]")
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected an array of tables [[{key}]], got {toml_type(value)}")
            return []
        tables: list[PluginSpec] = []
        seen: dict[str, str] = {}
        for index, table in enumerate(value):
            path = f"{key}[{index}]"
            if not isinstance(table, dict):
                self.problem(path, f"expected a table, got {toml_type(table)}")
                continue
            # Labels are compared before the parameters are checked, so that a
            # repeated label is reported together with any parameter problem.
            label = table.get("label", table.get("plugin"))
            if isinstance(label, str) and label in seen:
                self.problem(
                    f"{path}.label",
                    f"duplicate label '{label}' (also used by {seen[label]}); give each of the "
                    f'{key} a distinct label = "..."',
                )
                continue
            if isinstance(label, str):
                seen[label] = path
            spec = self.plugin_table(kind, path, table)
            if spec is not None:
                tables.append(spec)
        return tables

    def plugin_table(self, kind: PluginKind, path: str, table: Mapping[str, Any]) -> PluginSpec | None:
        name = table.get("plugin")
        if name is None:
            choices = ", ".join(self.registry.names(kind)) or "none installed"
            self.problem(f"{path}.plugin", f"missing key 'plugin'; name a {kind} plugin ({choices})")
            return None
        if not isinstance(name, str):
            self.problem(f"{path}.plugin", f"expected a plugin name (a string), got {toml_type(name)}")
            return None
        try:
            info = self.registry.get(kind, name)
        except PluginError as exc:
            self.problem(f"{path}.plugin", str(exc))
            return None

        ok = True
        label = table.get("label", name)
        if "label" in table and not (isinstance(label, str) and _matches_label(label)):
            self.problem(
                f"{path}.label",
                f"invalid label {label!r}; use letters, digits, '.', '_' and '-', starting with a letter or digit",
            )
            ok = False
        imager = table.get("imager")
        if "imager" in table and not isinstance(imager, str):
            self.problem(f"{path}.imager", f"expected an imager label (a string), got {toml_type(imager)}")
            ok = False

        core_keys = CORE_KEYS[kind]
        params_data = {key: value for key, value in table.items() if key not in core_keys}
        try:
            params = info.cls.Params.model_validate(params_data)
        except ValidationError as exc:
            self.problems.extend(problems_from_validation_error(exc, path, info.cls.Params, core_keys))
            return None
        if not ok:
            return None
        return PluginSpec(kind=kind, path=path, label=str(label), info=info, params=params, imager=imager)

    def check_references(self, imagers: Sequence[PluginSpec], models: list[PluginSpec]) -> None:
        labels = [imager.label for imager in imagers]
        for index, model in enumerate(models):
            if model.imager is None:
                if len(labels) == 1:
                    models[index] = PluginSpec(
                        kind=model.kind,
                        path=model.path,
                        label=model.label,
                        info=model.info,
                        params=model.params,
                        imager=labels[0],
                    )
                    continue
                where = "no [[imagers]] table is defined" if not labels else f"imagers: {', '.join(labels)}"
                self.problem(f"{model.path}.imager", f"missing key 'imager'; name the imager this model uses ({where})")
            elif model.imager not in labels:
                message = f"unknown imager '{model.imager}'"
                close = difflib.get_close_matches(model.imager, labels, n=1)
                if close:
                    message += f"; did you mean '{close[0]}'?"
                message += f". Imagers defined in this spec: {', '.join(labels) if labels else 'none'}."
                self.problem(f"{model.path}.imager", message)


def _matches_label(label: str) -> bool:
    return re.match(LABEL_PATTERN, label) is not None


# --------------------------------------------------------------------------
# Messages


def unknown_key_message(key: str, allowed: Sequence[str]) -> str:
    """``unknown key 'x'; did you mean 'y'?`` with the allowed keys listed."""
    message = f"unknown key '{key}'"
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if close:
        message += f"; did you mean '{close[0]}'?"
    return message + f" Allowed keys: {', '.join(allowed)}."


def toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type, with the value, for messages."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} ({value})"


_EXPECTED: dict[str, str] = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "tuple_type": "an array",
}

_BOUNDS: dict[str, tuple[str, str]] = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def problems_from_validation_error(
    exc: ValidationError, prefix: str, model: type[BaseModel], extra_allowed: Sequence[str] = ()
) -> list[SpecProblem]:
    """Turn pydantic's errors into one SpecProblem per error, in spec terms."""
    problems: list[SpecProblem] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        path = prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        kind = error["type"]
        value = error.get("input")
        context = error.get("ctx") or {}
        if kind == "extra_forbidden":
            allowed = [*extra_allowed, *model.model_fields] if len(loc) == 1 else []
            message = unknown_key_message(str(loc[-1]), allowed) if allowed else f"unknown key '{loc[-1]}'"
        elif kind == "missing":
            message = "missing required key"
        elif kind in _EXPECTED:
            message = f"expected {_EXPECTED[kind]}, got {toml_type(value)}"
        elif kind in _BOUNDS:
            bound_key, symbol = _BOUNDS[kind]
            message = f"must be {symbol} {context.get(bound_key)}, got {value!r}"
        elif kind == "literal_error":
            allowed_values = str(context.get("expected", ""))
            message = f"invalid value {value!r}; allowed: {allowed_values}"
            if isinstance(value, str):
                choices = [choice.strip(" '") for choice in allowed_values.replace(" or ", ", ").split(",")]
                close = difflib.get_close_matches(value, choices, n=1)
                if close:
                    message += f"; did you mean '{close[0]}'?"
        elif kind == "string_pattern_mismatch":
            message = f"invalid value {value!r}; it must match the pattern {context.get('pattern')}"
        elif kind in ("too_short", "string_too_short"):
            least = context.get("min_length", 1)
            message = "must not be empty" if least == 1 else f"needs at least {least} items"
            message += f", got {value!r}"
        elif kind in ("too_long", "string_too_long"):
            message = f"allows at most {context.get('max_length')} items, got {value!r}"
        elif kind == "value_error":
            message = str(context.get("error", error["msg"]))
        else:
            message = f"{error['msg']}, got {value!r}"
        problems.append(SpecProblem(path, message))
    return problems
