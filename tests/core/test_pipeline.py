"""qcdtool run: stages that are skipped when current, redone when stale, chosen with --from and --only.

One tiny spec (real PYTHIA events, two real diffusion models trained for a
few steps, one metric) is run once per module. Each test copies that run
folder and changes what it studies.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from qcdtool.core import generate as generate_module
from qcdtool.core.cli import cli
from qcdtool.core.dataset import Dataset
from qcdtool.core.pipeline import RUN_RECORD, RunOptions, StageContext, prepare_run_dir, run_pipeline
from qcdtool.core.registry import create_registry
from qcdtool.core.spec import load_spec

SPEC = """
[run]
name = "staged"
seed = 3
device = "cpu"

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = 80

[[imagers]]
plugin = "eta-phi"
size = 9

[sampling]
sampler = "ddim"
steps = 3
per_condition = 2
max_conditions = 8

[[models]]
plugin = "ddpm"
label = "plain"
imager = "eta-phi"
direction = "inverse"
{tiny}

[[models]]
plugin = "shift-ddpm"
label = "shifted"
imager = "eta-phi"
direction = "inverse"
{tiny}

[[metrics]]
plugin = "pixel-distance"
"""

TINY = """timesteps = 10
base_channels = 8
channel_multipliers = [1, 2]
res_blocks = 1
mid_attention = false
training_steps = 8
batch_size = 16
warmup_steps = 1
log_interval = 2
validation_interval = 4
checkpoint_interval = 4"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def digest(path: Path) -> str:
    """SHA-256 of a file; of an HDF5 file, of its arrays only (its attributes record creation times)."""
    if path.suffix != ".h5":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    hasher = hashlib.sha256()
    with h5py.File(path, "r") as file:
        names: list[str] = []
        file.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in sorted(names):
            hasher.update(name.encode())
            hasher.update(np.ascontiguousarray(file[name][()]).tobytes())
    return hasher.hexdigest()


def loss_history(path: Path) -> list[list[str]]:
    """loss.csv without its images-per-second column, which is a timing."""
    return [line.split(",")[:4] for line in path.read_text().splitlines()]


def run_files(run_dir: Path) -> dict[str, str]:
    """Digest of every result file of a run folder (logs and records left out)."""
    names = ["dataset.h5", "models/plain/checkpoint.pt", "models/shifted/checkpoint.pt"]
    names += ["samples/plain.h5", "samples/shifted.h5", "metrics.json", "report.html"]
    return {name: digest(run_dir / name) for name in names}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with spec.toml and the run folder after one complete 'qcdtool run'."""
    folder = tmp_path_factory.mktemp("staged")
    (folder / "spec.toml").write_text(SPEC.format(tiny=TINY))
    result = invoke("run", str(folder / "spec.toml"), "-q")
    assert result.exit_code == 0, result.stderr
    return folder


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the finished run; its spec file is spec.toml in the returned folder."""
    target = tmp_path / "copy"
    shutil.copytree(finished, target)
    record = target / "runs" / "staged" / RUN_RECORD
    data = json.loads(record.read_text())
    data["spec_file"] = str((target / "spec.toml").resolve())
    record.write_text(json.dumps(data))
    yield target


def run_dir(folder: Path) -> Path:
    return folder / "runs" / "staged"


