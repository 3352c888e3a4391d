"""The HDF5 dataset file: events, jets and images, written in units as they stream in.

Layout (format version 1; docs/dataset.md describes every field)::

    /                      attributes: format, format_version, qcdtool_version, spec,
                           spec_hash, seed, generator, shard, units_planned, commit
                           (rows, units, particle totals, counters), complete, created
    /units/index, /units/rows              one row per unit written, in order
    /events/config_id, flavour, hadronization
    /events/<level>/px, py, pz, E, pid, charge, offsets      level: parton, hadron
    /jets/<level>/px, py, pz, E, pt, eta, phi, mass
    /jets/<level>/constituents, offsets    indices into the event's particles
    /jets/delta_angle, /jets/delta_r       distance between the two jet axes
    /images/<label>/parton, hadron         (n, C, H, W) float32
    /images/<label>/<column>               per-image columns of the imager

Crash safety: HDF5 rewrites whole compressed chunks when it appends, so a
process killed in the middle of an append can damage rows written long
before. qcdtool therefore never appends to a file it has handed over. The
generate stage writes each unit to its own part file, under a temporary
name that is renamed once the part is complete, and assembles the parts into
the dataset file the same way (``.partial``, then a rename). After a crash
the dataset file either does not exist yet or is complete; the part files
that exist are complete and are reused by ``--resume``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import logging
import os
import shlex
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
from numpy.typing import NDArray

from qcdtool import __version__
from qcdtool.core.contracts import EventBatch, ImageDescription, ImageSet, JetBatch
from qcdtool.core.errors import DatasetError
from qcdtool.core.particles import PARTICLE_COLUMNS, ParticleBatch, offsets_from_counts

log = logging.getLogger(__name__)

FORMAT = "qcdtool-dataset"
FORMAT_VERSION = 1
LEVELS: tuple[Literal["parton", "hadron"], ...] = ("parton", "hadron")
JET_COLUMNS = ("px", "py", "pz", "E", "pt", "eta", "phi", "mass")
EVENT_COLUMNS: dict[str, np.dtype[Any]] = {
    "config_id": np.dtype(np.int64),
    "flavour": np.dtype(np.int8),
    "hadronization": np.dtype(np.int32),
}

# Chunk lengths along the appended axis. Flat particle columns hold about 50
# entries per event, event columns one, images one per event.
PARTICLE_CHUNK = 1 << 16
ROW_CHUNK = 1 << 12
IMAGE_CHUNK_BYTES = 1 << 18
#: Chunk cache per open table: room for the partly filled chunk being appended to
#: (at most PARTICLE_CHUNK float64 values), and no more, so memory does not grow
#: with the number of events.
CHUNK_CACHE_BYTES = 1 << 20
#: Float columns that LZF does not shrink; stored without compression.
INCOMPRESSIBLE_COLUMNS = frozenset({"px", "py", "pz", "E"})
#: Suffix of a file being written; it gets its final name only when complete.
TEMPORARY_SUFFIX = ".partial"
#: Spec tables that decide a dataset's events, besides the run seed and --events.
EVENT_SPEC_PARTS = ("generator", "jets")
#: Spec tables that decide a dataset's whole content (its ``spec_hash``), besides the run seed and --events.
DATASET_SPEC_PARTS = (*EVENT_SPEC_PARTS, "imagers")


@dataclass(frozen=True)
class JetColumns:
    """One level's jets of the accepted events of a unit.

    ``constituents`` holds, per jet, indices into that event's particles of
    the same level (int32, with ``offsets``).
    """

    columns: Mapping[str, NDArray[np.float64]]
    constituents: NDArray[np.int32]
    offsets: NDArray[np.int64]


@dataclass(frozen=True)
class UnitResult:
    """Everything one work unit adds to the file, accepted events only."""

    unit_index: int
    events: EventBatch
    jets: Mapping[str, JetColumns]
    delta_angle: NDArray[np.float64]
    delta_r: NDArray[np.float64]
    images: Mapping[str, ImageSet] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events)


def _create_appendable(
    group: h5py.Group, name: str, dtype: np.dtype[Any], row_shape: tuple[int, ...], chunk: int, compress: bool = True
) -> None:
    group.create_dataset(
        name,
        shape=(0, *row_shape),
        maxshape=(None, *row_shape),
        dtype=dtype,
        chunks=(chunk, *row_shape),
        compression="lzf" if compress else None,
        shuffle=compress,
        track_times=False,
    )


def _append(dataset: h5py.Dataset, values: NDArray[Any]) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    if len(values):
        dataset[start:] = values


def _image_chunk(shape: tuple[int, ...]) -> int:
    per_image = int(np.prod(shape)) * 4
    return max(1, min(1024, IMAGE_CHUNK_BYTES // per_image))


class DatasetWriter:
    """Writes a dataset file unit by unit; each unit is committed as a whole."""

    def __init__(self, file: h5py.File) -> None:
        self.file = file
        self.path: Path | None = None
        self.temporary: Path | None = None
        self.compress = True
        # Open table handles, kept for the writer's lifetime: closing a
        # chunked table flushes its cache, which would compress and later
        # decompress the same partly filled chunk once per unit.
        self._tables: dict[str, h5py.Dataset] = {}

    def _table(self, name: str) -> h5py.Dataset:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = self.file[name]
        return table

    # -- creation and resumption -------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        attrs: Mapping[str, Any],
        imagers: Mapping[str, tuple[ImageDescription, Mapping[str, Any]]],
        compress: bool = True,
    ) -> DatasetWriter:
        """Start a new file; it appears at ``path`` only when :meth:`finish` renames it there.

        ``imagers`` maps each label to (description, parameters). Part files
        of single units skip compression, which the assembled file applies.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
        file = h5py.File(temporary, "w", track_order=True, rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_w0=1.0)
        try:
            root = file.attrs
            root["format"] = FORMAT
            root["format_version"] = FORMAT_VERSION
            root["qcdtool_version"] = __version__
            root["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            root["complete"] = False
            root["commit"] = json.dumps(_EMPTY_COMMIT, sort_keys=True)
            for key, value in attrs.items():
                root[key] = value
            _create_tables(file, imagers, compress)
        except BaseException:
            file.close()
            temporary.unlink(missing_ok=True)
            raise
        writer = cls(file)
        writer.compress = compress
        writer.path = path
        writer.temporary = temporary
        return writer

    # -- writing -------------------------------------------------------------

    @property
    def units_done(self) -> int:
        """Units committed so far."""
        return int(read_commit(self.file)["units_done"])

    @property
    def rows(self) -> int:
        """Events committed so far."""
        return int(read_commit(self.file)["rows"])

    def append(self, result: UnitResult) -> None:
        """Write one unit's rows and commit them."""
        file = self.file
        events = result.events
        commit = read_commit(file)
        rows_before = commit["rows"]
        totals = dict(commit["totals"])

        for column in EVENT_COLUMNS:
            _append(self._table(f"events/{column}"), np.asarray(getattr(events, column), dtype=EVENT_COLUMNS[column]))
        for level in LEVELS:
            batch: ParticleBatch = getattr(events, level)
            base = int(totals.get(f"events/{level}", 0))
            for column in PARTICLE_COLUMNS:
                _append(self._table(f"events/{level}/{column}"), getattr(batch, column))
            _append(self._table(f"events/{level}/offsets"), batch.offsets[1:] + base)
            totals[f"events/{level}"] = base + int(batch.offsets[-1])

            jets = result.jets[level]
            base = int(totals.get(f"jets/{level}", 0))
            for column in JET_COLUMNS:
                _append(self._table(f"jets/{level}/{column}"), np.asarray(jets.columns[column], dtype=np.float64))
            _append(self._table(f"jets/{level}/constituents"), jets.constituents)
            _append(self._table(f"jets/{level}/offsets"), jets.offsets[1:] + base)
            totals[f"jets/{level}"] = base + int(jets.offsets[-1])
        _append(self._table("jets/delta_angle"), result.delta_angle)
        _append(self._table("jets/delta_r"), result.delta_r)

        for label, images in result.images.items():
            group = file["images"][label]
            _append(self._table(f"images/{label}/parton"), images.parton)
            _append(self._table(f"images/{label}/hadron"), images.hadron)
            for column, values in images.per_image.items():
                if column not in group:
                    _create_appendable(group, column, np.asarray(values).dtype, (), ROW_CHUNK, self.compress)
                    group[column].resize(rows_before, axis=0)
                _append(self._table(f"images/{label}/{column}"), np.asarray(values))

        _append(self._table("units/index"), np.array([result.unit_index], dtype=np.int64))
        _append(self._table("units/rows"), np.array([len(result)], dtype=np.int64))
        counters = dict(commit["counters"])
        for key, value in result.counters.items():
            counters[key] = int(counters.get(key, 0)) + int(value)

        new_commit = {
            "units_done": commit["units_done"] + 1,
            "rows": rows_before + len(result),
            "totals": totals,
            "counters": counters,
        }
        file.attrs["commit"] = json.dumps(new_commit, sort_keys=True)

    def finish(self) -> None:
        """Mark the file complete, close it and move it to its final name."""
        self.file.attrs["complete"] = True
        self._tables.clear()
        self.file.close()
        if self.temporary is not None and self.path is not None:
            os.replace(self.temporary, self.path)

    def discard(self) -> None:
        """Close and delete an unfinished file."""
        self._tables.clear()
        if self.file.id.valid:
            self.file.close()
        if self.temporary is not None:
            self.temporary.unlink(missing_ok=True)


_EMPTY_COMMIT: dict[str, Any] = {"units_done": 0, "rows": 0, "totals": {}, "counters": {}}


def read_commit(file: h5py.File) -> dict[str, Any]:
    """Return what the writer last committed: units_done, rows, totals and counters."""
    commit = json.loads(str(file.attrs.get("commit", json.dumps(_EMPTY_COMMIT))))
    return {**_EMPTY_COMMIT, **commit}


def _create_tables(
    file: h5py.File, imagers: Mapping[str, tuple[ImageDescription, Mapping[str, Any]]], compress: bool
) -> None:
    units = file.create_group("units")
    _create_appendable(units, "index", np.dtype(np.int64), (), 256, compress)
    _create_appendable(units, "rows", np.dtype(np.int64), (), 256, compress)
    events = file.create_group("events")
    for column, dtype in EVENT_COLUMNS.items():
        _create_appendable(events, column, dtype, (), ROW_CHUNK, compress)
    jets = file.create_group("jets")
    for level in LEVELS:
        particles = events.create_group(level)
        for column, dtype in PARTICLE_COLUMNS.items():
            # Momenta do not compress (LZF saves under 1% on them), so they skip the filter.
            squeeze = compress and column not in INCOMPRESSIBLE_COLUMNS
            _create_appendable(particles, column, dtype, (), PARTICLE_CHUNK, squeeze)
        _create_appendable(particles, "offsets", np.dtype(np.int64), (), ROW_CHUNK, compress)
        particles["offsets"].resize(1, axis=0)  # offsets start with a 0
        level_jets = jets.create_group(level)
        for column in JET_COLUMNS:
            _create_appendable(level_jets, column, np.dtype(np.float64), (), ROW_CHUNK, False)
        _create_appendable(level_jets, "constituents", np.dtype(np.int32), (), PARTICLE_CHUNK, compress)
        _create_appendable(level_jets, "offsets", np.dtype(np.int64), (), ROW_CHUNK, compress)
        level_jets["offsets"].resize(1, axis=0)
    _create_appendable(jets, "delta_angle", np.dtype(np.float64), (), ROW_CHUNK, compress)
    _create_appendable(jets, "delta_r", np.dtype(np.float64), (), ROW_CHUNK, compress)
    images = file.create_group("images")
    for label, (description, params) in imagers.items():
        add_image_group(images, label, description, params, compress=compress)


def add_image_group(
    images: h5py.Group,
    label: str,
    description: ImageDescription,
    params: Mapping[str, Any],
    rows: int = 0,
    compress: bool = True,
) -> h5py.Group:
    """Create the empty image tables of one imager, with its description and parameters as attributes."""
    group = images.create_group(label)
    for key, value in description.to_attrs().items():
        group.attrs[key] = value
    group.attrs["params"] = json.dumps(dict(params), sort_keys=True)
    shape = tuple(description.shape)
    for level in LEVELS:
        _create_appendable(group, level, np.dtype(np.float32), shape, _image_chunk(shape), compress)
        if rows:
            group[level].resize(rows, axis=0)
    return group


# --------------------------------------------------------------------------
# Part files: one unit each, written once


PART_KEY_SEPARATOR = "|"


def write_part(path: Path, result: UnitResult) -> None:
    """Write one unit's result to its own file, atomically (temporary name, then rename).

    A part is an uncompressed numpy ``.npz`` archive of plain arrays (no
    pickled objects), which writes several times faster than an HDF5 file of
    the same tables; it lives only until the dataset file is assembled.
    """
    arrays: dict[str, NDArray[Any]] = {
        "unit_index": np.asarray(result.unit_index, dtype=np.int64),
        "counters": np.asarray(json.dumps(dict(result.counters), sort_keys=True)),
        "jets|delta_angle": result.delta_angle,
        "jets|delta_r": result.delta_r,
    }
    events = result.events
    for column in EVENT_COLUMNS:
        arrays[f"events|{column}"] = np.asarray(getattr(events, column), dtype=EVENT_COLUMNS[column])
    for level in LEVELS:
        batch: ParticleBatch = getattr(events, level)
        for column in (*PARTICLE_COLUMNS, "offsets"):
            arrays[f"events|{level}|{column}"] = getattr(batch, column)
        jets = result.jets[level]
        for column in JET_COLUMNS:
            arrays[f"jets|{level}|{column}"] = np.asarray(jets.columns[column], dtype=np.float64)
        arrays[f"jets|{level}|constituents"] = jets.constituents
        arrays[f"jets|{level}|offsets"] = jets.offsets
    for label, images in result.images.items():
        arrays[f"images|{label}|parton"] = images.parton
        arrays[f"images|{label}|hadron"] = images.hadron
        for column, values in images.per_image.items():
            arrays[f"images|{label}|per_image|{column}"] = np.asarray(values)
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    with temporary.open("wb") as file:
        np.savez(file, allow_pickle=False, **arrays)
    os.replace(temporary, path)


def read_part(path: Path) -> UnitResult:
    """Read a part file back into the UnitResult it was written from."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}

    def particles(level: str) -> ParticleBatch:
        columns: dict[str, Any] = {column: arrays[f"events|{level}|{column}"] for column in PARTICLE_COLUMNS}
        return ParticleBatch(**columns, offsets=arrays[f"events|{level}|offsets"])

    events = EventBatch(
        config_id=arrays["events|config_id"],
        flavour=arrays["events|flavour"],
        hadronization=arrays["events|hadronization"],
        parton=particles("parton"),
        hadron=particles("hadron"),
    )
    jets: dict[str, JetColumns] = {
        level: JetColumns(
            columns={column: arrays[f"jets|{level}|{column}"] for column in JET_COLUMNS},
            constituents=arrays[f"jets|{level}|constituents"],
            offsets=arrays[f"jets|{level}|offsets"],
        )
        for level in LEVELS
    }
    images: dict[str, ImageSet] = {}
    labels = {key.split(PART_KEY_SEPARATOR)[1] for key in arrays if key.startswith("images|")}
    for label in sorted(labels):
        prefix = f"images|{label}|per_image|"
        per_image = {key.removeprefix(prefix): value for key, value in arrays.items() if key.startswith(prefix)}
        images[label] = ImageSet(
            parton=arrays[f"images|{label}|parton"], hadron=arrays[f"images|{label}|hadron"], per_image=per_image
        )
    return UnitResult(
        unit_index=int(arrays["unit_index"]),
        events=events,
        jets=jets,
        delta_angle=arrays["jets|delta_angle"],
        delta_r=arrays["jets|delta_r"],
        images=images,
        counters=json.loads(str(arrays["counters"])),
    )


MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class PartsManifest:
    """Record of a part folder's generation: the spec hash that a resume must match, and the command's options."""

    spec_hash: str
    #: Units the dataset file (the shard, for a shard) holds when complete.
    units: int | None = None
    #: Absolute path of the spec file, or None for a spec that came from no file.
    spec: str | None = None
    #: Options of the generate command, None where not given.
    events: int | None = None
    shard: str | None = None
    output: str | None = None
    workers: int = 1

    def resume_command(self) -> str:
        """Return the command that finishes this generation, in quotes, e.g. ``'qcdtool generate my.toml --resume'``.

        ``qcdtool run`` resumes only a generation of the run's own
        dataset, so it is named as well when no option changed the file.
        """
        spec = _typed_path(self.spec) if self.spec else "SPEC"
        words = ["qcdtool", "generate", spec]
        if self.events is not None:
            words += ["--events", str(self.events)]
        if self.shard:
            words += ["--shard", self.shard]
        if self.output:
            words += ["--output", _typed_path(self.output)]
        if self.workers > 1:
            words += ["--workers", str(self.workers)]
        command = f"'{shlex.join([*words, '--resume'])}'"
        if self.events is None and not self.shard and not self.output:
            command += f" (or '{shlex.join(['qcdtool', 'run', spec])}')"
        return command


def _typed_path(path: str) -> str:
    """Return ``path`` as a user types it here: relative to the working folder when inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def write_manifest(folder: Path, manifest: PartsManifest) -> None:
    """Write the manifest of a part folder, atomically (temporary name, then rename)."""
    temporary = folder / (MANIFEST_FILE + TEMPORARY_SUFFIX)
    temporary.write_text(json.dumps(asdict(manifest), sort_keys=True) + "\n")
    os.replace(temporary, folder / MANIFEST_FILE)


def read_manifest(folder: Path) -> PartsManifest | None:
    """Read the manifest of a part folder; None when it is missing or unreadable."""
    try:
        return PartsManifest(**json.loads((folder / MANIFEST_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


# --------------------------------------------------------------------------
# Reading

#: Exceptions that h5py raises when HDF5 fails on a damaged file. It maps HDF5's error
#: codes to these classes and raises RuntimeError for the rest, so a
#: truncated file, an unreadable object header or a chunk that its filter
#: cannot decode each surface as one of them. ValueError also covers JSON
#: attributes cut short. Every read of a file runs inside :func:`reading`,
#: which turns them into a DatasetError.
# NOTE: HDF5 2.0.0 can also hang or crash on some damaged metadata, and then no
# error reaches Python. Zeroed bytes in the root group's attribute storage did that.
HDF5_READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    NotImplementedError,
    RuntimeError,
)


@contextlib.contextmanager
def reading(path: Path, part: str) -> Iterator[None]:
    """Turn an HDF5 error raised while the block reads ``part`` from ``path`` into a DatasetError.

    The error names the file, the table or attribute that failed and what to
    do. Only reads belong in the block: an OSError of a write (a full disk)
    must reach the caller as it is.
    """
    try:
        yield
    except HDF5_READ_ERRORS as exc:
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise DatasetError(f"{path} is damaged: HDF5 cannot read {part} ({detail}). {recovery_advice(path)}") from exc


def recovery_advice(path: Path) -> str:
    """Say how to get a readable, complete copy of a dataset file: finish its generation, or make it again."""
    final = path.with_name(path.name.removesuffix(TEMPORARY_SUFFIX))
    folder = parts_dir(final)
    if folder.is_dir():
        manifest = read_manifest(folder)
        command = manifest.resume_command() if manifest is not None else "'qcdtool generate SPEC --resume'"
        return (
            f"Its generation was interrupted {interrupted_progress(folder, manifest)}; finish it with {command}, "
            f"which assembles the file again from the finished units in {folder}."
        )
    if path.name.endswith(TEMPORARY_SUFFIX):
        return (
            f"It is the unfinished output of an interrupted qcdtool command (a complete file never keeps the "
            f"{TEMPORARY_SUFFIX} suffix): remove it and run that command again."
        )
    return (
        "Make it again ('qcdtool generate SPEC', or 'qcdtool merge' for joined shards), "
        "or copy it again from where it was made."
    )


def interrupted_progress(folder: Path, manifest: PartsManifest | None) -> str:
    """Describe how far the generation of a part folder got, e.g. ``after 7 of 20 units``."""
    done = len(list(folder.glob("unit-*.npz")))
    if manifest is None or manifest.units is None:
        return f"after {done} units"
    return f"after {done} of {manifest.units} units"


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file, turning h5py's low-level errors into a DatasetError."""
    if not path.exists():
        raise DatasetError(f"dataset file not found: {path}")
    if path.is_dir():
        raise DatasetError(f"{path} is a directory; expected a dataset file (.h5)")
    try:
        return h5py.File(path, mode)
    except HDF5_READ_ERRORS as exc:
        raise DatasetError(
            f"{path} cannot be opened as HDF5 (truncated, damaged or not an HDF5 file): {exc}. {recovery_advice(path)}"
        ) from exc


def check_format(file: h5py.File, path: Path) -> None:
    """Refuse a file that is not a qcdtool dataset of this format version."""
    if file.attrs.get("format") != FORMAT:
        raise DatasetError(f"{path} is not a qcdtool dataset (no format = '{FORMAT}' attribute)")
    version = int(file.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        newer = "a newer" if version > FORMAT_VERSION else "an older"
        raise DatasetError(
            f"{path} has dataset format version {version}, {newer} format than this qcdtool "
            f"({__version__}) reads (version {FORMAT_VERSION})"
        )


def flat_settings(spec: Mapping[str, Any], n_events: int | None, parts: Sequence[str]) -> dict[str, Any]:
    """Return the settings that decide a dataset, keyed by their TOML path.

    ``spec`` is a resolved spec as a dict. The keys are ``run.seed``, every
    key of the tables in ``parts`` (``generator.hadronizations``, and
    ``imagers[0].size`` for an array of tables) and ``--events``, the event
    count of the generate command's --events option (None without it).
    """
    settings: dict[str, Any] = {"run.seed": (spec.get("run") or {}).get("seed"), "--events": n_events}
    for part in parts:
        value = spec.get(part)
        if isinstance(value, list):
            for index, table in enumerate(value):
                settings.update({f"{part}[{index}].{key}": item for key, item in table.items()})
        else:
            settings.update({f"{part}.{key}": item for key, item in (value or {}).items()})
    return settings


def setting_changes(
    first: Mapping[str, Any], second: Mapping[str, Any], first_name: str, second_name: str
) -> list[str]:
    """List every setting whose values differ, as ``key = value in <first_name>, value in <second_name>``."""
    return [
        f"{key} = {_shown(first.get(key))} in {first_name}, {_shown(second.get(key))} in {second_name}"
        for key in sorted(set(first) | set(second))
        if first.get(key) != second.get(key)
    ]


def _shown(value: Any) -> str:
    return "(not set)" if value is None else json.dumps(value)


def parts_dir(path: Path) -> Path:
    """Folder of the part files of a dataset file being generated."""
    return path.with_name(path.name + ".parts")


class ImageTable:
    """The ``(n, C, H, W)`` image table of one imager and level; slicing it reads those rows.

    It wraps the h5py dataset, so that an HDF5 error on a damaged file
    becomes a DatasetError that names the file and the table.
    """

    def __init__(self, table: h5py.Dataset, path: Path, name: str) -> None:
        self._table = table
        self.path = path
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n, C, H, W)``."""
        return tuple(self._table.shape)

    def __len__(self) -> int:
        return int(self._table.shape[0])

    def __getitem__(self, rows: Any) -> NDArray[np.float32]:
        with reading(self.path, self.name):
            return np.asarray(self._table[rows])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        """Read the whole table, for ``np.asarray(table)``."""
        return np.asarray(self[...], dtype=dtype)


class Dataset:
    """Read access to a dataset file; tables are read lazily, slice by slice.

    An HDF5 error while opening or reading the file is raised as a
    DatasetError that names the file and the command that makes a good copy.
    """

    def __init__(self, path: Path | str, allow_incomplete: bool = False) -> None:
        self.path = Path(path)
        folder = parts_dir(self.path)
        if not self.path.exists() and folder.is_dir():
            manifest = read_manifest(folder)
            command = manifest.resume_command() if manifest is not None else "'qcdtool generate SPEC --resume'"
            raise DatasetError(
                f"{self.path} is incomplete: its generation was interrupted "
                f"{interrupted_progress(folder, manifest)}. Resume it with {command}, or remove {folder} "
                "and generate again"
            )
        self.file = open_h5(self.path)
        try:
            with self._reading("its root attributes"):
                check_format(self.file, self.path)
                complete = bool(self.file.attrs.get("complete", False))
                self._rows = int(read_commit(self.file)["rows"])
            if not allow_incomplete and not complete:
                raise DatasetError(
                    f"{self.path} is incomplete (complete = false): its writer stopped after {self._rows} events. "
                    f"{recovery_advice(self.path)}"
                )
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        if self.file.id.valid:
            self.file.close()

    def __len__(self) -> int:
        return self._rows

    def _reading(self, part: str) -> contextlib.AbstractContextManager[None]:
        return reading(self.path, part)

    @property
    def attrs(self) -> h5py.AttributeManager:
        """Root attributes."""
        return self.file.attrs

    @property
    def counters(self) -> dict[str, int]:
        """Run counters (skipped events, failed hadronizations...)."""
        with self._reading("the commit attribute"):
            counters = read_commit(self.file)["counters"]
        return {key: int(value) for key, value in counters.items()}

    @property
    def image_labels(self) -> list[str]:
        """Labels of the imagers whose images the file holds."""
        with self._reading("the images group"):
            return list(self.file["images"].keys())

    def settings(self, parts: Sequence[str] = DATASET_SPEC_PARTS) -> dict[str, Any] | None:
        """Return the settings the file was made with (see :func:`flat_settings`), or None when its spec is not TOML."""
        with self._reading("the spec attribute"):
            text = str(self.file.attrs.get("spec", ""))
            events = int(self.file.attrs.get("events_override", -1))
        try:
            spec = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return None
        return flat_settings(spec, events if events >= 0 else None, parts)

    def column(self, name: str, rows: slice | NDArray[np.int64] = slice(None)) -> NDArray[Any]:
        """Read an event column (config_id, flavour, hadronization) for the given rows."""
        if name not in EVENT_COLUMNS:
            raise ValueError(f"invalid event column {name!r}: expected one of {', '.join(EVENT_COLUMNS)}")
        with self._reading(f"events/{name}"):
            values = np.asarray(self.file["events"][name][: self._rows])
        return values[rows]

    def particles(self, level: str, rows: slice = slice(None)) -> ParticleBatch:
        """Final-state particles of one level for a contiguous range of events."""
        _check_level(level)
        start, stop = _bounds(rows, self._rows)
        name = f"events/{level}"
        with self._reading(name):
            group = self.file[name]
            offsets = np.asarray(group["offsets"][start : stop + 1], dtype=np.int64)
            lo, hi = self._offset_range(offsets, group["pid"].shape[0], f"{name}/offsets")
            columns: dict[str, Any] = {column: np.asarray(group[column][lo:hi]) for column in PARTICLE_COLUMNS}
        return ParticleBatch(**columns, offsets=offsets - lo)

    def jet_constituent_index(
        self, level: str, rows: slice = slice(None)
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Constituent indices (local to each event) and their offsets for a range of events."""
        _check_level(level)
        start, stop = _bounds(rows, self._rows)
        name = f"jets/{level}"
        with self._reading(name):
            group = self.file[name]
            offsets = np.asarray(group["offsets"][start : stop + 1], dtype=np.int64)
            lo, hi = self._offset_range(offsets, group["constituents"].shape[0], f"{name}/offsets")
            constituents = np.asarray(group["constituents"][lo:hi])
        return constituents, offsets - lo

    def jet_columns(self, level: str, rows: slice = slice(None)) -> dict[str, NDArray[np.float64]]:
        """Jet kinematics (px, py, pz, E, pt, eta, phi, mass) for a range of events."""
        _check_level(level)
        start, stop = _bounds(rows, self._rows)
        with self._reading(f"jets/{level}"):
            group = self.file["jets"][level]
            return {column: np.asarray(group[column][start:stop]) for column in JET_COLUMNS}

    def pair_distances(self, rows: slice = slice(None)) -> dict[str, NDArray[np.float64]]:
        """Distance between the parton and hadron jet axes: opening angle (delta_angle) and Delta R (delta_r)."""
        start, stop = _bounds(rows, self._rows)
        with self._reading("jets/delta_angle and jets/delta_r"):
            group = self.file["jets"]
            return {name: np.asarray(group[name][start:stop]) for name in ("delta_angle", "delta_r")}

    def jets(self, level: str, rows: slice = slice(None)) -> JetBatch:
        """Jets with their constituents gathered from the events' particles."""
        particles = self.particles(level, rows)
        indices, offsets = self.jet_constituent_index(level, rows)
        # A damaged table can hold indices past the event's particles.
        available = np.repeat(np.diff(particles.offsets), np.diff(offsets))
        if np.any((indices < 0) | (indices >= available)):
            raise DatasetError(
                f"{self.path} is damaged: jets/{level}/constituents points past the particles of its events. "
                f"{recovery_advice(self.path)}"
            )
        return gather_jets(particles, self.jet_columns(level, rows), indices, offsets)

    def images(self, label: str, level: str) -> ImageTable:
        """Return the (n, C, H, W) image table of one imager and level, unread (slice it to read)."""
        _check_level(level)
        if label not in self.image_labels:
            message = f"{self.path} has no images of imager '{label}'; it has: {', '.join(self.image_labels) or 'none'}"
            close = difflib.get_close_matches(label, self.image_labels, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
            raise DatasetError(message)
        name = f"images/{label}/{level}"
        with self._reading(name):
            return ImageTable(self.file[name], self.path, name)

    def image_attrs(self, label: str) -> dict[str, Any]:
        """Read the description and parameters stored with one imager's images."""
        self.images(label, "parton")
        with self._reading(f"the attributes of images/{label}"):
            attrs = dict(self.file["images"][label].attrs)
            attrs["params"] = json.loads(str(attrs.get("params", "{}")))
        return attrs

    def iter_slices(self, batch_rows: int) -> Iterator[slice]:
        """Contiguous row ranges of at most ``batch_rows`` events covering the file."""
        for start in range(0, self._rows, batch_rows):
            yield slice(start, min(start + batch_rows, self._rows))

    def _offset_range(self, offsets: NDArray[np.int64], table_rows: int, name: str) -> tuple[int, int]:
        """Return the first and last offset, checked to ascend within a table of ``table_rows`` entries."""
        if len(offsets) == 0 or np.any(np.diff(offsets) < 0) or offsets[0] < 0 or offsets[-1] > table_rows:
            raise DatasetError(
                f"{self.path} is damaged: {name} does not ascend within its table of {table_rows} entries. "
                f"{recovery_advice(self.path)}"
            )
        return int(offsets[0]), int(offsets[-1])


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"invalid level {level!r}: expected one of {', '.join(LEVELS)}")


def gather_jets(
    particles: ParticleBatch,
    jet_columns: Mapping[str, NDArray[np.float64]],
    indices: NDArray[np.int32],
    offsets: NDArray[np.int64],
) -> JetBatch:
    """Build a JetBatch from event particles and per-event constituent indices."""
    counts = np.diff(offsets)
    event_start = np.repeat(particles.offsets[:-1], counts)
    index = event_start + indices.astype(np.int64)
    constituents = ParticleBatch(
        **{column: getattr(particles, column)[index] for column in PARTICLE_COLUMNS},
        offsets=offsets_from_counts(counts),
    )
    axis = np.stack([jet_columns[c] for c in ("px", "py", "pz", "E")], axis=1)
    return JetBatch(axis=axis, constituents=constituents)


def _bounds(rows: slice, n: int) -> tuple[int, int]:
    start, stop, step = rows.indices(n)
    if step != 1:
        raise ValueError("only contiguous row ranges can be read; use a slice with step 1")
    return start, max(start, stop)


# --------------------------------------------------------------------------
# Merging shards

#: Flat tables and the offsets table that indexes into each of them.
_OFFSET_TABLES = {
    "events/parton/offsets": "events/parton/px",
    "events/hadron/offsets": "events/hadron/px",
    "jets/parton/offsets": "jets/parton/constituents",
    "jets/hadron/offsets": "jets/hadron/constituents",
}
MERGE_SLICE_ROWS = 1 << 15


def merge_shards(output: Path, inputs: list[Path]) -> tuple[int, int]:
    """Join complete shards of one spec, in shard order, into a new file.

    Refuses shards of different specs (naming the settings that differ),
    the same shard twice, missing shards, incomplete shards and damaged
    files. Returns (number of shards, number of events).
    """
    shards: list[tuple[int, int, Path, int]] = []
    digests: dict[str, Path] = {}
    for path in inputs:
        with Dataset(path) as dataset, reading(path, "its root attributes"):
            shard = str(dataset.attrs.get("shard", ""))
            digest = str(dataset.attrs.get("spec_hash"))
            rows = len(dataset)
        if not shard:
            raise DatasetError(f"{path} is not a shard (it was generated without --shard); only shards can be merged")
        index, count = (int(part) for part in shard.split("/"))
        digests.setdefault(digest, path)
        shards.append((index, count, path, rows))
    if len(digests) > 1:
        first, second = list(digests.values())[:2]
        raise DatasetError(
            f"{first} and {second} were generated with different settings ({_spec_difference(first, second)}); "
            "merge only the shards of one spec and one --events"
        )
    counts = {count for _, count, _, _ in shards}
    if len(counts) > 1:
        raise DatasetError(
            f"the inputs split the work differently (N = {sorted(counts)} in k/N); use shards of one split"
        )
    seen: dict[int, tuple[Path, int]] = {}
    for index, _, path, rows in shards:
        if index in seen:
            raise DatasetError(f"shard {index} is given twice: {seen[index][0]} and {path}")
        seen[index] = (path, rows)
    count = counts.pop()
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        listed = ", ".join(map(str, missing))
        which = f"shard {listed} of {count} is" if len(missing) == 1 else f"shards {listed} of {count} are"
        raise DatasetError(f"{which} missing; merge needs every shard of the split")
    if output.exists():
        raise DatasetError(f"{output} exists; choose another output file or remove it first")

    ordered = [seen[index] for index in range(1, count + 1)]
    tmp = output.with_name(output.name + ".partial")
    # A shard without events lacks the per-image columns that imagers add
    # with their first rows, so the layout comes from the first shard that
    # has events.
    template = next((path for path, rows in ordered if rows > 0), ordered[0][0])
    try:
        total_rows = _merge_into(tmp, template, [path for path, _ in ordered])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    return count, total_rows


def _spec_difference(first: Path, second: Path) -> str:
    """Name the settings in which two dataset files differ, each with both values."""
    generic = "their run.seed, [generator], [jets], [[imagers]] or --events differ"
    with Dataset(first) as first_file, Dataset(second) as second_file:
        in_first, in_second = first_file.settings(), second_file.settings()
    if in_first is None or in_second is None:
        return generic
    changes = setting_changes(in_first, in_second, str(first), str(second))
    return "; ".join(changes) if changes else generic


def _merge_into(tmp: Path, template: Path, ordered: list[Path]) -> int:
    """Write the shards ``ordered`` into ``tmp`` with the layout of ``template``; return the rows."""
    with Dataset(template) as first, reading(template, "its groups and tables"):
        attrs = dict(first.attrs)
        layout = _layout(first.file)
    total_rows = 0
    with h5py.File(tmp, "w", track_order=True) as out:
        for key, value in attrs.items():
            out.attrs[key] = value
        _create_layout(out, layout)
        counters: dict[str, int] = {}
        totals: dict[str, int] = {}
        units_done = 0
        planned = 0
        for path in ordered:
            with Dataset(path) as shard:
                with reading(path, "its root attributes"):
                    commit = read_commit(shard.file)
                    planned += int(shard.attrs.get("units_planned", 0))
                rows = int(commit["rows"])
                if rows > 0:
                    _append_file(out, shard, commit)
            total_rows += rows
            units_done += int(commit["units_done"])
            for key, value in commit["counters"].items():
                counters[key] = counters.get(key, 0) + int(value)
        for level in LEVELS:
            totals[f"events/{level}"] = int(out["events"][level]["px"].shape[0])
            totals[f"jets/{level}"] = int(out["jets"][level]["constituents"].shape[0])
        out.attrs["shard"] = ""
        out.attrs["units_planned"] = planned
        out.attrs["merged_from"] = json.dumps([str(path) for path in ordered])
        out.attrs["commit"] = json.dumps(
            {"units_done": units_done, "rows": total_rows, "totals": totals, "counters": counters}, sort_keys=True
        )
        out.attrs["complete"] = True
    return total_rows


#: One group or table of a file: its name, the arguments that create an empty
#: appendable twin of a table (None for a group) and its attributes.
_LayoutEntry = tuple[str, dict[str, Any] | None, dict[str, Any]]


def _layout(file: h5py.File) -> list[_LayoutEntry]:
    """List every group and table of ``file``, in the order h5py visits them."""
    entries: list[_LayoutEntry] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group):
            entries.append((name, None, dict(obj.attrs)))
            return
        row_shape = obj.shape[1:]
        arguments = {
            "shape": (0, *row_shape),
            "maxshape": (None, *row_shape),
            "dtype": obj.dtype,
            "chunks": obj.chunks,
            "compression": obj.compression,
            "shuffle": obj.shuffle,
            "track_times": False,
        }
        entries.append((name, arguments, dict(obj.attrs)))

    file.visititems(visit)
    return entries


def _create_layout(out: h5py.File, layout: list[_LayoutEntry]) -> None:
    """Create the empty groups and appendable tables that :func:`_layout` listed, with their attributes."""
    for name, arguments, attrs in layout:
        node: h5py.Group | h5py.Dataset
        if arguments is None:
            node = out.require_group(name)
        else:
            parent = out.require_group(str(Path(name).parent)) if "/" in name else out
            node = parent.create_dataset(Path(name).name, **arguments)
            if name in _OFFSET_TABLES:
                node.resize(1, axis=0)  # the leading 0
        for key, value in attrs.items():
            node.attrs[key] = value


def _append_file(out: h5py.File, shard: Dataset, commit: Mapping[str, Any]) -> None:
    """Append one shard's committed content to ``out``, shifting its offsets.

    Only the reads of the shard run inside :func:`reading`, so that a full
    disk while writing ``out`` stays an OSError.
    """
    rows = int(commit["rows"])
    names: list[str] = []
    with reading(shard.path, "its list of tables"):
        shard.file.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    bases = {name: int(out[target].shape[0]) for name, target in _OFFSET_TABLES.items()}
    limits = {"units/index": int(commit["units_done"]), "units/rows": int(commit["units_done"])}
    for level in LEVELS:
        limits[f"events/{level}/offsets"] = rows + 1
        limits[f"jets/{level}/offsets"] = rows + 1
        limits[f"jets/{level}/constituents"] = int(commit["totals"].get(f"jets/{level}", 0))
        for column in PARTICLE_COLUMNS:
            limits[f"events/{level}/{column}"] = int(commit["totals"].get(f"events/{level}", 0))
    for name in names:
        with reading(shard.path, name):
            source = shard.file[name]
            ndim = source.ndim
        stop = limits.get(name, rows)
        start = 1 if name in _OFFSET_TABLES else 0
        step = MERGE_SLICE_ROWS if ndim == 1 else max(1, MERGE_SLICE_ROWS // 64)
        for lo in range(start, stop, step):
            with reading(shard.path, name):
                values = np.asarray(source[lo : min(stop, lo + step)])
            if name in _OFFSET_TABLES:
                values = values + bases[name]
            _append(out[name], values)
