"""Add images to an existing dataset file without generating its events again.

The file is never changed in place: it is copied to a temporary file, the
images are added to the copy, and the copy replaces the original only when
it is complete. An interruption therefore leaves the original untouched.

Adding images never changes what the file records about how its events were
made. The stored spec keeps its seed, ``[generator]`` and ``[jets]``
whatever spec supplied the imagers. Only its ``[[imagers]]`` list changes.
Each imager drawn is recorded there with its label and parameters (replacing
the table of the same label), and ``spec_hash`` is computed again from the
result. Imager defaults that depend on the jets, such as the window's
half-width, follow the jets stored in the file (see
:func:`images_for_dataset`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tomli_w
from pydantic import ValidationError

from qcdtool.core.contracts import Imager, ImagerInput, PluginContext
from qcdtool.core.dataset import (
    DATASET_SPEC_PARTS,
    LEVELS,
    TEMPORARY_SUFFIX,
    Dataset,
    add_image_group,
    setting_changes,
)
from qcdtool.core.errors import DatasetError, QcdtoolError
from qcdtool.core.spec import JetsSection, RunSpec

log = logging.getLogger(__name__)

#: Events drawn per slice; bounds memory whatever the file's size.
SLICE_EVENTS = 20_000


@dataclass(frozen=True)
class ImagePlan:
    """Which of the spec's imagers a dataset lacks, has already, or has with other parameters."""

    missing: tuple[str, ...]
    current: tuple[str, ...]
    different: tuple[str, ...]
    #: For each label in ``different``: what differs, as "key = <file value> in the file, <value> in the spec".
    changes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def describe_different(self) -> str:
        """Name each imager of ``different`` with the parameters that differ, e.g. "'eta-phi' (size = 25 in ...)"."""
        return ", ".join(f"'{label}' ({'; '.join(self.changes.get(label, ()))})" for label in self.different)


def imager_record(imager: Imager) -> dict[str, Any]:
    """What identifies an imager's images: its parameters and its description."""
    description = imager.describe()
    return {
        "params": imager.params.model_dump(mode="json"),
        "shape": [int(x) for x in description.shape],
        "extents": [[float(lo), float(hi)] for lo, hi in description.extents],
    }


def plan_images(dataset: Dataset, imagers: Mapping[str, Imager]) -> ImagePlan:
    """Compare the spec's imagers with the images the dataset holds."""
    missing: list[str] = []
    current: list[str] = []
    changes: dict[str, tuple[str, ...]] = {}
    for label, imager in imagers.items():
        if label not in dataset.image_labels:
            missing.append(label)
            continue
        differences = record_differences(dataset.image_attrs(label), imager_record(imager))
        if differences:
            changes[label] = differences
        else:
            current.append(label)
    return ImagePlan(tuple(missing), tuple(current), tuple(changes), changes)