def stage_lines(result: Result) -> list[str]:
    """The pipeline's log lines, "name: what", in order."""
    return [
        line.split("stage ", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("INFO     stage ")
    ]


# --------------------------------------------------------------------------
# Reruns


def test_rerun_all_current(copy: Path) -> None:
    before = run_files(run_dir(copy))
    result = invoke("run", str(copy / "spec.toml"))
    assert result.exit_code == 0
    assert stage_lines(result) == [f"{name}: current" for name in STAGE_ORDER]
    assert run_files(run_dir(copy)) == before
    # The report's path alone goes to stdout, for scripts and for copying.
    assert result.stdout.strip() == str((run_dir(copy) / "report.html").resolve())


STAGE_ORDER = ("generate", "images", "train", "sample", "evaluate", "report")


def test_changed_model_redone_alone(copy: Path) -> None:
    before = run_files(run_dir(copy))
    spec = copy / "spec.toml"
    text = spec.read_text()
    position = text.index('label = "shifted"')
    spec.write_text(text[:position] + text[position:].replace("training_steps = 8", "training_steps = 6"))
    assert invoke("run", str(spec), "-q").exit_code == 0
    after = run_files(run_dir(copy))
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["metrics.json", "models/shifted/checkpoint.pt", "report.html", "samples/shifted.h5"]


def test_changed_model_keeps_other_metrics(copy: Path) -> None:
    metrics = run_dir(copy) / "metrics.json"
    before = json.loads(metrics.read_text())["models"]["plain"]
    spec = copy / "spec.toml"
    text = spec.read_text()
    position = text.index('label = "shifted"')
    spec.write_text(text[:position] + text[position:].replace("training_steps = 8", "training_steps = 6"))
    assert invoke("run", str(spec), "-q").exit_code == 0
    assert json.loads(metrics.read_text())["models"]["plain"] == before


def test_changed_generator_redoes_all(copy: Path) -> None:
    before = run_files(run_dir(copy))
    spec = copy / "spec.toml"
    spec.write_text(spec.read_text().replace("hadronizations = 80", "hadronizations = 70"))
    assert invoke("run", str(spec), "-q").exit_code == 0
    after = run_files(run_dir(copy))
    assert [name for name in before if before[name] == after[name]] == []


def test_new_imager_keeps_models(copy: Path) -> None:
    before = run_files(run_dir(copy))
    spec = copy / "spec.toml"
    spec.write_text(spec.read_text() + '\n[[imagers]]\nplugin = "angular"\nsize = 9\n')
    result = invoke("run", str(spec))
    assert result.exit_code == 0
    # report.html shows the spec, so it is written again.
    assert stage_lines(result)[2:5] == [f"{name}: current" for name in ("train", "sample", "evaluate")]
    assert digest(run_dir(copy) / "models/plain/checkpoint.pt") == before["models/plain/checkpoint.pt"]


def test_deleted_dataset_made_again(copy: Path) -> None:
    before = run_files(run_dir(copy))
    (run_dir(copy) / "dataset.h5").unlink()
    result = invoke("run", str(copy / "spec.toml"))
    assert result.exit_code == 0
    assert run_files(run_dir(copy)) == before


def test_deleted_dataset_keeps_models(copy: Path) -> None:
    (run_dir(copy) / "dataset.h5").unlink()
    result = invoke("run", str(copy / "spec.toml"))
    assert "stage train: current" in result.stderr


# --------------------------------------------------------------------------
# --from, --only, --force


def test_only_runs_one_stage(copy: Path) -> None:
    result = invoke("run", str(copy / "spec.toml"), "--only", "report", "--force")
    assert stage_lines(result) == ["report: write report.html from metrics.json"]


def test_from_redoes_later_stages(copy: Path) -> None:
    result = invoke("run", str(copy / "spec.toml"), "--from", "sample")
    assert result.exit_code == 0
    assert [line.split(":")[0] for line in stage_lines(result) if "current" not in line] == [
        "sample",
        "evaluate",
        "report",
    ]


def test_from_samples_same_again(copy: Path) -> None:
    # Sampling is seeded from the run seed: samples drawn again equal the first ones.
    before = run_files(run_dir(copy))
    assert invoke("run", str(copy / "spec.toml"), "--from", "sample", "-q").exit_code == 0
    assert digest(run_dir(copy) / "samples/plain.h5") == before["samples/plain.h5"]


def test_only_needs_current_inputs(copy: Path) -> None:
    spec = copy / "spec.toml"
    spec.write_text(spec.read_text().replace("seed = 3", "seed = 4"))
    result = invoke("run", str(spec), "--only", "train")
    assert result.exit_code == 2
    assert "stage train needs the results of stage generate, which are not current" in result.stderr
    assert "run.seed = 3 in the file, 4 in the spec" in " ".join(result.stderr.split())


def test_train_force_needs_current_events(copy: Path) -> None:
    spec = copy / "spec.toml"
    spec.write_text(spec.read_text().replace("hadronizations = 80", "hadronizations = 70"))
    result = invoke("train", str(spec), "--model", "plain", "--force")
    assert result.exit_code == 2
    assert "generator.hadronizations = 80 in the file, 70 in the spec" in " ".join(result.stderr.split())
    assert (run_dir(copy) / "models" / "plain" / "checkpoint.pt").is_file()


def test_from_and_only_exclusive(copy: Path) -> None:
    result = invoke("run", str(copy / "spec.toml"), "--from", "train", "--only", "sample")
    assert result.exit_code == 2
    assert "give --from or --only, not both" in result.stderr


def test_only_unwanted_stage(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(tiny=TINY).split("[[models]]")[0])
    result = invoke("run", str(spec), "--only", "train")
    assert result.exit_code == 2
    assert "the spec requests nothing in stage 'train'" in result.stderr


# --------------------------------------------------------------------------
# A dataset made elsewhere


def test_dataset_option_reads_file(copy: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "colleague.h5"
    shutil.move(run_dir(copy) / "dataset.h5", elsewhere)
    spec = tmp_path / "analysis.toml"
    spec.write_text(SPEC.format(tiny=TINY).replace('name = "staged"', 'name = "analysis"'))
    result = invoke("run", str(spec), "--dataset", str(elsewhere), "--only", "train")
    assert result.exit_code == 0
    assert (tmp_path / "runs" / "analysis" / "models" / "plain" / "checkpoint.pt").is_file()


def test_dataset_key_needs_no_generator(copy: Path, tmp_path: Path) -> None:
    dataset = run_dir(copy) / "dataset.h5"
    text = SPEC.format(tiny=TINY)
    generator = text[text.index("[generator]") : text.index("[[imagers]]")]
    spec = tmp_path / "analysis.toml"
    spec.write_text(text.replace(generator, "").replace('device = "cpu"', f'device = "cpu"\ndataset = "{dataset}"'))
    result = invoke("run", str(spec), "--only", "images")
    assert result.exit_code == 0
    assert not (tmp_path / "runs" / "staged" / "dataset.h5").exists()


def test_dataset_missing_imager(copy: Path, tmp_path: Path) -> None:
    dataset = run_dir(copy) / "dataset.h5"
    spec = tmp_path / "analysis.toml"
    text = SPEC.format(tiny=TINY).replace('name = "staged"', 'name = "analysis"')
    spec.write_text(text.replace('plugin = "eta-phi"\nsize = 9', 'plugin = "eta-phi"\nlabel = "fine"\nsize = 15'))
    spec.write_text(spec.read_text().replace('imager = "eta-phi"', 'imager = "fine"'))
    result = invoke("run", str(spec), "--dataset", str(dataset))
    assert result.exit_code == 2
    assert f"{dataset} has no images of imager(s) fine; add them with 'qcdtool images SPEC --add'" in " ".join(
        result.stderr.split()
    )


def test_dataset_option_missing_file(copy: Path) -> None:
    result = invoke("run", str(copy / "spec.toml"), "--dataset", str(copy / "nothing.h5"))
    assert result.exit_code == 2
    assert f"--dataset {copy / 'nothing.h5'}: no such file" in " ".join(result.stderr.split())


def test_generate_refuses_dataset_spec(copy: Path, tmp_path: Path) -> None:
    spec = tmp_path / "analysis.toml"
    dataset = run_dir(copy) / "dataset.h5"
    spec.write_text(SPEC.format(tiny=TINY).replace('device = "cpu"', f'device = "cpu"\ndataset = "{dataset}"'))
    result = invoke("generate", str(spec))
    assert result.exit_code == 2
    assert "([run] dataset) and generates no events" in " ".join(result.stderr.split())


# --------------------------------------------------------------------------
# Faults


def test_disk_full_then_resume(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = run_files(run_dir(copy))
    (run_dir(copy) / "dataset.h5").unlink()
    real = generate_module.write_part
    calls = []

    def fill_disk(path: Path, result: object) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, result)  # type: ignore[arg-type]

    monkeypatch.setattr(generate_module, "write_part", fill_disk)
    result = invoke("run", str(copy / "spec.toml"))
    assert result.exit_code == 1
    assert "no space left on the device while writing" in " ".join(result.stderr.split())
    monkeypatch.setattr(generate_module, "write_part", real)
    assert invoke("run", str(copy / "spec.toml"), "-q").exit_code == 0
    assert run_files(run_dir(copy))["dataset.h5"] == before["dataset.h5"]


def test_interrupted_training_resumes(copy: Path) -> None:
    before = loss_history(run_dir(copy) / "models/plain/loss.csv")
    shutil.rmtree(run_dir(copy) / "models")
    spec = load_spec(copy / "spec.toml", create_registry())
    stage = {"name": ""}

    def interrupt(done: int, total: int) -> None:
        if stage["name"] == "train" and done >= 6:
            raise KeyboardInterrupt

    def on_stage(name: str, what: str) -> None:
        stage["name"] = name

    context = StageContext(spec, create_registry(), RunOptions(), prepare_run_dir(spec), 0, interrupt, on_stage)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(context)
    assert json.loads((run_dir(copy) / "models/plain/training.json").read_text())["status"] == "training"
    assert invoke("run", str(copy / "spec.toml"), "-q").exit_code == 0
    assert loss_history(run_dir(copy) / "models/plain/loss.csv") == before


def test_killed_run_resumes(copy: Path) -> None:
    before = {label: loss_history(run_dir(copy) / f"models/{label}/loss.csv") for label in ("plain", "shifted")}
    shutil.rmtree(run_dir(copy) / "models")
    script = shutil.which("qcdtool", path=str(Path(sys.executable).parent))
    assert script is not None
    process = subprocess.Popen([script, "run", str(copy / "spec.toml")], stderr=subprocess.DEVNULL)
    checkpoint = run_dir(copy) / "models" / "plain" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not checkpoint.exists() and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert invoke("run", str(copy / "spec.toml"), "-q").exit_code == 0
    after = {label: loss_history(run_dir(copy) / f"models/{label}/loss.csv") for label in ("plain", "shifted")}
    assert after == before


def test_dataset_file_still_readable_after_failure(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = copy / "spec.toml"
    spec.write_text(spec.read_text() + '\n[[imagers]]\nplugin = "angular"\nsize = 9\n')

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("qcdtool.core.add_images._draw", fail)
    assert invoke("run", str(spec)).exit_code == 1
    with Dataset(run_dir(copy) / "dataset.h5") as dataset:
        assert dataset.image_labels == ["eta-phi"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_missing_device_before_generate(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(tiny=TINY).replace('device = "cpu"', 'device = "cuda"'))
    result = invoke("run", str(spec))
    assert result.exit_code == 2
    assert "torch finds no CUDA device here" in result.stderr
    assert not (tmp_path / "runs" / "staged" / "dataset.h5").exists()
