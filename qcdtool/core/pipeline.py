"""The stages of ``qcdtool run`` and the run folder they share.

Stages run in a fixed order: generate (events, jets and the images of the
imagers known then), images (the images of imagers added since), train,
sample, evaluate (metrics.json) and report (report.html). Each stage's output
records a hash of what it depends on (the dataset its events hash, a model
its training hash, a samples file its sampling hash, metrics.json one hash
per model), so a rerun redoes only what a changed spec made stale. A model
whose table changed is trained, sampled and evaluated again, alone, and a
changed generator makes every later result stale. Stale results are
replaced. A stage never reads another stage's unfinished output, because
every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcdtool import __version__
from qcdtool.core.environment import environment_record
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.registry import PluginRegistry
from qcdtool.core.spec import RunSpec

log = logging.getLogger(__name__)

RESOLVED_SPEC = "spec.resolved.toml"
ENVIRONMENT = "environment.json"
LOG_FILE = "log.txt"
#: The pipeline's own record in the run folder: which spec file owns it, and what each stage last did.
RUN_RECORD = "run.json"
STAGE_NAMES = ("generate", "images", "train", "sample", "evaluate", "report")


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that change how, not what, a run computes.

    ``from_stage`` redoes that stage and every later one even where current;
    ``only`` runs that one stage (redone only with ``force``). Either way the
    stages before must be current.
    """

    workers: int = 1
    force: bool = False
    from_stage: str | None = None
    only: str | None = None

    def __post_init__(self) -> None:
        for name in (self.from_stage, self.only):
            if name is not None and name not in STAGE_NAMES:
                raise QcdtoolError(f"unknown stage '{name}'; the stages are {', '.join(STAGE_NAMES)}")
        if self.from_stage is not None and self.only is not None:
            raise QcdtoolError("give --from or --only, not both")


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
    #: Called with a stage's name and what it works on now (a model's label, or "") to label the progress bar.
    on_stage: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class Stage:
    """One step of a run.

    ``run(context, force)`` does the stage's work, or finds it current, and
    returns a summary line. ``stale(spec)`` returns the reason the stage's
    results do not match the spec, or None when they do.
    """

    name: str
    description: str
    run: Callable[[StageContext, bool], str]
    stale: Callable[[RunSpec], str | None]
    #: Whether the spec requests this stage at all.
    wanted: Callable[[RunSpec], bool] = lambda spec: True


@dataclass
class StageOutcome:
    """Outcome of one stage: done, current (nothing to do), skipped (not requested) or not run."""

    name: str
    status: str
    message: str = ""


@dataclass
class RunReport:
    """Outcome of every stage of one run."""

    run_dir: Path
    outcomes: list[StageOutcome] = field(default_factory=list)


# --------------------------------------------------------------------------
# The stages


def _stages() -> list[Stage]:
    """The stages in order, each wired to its implementation."""
    from qcdtool.core.evaluate import evaluate_stage
    from qcdtool.core.generate import generate_stage, generated_current
    from qcdtool.core.train import sample_stage, samples_stale, train_stage, training_stale

    def has_models(spec: RunSpec) -> bool:
        return bool(spec.models)

    return [
        Stage("generate", "generate events, find jets and images, write dataset.h5", generate_stage, generated_current),
        Stage("images", "draw the images of imagers the dataset lacks", images_stage, images_stale),
        Stage("train", "train every model of the spec", train_stage, training_stale, has_models),
        Stage("sample", "sample every trained model on its test conditions", sample_stage, samples_stale, has_models),
        Stage("evaluate", "run every metric on every model", evaluate_stage, _eval_stale, has_models),
        Stage("report", "write report.html from metrics.json", report_stage, report_stale, has_models),
    ]


