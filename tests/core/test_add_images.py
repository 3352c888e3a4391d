"""Adding images to an existing dataset, and drawing them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import Result

from qcdtool.core.dataset import Dataset

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


def dataset_of(spec: Path) -> Path:
    return spec.parent / "runs" / "images" / "dataset.h5"


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


def test_other_parameters_refused(generated: Path, run_cli: Callable[..., Result]) -> None:
    before = dataset_of(generated).read_bytes()
    generated.write_text(SPEC.replace("size = 15", "size = 17"))
    result = run_cli("images", str(generated), "--add")
    assert result.exit_code == 2
    assert "made with other parameters" in result.stderr
    assert dataset_of(generated).read_bytes() == before


def test_force_replaces(generated: Path, run_cli: Callable[..., Result]) -> None:
    generated.write_text(SPEC.replace("size = 15", "size = 17"))
    assert run_cli("images", str(generated), "--add", "--force").exit_code == 0
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


def test_show_unknown_imager(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("images", str(dataset_of(generated)), "--show", str(tmp_path / "x.png"), "--imager", "etaphi")
    assert result.exit_code == 2
    assert "has no images of imager 'etaphi'; it has: eta-phi" in result.stderr


def test_show_unsupported_type(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("images", str(dataset_of(generated)), "--show", str(tmp_path / "x.txt"))
    assert result.exit_code == 2
    assert "unsupported picture type" in result.stderr


def test_show_missing_folder(generated: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    target = tmp_path / "no-such-folder" / "x.png"
    result = run_cli("images", str(dataset_of(generated)), "--show", str(target))
    assert result.exit_code == 2
    assert not target.parent.exists()
