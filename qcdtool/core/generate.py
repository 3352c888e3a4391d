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
import hashlib
import json
import logging
import multiprocessing
import re
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcdtool.core.add_images import add_images, images_of_spec, plan_images
from qcdtool.core.capture import redirect_fd1
from qcdtool.core.contracts import EventBatch, Generator, Imager, ImagerInput, ImageSet, WorkUnit
from qcdtool.core.dataset import (
    DATASET_SPEC_PARTS,
    EVENT_SPEC_PARTS,
    JET_COLUMNS,
    LEVELS,
    TEMPORARY_SUFFIX,
    Dataset,
    DatasetWriter,
    JetColumns,
    PartsManifest,
    UnitResult,
    flat_settings,
    parts_dir,
    read_commit,
    read_manifest,
    read_part,
    setting_changes,
    write_manifest,
    write_part,
)
from qcdtool.core.errors import DatasetError, QcdtoolError
from qcdtool.core.jets import JetPairs, JetRejection, JetSettings, LevelJets, find_jet_pairs
from qcdtool.core.particles import offsets_from_counts, ranges_index
from qcdtool.core.pipeline import LOG_FILE, StageContext
from qcdtool.core.spec import RunSpec

log = logging.getLogger(__name__)

DATASET_FILE = "dataset.h5"
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
            raise QcdtoolError(f"invalid --shard {text!r}; expected k/N with positive whole numbers, e.g. 1/4")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1:
            raise QcdtoolError(f"invalid --shard {text!r}; the number of shards N must be at least 1, e.g. 1/1")
        if not 1 <= index <= count:
            raise QcdtoolError(f"invalid --shard {text!r}; k must be between 1 and N, e.g. 1/{count}")
        return cls(index, count)

    def select(self, units: Sequence[WorkUnit]) -> list[WorkUnit]:
        """Return the contiguous run of units that belongs to this shard.

        Raise QcdtoolError when there are fewer units than shards, because
        some shard would then be empty.
        """
        if self.count > len(units):
            events = sum(unit.n_events for unit in units)
            largest = max((unit.n_events for unit in units), default=0)
            plural = "s" if len(units) != 1 else ""
            raise QcdtoolError(
                f"invalid --shard {self}: the {events} events form {len(units)} work unit{plural} "
                f"(of up to {largest} events), and each shard needs at least one, "
                f"so N can be at most {len(units)}"
            )
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
    """Return the path of the dataset (or shard) file to write."""
    if options.output is not None:
        return options.output
    if options.shard is not None:
        return spec.run_dir / f"dataset.shard-{options.shard.index}-of-{options.shard.count}.h5"
    return spec.run_dir / DATASET_FILE


def content_hash(spec: RunSpec, n_events: int | None) -> str:
    """Hash of everything that decides the dataset's content: the seed, generator, jets and imagers."""
    return _hash(spec, n_events, DATASET_SPEC_PARTS)


def events_hash(spec: RunSpec, n_events: int | None) -> str:
    """Hash of what decides the events and jets (the content without the images)."""
    return _hash(spec, n_events, EVENT_SPEC_PARTS)


def events_difference(spec: RunSpec, dataset: Dataset, n_events: int | None = None, current: str = "the spec") -> str:
    """Describe how the events of ``dataset`` differ from those of the spec and ``--events``, naming each setting.

    The dataset's resolved spec and --events are compared with the spec's,
    key by key (run.seed, [generator], [jets]); ``current`` names the spec's
    side in the text. When no key differs, the text names the parts that
    decide the events.
    """
    generic = "events of another run.seed, [generator], [jets] or --events"
    in_file = dataset.settings(EVENT_SPEC_PARTS)
    if in_file is None:
        return generic
    in_spec = flat_settings(spec.to_dict(), n_events, EVENT_SPEC_PARTS)
    changes = setting_changes(in_file, in_spec, "the file", current)
    return "events made with other settings: " + "; ".join(changes) if changes else generic


def _hash(spec: RunSpec, n_events: int | None, parts: tuple[str, ...]) -> str:
    return tables_hash(spec.to_dict(), n_events, parts)


def tables_hash(data: Mapping[str, Any], n_events: int | None, parts: Sequence[str]) -> str:
    """Hash the run seed, the tables ``parts`` of the resolved spec ``data``, and an ``--events`` override."""
    selected = {"seed": data["run"]["seed"], "events": n_events, **{part: data.get(part) for part in parts}}
    return hashlib.sha256(json.dumps(selected, sort_keys=True).encode()).hexdigest()


