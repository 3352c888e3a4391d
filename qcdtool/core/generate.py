"""The generate stage: events from the generator, jets, images, written to HDF5.

Work is split by the generator into units whose content depends only on the
run seed and the unit. Units run in this process or in ``workers`` local
processes and are written in plan order, so the file's content is the same
for any number of workers. A shard (``--shard k/N``) takes the k-th of N
contiguous runs of units; ``qcdtool merge`` joins shards in order into the
same content as one unsharded run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcdtool.core.capture import redirect_fd1
from qcdtool.core.contracts import EventBatch, Generator, Imager, ImagerInput, ImageSet, WorkUnit
from qcdtool.core.dataset import (
    JET_COLUMNS,
    LEVELS,
    Dataset,
    DatasetWriter,
    JetColumns,
    UnitResult,
    open_h5,
    read_commit,
)
from qcdtool.core.errors import DatasetError, QcdtoolError
from qcdtool.core.jets import JetPairs, JetRejection, JetSettings, LevelJets, find_jet_pairs
from qcdtool.core.particles import offsets_from_counts, ranges_index
from qcdtool.core.pipeline import LOG_FILE, StageContext
from qcdtool.core.spec import RunSpec

log = logging.getLogger(__name__)

DATASET_FILE = "dataset.h5"
#: Spec parts that decide a dataset's content.
DATASET_SPEC_PARTS = ("run", "generator", "jets", "imagers")
SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard k of N, counted from 1."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``k/N``; raise QcdtoolError for anything else."""
        match = SHARD_PATTERN.match(text)
        if match is None:
            raise QcdtoolError(f"invalid --shard {text!r}; expected k/N with whole numbers, e.g. 1/4")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise QcdtoolError(f"invalid --shard {text!r}; k must be between 1 and N (N >= 1), e.g. 1/{max(count, 1)}")
        return cls(index, count)

    def select(self, units: Sequence[WorkUnit]) -> list[WorkUnit]:
        """The contiguous run of units that belongs to this shard."""
        start = (self.index - 1) * len(units) // self.count
        stop = self.index * len(units) // self.count
        return list(units[start:stop])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class GenerateOptions:
    """How to run the generate stage."""

    n_events: int | None = None
    workers: int = 1
    shard: Shard | None = None
    resume: bool = False
    output: Path | None = None
    verbosity: int = 0


def dataset_path(spec: RunSpec, options: GenerateOptions) -> Path:
    """Where the dataset (or the shard) is written."""
    if options.output is not None:
        return options.output
    if options.shard is not None:
        return spec.run_dir / f"dataset.shard-{options.shard.index}-of-{options.shard.count}.h5"
    return spec.run_dir / DATASET_FILE


def content_hash(spec: RunSpec, n_events: int | None) -> str:
    """Hash of everything that decides the dataset's content."""
    return spec.hash(*DATASET_SPEC_PARTS) + (f":events={n_events}" if n_events is not None else "")


def jet_settings(spec: RunSpec) -> JetSettings:
    """The core jet settings from the spec's [jets] table."""
    jets = spec.jets
    return JetSettings(
        algorithm=jets.algorithm,
        radius=jets.radius,
        p=jets.p,
        n_exclusive=jets.n_exclusive,
        matching=jets.matching,
        match_radius=jets.match_radius,
    )


# --------------------------------------------------------------------------
# One unit, in whatever process runs it


