"""Training bookkeeping of the diffusion model plugins: resume, determinism, checkpoints, sample shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from model_helpers import loss_rows, make_model, pairs_of, train
from numpy.typing import NDArray

from qcdtool.core.cli import cli
from qcdtool.core.contracts import TrainingProgress
from qcdtool.core.errors import QcdtoolError
from qcdtool.plugins.models.diffusion.checkpoint import CHECKPOINT_FORMAT_VERSION, checkpoint_path

PLUGIN_NAMES = ["ddpm", "shift-ddpm"]
Split = dict[str, NDArray[np.int64]]


class Interrupted(Exception):
    """Raised from the progress callback to stop a training run part-way."""


def stop_at(step: int) -> object:
    def report(progress: TrainingProgress) -> None:
        if progress.step == step:
            raise Interrupted

    return report


def small_split(split: Split, train_rows: int = 200) -> Split:
    """Fewer training rows, so that 16 steps of 32 pairs cross epoch boundaries."""
    return {**split, "train": split["train"][:train_rows]}


def weights_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("plugin", PLUGIN_NAMES)
def test_resume_equals_uninterrupted(plugin: str, dataset: Path, split: Split, tmp_path: Path) -> None:
    rows = small_split(split)
    train_pairs, validation_pairs = pairs_of(dataset, rows["train"]), pairs_of(dataset, rows["validation"])
    # Dropout draws from torch's global generator, whose state the checkpoint must restore too.
    params = {"dropout": 0.1}

    whole = make_model(plugin, **params)
    train(whole, train_pairs, validation_pairs, tmp_path / "whole")

    # Stop at step 8, after the checkpoint of step 6, so loss.csv has two lines past the checkpoint.
    with pytest.raises(Interrupted):
        train(make_model(plugin, **params), train_pairs, validation_pairs, tmp_path / "parts", on_progress=stop_at(8))
    assert torch.load(checkpoint_path(tmp_path / "parts"), weights_only=True)["step"] == 6
    resumed = make_model(plugin, **params)
    train(resumed, train_pairs, validation_pairs, tmp_path / "parts", resume=True)

    assert loss_rows(tmp_path / "parts") == loss_rows(tmp_path / "whole")
    whole_checkpoint = torch.load(checkpoint_path(tmp_path / "whole"), weights_only=True)
    parts_checkpoint = torch.load(checkpoint_path(tmp_path / "parts"), weights_only=True)
    assert weights_equal(parts_checkpoint["weights"], whole_checkpoint["weights"])
    assert weights_equal(parts_checkpoint["ema"]["module"], whole_checkpoint["ema"]["module"])


def test_resume_line_count(dataset: Path, split: Split, tmp_path: Path) -> None:
    rows = small_split(split)
    train_pairs, validation_pairs = pairs_of(dataset, rows["train"]), pairs_of(dataset, rows["validation"])
    with pytest.raises(Interrupted):
        train(make_model("ddpm"), train_pairs, validation_pairs, tmp_path, on_progress=stop_at(8))
    train(make_model("ddpm"), train_pairs, validation_pairs, tmp_path, resume=True)
    # One line every log_interval = 2 steps, each once.
    assert [int(row[0]) for row in loss_rows(tmp_path)] == list(range(2, 17, 2))


def test_resume_without_checkpoint_starts_over(dataset: Path, split: Split, tmp_path: Path) -> None:
    rows = small_split(split)
    train_pairs, validation_pairs = pairs_of(dataset, rows["train"]), pairs_of(dataset, rows["validation"])
    train(make_model("ddpm"), train_pairs, validation_pairs, tmp_path / "fresh")
    train(make_model("ddpm"), train_pairs, validation_pairs, tmp_path / "resumed", resume=True)
    assert loss_rows(tmp_path / "resumed") == loss_rows(tmp_path / "fresh")


@pytest.mark.parametrize("plugin", PLUGIN_NAMES)
def test_training_deterministic(plugin: str, dataset: Path, split: Split, tmp_path: Path) -> None:
    train_pairs, validation_pairs = pairs_of(dataset, split["train"]), pairs_of(dataset, split["validation"])
    first, second = make_model(plugin), make_model(plugin)
    train(first, train_pairs, validation_pairs, tmp_path / "first")
    train(second, train_pairs, validation_pairs, tmp_path / "second")
    conditions, _ = pairs_of(dataset, split["test"]).read(0, 6)
    assert loss_rows(tmp_path / "first") == loss_rows(tmp_path / "second")
    assert np.array_equal(
        first.sample(conditions, 2, "ddim", 5, 11, "cpu"), second.sample(conditions, 2, "ddim", 5, 11, "cpu")
    )


def test_training_seed_changes_losses(dataset: Path, split: Split, tmp_path: Path) -> None:
    train_pairs, validation_pairs = pairs_of(dataset, split["train"]), pairs_of(dataset, split["validation"])
    train(make_model("ddpm"), train_pairs, validation_pairs, tmp_path / "first", seed=7)
    train(make_model("ddpm"), train_pairs, validation_pairs, tmp_path / "second", seed=8)
    assert loss_rows(tmp_path / "first") != loss_rows(tmp_path / "second")


@pytest.fixture(scope="module")
def trained(dataset: Path, split: Split, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of a ddpm and a shift-ddpm trained for 16 steps with the tiny parameters."""
    folders = {}
    for plugin in PLUGIN_NAMES:
        folder = tmp_path_factory.mktemp(plugin)
        train(make_model(plugin), pairs_of(dataset, split["train"]), pairs_of(dataset, split["validation"]), folder)
        folders[plugin] = folder
    return folders