def jet_settings(spec: RunSpec) -> JetSettings:
    """Build the core jet settings from the spec's [jets] table."""
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
        # NOTE: in independent mode this path runs at about 0.5 of raw PYTHIA's
        # next() (target 0.6): nextBatch's conversion and FastJet's C++ take
        # most of the gap; docs/benchmarks.md has the breakdown.
        events = self.generator.run(unit)
        pairs = find_jet_pairs(events.parton, events.hadron, self.jets, events.config_id)
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
    if len(rows) == len(events):
        return events  # rows are ascending and unique, so these are all events in order
    return EventBatch(
        config_id=events.config_id[rows],
        flavour=events.flavour[rows],
        hadronization=events.hadronization[rows],
        parton=events.parton.take(rows),
        hadron=events.hadron.take(rows),
        counters=events.counters,
    )


def part_path(folder: Path, unit: WorkUnit) -> Path:
    """Part file of one unit."""
    return folder / f"unit-{unit.index:06d}.npz"


class PartWriter:
    """Processes units and writes each to its part file; run in every worker process."""

    def __init__(self, processor: UnitProcessor, folder: Path) -> None:
        self.processor = processor
        self.folder = folder

    def __call__(self, unit: WorkUnit) -> tuple[int, int, UnitResult]:
        """Process one unit and write its part; return (unit index, events generated, result)."""
        result = self.processor.process(unit)
        write_part(part_path(self.folder, unit), result)
        return unit.index, int(result.counters.get("generated", len(result))), result


_WORKER: PartWriter | None = None


def _worker_init(writer: PartWriter) -> None:
    global _WORKER
    # Ctrl-C goes to the whole process group; the main process handles it
    # and stops the pool, so workers ignore it instead of each printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = writer
    writer.processor.generator.setup()


def _worker_process(unit: WorkUnit) -> tuple[int, int, None]:
    if _WORKER is None:
        raise RuntimeError("worker used before its initializer ran")
    index, generated, _ = _WORKER(unit)
    return index, generated, None  # the main process reads the part file instead


def _write_parts(
    writer: PartWriter, units: Sequence[WorkUnit], workers: int
) -> Iterator[tuple[int, int, UnitResult | None]]:
    """Write the parts of ``units`` in this process or in a pool of worker processes.

    Yields (unit index, events generated, result); the result is handed over
    only in this process, where keeping it saves reading the part back.
    """
    if workers <= 1 or len(units) <= 1:
        for unit in units:
            yield writer(unit)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(min(workers, len(units)), initializer=_worker_init, initargs=(writer,)) as pool:
        yield from pool.imap_unordered(_worker_process, units, chunksize=1)


# --------------------------------------------------------------------------
# The stage


def build_processor(spec: RunSpec) -> UnitProcessor:
    """Instantiate the spec's generator and imagers."""
    if spec.generator is None:
        raise QcdtoolError(
            f"the spec reads the dataset {spec.dataset_path} ([run] dataset) and has no [generator] table, "
            "so it cannot generate events; add a [generator] table, or drop [run] dataset"
        )
    context = spec.context()
    generator_cls = spec.generator.info.cls
    generator = generator_cls(spec.generator.params, context)
    if not isinstance(generator, Generator):
        raise QcdtoolError(f"generator plugin '{spec.generator.plugin}' does not subclass the Generator contract")
    return UnitProcessor(generator, jet_settings(spec), images_of_spec(spec))


