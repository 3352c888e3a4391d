"""Adding images to an existing dataset, and drawing them."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import Result

from qcdtool.core.cli.data_cmd import PICTURE_SUFFIXES
from qcdtool.core.dataset import Dataset
from qcdtool.core.evaluate import dataset_context
from qcdtool.core.pipeline import images_stale
from qcdtool.core.plots import image_groups, images_figure
from qcdtool.core.registry import create_registry
from qcdtool.core.spec import load_spec

SPEC = """
[run]
name = "images"
seed = 8

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = 300

[[imagers]]
plugin = "eta-phi"
size = 15
"""

SECOND_IMAGER = """
[[imagers]]
plugin = "angular"
size = 21
"""


@pytest.fixture
def generated(tmp_path: Path, run_cli: Callable[..., Result]) -> Path:
    """A spec whose dataset exists with eta-phi images only."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    assert run_cli("generate", str(spec)).exit_code == 0
    return spec


#: Another seed, mode and flavour list than SPEC, and SECOND_IMAGER as its imager.
OTHER_EVENTS = """
[run]
name = "other"
seed = 9

[generator]
plugin = "pythia-ee"
flavors = ["uds"]
mode = "independent"
events = 50

[jets]
radius = 0.4
"""

INDEPENDENT = SPEC.replace('name = "images"', 'name = "independent"').replace(
    "parton_events = 2\nhadronizations = 300", 'mode = "independent"\nevents = 40'
)


def dataset_of(spec: Path) -> Path:
    return spec.parent / "runs" / "images" / "dataset.h5"


def stored_spec(path: Path) -> dict[str, Any]:
    with Dataset(path) as dataset:
        return tomllib.loads(str(dataset.attrs["spec"]))


def external_spec(folder: Path, dataset: Path, imagers: str) -> Path:
    """Write a spec that reads ``dataset`` and finds jets with R = 0.4, unlike the R = 0.8 of SPEC."""
    spec = folder / "external.toml"
    spec.write_text(f'[run]\nname = "external"\ndataset = "{dataset}"\n\n[jets]\nradius = 0.4\n' + imagers)
    return spec