@pytest.mark.parametrize("plugin", PLUGIN_NAMES)
@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 4), ("ddim", None), ("ddpm", None)])
def test_sample_shape_dtype(
    plugin: str, sampler: str, steps: int | None, trained: dict[str, Path], dataset: Path, split: Split
) -> None:
    model = make_model(plugin)
    model.load(trained[plugin], "cpu")
    conditions, _ = pairs_of(dataset, split["test"]).read(0, 3)
    samples = model.sample(conditions, 2, sampler, steps, 5, "cpu")
    assert samples.shape == (3, 2, 1, 15, 15)
    assert samples.dtype == np.float32
    assert samples.min() >= 0.0
    assert np.isfinite(samples).all()


def test_sample_seed_decides(trained: dict[str, Path], dataset: Path, split: Split) -> None:
    model = make_model("shift-ddpm")
    model.load(trained["shift-ddpm"], "cpu")
    conditions, _ = pairs_of(dataset, split["test"]).read(0, 4)
    first = model.sample(conditions, 2, "ddpm", None, 5, "cpu")
    assert np.array_equal(model.sample(conditions, 2, "ddpm", None, 5, "cpu"), first)
    assert not np.array_equal(model.sample(conditions, 2, "ddpm", None, 6, "cpu"), first)


def test_samples_per_condition_differ(trained: dict[str, Path], dataset: Path, split: Split) -> None:
    model = make_model("ddpm")
    model.load(trained["ddpm"], "cpu")
    conditions, _ = pairs_of(dataset, split["test"]).read(0, 1)
    samples = model.sample(conditions, 2, "ddim", 4, 5, "cpu")
    assert not np.array_equal(samples[0, 0], samples[0, 1])


def test_load_equals_fitted(trained: dict[str, Path], dataset: Path, split: Split, tmp_path: Path) -> None:
    fitted = make_model("ddpm")
    train(fitted, pairs_of(dataset, split["train"]), pairs_of(dataset, split["validation"]), tmp_path)
    loaded = make_model("ddpm")
    loaded.load(tmp_path, "cpu")
    conditions, _ = pairs_of(dataset, split["test"]).read(0, 3)
    assert np.array_equal(
        loaded.sample(conditions, 1, "ddim", 4, 5, "cpu"), fitted.sample(conditions, 1, "ddim", 4, 5, "cpu")
    )


