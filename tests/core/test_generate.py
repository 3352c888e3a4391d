"""The generate stage and the dataset file: reproducibility, workers, shards, resume, bad files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import Result

from qcdtool.core import generate as generate_module
from qcdtool.core.dataset import Dataset, parts_dir
from qcdtool.core.errors import DatasetError
from qcdtool.core.generate import GenerateOptions, generate_dataset
from qcdtool.core.registry import create_registry
from qcdtool.core.spec import RunSpec, load_spec

SPEC = """
[run]
name = "gen"
seed = {seed}

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 3
hadronizations = {hadronizations}
"""


def write_spec(folder: Path, seed: int = 17, hadronizations: int = 1500) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.toml"
    path.write_text(SPEC.format(seed=seed, hadronizations=hadronizations))
    return path


def spec_in(folder: Path, **kwargs: Any) -> RunSpec:
    return load_spec(write_spec(folder, **kwargs), create_registry())


def contents(path: Path) -> dict[str, Any]:
    """Every table of a dataset file and the attributes that describe its content."""
    tables: dict[str, Any] = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, obj: tables.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        commit = json.loads(file.attrs["commit"])
        tables["counters"] = commit["counters"]
        tables["rows"] = commit["rows"]
        tables["spec_hash"] = file.attrs["spec_hash"]
    return tables


def assert_same_contents(first: Path, second: Path) -> None:
    a, b = contents(first), contents(second)
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete dataset made in one process, the baseline for the other runs."""
    spec = spec_in(tmp_path_factory.mktemp("reference"))
    path, _ = generate_dataset(spec, GenerateOptions())
    return path


def test_same_seed_same_file(reference: Path, tmp_path: Path) -> None:
    path, _ = generate_dataset(spec_in(tmp_path), GenerateOptions())
    assert_same_contents(reference, path)


def test_other_seed_other_file(reference: Path, tmp_path: Path) -> None:
    path, _ = generate_dataset(spec_in(tmp_path, seed=18), GenerateOptions())
    with Dataset(reference) as first, Dataset(path) as second:
        assert not np.array_equal(first.particles("parton").E, second.particles("parton").E)


def test_two_workers_same_file(reference: Path, tmp_path: Path) -> None:
    path, _ = generate_dataset(spec_in(tmp_path), GenerateOptions(workers=2))
    assert_same_contents(reference, path)