def test_add_equals_generated(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    generated.write_text(SPEC + SECOND_IMAGER)
    assert run_cli("images", str(generated), "--add").exit_code == 0
    direct = tmp_path / "direct"
    direct.mkdir()
    (direct / "spec.toml").write_text(SPEC + SECOND_IMAGER)
    assert run_cli("generate", str(direct / "spec.toml")).exit_code == 0
    with Dataset(dataset_of(generated)) as added, Dataset(dataset_of(direct / "spec.toml")) as made:
        assert np.array_equal(
            np.asarray(added.images("angular", "hadron")), np.asarray(made.images("angular", "hadron"))
        )
        assert np.array_equal(
            np.asarray(added.images("eta-phi", "parton")), np.asarray(made.images("eta-phi", "parton"))
        )


def test_add_keeps_events(generated: Path, run_cli: Callable[..., Result]) -> None:
    with h5py.File(dataset_of(generated)) as file:
        before = file["events/hadron/E"][()]
    generated.write_text(SPEC + SECOND_IMAGER)
    run_cli("images", str(generated), "--add")
    with h5py.File(dataset_of(generated)) as file:
        assert np.array_equal(file["events/hadron/E"][()], before)


def test_run_adds_missing_images(generated: Path, run_cli: Callable[..., Result]) -> None:
    generated.write_text(SPEC + SECOND_IMAGER)
    result = run_cli("run", str(generated))
    assert result.exit_code == 0
    with Dataset(dataset_of(generated)) as dataset:
        assert sorted(dataset.image_labels) == ["angular", "eta-phi"]


def test_other_spec_keeps_events_settings(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    before = stored_spec(dataset_of(generated))
    other = tmp_path / "other.toml"
    other.write_text(OTHER_EVENTS + SECOND_IMAGER)
    result = run_cli("images", str(dataset_of(generated)), "--add", "--spec", str(other))
    assert result.exit_code == 0
    after = stored_spec(dataset_of(generated))
    for part in ("run", "generator", "jets", "split", "sampling"):
        assert after[part] == before[part], part


def test_other_spec_records_imager(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    other = tmp_path / "other.toml"
    other.write_text(OTHER_EVENTS + SECOND_IMAGER)
    run_cli("images", str(dataset_of(generated)), "--add", "--spec", str(other))
    imagers = stored_spec(dataset_of(generated))["imagers"]
    assert [table["label"] for table in imagers] == ["eta-phi", "angular"]
    assert imagers[1]["size"] == 21


def test_other_spec_equals_generated(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    other = tmp_path / "other.toml"
    other.write_text(OTHER_EVENTS + SECOND_IMAGER)
    run_cli("images", str(dataset_of(generated)), "--add", "--spec", str(other))
    direct = tmp_path / "direct"
    direct.mkdir()
    (direct / "spec.toml").write_text(SPEC + SECOND_IMAGER)
    run_cli("generate", str(direct / "spec.toml"))
    with Dataset(dataset_of(generated)) as added, Dataset(dataset_of(direct / "spec.toml")) as made:
        assert added.attrs["spec_hash"] == made.attrs["spec_hash"]
        assert np.array_equal(
            np.asarray(added.images("angular", "parton")), np.asarray(made.images("angular", "parton"))
        )


def test_external_extent_follows_file_jets(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = external_spec(tmp_path, dataset_of(generated), '[[imagers]]\nplugin = "eta-phi"\nlabel = "again"\n')
    assert run_cli("images", str(spec), "--add").exit_code == 0
    with Dataset(dataset_of(generated)) as dataset:
        assert dataset.image_attrs("again")["extents"].tolist() == [[-0.8, 0.8], [-0.8, 0.8]]
        assert np.array_equal(
            np.asarray(dataset.images("again", "hadron")), np.asarray(dataset.images("eta-phi", "hadron"))
        )


def test_external_metric_radius_follows_file_jets(generated: Path, tmp_path: Path) -> None:
    spec = external_spec(tmp_path, dataset_of(generated), '[[imagers]]\nplugin = "eta-phi"\nsize = 15\n')
    context = dataset_context(load_spec(spec, create_registry()))
    assert context.jet_radius == 0.8


def test_external_stored_imager_current(generated: Path, tmp_path: Path) -> None:
    spec = external_spec(tmp_path, dataset_of(generated), '[[imagers]]\nplugin = "eta-phi"\nsize = 15\n')
    assert images_stale(load_spec(spec, create_registry())) is None


def test_other_parameters_refused(generated: Path, run_cli: Callable[..., Result]) -> None:
    before = dataset_of(generated).read_bytes()
    generated.write_text(SPEC.replace("size = 15", "size = 17"))
    result = run_cli("images", str(generated), "--add")
    assert result.exit_code == 2
    assert "made with other parameters" in result.stderr
    assert dataset_of(generated).read_bytes() == before


def test_other_parameters_named(generated: Path, run_cli: Callable[..., Result]) -> None:
    generated.write_text(SPEC.replace("size = 15", "size = 17\nrotate = true"))
    message = " ".join(run_cli("images", str(generated), "--add").stderr.split())
    assert "size = 15 in the file, 17 in the spec" in message
    assert "rotate = false in the file, true in the spec" in message
    assert "--force" in message


def test_force_replaces(generated: Path, run_cli: Callable[..., Result]) -> None:
    generated.write_text(SPEC.replace("size = 15", "size = 17"))
    result = run_cli("images", str(generated), "--add", "--force")
    assert result.exit_code == 0
    assert "replaced images of eta-phi for 600 events" in result.stderr
    with Dataset(dataset_of(generated)) as dataset:
        assert dataset.images("eta-phi", "hadron").shape == (600, 1, 17, 17)


def test_other_events_refused(generated: Path, run_cli: Callable[..., Result]) -> None:
    generated.write_text(SPEC.replace("seed = 8", "seed = 9"))
    result = run_cli("generate", str(generated))
    assert result.exit_code == 2
    assert "run.seed = 8 in the file, 9 in this command" in " ".join(result.stderr.split())


def test_show_writes_png(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    picture = tmp_path / "pairs.png"
    result = run_cli("images", str(dataset_of(generated)), "--show", str(picture), "--imager", "eta-phi")
    assert result.exit_code == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_empty_dataset(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    # No hadron-level jet lies within 1e-9 rad of its parton-level jet, so
    # every event is skipped and the dataset has no events.
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + "\n[jets]\nmatch_radius = 1e-9\n")
    assert run_cli("generate", str(spec)).exit_code == 0
    picture = tmp_path / "pairs.png"
    result = run_cli("images", str(dataset_of(spec)), "--show", str(picture))
    assert result.exit_code == 2
    assert "contains no events" in result.stderr
    assert not picture.exists()


def test_show_svg_in_help(run_cli: Callable[..., Result]) -> None:
    text = " ".join(run_cli("images", "--help").output.split())
    for suffix in PICTURE_SUFFIXES:
        assert suffix in text, suffix


def test_groups_rehadronized_one_per_row() -> None:
    groups, per_row = image_groups(np.repeat(np.arange(5), 4), configurations=3, samples=3)
    assert per_row == 1
    assert [value for value, _ in groups] == [0, 1, 2]
    assert groups[1][1].tolist() == [4, 5, 6]


def test_groups_independent_fill_rows() -> None:
    groups, per_row = image_groups(np.arange(40), configurations=3, samples=3)
    assert per_row == 2
    assert [value for value, _ in groups] == [0, 1, 2, 3, 4, 5]
    assert groups[5][1].tolist() == [5]


def test_show_independent_no_blank_pairs(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(INDEPENDENT)
    run_cli("generate", str(spec))
    with Dataset(spec.parent / "runs" / "independent" / "dataset.h5") as dataset:
        figure = images_figure(dataset, "eta-phi", configurations=3, samples=3)
    hidden = [axis for axis in figure.axes if not axis.axison]
    assert len(figure.axes) == 4 * 4 + 1  # 4 x 4 panels and the colour bar
    assert len(hidden) == 2  # beside the two mean images


def test_show_unknown_imager(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("images", str(dataset_of(generated)), "--show", str(tmp_path / "x.png"), "--imager", "etaphi")
    assert result.exit_code == 2
    assert "has no images of imager 'etaphi'; it has: eta-phi; did you mean 'eta-phi'?" in result.stderr


def test_show_unsupported_type(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("images", str(dataset_of(generated)), "--show", str(tmp_path / "x.txt"))
    assert result.exit_code == 2
    assert "unsupported picture type" in result.stderr


def test_show_missing_folder(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    target = tmp_path / "no-such-folder" / "x.png"
    result = run_cli("images", str(dataset_of(generated)), "--show", str(target))
    assert result.exit_code == 2
    assert not target.parent.exists()