def test_checkpoint_of_other_plugin(trained: dict[str, Path]) -> None:
    with pytest.raises(QcdtoolError, match="checkpoint of model plugin 'ddpm', not of 'shift-ddpm'"):
        make_model("shift-ddpm").load(trained["ddpm"], "cpu")


def test_checkpoint_newer_format(trained: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = torch.load(checkpoint_path(trained["ddpm"]), weights_only=True)
    checkpoint["format_version"] = CHECKPOINT_FORMAT_VERSION + 1
    torch.save(checkpoint, checkpoint_path(tmp_path))
    with pytest.raises(QcdtoolError, match=f"format version {CHECKPOINT_FORMAT_VERSION + 1}, newer than"):
        make_model("ddpm").load(tmp_path, "cpu")


def test_checkpoint_other_parameters(trained: dict[str, Path]) -> None:
    with pytest.raises(QcdtoolError, match="base_channels = 8 in the checkpoint, 16 now"):
        make_model("ddpm", base_channels=16).load(trained["ddpm"], "cpu")


def test_checkpoint_missing(tmp_path: Path) -> None:
    with pytest.raises(QcdtoolError, match="no checkpoint"):
        make_model("ddpm").load(tmp_path, "cpu")


def test_checkpoint_not_a_checkpoint(tmp_path: Path) -> None:
    checkpoint_path(tmp_path).write_bytes(b"not a torch file")
    with pytest.raises(QcdtoolError, match="cannot read the checkpoint"):
        make_model("ddpm").load(tmp_path, "cpu")


def test_sample_other_image_shape(trained: dict[str, Path]) -> None:
    model = make_model("ddpm")
    model.load(trained["ddpm"], "cpu")
    with pytest.raises(QcdtoolError, match=r"shape \(1, 15, 15\) \(C, H, W\), but the conditions given have shape"):
        model.sample(np.zeros((2, 1, 16, 16), np.float32), 1, "ddim", 4, 5, "cpu")


def test_resume_other_image_shape(trained: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "data"
    other.mkdir()
    (other / "spec.toml").write_text(
        '[run]\nname = "other"\nseed = 1\n[generator]\nplugin = "pythia-ee"\nparton_events = 1\n'
        'hadronizations = 60\n[[imagers]]\nplugin = "eta-phi"\nsize = 16\n'
    )
    assert CliRunner().invoke(cli, ["generate", str(other / "spec.toml"), "-q"]).exit_code == 0
    path = other / "runs" / "other" / "dataset.h5"
    rows = np.arange(60)
    with pytest.raises(QcdtoolError, match=r"trained on condition images of shape \(1, 15, 15\)"):
        train(make_model("ddpm"), pairs_of(path, rows[:50]), pairs_of(path, rows[50:]), trained["ddpm"], resume=True)


def test_sample_before_training() -> None:
    with pytest.raises(RuntimeError, match="has no weights yet"):
        make_model("ddpm").sample(np.zeros((1, 1, 15, 15), np.float32), 1, "ddim", 4, 5, "cpu")


def test_sample_too_many_ddim_steps(trained: dict[str, Path]) -> None:
    model = make_model("ddpm")
    model.load(trained["ddpm"], "cpu")
    with pytest.raises(QcdtoolError, match="DDIM needs 1 to 20 steps"):
        model.sample(np.zeros((1, 1, 15, 15), np.float32), 1, "ddim", 21, 5, "cpu")


def test_loss_file_columns(trained: dict[str, Path]) -> None:
    header = (trained["ddpm"] / "loss.csv").read_text().splitlines()[0]
    assert header == "step,loss,validation_loss,learning_rate,images_per_second"


def test_validation_loss_at_interval(trained: dict[str, Path]) -> None:
    rows = loss_rows(trained["ddpm"], ("step", "validation_loss"))
    measured = [int(step) for step, validation in rows if validation]
    assert measured == [4, 8, 12, 16]


def test_learning_rate_warms_up(trained: dict[str, Path]) -> None:
    rows = loss_rows(trained["ddpm"], ("step", "learning_rate"))
    # Step 2 is the second warm-up step of two: the full rate of 1e-3.
    assert float(rows[0][1]) == pytest.approx(1e-3)