def record_differences(stored: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[str, ...]:
    """Name what differs between the stored attributes of an imager's images and a record of :func:`imager_record`.

    Each parameter that differs is named with both values. The shape and
    the window are named only when every parameter agrees, which happens
    when a default that depends on the jets, or the plugin itself, changed.
    """
    differences = setting_changes(stored["params"], record["params"], "the file", "the spec")
    if differences:
        return tuple(differences)
    shape = [int(x) for x in stored["shape"]]
    if shape != record["shape"]:
        differences.append(f"shape = {shape} in the file, {record['shape']} in the spec")
    extents = np.asarray(stored["extents"], dtype=np.float64)
    if extents.shape != np.shape(record["extents"]) or not np.allclose(extents, record["extents"]):
        differences.append(f"extents = {extents.tolist()} in the file, {record['extents']} in the spec")
    return tuple(differences)


def add_images(
    path: Path,
    spec: RunSpec,
    imagers: Mapping[str, Imager],
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    redraw_current: bool = False,
) -> str:
    """Draw the imagers that ``path`` lacks and add them; return a summary.

    ``imagers`` maps labels of the spec's ``[[imagers]]`` tables to
    instances, which :func:`images_for_dataset` makes for the file's jets.
    An imager whose label is in the file with other parameters is an error
    unless ``force`` is set, in which case its images are drawn again.
    ``redraw_current`` draws the current ones again too. Images of labels
    the spec does not name are kept. Only the stored spec's ``[[imagers]]``
    list and ``spec_hash`` change (see the module's docstring).
    """
    with Dataset(path) as dataset:
        plan = plan_images(dataset, imagers)
        n_events = len(dataset)
        stored = stored_spec(dataset)
        # -1 stands for no --events override (HDF5 attributes have no null).
        events_override = int(dataset.attrs.get("events_override", -1))
        jets_changes = jets_difference(spec, dataset)
    if plan.different and not force:
        raise DatasetError(
            f"{path} holds images of imager(s) made with other parameters: {plan.describe_different()}. "
            "Pass --force to 'qcdtool images --add' to replace them, or give the spec's imager another "
            "label to keep both"
        )
    to_draw = [*plan.missing, *(plan.different if force else ()), *(plan.current if redraw_current else ())]
    if not to_draw:
        return f"{path.name} already holds the images of {', '.join(imagers) or 'no imager'}; nothing to add"

    if jets_changes is not None:
        log.warning(
            "the images follow the jets stored in %s, not the spec's [jets] (%s); an imager's unset extent "
            "is the file's jet radius",
            path.name,
            jets_changes,
        )
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    shutil.copyfile(path, temporary)
    try:
        with Dataset(path) as source, h5py.File(temporary, "r+") as target:
            for label in to_draw:
                if label in target["images"]:
                    del target["images"][label]
                _draw(source, target, label, imagers[label], n_events, on_progress)
            recorded = record_imagers(stored, [spec.imager(label).to_dict() for label in to_draw])
            target.attrs["spec"] = tomli_w.dumps(recorded)
            target.attrs["spec_hash"] = stored_content_hash(recorded, events_override if events_override >= 0 else None)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    added = [label for label in to_draw if label in plan.missing]
    replaced = [label for label in to_draw if label not in plan.missing]
    done = []
    if added:
        done.append(f"added images of {', '.join(added)}")
    if replaced:
        done.append(f"replaced images of {', '.join(replaced)}")
    return f"{path.name}: {' and '.join(done)} for {n_events} events"


def stored_spec(dataset: Dataset) -> dict[str, Any]:
    """Read the resolved spec stored in the dataset's root attribute ``spec``, as TOML tables."""
    try:
        return tomllib.loads(str(dataset.attrs["spec"]))
    except (KeyError, tomllib.TOMLDecodeError) as exc:
        raise DatasetError(
            f"{dataset.path} has no readable spec (root attribute 'spec': {exc}), so the settings of its "
            "events and jets are unknown; generate it again with 'qcdtool generate'"
        ) from exc


def record_imagers(data: Mapping[str, Any], tables: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a copy of the spec tables ``data`` whose [[imagers]] list records ``tables``.

    A table replaces the one of the same label at its position, and a table
    of a new label is appended. Every other table of ``data`` is kept as it is.
    """
    imagers = [dict(table) for table in data.get("imagers", [])]
    positions = {table.get("label"): index for index, table in enumerate(imagers)}
    for table in tables:
        if table["label"] in positions:
            imagers[positions[table["label"]]] = table
        else:
            positions[table["label"]] = len(imagers)
            imagers.append(table)
    return {**data, "imagers": imagers}


def stored_content_hash(data: Mapping[str, Any], n_events: int | None) -> str:
    """Hash the seed, [generator], [jets] and [[imagers]] of spec tables ``data`` and an ``--events`` override.

    For the tables of ``spec.to_dict()`` the hash equals
    ``qcdtool.core.generate.content_hash(spec, n_events)``, which the
    generate stage stores as ``spec_hash``. ``qcdtool merge`` compares it to
    tell whether shards hold the same content.
    """
    from qcdtool.core.generate import tables_hash

    return tables_hash(data, n_events, DATASET_SPEC_PARTS)


def _draw(
    source: Dataset,
    target: h5py.File,
    label: str,
    imager: Imager,
    n_events: int,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """Draw one imager's images for every event, slice by slice, into ``target``."""
    group = add_image_group(
        target["images"], label, imager.describe(), imager.params.model_dump(mode="json"), rows=n_events
    )
    for rows in source.iter_slices(SLICE_EVENTS):
        if imager.input == ImagerInput.EVENT:
            images = imager.render(source.particles("parton", rows), source.particles("hadron", rows))
        else:
            images = imager.render(source.jets("parton", rows), source.jets("hadron", rows))
        for level in LEVELS:
            group[level][rows] = getattr(images, level)
        for column, values in images.per_image.items():
            if column not in group:
                table = np.asarray(values)
                group.create_dataset(
                    column, shape=(n_events,), dtype=table.dtype, compression="lzf", shuffle=True, track_times=False
                )
            group[column][rows] = np.asarray(values)
        if on_progress:
            on_progress(rows.stop, n_events)
    log.info("drew %s images of %d events", label, n_events)


def images_of_spec(spec: RunSpec, context: PluginContext | None = None) -> dict[str, Imager]:
    """Instantiate the spec's imagers, by label, with ``context`` (default: the spec's own)."""
    context = context if context is not None else spec.context()
    imagers: dict[str, Imager] = {}
    for table in spec.imagers:
        imager = table.info.cls(table.params, context)
        if not isinstance(imager, Imager):
            raise QcdtoolError(f"imager plugin '{table.plugin}' does not subclass the Imager contract")
        imagers[table.label] = imager
    return imagers


def stored_jets(dataset: Dataset) -> JetsSection:
    """Return the [jets] table that the dataset's jets were found with, as stored in its spec."""
    try:
        return JetsSection.model_validate(stored_spec(dataset).get("jets", {}))
    except ValidationError as exc:
        raise DatasetError(f"{dataset.path}: the [jets] table of its stored spec is invalid: {exc}") from exc


def images_for_dataset(spec: RunSpec, dataset: Dataset) -> dict[str, Imager]:
    """Instantiate the spec's imagers for the events of ``dataset``, by label.

    Defaults that depend on the jets (an imager's ``extent``, which is the
    jet radius unless set) follow the jets stored in the file, not the
    spec's [jets] table: a window of R = 0.4 on jets found with R = 0.8
    would drop the pT of their outer constituents.
    """
    jets = stored_jets(dataset)
    return images_of_spec(spec, spec.context(jet_radius=jets.radius, jet_algorithm=jets.algorithm))


def jets_difference(spec: RunSpec, dataset: Dataset) -> str | None:
    """Describe how the spec's [jets] differ from those the dataset's jets were found with, or return None."""
    in_file = stored_jets(dataset).model_dump(mode="json")
    differences = setting_changes(in_file, spec.jets.model_dump(mode="json"), "the file", "the spec")
    return "; ".join(differences) if differences else None
