"""The stages of ``qcdtool run`` and the run folder they share.

Stages run in a fixed order: generate (events, jets and images), train,
sample, evaluate. A stage that this installation cannot run yet reports that
and ends the run there. It never writes stand-in output.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcdtool.core.environment import environment_record
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.registry import PluginRegistry
from qcdtool.core.spec import RunSpec

log = logging.getLogger(__name__)

RESOLVED_SPEC = "spec.resolved.toml"
ENVIRONMENT = "environment.json"
LOG_FILE = "log.txt"


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that change how, not what, a run computes."""

    workers: int = 1
    force: bool = False


@dataclass
class StageContext:
    """What a stage receives."""

    spec: RunSpec
    registry: PluginRegistry
    options: RunOptions
    run_dir: Path
    verbosity: int = 0
    #: Called with (done, total) as a long stage advances; the CLI draws a progress bar.
    on_progress: Callable[[int, int], None] | None = None
    #: Called with a stage's name before the stage starts, to label the progress bar.
    on_stage: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Stage:
    """One step of a run. ``run`` is None when this installation has no implementation."""

    name: str
    description: str
    run: Callable[[StageContext], str] | None = None
    #: Whether the spec requests this stage at all.
    wanted: Callable[[RunSpec], bool] = lambda spec: True
    unavailable_reason: str = ""


@dataclass
class StageOutcome:
    """What happened to one stage: done, skipped or not available."""

    name: str
    status: str
    message: str = ""


@dataclass
class RunReport:
    """Outcome of every stage of one run."""

    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)


def _stages() -> list[Stage]:
    """The stages in order, each wired to its implementation where one exists."""
    from qcdtool.core.evaluate import evaluate_stage
    from qcdtool.core.generate import generate_stage
    from qcdtool.core.train import sample_stage, train_stage

    return [
        Stage("generate", "generate events, find jets, draw images, write dataset.h5", run=generate_stage),
        Stage("train", "train every model of the spec", run=train_stage, wanted=lambda spec: bool(spec.models)),
        Stage(
            "sample",
            "sample every trained model on its test conditions",
            run=sample_stage,
            wanted=lambda spec: bool(spec.models),
        ),
        Stage(
            "evaluate",
            "compute every metric and write metrics.json and report.html",
            run=evaluate_stage,
            wanted=lambda spec: bool(spec.metrics) and bool(spec.models),
        ),
    ]


def prepare_run_dir(spec: RunSpec) -> Path:
    """Create the run folder and write the resolved spec and the environment record.

    A run folder may be run again with a changed spec: each stage finds out
    what of its results is still current. The exception is a folder whose
    events came from another seed, generator or jet definition: those events
    cannot serve the new spec, so that folder is rejected rather than mixed.
    """
    run_dir = spec.run_dir
    resolved = spec.to_toml()
    spec_file = run_dir / RESOLVED_SPEC
    if spec_file.exists() and spec_file.read_text(encoding="utf-8") != resolved:
        changed = _changed_event_parts(tomllib.loads(spec_file.read_text(encoding="utf-8")), spec.to_dict())
        has_events = (run_dir / "dataset.h5").exists() or (run_dir / "dataset.h5.parts").exists()
        if changed and has_events:
            raise QcdtoolError(
                f"{run_dir} contains events made with another {' and '.join(changed)} than this spec asks for; "
                "choose another [run] name or output folder, or remove the old run folder"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(resolved, encoding="utf-8")
    record = environment_record(spec.plugins_used)
    (run_dir / ENVIRONMENT).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return run_dir


def _changed_event_parts(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """List the spec parts that decide the events and differ between two resolved specs."""
    changed = []
    if previous.get("run", {}).get("seed") != current.get("run", {}).get("seed"):
        changed.append("seed")
    for part in ("generator", "jets"):
        if previous.get(part) != current.get(part):
            changed.append(f"[{part}]")
    return changed


def run_pipeline(context: StageContext) -> RunReport:
    """Run every wanted stage in order; stop at the first one that is not available."""
    report = RunReport(run_dir=context.run_dir)
    if context.spec.models:
        from qcdtool.core.device import resolve_device

        resolve_device(context.spec.run.device)  # a missing device is an error before any stage runs
    stages = _stages()
    for position, stage in enumerate(stages):
        if not stage.wanted(context.spec):
            report.outcomes.append(StageOutcome(stage.name, "skipped", "the spec asks for nothing in this stage"))
            continue
        if stage.run is None:
            remaining = [later.name for later in stages[position + 1 :] if later.wanted(context.spec)]
            message = f"not available: {stage.unavailable_reason}"
            log.warning("stage %s: %s", stage.name, message)
            report.outcomes.append(StageOutcome(stage.name, "not available", message))
            for name in remaining:
                report.outcomes.append(StageOutcome(name, "not run", f"stage {stage.name} is not available"))
            break
        log.info("stage %s: %s", stage.name, stage.description)
        if context.on_stage:
            context.on_stage(stage.name)
        message = stage.run(context)
        report.outcomes.append(StageOutcome(stage.name, "done", message))
    return report
