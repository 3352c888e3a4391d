"""Add images to an existing dataset file without generating its events again.

The file is never changed in place: it is copied to a temporary file, the
images are added to the copy, and the copy replaces the original only when
it is complete. An interruption therefore leaves the original untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from qcdtool.core.contracts import Imager, ImagerInput
from qcdtool.core.dataset import LEVELS, TEMPORARY_SUFFIX, Dataset, add_image_group
from qcdtool.core.errors import DatasetError, QcdtoolError
from qcdtool.core.spec import RunSpec

log = logging.getLogger(__name__)

#: Events drawn per slice; bounds memory whatever the file's size.
SLICE_EVENTS = 20_000


@dataclass(frozen=True)
class ImagePlan:
    """Which of the spec's imagers a dataset lacks, has already, or has with other parameters."""

    missing: tuple[str, ...]
    current: tuple[str, ...]
    different: tuple[str, ...]


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
    different: list[str] = []
    for label, imager in imagers.items():
        if label not in dataset.image_labels:
            missing.append(label)
            continue
        stored = dataset.image_attrs(label)
        record = imager_record(imager)
        same = (
            stored["params"] == record["params"]
            and [int(x) for x in stored["shape"]] == record["shape"]
            and np.allclose(np.asarray(stored["extents"], dtype=np.float64), record["extents"])
        )
        (current if same else different).append(label)
    return ImagePlan(tuple(missing), tuple(current), tuple(different))


def add_images(
    path: Path,
    spec: RunSpec,
    imagers: Mapping[str, Imager],
    force: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    redraw_current: bool = False,
) -> str:
    """Draw the spec's imagers that ``path`` lacks and add them; return a summary.

    An imager whose label is in the file with other parameters is an error
    unless ``force`` is set, in which case its images are drawn again.
    ``redraw_current`` draws the current ones again too. Images of labels
    the spec does not name are kept.
    """
    with Dataset(path) as dataset:
        plan = plan_images(dataset, imagers)
        n_events = len(dataset)
    if plan.different and not force:
        labels = ", ".join(plan.different)
        raise DatasetError(
            f"{path} holds images of imager(s) {labels} made with other parameters; rename the imager's "
            "label in the spec to keep both, or pass --force to 'qcdtool images SPEC --add' to replace them"
        )
    to_draw = [*plan.missing, *(plan.different if force else ()), *(plan.current if redraw_current else ())]
    if not to_draw:
        return f"{path.name} already holds the images of {', '.join(imagers) or 'no imager'}; nothing to add"

    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    shutil.copyfile(path, temporary)
    try:
        with Dataset(path) as source, h5py.File(temporary, "r+") as target:
            for label in to_draw:
                if label in target["images"]:
                    del target["images"][label]
                _draw(source, target, label, imagers[label], n_events, on_progress)
            target.attrs["spec"] = spec.to_toml()
            target.attrs["spec_hash"] = _content_hash(spec)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return f"{path.name}: added images of {', '.join(to_draw)} for {n_events} events"


def _content_hash(spec: RunSpec) -> str:
    from qcdtool.core.generate import content_hash

    return content_hash(spec, None)


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


def images_of_spec(spec: RunSpec) -> dict[str, Imager]:
    """Instantiate the spec's imagers, by label."""
    context = spec.context()
    imagers: dict[str, Imager] = {}
    for table in spec.imagers:
        imager = table.info.cls(table.params, context)
        if not isinstance(imager, Imager):
            raise QcdtoolError(f"imager plugin '{table.plugin}' does not subclass the Imager contract")
        imagers[table.label] = imager
    return imagers