def images_stage(context: StageContext, force: bool = False) -> str:
    """Give the dataset the images of every imager of the spec.

    In the run's own dataset, images of an imager whose parameters changed
    are drawn again. A dataset made elsewhere is never changed here: a
    missing imager is an error that names the command which adds it.
    """
    from qcdtool.core.add_images import add_images, images_for_dataset, plan_images
    from qcdtool.core.dataset import Dataset

    spec = context.spec
    path = spec.dataset_path
    if spec.external_dataset:
        reason = images_stale(spec)
        if reason is not None:
            raise QcdtoolError(
                f"{reason}; add them with 'qcdtool images SPEC --add' (it copies the file and adds the images), "
                "or change the spec's [[imagers]] to those the file holds ('qcdtool inspect FILE' lists them)"
            )
        labels = [table.label for table in spec.imagers]
        return f"{path.name} holds the images of {', '.join(labels) or 'no imager'}"
    with Dataset(path) as dataset:
        imagers = images_for_dataset(spec, dataset)
        plan = plan_images(dataset, imagers)
    for label in plan.different:
        log.warning(
            "drawing the images of imager %s again: its parameters changed (%s)",
            label,
            "; ".join(plan.changes[label]),
        )
    return add_images(path, spec, imagers, force=True, on_progress=context.on_progress, redraw_current=force)


def images_stale(spec: RunSpec) -> str | None:
    """Return why the dataset lacks images the spec requests, or None when it contains them all."""
    from qcdtool.core.add_images import images_for_dataset, plan_images
    from qcdtool.core.dataset import Dataset

    path = spec.dataset_path
    if not path.exists():
        return f"{path} does not exist"
    with Dataset(path) as dataset:
        plan = plan_images(dataset, images_for_dataset(spec, dataset))
    if plan.missing:
        return f"{path} has no images of imager(s) {', '.join(plan.missing)}"
    if plan.different:
        return f"{path} holds images of imager(s) made with other parameters: {plan.describe_different()}"
    return None


def _eval_stale(spec: RunSpec) -> str | None:
    from qcdtool.core.evaluate import evaluation_current

    return None if evaluation_current(spec) else "metrics.json does not hold the evaluation of the current samples"


def report_stage(context: StageContext, force: bool = False) -> str:
    """Write report.html from metrics.json, unless it was written from this very metrics.json."""
    from qcdtool.core.evaluate import METRICS_FILE, REPORT_FILE, read_metrics_record
    from qcdtool.core.report import write_report

    run_dir = context.run_dir
    record = read_metrics_record(run_dir)
    if not record:
        raise QcdtoolError(f"{run_dir / METRICS_FILE} is missing or unreadable; run the evaluate stage first")
    output = run_dir / REPORT_FILE
    if not force and report_stale(context.spec) is None:
        return f"{output.name} is current"
    write_report(record, context.spec, run_dir, output)
    record_report(context.spec)
    return f"wrote {output.name}"


def record_report(spec: RunSpec) -> None:
    """Note in run.json which metrics.json and spec report.html was just written from."""
    _update_record(spec.run_dir, report_hash=_report_hash(spec))


def report_stale(spec: RunSpec) -> str | None:
    """Return why report.html does not show the current metrics.json, or None when it does."""
    from qcdtool.core.evaluate import REPORT_FILE

    if not (spec.run_dir / REPORT_FILE).exists():
        return "report.html does not exist"
    if read_run_record(spec.run_dir).get("report_hash") != _report_hash(spec):
        return "report.html was written from another metrics.json or spec"
    return None


def _report_hash(spec: RunSpec) -> str:
    from qcdtool.core.evaluate import METRICS_FILE, file_digest

    metrics = spec.run_dir / METRICS_FILE
    selected = [file_digest(metrics) if metrics.exists() else None, spec.hash(), __version__]
    return hashlib.sha256(json.dumps(selected).encode()).hexdigest()