class UnitProcessor:
    """Generator, jet settings and imagers, set up once per process."""

    def __init__(self, generator: Generator, jets: JetSettings, imagers: Mapping[str, Imager]) -> None:
        self.generator = generator
        self.jets = jets
        self.imagers = dict(imagers)

    def process(self, unit: WorkUnit) -> UnitResult:
        """Generate a unit, find its jets, draw its images; keep accepted events only."""
        events = self.generator.run(unit)
        pairs = find_jet_pairs(events.parton, events.hadron, self.jets)
        accepted = np.flatnonzero(pairs.accepted)
        counters = dict(events.counters)
        counters["generated"] = len(events)
        counters.update(rejection_counters(pairs))

        kept = _take_events(events, accepted)
        images: dict[str, ImageSet] = {}
        if self.imagers:
            jet_batches = {level: pairs.jet_batch(level, getattr(events, level)) for level in LEVELS}
            for label, imager in self.imagers.items():
                if imager.input == ImagerInput.EVENT:
                    images[label] = imager.render(kept.parton, kept.hadron)
                else:
                    images[label] = imager.render(jet_batches["parton"], jet_batches["hadron"])
        return UnitResult(
            unit_index=unit.index,
            events=kept,
            jets={level: jet_columns(pairs.level(level), accepted) for level in LEVELS},
            delta_angle=pairs.opening_angle[accepted],
            delta_r=pairs.delta_r[accepted],
            images=images,
            counters=counters,
        )


def rejection_counters(pairs: JetPairs) -> dict[str, int]:
    """Count rejected events by level and reason, e.g. ``skipped_hadron_no_match``.

    An event rejected at parton level is counted there only.
    """
    counters: dict[str, int] = {}
    parton = pairs.parton.rejection
    hadron = np.where(parton == JetRejection.ACCEPTED, pairs.hadron.rejection, JetRejection.ACCEPTED)
    for level, codes in (("parton", parton), ("hadron", hadron)):
        for code, count in zip(*np.unique(codes, return_counts=True), strict=True):
            if code != JetRejection.ACCEPTED:
                counters[f"skipped_{level}_{JetRejection(code).name.lower()}"] = int(count)
    return counters


def jet_columns(jets: LevelJets, rows: np.ndarray) -> JetColumns:
    """Kinematics and local constituent indices of the jets of the given events."""
    columns = {name: np.asarray(getattr(jets, name))[rows] for name in JET_COLUMNS}
    counts = jets.n_constituents[rows]
    index = ranges_index(jets.constituent_offsets[rows], counts)
    return JetColumns(columns, jets.constituents[index], offsets_from_counts(counts))


def _take_events(events: EventBatch, rows: np.ndarray) -> EventBatch:
    return EventBatch(
        config_id=events.config_id[rows],
        flavour=events.flavour[rows],
        hadronization=events.hadronization[rows],
        parton=events.parton.take(rows),
        hadron=events.hadron.take(rows),
        counters=events.counters,
    )


_WORKER: UnitProcessor | None = None


def _worker_init(processor: UnitProcessor) -> None:
    global _WORKER
    _WORKER = processor
    processor.generator.setup()


def _worker_process(unit: WorkUnit) -> UnitResult:
    if _WORKER is None:
        raise RuntimeError("worker used before its initializer ran")
    return _WORKER.process(unit)


def _results(processor: UnitProcessor, units: Sequence[WorkUnit], workers: int) -> Iterator[UnitResult]:
    """Process units in order, in this process or in a pool of worker processes."""
    if workers <= 1 or len(units) <= 1:
        for unit in units:
            yield processor.process(unit)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_worker_init, initargs=(processor,)) as pool:
        yield from pool.imap(_worker_process, units, chunksize=1)


# --------------------------------------------------------------------------
# The stage


def build_processor(spec: RunSpec) -> UnitProcessor:
    """Instantiate the spec's generator and imagers."""
    context = spec.context()
    generator_cls = spec.generator.info.cls
    generator = generator_cls(spec.generator.params, context)
    if not isinstance(generator, Generator):
        raise QcdtoolError(f"generator plugin '{spec.generator.plugin}' does not subclass the Generator contract")
    imagers: dict[str, Imager] = {}
    for table in spec.imagers:
        imager = table.info.cls(table.params, context)
        if not isinstance(imager, Imager):
            raise QcdtoolError(f"imager plugin '{table.plugin}' does not subclass the Imager contract")
        imagers[table.label] = imager
    return UnitProcessor(generator, jet_settings(spec), imagers)