def generate_dataset(
    spec: RunSpec,
    options: GenerateOptions,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, str]:
    """Generate (or resume, or find current) the dataset file; return its path and a summary.

    Units are written to part files in ``<dataset>.parts/`` and assembled
    into the dataset file once all exist, so that an interrupted run loses
    at most the units in progress. ``on_progress(events_done, events_total)``
    is called after each unit.
    """
    if spec.external_dataset and options.output is None and options.shard is None:
        raise QcdtoolError(
            f"the spec reads the dataset {spec.dataset_path} ([run] dataset) and generates no events; "
            "drop [run] dataset to generate the run's own, or give --output FILE"
        )
    processor = build_processor(spec)
    units = planned_units(processor, options)
    path = dataset_path(spec, options)
    digest = content_hash(spec, options.n_events)
    folder = parts_dir(path)
    log_path = spec.run_dir / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)

    if path.exists():
        return path, _reuse_existing(path, spec, processor, options, on_progress)
    # PYTHIA and fastjet write to file descriptor 1; send that to the log
    # file unless the user asked to see it.
    with contextlib.nullcontext() if options.verbosity > 0 else redirect_fd1(log_path):
        processor.generator.setup()  # rejects bad settings before any event or file
        _prepare_parts(folder, _manifest(spec, options, digest, len(units)), options.resume)
        missing = [unit for unit in units if not part_path(folder, unit).exists()]
        total = sum(unit.n_events for unit in units)
        done = total - sum(unit.n_events for unit in missing)
        if len(missing) < len(units):
            log.info("resuming %s: %d of %d units already written", path, len(units) - len(missing), len(units))
        if on_progress:
            on_progress(done, total)

        # Parts arrive in any order; each is appended to the dataset file as
        # soon as every unit before it is there, while workers go on.
        assembler = _Assembler(path, folder, units, _create_writer(path, spec, processor, digest, options, len(units)))
        try:
            assembler.append_ready()
            for index, generated, result in _write_parts(PartWriter(processor, folder), missing, options.workers):
                assembler.written.add(index)
                if result is not None:
                    assembler.in_memory[index] = result
                assembler.append_ready()
                done += generated
                if on_progress:
                    on_progress(done, total)
            rows, counters = assembler.finish()
        except BaseException:
            assembler.writer.discard()
            raise
    shutil.rmtree(folder)
    skipped = sum(value for key, value in counters.items() if key.startswith("skipped_"))
    log.debug("wrote %s: %d events, counters %s", path, rows, counters)
    return path, f"{path.name}: {rows} events written, {skipped} skipped ({_counter_text(counters)})"


def planned_units(processor: UnitProcessor, options: GenerateOptions) -> list[WorkUnit]:
    """Return the work units to write: the generator's whole plan, or this shard's run of it.

    Raises QcdtoolError for a --shard with more shards than units.
    """
    units = processor.generator.plan(options.n_events)
    return options.shard.select(units) if options.shard is not None else units


def check_options(spec: RunSpec, options: GenerateOptions) -> None:
    """Reject options that this spec cannot generate with (a --shard of more shards than units).

    It writes nothing, so a command can call it before it opens its log
    file in the run folder.
    """
    planned_units(build_processor(spec), options)


def _manifest(spec: RunSpec, options: GenerateOptions, digest: str, n_units: int) -> PartsManifest:
    return PartsManifest(
        spec_hash=digest,
        units=n_units,
        spec=str(spec.source.resolve()) if spec.source is not None else None,
        events=options.n_events,
        shard=str(options.shard) if options.shard is not None else None,
        output=str(options.output.resolve()) if options.output is not None else None,
        workers=options.workers,
    )


def _reuse_existing(
    path: Path,
    spec: RunSpec,
    processor: UnitProcessor,
    options: GenerateOptions,
    on_progress: Callable[[int, int], None] | None,
) -> str:
    """Use a dataset that exists: current as it is, or missing only some of the spec's images."""
    with Dataset(path) as dataset:
        if dataset.attrs.get("events_hash") != events_hash(spec, options.n_events):
            raise DatasetError(
                f"{path} exists and contains {events_difference(spec, dataset, options.n_events, 'this command')}; "
                "remove it, or choose another [run] name or --output"
            )
        plan = plan_images(dataset, processor.imagers)
        n_events = len(dataset)
    if not plan.missing and not plan.different:
        return f"{path.name} is current ({n_events} events); nothing to do"
    return add_images(path, spec, processor.imagers, force=False, on_progress=on_progress)


def _prepare_parts(folder: Path, manifest: PartsManifest, resume: bool) -> None:
    """Create the part folder, or check an existing one before resuming it."""
    if folder.exists() and not any(folder.glob("unit-*.npz")):
        shutil.rmtree(folder)  # an earlier attempt that stopped before its first unit: nothing to resume
    if folder.exists():
        if not resume:
            raise DatasetError(
                f"an earlier generation of {folder.name.removesuffix('.parts')} was interrupted ({folder} "
                "exists); pass --resume to continue it, or remove that folder to start again"
            )
        recorded = read_manifest(folder)
        if recorded is None or recorded.spec_hash != manifest.spec_hash:
            raise DatasetError(
                f"{folder} was started from a different spec or event count; it cannot be resumed with this "
                "one. Remove it, or use the spec it was made with"
            )
        for leftover in folder.glob("*" + TEMPORARY_SUFFIX):
            leftover.unlink()  # a part that was being written when the run stopped
        write_manifest(folder, manifest)  # the spec file may have moved since
        return
    folder.mkdir(parents=True)
    write_manifest(folder, manifest)