# --------------------------------------------------------------------------
# The run folder


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """Read the run folder's run.json; return its content, or an empty dict when it is missing."""
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _update_record(run_dir: Path, **values: Any) -> None:
    record = read_run_record(run_dir)
    record.update(values)
    temporary = run_dir / (RUN_RECORD + ".partial")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    temporary.replace(run_dir / RUN_RECORD)


def prepare_run_dir(spec: RunSpec, force: bool = False) -> Path:
    """Create the run folder and write the resolved spec and the environment record.

    A run folder belongs to the spec file that first ran in it. The same
    file may change and run again, and each stage then finds what is still
    current. A different spec file whose [run] name and output lead to the
    same folder is rejected unless ``force``, so that one study never
    overwrites another's results by accident.
    """
    run_dir = spec.run_dir
    owner = read_run_record(run_dir).get("spec_file")
    source = str(spec.source.resolve()) if spec.source is not None else None
    if owner and source and owner != source and not force:
        raise QcdtoolError(
            f"{run_dir} contains the run of another spec file, {owner}; give {spec.source} another [run] name "
            "or output, or pass --force to let it take the folder over (every stage is then redone)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESOLVED_SPEC).write_text(spec.to_toml(), encoding="utf-8")
    record = environment_record(spec.plugins_used)
    (run_dir / ENVIRONMENT).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if source or not owner:
        _update_record(run_dir, spec_file=source)
    return run_dir


# --------------------------------------------------------------------------
# Running


def run_pipeline(context: StageContext) -> RunReport:
    """Run the wanted stages in order, as ``context.options`` selects them."""
    options = context.options
    spec = context.spec
    report = RunReport(run_dir=context.run_dir)
    stages = [stage for stage in _stages() if stage.wanted(spec)]
    names = [stage.name for stage in stages]
    chosen = options.only or options.from_stage
    if chosen is not None and chosen not in names:
        raise QcdtoolError(f"the spec requests nothing in stage '{chosen}'; its stages are {', '.join(names)}")
    first = names.index(chosen) if chosen is not None else 0
    last = first if options.only is not None else len(stages) - 1

    # 1. Stages before the chosen one are not run, so their results must be current.
    for stage in stages[:first]:
        reason = stage.stale(spec)
        if reason is not None:
            raise QcdtoolError(
                f"stage {chosen} needs the results of stage {stage.name}, which are not current ({reason}); "
                f"run 'qcdtool run {spec.source or 'SPEC'} --from {stage.name}', or without --from and --only"
            )
        report.outcomes.append(StageOutcome(stage.name, "not run", "current; comes before the stage chosen to run"))

    # 2. A missing device is an error before any stage runs. It is checked only when
    #    a model will be trained or sampled, because importing torch takes a second.
    force = options.force or (options.from_stage is not None)
    chosen_stages = stages[first : last + 1]
    if any(stage.name in ("train", "sample") and (force or stage.stale(spec)) for stage in chosen_stages):
        from qcdtool.core.device import resolve_device

        resolve_device(spec.run.device)

    # 3. The chosen stages, in order.
    for stage in chosen_stages:
        if not force and stage.stale(spec) is None:
            log.info("stage %s: current", stage.name)
            report.outcomes.append(StageOutcome(stage.name, "current", "results match the spec; nothing to do"))
            continue
        log.info("stage %s: %s", stage.name, stage.description)
        if context.on_stage:
            context.on_stage(stage.name, "")
        message = stage.run(context, force)
        report.outcomes.append(StageOutcome(stage.name, "done", message))
        _update_record(
            context.run_dir,
            stages={
                **read_run_record(context.run_dir).get("stages", {}),
                stage.name: {"finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "message": message},
            },
        )
    for stage in stages[last + 1 :]:
        report.outcomes.append(StageOutcome(stage.name, "not run", "after the stage --only chose"))
    wanted = set(names)
    for name in STAGE_NAMES:
        if name not in wanted:
            report.outcomes.append(StageOutcome(name, "skipped", "the spec requests nothing in this stage"))
    return report