def generate_dataset(
    spec: RunSpec,
    options: GenerateOptions,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, str]:
    """Generate (or resume, or skip) the dataset file; return its path and a summary.

    ``on_progress(events_done, events_total)`` is called after each unit.
    """
    processor = build_processor(spec)
    units = processor.generator.plan(options.n_events)
    if options.shard is not None:
        units = options.shard.select(units)
    path = dataset_path(spec, options)
    digest = content_hash(spec, options.n_events)
    log_path = spec.run_dir / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)

    state = _existing_state(path, digest)
    if state == "complete":
        with Dataset(path) as dataset:
            return path, f"{path.name} is current ({len(dataset)} events); nothing to do"
    if state == "incomplete" and not options.resume:
        raise DatasetError(
            f"{path} is incomplete (an earlier generation was interrupted); pass --resume to continue it, "
            "or remove the file to start again"
        )

    # PYTHIA and fastjet write to file descriptor 1; send that to the log
    # file unless the user asked to see it.
    with contextlib.nullcontext() if options.verbosity > 0 else redirect_fd1(log_path):
        processor.generator.setup()  # rejects bad settings before any event
        if state == "incomplete":
            writer = DatasetWriter.resume(path, digest)
            log.info("resuming %s after %d of %d units", path, writer.units_done, len(units))
        else:
            writer = _create_writer(path, spec, processor, digest, options, len(units))
        try:
            remaining = units[writer.units_done :]
            total = sum(unit.n_events for unit in units)
            done = sum(unit.n_events for unit in units[: writer.units_done])
            if on_progress:
                on_progress(done, total)
            for result in _results(processor, remaining, options.workers):
                writer.append(result)
                done += int(result.counters.get("generated", len(result)))
                if on_progress:
                    on_progress(done, total)
            counters = read_commit(writer.file)["counters"]
            rows = writer.rows
            writer.finish()
        except BaseException:
            rows = writer.rows if writer.file.id.valid else 0
            writer.close()
            log.warning("generation stopped; %s holds %d committed events; continue with --resume", path, rows)
            raise
    skipped = sum(value for key, value in counters.items() if key.startswith("skipped_"))
    return path, f"{path.name}: {rows} events written, {skipped} skipped ({_counter_text(counters)})"


def _counter_text(counters: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counters.items()))


def _existing_state(path: Path, digest: str) -> str:
    """``missing``, ``complete`` or ``incomplete``; raise for a file of another spec."""
    if not path.exists():
        return "missing"
    with open_h5(path) as file:
        if file.attrs.get("spec_hash") != digest:
            raise DatasetError(
                f"{path} exists and was made from a different spec or event count; remove it or choose "
                "another [run] name or --output"
            )
        return "complete" if bool(file.attrs.get("complete", False)) else "incomplete"


def _create_writer(
    path: Path, spec: RunSpec, processor: UnitProcessor, digest: str, options: GenerateOptions, n_units: int
) -> DatasetWriter:
    attrs: dict[str, Any] = {
        "spec": spec.to_toml(),
        "spec_hash": digest,
        "seed": spec.run.seed,
        "generator": json.dumps({"plugin": spec.generator.plugin, **processor.generator.metadata()}, sort_keys=True),
        "shard": str(options.shard) if options.shard else "",
        "units_planned": n_units,
        "events_override": options.n_events if options.n_events is not None else -1,
    }
    imagers = {
        label: (imager.describe(), imager.params.model_dump(mode="json")) for label, imager in processor.imagers.items()
    }
    return DatasetWriter.create(path, attrs, imagers)


def generate_stage(context: StageContext) -> str:
    """The pipeline's generate stage: make or resume the run's dataset.h5."""
    options = GenerateOptions(workers=context.options.workers, resume=True, verbosity=context.verbosity)
    _, summary = generate_dataset(context.spec, options)
    return summary
