"""qcdtool train, sample and run with the diffusion model plugins, on a tiny spec."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner, Result

from qcdtool.core.cli import cli

SPEC = """
[run]
name = "{name}"
seed = 1
device = "cpu"

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = 100

[[imagers]]
plugin = "eta-phi"
size = 15

[sampling]
sampler = "ddim"
steps = 4
per_condition = 2
max_conditions = 10

[[models]]
plugin = "ddpm"
label = "plain"
direction = "inverse"
{tiny}

[[models]]
plugin = "shift-ddpm"
label = "shifted"
direction = "{shift_direction}"
shift = "quadratic-shift"
shift_width = 8
shift_depth = 1
{tiny}
"""

TINY = """timesteps = 20
base_channels = 8
channel_multipliers = [1, 2]
res_blocks = 1
mid_attention = false
training_steps = 12
batch_size = 32
warmup_steps = 2
log_interval = 2
validation_interval = 4
checkpoint_interval = 6"""


def write_spec(folder: Path, name: str, shift_direction: str = "forward") -> Path:
    spec = folder / f"{name}.toml"
    spec.write_text(SPEC.format(name=name, tiny=TINY, shift_direction=shift_direction))
    return spec


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder after 'qcdtool generate', 'qcdtool train' and 'qcdtool sample' of both models."""
    spec = write_spec(tmp_path_factory.mktemp("cli"), "cli-models")
    for args in (["generate"], ["train"], ["sample", "--model", "plain"], ["sample", "--model", "shifted"]):
        result = invoke(*args, str(spec), "-q")
        assert result.exit_code == 0, result.output
    return spec.parent / "runs" / "cli-models"


@pytest.mark.parametrize("label", ["plain", "shifted"])
@pytest.mark.parametrize("name", ["loss.csv", "loss.png", "training.json", "checkpoint.pt"])
def test_train_writes_files(trained_run: Path, label: str, name: str) -> None:
    assert (trained_run / "models" / label / name).stat().st_size > 0


@pytest.mark.parametrize("label", ["plain", "shifted"])
def test_train_record_complete(trained_run: Path, label: str) -> None:
    record = json.loads((trained_run / "models" / label / "training.json").read_text())
    assert record["status"] == "complete"
    assert record["summary"]["steps"] == 12.0


def test_train_loss_columns(trained_run: Path) -> None:
    lines = (trained_run / "models" / "plain" / "loss.csv").read_text().splitlines()
    assert lines[0] == "step,loss,validation_loss,learning_rate,images_per_second"
    assert len(lines) == 1 + 6


@pytest.mark.parametrize(
    ("label", "condition", "target"), [("plain", "hadron", "parton"), ("shifted", "parton", "hadron")]
)
def test_samples_file(trained_run: Path, label: str, condition: str, target: str) -> None:
    with h5py.File(trained_run / "samples" / f"{label}.h5") as file:
        assert file["generated"].shape == (10, 2, 1, 15, 15)
        assert file["conditions"].shape == (10, 1, 15, 15)
        assert file["truth"].shape == (10, 1, 15, 15)
        assert file["config_id"].shape == (10,)
        assert file["generated"].dtype == "float32"
        assert file["generated"][()].min() >= 0.0
        assert file.attrs["condition_level"] == condition
        assert file.attrs["target_level"] == target


@pytest.mark.parametrize("path", ["models/plain/checkpoint.pt", "samples/shifted.h5"])
def test_run_after_train_keeps_files(trained_run: Path, path: str) -> None:
    before = (trained_run / path).read_bytes()
    result = invoke("run", str(trained_run.parent.parent / "cli-models.toml"), "-q")
    assert result.exit_code == 0
    assert (trained_run / path).read_bytes() == before


def test_run_end_to_end(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "cli-run", shift_direction="inverse")
    result = invoke("run", str(spec), "-q")
    assert result.exit_code == 0, result.output
    for label in ("plain", "shifted"):
        assert (tmp_path / "runs" / "cli-run" / "models" / label / "loss.png").exists()
        with h5py.File(tmp_path / "runs" / "cli-run" / "samples" / f"{label}.h5") as file:
            assert file["generated"].shape == (10, 2, 1, 15, 15)


def test_sample_untrained_model(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "cli-untrained")
    invoke("generate", str(spec), "-q")
    result = invoke("sample", str(spec), "--model", "plain")
    assert result.exit_code == 2
    assert "model plain is not trained yet" in result.stderr


def test_sample_unknown_label(trained_run: Path) -> None:
    spec = trained_run.parent.parent / "cli-models.toml"
    result = invoke("sample", str(spec), "--model", "plane")
    assert result.exit_code == 2
    assert "the spec has no model labelled 'plane'; its models: plain, shifted" in result.stderr


def test_train_unknown_label(trained_run: Path) -> None:
    spec = trained_run.parent.parent / "cli-models.toml"
    result = invoke("train", str(spec), "--model", "plane")
    assert result.exit_code == 2


def test_spec_other_direction(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "cli-direction", shift_direction="sideways")
    result = invoke("train", str(spec))
    assert result.exit_code == 2
    assert "models[1].direction: invalid value 'sideways'; allowed: 'forward' or 'inverse'" in result.stderr


def test_spec_attention_level_outside(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "cli-attention")
    spec.write_text(spec.read_text().replace('label = "plain"', 'label = "plain"\nattention_levels = [2]'))
    result = invoke("spec", "validate", str(spec))
    assert result.exit_code == 2
    assert "attention_levels [2] names levels [2], but the UNet has levels 0..1" in result.stderr


@pytest.mark.parametrize("module", ["ddpm", "shift_ddpm"])
def test_plugin_import_without_torch(module: str) -> None:
    code = f"import sys, qcdtool.plugins.models.{module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_plugins_show_model(run_cli: Callable[..., Result]) -> None:
    result = run_cli("plugins", "show", "shift-ddpm")
    assert result.exit_code == 0
    for text in ("condition_input", "prior-shift", "intensity_transform", "learning_rate"):
        assert text in result.stdout


def test_train_before_generate(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "early")
    result = invoke("train", str(spec), "--model", "plain")
    assert result.exit_code == 2
    assert "does not exist yet; make it with 'qcdtool generate SPEC'" in result.stderr
    assert not (tmp_path / "runs" / "early" / "models" / "plain").exists()


def test_runtime_parameter_keeps_model(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "runtime")
    assert invoke("generate", str(spec)).exit_code == 0
    assert invoke("train", str(spec), "--model", "plain").exit_code == 0
    spec.write_text(spec.read_text().replace("log_interval = 2", "log_interval = 3"))
    result = invoke("train", str(spec), "--model", "plain")
    assert result.exit_code == 0
    assert "is trained" in result.stderr


def test_changed_parameter_named(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "changed")
    assert invoke("generate", str(spec)).exit_code == 0
    assert invoke("train", str(spec), "--model", "plain").exit_code == 0
    spec.write_text(spec.read_text().replace("base_channels = 8", "base_channels = 16"))
    result = invoke("train", str(spec), "--model", "plain")
    assert result.exit_code == 2
    assert "base_channels = 8 then, 16 now" in result.stderr


def test_ddpm_sampler_records_every_step(trained_run: Path) -> None:
    spec = trained_run.parent.parent / f"{trained_run.name}.toml"
    result = invoke("sample", str(spec), "--model", "plain", "--sampler", "ddpm", "--steps", "7")
    assert result.exit_code == 0
    assert "ddpm, every step of the model's chain" in result.stderr
    with h5py.File(trained_run / "samples" / "plain.h5") as file:
        assert int(file.attrs["steps"]) == -1