class _Assembler:
    """Appends part files to the dataset file in plan order, as they become available."""

    def __init__(self, path: Path, folder: Path, units: Sequence[WorkUnit], writer: DatasetWriter) -> None:
        self.folder = folder
        self.units = list(units)
        self.writer = writer
        self.position = 0
        self.written = {unit.index for unit in units if part_path(folder, unit).exists()}
        #: Results made in this process, appended without reading their part back.
        self.in_memory: dict[int, UnitResult] = {}

    def append_ready(self) -> None:
        """Append every part whose predecessors are all appended."""
        while self.position < len(self.units) and self.units[self.position].index in self.written:
            unit = self.units[self.position]
            result = self.in_memory.pop(unit.index, None)
            self.writer.append(result if result is not None else read_part(part_path(self.folder, unit)))
            self.position += 1

    def finish(self) -> tuple[int, dict[str, int]]:
        """Close the complete dataset file; return its rows and counters."""
        if self.position != len(self.units):
            raise RuntimeError(f"only {self.position} of {len(self.units)} units were assembled")
        commit = read_commit(self.writer.file)
        self.writer.finish()
        return int(commit["rows"]), dict(commit["counters"])


def _counter_text(counters: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counters.items()))


def _create_writer(
    path: Path, spec: RunSpec, processor: UnitProcessor, digest: str, options: GenerateOptions, n_units: int
) -> DatasetWriter:
    attrs: dict[str, Any] = {
        "spec": spec.to_toml(),
        "spec_hash": digest,
        "events_hash": events_hash(spec, options.n_events),
        "seed": spec.run.seed,
        "generator": json.dumps({"plugin": processor.generator.name, **processor.generator.metadata()}, sort_keys=True),
        "shard": str(options.shard) if options.shard else "",
        "units_planned": n_units,
        "events_override": options.n_events if options.n_events is not None else -1,
    }
    imagers = {
        label: (imager.describe(), imager.params.model_dump(mode="json")) for label, imager in processor.imagers.items()
    }
    return DatasetWriter.create(path, attrs, imagers)


def generate_stage(context: StageContext, force: bool = False) -> str:
    """Run the pipeline's generate stage: make or resume the run's dataset.h5, or find it current.

    A dataset.h5 whose events came from another seed, [generator] or [jets]
    is stale: it is removed and made again, and every later stage finds its
    own results stale through their hashes. ``force`` makes it again even
    when current.
    """
    spec = context.spec
    if spec.external_dataset:
        with Dataset(spec.dataset_path) as dataset:  # a missing, incomplete or foreign file is an error here
            n_events = len(dataset)
        return f"reads {spec.dataset_path} ({n_events} events), made elsewhere"
    path = spec.dataset_path
    folder = parts_dir(path)
    stale = ""
    if path.exists() and not force:
        with Dataset(path) as dataset:
            n_events = len(dataset)
            if dataset.attrs.get("events_hash") == events_hash(spec, None):
                return f"{path.name} is current ({n_events} events)"
            stale = f"{path.name} contains {events_difference(spec, dataset)}"
    if folder.exists() and not force:
        recorded = read_manifest(folder)
        if recorded is None or recorded.spec_hash != content_hash(spec, None):
            stale = stale or f"the interrupted generation in {folder.name} was started from another spec"
    if force or stale:
        log.warning("generating %s again: %s", path.name, stale or "as asked")
        path.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
    options = GenerateOptions(workers=context.options.workers, resume=True, verbosity=context.verbosity)
    _, summary = generate_dataset(spec, options, context.on_progress)
    return summary


def generated_current(spec: RunSpec) -> str | None:
    """Why the generate stage is not current for ``spec``, or None when it is."""
    path = spec.dataset_path
    if not path.exists():
        return f"{path} does not exist"
    if spec.external_dataset:
        return None
    with Dataset(path) as dataset:
        if dataset.attrs.get("events_hash") != events_hash(spec, None):
            return f"{path.name} contains {events_difference(spec, dataset)}"
    return None