def test_merged_shards_same_file(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = write_spec(tmp_path)
    shards = []
    for k in (1, 2, 3):
        result = run_cli("generate", str(spec), "--shard", f"{k}/3")
        assert result.exit_code == 0
        shards.append(Path(result.stdout.strip()))
    merged = tmp_path / "merged.h5"
    result = run_cli("merge", str(merged), str(shards[2]), str(shards[0]), str(shards[1]))
    assert result.exit_code == 0
    assert_same_contents(reference, merged)


def test_dataset_rows_line_up(reference: Path) -> None:
    with Dataset(reference) as dataset:
        n = len(dataset)
        assert len(dataset.column("config_id")) == n
        assert len(dataset.jet_columns("hadron")["pt"]) == n
        assert len(dataset.particles("hadron")) == n
        assert dataset.counters["generated"] == 4500


def test_jet_constituents_sum_to_axis(reference: Path) -> None:
    with Dataset(reference) as dataset:
        jets = dataset.jets("hadron", slice(0, 500))
        total = jets.constituents.sum_four_momentum()
        assert np.abs(total - jets.axis).max() < 1e-9


def test_matched_jet_within_radius(reference: Path) -> None:
    with Dataset(reference) as dataset:
        delta_r = np.asarray(dataset.file["jets"]["delta_r"])
        assert delta_r.max() <= 0.8


# --------------------------------------------------------------------------
# Interruption and resume


class Interrupt(KeyboardInterrupt):
    """Stands for Ctrl-C arriving after a given number of units."""


def interrupt_after(units: int, monkeypatch: pytest.MonkeyPatch) -> None:
    original = generate_module._write_parts

    def results(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for done, result in enumerate(original(*args, **kwargs)):
            if done == units:
                raise Interrupt
            yield result

    monkeypatch.setattr(generate_module, "_write_parts", results)


def test_resume_equals_uninterrupted(reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_in(tmp_path)
    interrupt_after(4, monkeypatch)
    with pytest.raises(Interrupt):
        generate_dataset(spec, GenerateOptions())
    monkeypatch.undo()
    path = spec.run_dir / "dataset.h5"
    assert not path.exists()
    # The fifth unit was written when the interruption arrived.
    assert len(list(parts_dir(path).glob("unit-*.npz"))) == 5
    generate_dataset(spec, GenerateOptions(resume=True))
    assert_same_contents(reference, path)
    assert not parts_dir(path).exists()


def test_resume_discards_partial_part(reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_in(tmp_path)
    interrupt_after(2, monkeypatch)
    with pytest.raises(Interrupt):
        generate_dataset(spec, GenerateOptions())
    monkeypatch.undo()
    path = spec.run_dir / "dataset.h5"
    # A process killed while writing a part leaves it under its temporary name.
    (parts_dir(path) / "unit-000002.npz.partial").write_bytes(b"half a unit")
    generate_dataset(spec, GenerateOptions(resume=True))
    assert_same_contents(reference, path)


def test_resume_refuses_other_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_in(tmp_path)
    interrupt_after(1, monkeypatch)
    with pytest.raises(Interrupt):
        generate_dataset(spec, GenerateOptions())
    monkeypatch.undo()
    other = spec_in(tmp_path, seed=99)
    with pytest.raises(DatasetError, match="started from a different spec"):
        generate_dataset(other, GenerateOptions(resume=True))


def test_incomplete_file_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_in(tmp_path)
    interrupt_after(1, monkeypatch)
    with pytest.raises(Interrupt):
        generate_dataset(spec, GenerateOptions())
    with pytest.raises(DatasetError, match="is incomplete") as error:
        Dataset(spec.run_dir / "dataset.h5")
    # The second unit was written when the interruption arrived; the spec plans two units per configuration.
    assert "interrupted after 2 of 6 units" in str(error.value)
    assert f"'qcdtool generate {spec.source} --resume'" in str(error.value)


def test_generate_without_resume_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_in(tmp_path)
    interrupt_after(1, monkeypatch)
    with pytest.raises(Interrupt):
        generate_dataset(spec, GenerateOptions())
    monkeypatch.undo()
    with pytest.raises(DatasetError, match="pass --resume"):
        generate_dataset(spec, GenerateOptions())


def test_killed_process_resumes(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = write_spec(tmp_path)
    path = tmp_path / "runs" / "gen" / "dataset.h5"
    script = shutil.which("qcdtool", path=str(Path(sys.executable).parent))
    assert script is not None
    process = subprocess.Popen([script, "generate", str(spec)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(parts_dir(path).glob("unit-*.npz"))) < 2:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    # The file being assembled is damaged or incomplete, and either way the error names the resume command.
    unfinished = run_cli("inspect", str(path.with_name("dataset.h5.partial")))
    assert unfinished.exit_code == 2
    assert f"'qcdtool generate {spec} --resume'" in " ".join(unfinished.stderr.split())
    generate_dataset(load_spec(spec, create_registry()), GenerateOptions(resume=True))
    assert_same_contents(reference, path)


# --------------------------------------------------------------------------
# Bad files and bad input


def test_truncated_file_refused(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    truncated = tmp_path / "truncated.h5"
    data = reference.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = run_cli("inspect", str(truncated))
    assert result.exit_code == 2
    assert "cannot be opened as HDF5" in result.stderr
    assert "Make it again" in result.stderr


def overwrite(path: Path, offset: int, count: int) -> None:
    """Overwrite ``count`` bytes of ``path`` from ``offset`` with 0xff, as a disk or a copy can damage a file."""
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(b"\xff" * count)


def damaged_copy(source: Path, folder: Path, name: str) -> Path:
    """Copy ``source``, then overwrite the start of the object header of ``name`` (a group or table) in the copy."""
    copy = folder / f"damaged-{name.replace('/', '-')}.h5"
    shutil.copy(source, copy)
    with h5py.File(copy, "r") as file:
        address = h5py.h5o.get_info(file[name].id).addr
    overwrite(copy, address, 16)
    return copy


def chunk_damaged_copy(source: Path, folder: Path, table: str) -> Path:
    """Copy ``source``, then overwrite the first compressed chunk of ``table`` in the copy."""
    copy = folder / f"chunk-{table.replace('/', '-')}.h5"
    shutil.copy(source, copy)
    with h5py.File(copy, "r") as file:
        chunk = file[table].id.get_chunk_info(0)
    overwrite(copy, chunk.byte_offset, min(chunk.size, 256))
    return copy


def test_damaged_root_refused(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    damaged = damaged_copy(reference, tmp_path, "/")
    result = run_cli("inspect", str(damaged))
    stderr = " ".join(result.stderr.split())
    assert result.exit_code == 2
    assert f"{damaged} is damaged: HDF5 cannot read its root attributes" in stderr
    assert "bad object header" in stderr
    assert "Make it again ('qcdtool generate SPEC'" in stderr


def test_damaged_group_refused(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    damaged = damaged_copy(reference, tmp_path, "jets/hadron")
    result = run_cli("inspect", str(damaged))
    assert result.exit_code == 2
    assert f"{damaged} is damaged: HDF5 cannot read jets/hadron" in " ".join(result.stderr.split())


def test_damaged_chunk_refused(reference: Path, tmp_path: Path) -> None:
    damaged = chunk_damaged_copy(reference, tmp_path, "events/hadron/pid")
    with Dataset(damaged) as dataset:
        assert len(dataset.particles("parton")) == 4500
        with pytest.raises(DatasetError, match="is damaged: HDF5 cannot read events/hadron"):
            dataset.particles("hadron")


def test_damaged_images_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, hadronizations=40)
    spec.write_text(spec.read_text() + '\n[[imagers]]\nplugin = "eta-phi"\n')
    path, _ = generate_dataset(load_spec(spec, create_registry()), GenerateOptions())
    damaged = chunk_damaged_copy(path, tmp_path, "images/eta-phi/hadron")
    with Dataset(damaged) as dataset:
        table = dataset.images("eta-phi", "hadron")
        assert table.shape == (120, 1, 15, 15)
        with pytest.raises(DatasetError, match="is damaged: HDF5 cannot read images/eta-phi/hadron"):
            table[:10]


def test_unfinished_file_names_command(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    # A file left by an interrupted command other than generate (merge, images --add) has no part folder.
    unfinished = tmp_path / "merged.h5.partial"
    shutil.copy(damaged_copy(reference, tmp_path, "/"), unfinished)
    result = run_cli("inspect", str(unfinished))
    assert result.exit_code == 2
    assert "unfinished output of an interrupted qcdtool command" in " ".join(result.stderr.split())


def test_images_add_refuses_damaged(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = write_spec(tmp_path / "spec")
    spec.write_text(spec.read_text() + '\n[[imagers]]\nplugin = "eta-phi"\n')
    damaged = damaged_copy(reference, tmp_path, "/")
    result = run_cli("images", str(damaged), "--add", "--spec", str(spec))
    assert result.exit_code == 2
    assert f"{damaged} is damaged" in " ".join(result.stderr.split())


def test_foreign_file_refused(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as file:
        file["x"] = np.arange(3)
    result = run_cli("inspect", str(foreign))
    assert result.exit_code == 2
    assert "is not a qcdtool dataset" in result.stderr


def test_newer_format_refused(reference: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    newer = tmp_path / "newer.h5"
    shutil.copy(reference, newer)
    with h5py.File(newer, "r+") as file:
        file.attrs["format_version"] = 99
    result = run_cli("inspect", str(newer))
    assert result.exit_code == 2
    assert "format version 99, a newer format" in result.stderr


def test_inspect_summary(reference: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("inspect", str(reference))
    assert result.exit_code == 0
    assert "parton configurations" in result.stdout
    assert "4500" in result.stdout


@pytest.mark.parametrize(
    ("shard", "message"),
    [
        ("3/2", "invalid --shard '3/2'; k must be between 1 and N"),
        ("x", "invalid --shard 'x'; expected k/N with positive whole numbers"),
        ("0/4", "invalid --shard '0/4'; k must be between 1 and N"),
        ("1/0", "invalid --shard '1/0'; the number of shards N must be at least 1"),
        ("-1/3", "invalid --shard '-1/3'; expected k/N with positive whole numbers"),
    ],
)
def test_bad_shard(shard: str, message: str, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("generate", str(write_spec(tmp_path)), "--shard", shard)
    assert result.exit_code == 2
    assert message in result.stderr


def test_rejected_pythia_setting(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = write_spec(tmp_path, hadronizations=10)
    spec.write_text(spec.read_text() + 'pythia = ["StringZ:aLund = 0.7", "StringZ:aLundd = 0.7"]\n')
    result = run_cli("generate", str(spec))
    assert result.exit_code == 2
    assert "generator.pythia: PYTHIA rejects the setting 'StringZ:aLundd = 0.7' (pythia[1])" in result.stderr
    assert not (tmp_path / "runs" / "gen" / "dataset.h5").exists()


def test_merge_refuses_other_spec(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    first = run_cli("generate", str(write_spec(tmp_path / "a", hadronizations=20)), "--shard", "1/2").stdout.strip()
    second = run_cli("generate", str(write_spec(tmp_path / "b", seed=99, hadronizations=20)), "--shard", "2/2")
    result = run_cli("merge", str(tmp_path / "m.h5"), first, second.stdout.strip())
    assert result.exit_code == 2
    stderr = " ".join(result.stderr.split())
    assert "were generated with different settings" in stderr
    assert f"run.seed = 17 in {first}, 99 in {second.stdout.strip()}" in stderr


def test_merge_refuses_other_events(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = str(write_spec(tmp_path, hadronizations=20))
    first = run_cli("generate", spec, "--shard", "1/2").stdout.strip()
    second = run_cli("generate", spec, "--shard", "2/2", "--events", "30").stdout.strip()
    result = run_cli("merge", str(tmp_path / "m.h5"), first, second)
    assert result.exit_code == 2
    assert f"--events = (not set) in {first}, 30 in {second}" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("made", "message"),
    [
        (["1/2"], "shard 2 of 2 is missing; merge needs every shard of the split"),
        (["1/3"], "shards 2, 3 of 3 are missing; merge needs every shard of the split"),
    ],
)
def test_merge_names_missing_shards(
    made: list[str], message: str, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    spec = str(write_spec(tmp_path, hadronizations=20))
    shards = [run_cli("generate", spec, "--shard", shard).stdout.strip() for shard in made]
    result = run_cli("merge", str(tmp_path / "m.h5"), *shards)
    assert result.exit_code == 2
    assert message in result.stderr


def test_merge_refuses_damaged_shard(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = str(write_spec(tmp_path, hadronizations=20))
    first, second = (run_cli("generate", spec, "--shard", f"{k}/2").stdout.strip() for k in (1, 2))
    damaged = chunk_damaged_copy(Path(second), tmp_path, "events/hadron/pid")
    merged = tmp_path / "m.h5"
    result = run_cli("merge", str(merged), first, str(damaged))
    assert result.exit_code == 2
    assert f"{damaged} is damaged: HDF5 cannot read events/hadron/pid" in " ".join(result.stderr.split())
    assert not merged.exists()
    assert not merged.with_name("m.h5.partial").exists()


def test_merge_refuses_repeated_shard(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    shard = run_cli("generate", str(write_spec(tmp_path, hadronizations=20)), "--shard", "1/2").stdout.strip()
    copy = tmp_path / "copy.h5"
    shutil.copy(shard, copy)
    result = run_cli("merge", str(tmp_path / "m.h5"), shard, str(copy))
    assert result.exit_code == 2
    assert "shard 1 is given twice" in result.stderr


def test_existing_file_names_other_seed(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = write_spec(tmp_path, hadronizations=20)
    assert run_cli("generate", str(spec)).exit_code == 0
    write_spec(tmp_path, seed=18, hadronizations=20)
    result = run_cli("generate", str(spec))
    assert result.exit_code == 2
    assert "run.seed = 17 in the file, 18 in this command" in " ".join(result.stderr.split())


def test_existing_file_names_other_events(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = str(write_spec(tmp_path, hadronizations=20))
    assert run_cli("generate", spec).exit_code == 0
    result = run_cli("generate", spec, "--events", "30")
    assert result.exit_code == 2
    assert "--events = (not set) in the file, 30 in this command" in " ".join(result.stderr.split())


def test_existing_complete_file_is_current(reference: Path) -> None:
    spec = load_spec(reference.parents[2] / "spec.toml", create_registry())
    before = reference.stat().st_mtime_ns
    _, summary = generate_dataset(spec, GenerateOptions())
    assert "is current" in summary
    assert reference.stat().st_mtime_ns == before


def test_shard_beyond_units_refused(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    # Three configurations of 40 hadronizations each: three units, so at most three shards.
    spec = write_spec(tmp_path, hadronizations=40)
    result = run_cli("generate", str(spec), "--shard", "1/5")
    assert result.exit_code == 2
    stderr = " ".join(result.stderr.split())
    assert "invalid --shard 1/5: the 120 events form 3 work units (of up to 40 events)" in stderr
    assert "N can be at most 3" in stderr
    assert not (tmp_path / "runs").exists()


def test_shard_as_many_as_units(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = write_spec(tmp_path, hadronizations=40)
    result = run_cli("generate", str(spec), "--shard", "3/3")
    assert result.exit_code == 0
    with Dataset(result.stdout.strip()) as dataset:
        assert len(dataset) == 40
