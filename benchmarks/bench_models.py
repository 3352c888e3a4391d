"""Training and sampling speed of the ddpm and shift-ddpm plugins on one generated dataset.

Run by hand (never part of the test suite), from the repository root::

    PYTHONPATH=. python benchmarks/bench_models.py

It generates two parton configurations (one b, one light quark) with 1000
hadronizations each and eta-phi images of 16x16 and 32x32 pixels, then for
each plugin with its default network (base width 32, channel multipliers
1, 2, 2, two residual blocks per level, bottleneck attention, T = 1000):

1. trains it at 16x16 and at 32x32 for a few hundred and a few dozen steps
   through ``fit``, the full plugin path: batches read from HDF5, the
   intensity transform, AdamW, gradient clipping, EMA, validation, loss.csv
   and checkpoints. It reports images per second over the whole call and
   the median of loss.csv's images_per_second column (steady state);
2. times ``sample`` of the 16x16 model on the same conditions with 50-step
   DDIM and with 1000-step ancestral DDPM, and prints the ratio of their
   images per second. One network pass per step makes it about 1000 / 50 =
   20; the script exits with status 1 when it is below 15.

Results are printed as Markdown tables, with the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcdtool.core.contracts import Direction, PluginContext, TrainingRun
from qcdtool.core.dataset import Dataset
from qcdtool.core.pairs import ImagePairs
from qcdtool.core.split import SplitSettings, split_rows
from qcdtool.plugins.models.base import DiffusionModel
from qcdtool.plugins.models.ddpm import DDPM
from qcdtool.plugins.models.shift_ddpm import ShiftDDPM

PLUGINS: dict[str, type[DiffusionModel]] = {"ddpm": DDPM, "shift-ddpm": ShiftDDPM}
SIZES = (16, 32)
MIN_RATIO = 15.0

SPEC = """
[run]
name = "bench-models"
seed = 1

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = {hadronizations}

[[imagers]]
plugin = "eta-phi"
label = "eta-phi-16"
size = 16

[[imagers]]
plugin = "eta-phi"
label = "eta-phi-32"
size = 32
"""


def generate(folder: Path, hadronizations: int) -> Path:
    """Write the dataset with 'qcdtool generate' in a subprocess and return its path."""
    spec = folder / "spec.toml"
    spec.write_text(SPEC.format(hadronizations=hadronizations))
    command = [sys.executable, "-c", "from qcdtool.core.cli import main; main()", "generate", str(spec), "-q"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return folder / "runs" / "bench-models" / "dataset.h5"


def split_pairs(path: Path, label: str) -> dict[str, ImagePairs]:
    """Train, validation and test pairs (70/10/20 of each configuration), inverse direction."""
    with Dataset(path) as dataset:
        config = dataset.column("config_id")
        hadronization = dataset.column("hadronization")
    rows = split_rows(config, hadronization, SplitSettings(by="hadronization", validation=0.1, test=0.2), 5)
    return {name: ImagePairs(path, label, Direction.INVERSE, indices) for name, indices in rows.items()}


def train(
    plugin: str, pairs: dict[str, ImagePairs], steps: int, folder: Path
) -> tuple[DiffusionModel, dict[str, float]]:
    """Fit a plugin with its default network for ``steps`` steps and return it with the measured rates."""
    cls = PLUGINS[plugin]
    params = cls.Params.model_validate(
        {"training_steps": steps, "warmup_steps": max(1, steps // 10), "log_interval": max(1, steps // 20)}
    )
    model = cls(params, PluginContext())
    started = time.perf_counter()
    summary = model.fit(pairs["train"], pairs["validation"], TrainingRun(folder, seed=3, device="cpu"))
    seconds = time.perf_counter() - started
    with (folder / "loss.csv").open(newline="") as file:
        rates = [float(row["images_per_second"]) for row in csv.DictReader(file)]
    return model, {
        "seconds": seconds,
        "whole": steps * model.diffusion_params.batch_size / seconds,
        "steady": statistics.median(rates[1:] or rates),
        "parameters": summary["parameters"],
    }


def time_sampling(model: DiffusionModel, conditions: np.ndarray, sampler: str, steps: int | None) -> float:
    """Return images per second of one ``sample`` call with one image per condition."""
    started = time.perf_counter()
    model.sample(conditions, 1, sampler, steps, seed=9, device="cpu")
    return len(conditions) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hadronizations", type=int, default=1000, help="hadronizations per configuration")
    parser.add_argument("--steps-16", type=int, default=200, help="training steps at 16x16")
    parser.add_argument("--steps-32", type=int, default=40, help="training steps at 32x32")
    parser.add_argument("--sample-images", type=int, default=32, help="images drawn by each sampler")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"torch {torch.__version__} on {torch.get_num_threads()} threads, Python {platform.python_version()}"
    )
    training: dict[tuple[str, int], dict[str, float]] = {}
    sampling: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        path = generate(folder, args.hadronizations)
        for size in SIZES:
            pairs = split_pairs(path, f"eta-phi-{size}")
            steps = args.steps_16 if size == 16 else args.steps_32
            for plugin in PLUGINS:
                model, rates = train(plugin, pairs, steps, folder / f"{plugin}-{size}")
                training[plugin, size] = rates
                print(f"trained {plugin} at {size}x{size}: {rates}", flush=True)
                if size != 16:
                    continue
                conditions, _ = pairs["test"].read(0, args.sample_images)
                ddim = time_sampling(model, conditions, "ddim", 50)
                ddpm = time_sampling(model, conditions, "ddpm", None)
                sampling[plugin] = {"ddim": ddim, "ddpm": ddpm, "ratio": ddim / ddpm}
                print(f"sampled {plugin}: {sampling[plugin]}", flush=True)

    print()
    print("| plugin | size | parameters | steps | fit time (s) | img/s, whole fit | img/s, steady (loss.csv median) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (plugin, size), rates in training.items():
        steps = args.steps_16 if size == 16 else args.steps_32
        print(
            f"| {plugin} | {size}x{size} | {rates['parameters']:,.0f} | {steps} | {rates['seconds']:.1f} | "
            f"{rates['whole']:.0f} | {rates['steady']:.0f} |"
        )
    print()
    print(f"sampling {args.sample_images} images of 16x16, one per test condition:")
    print("| plugin | DDIM, 50 steps (img/s) | DDPM, 1000 steps (img/s) | DDIM / DDPM |")
    print("| --- | --- | --- | --- |")
    for plugin, rates in sampling.items():
        print(f"| {plugin} | {rates['ddim']:.2f} | {rates['ddpm']:.3f} | {rates['ratio']:.1f} |")
    lowest = min(rates["ratio"] for rates in sampling.values())
    if lowest < MIN_RATIO:
        print(f"DDIM is only {lowest:.1f}x faster than DDPM, below the expected {MIN_RATIO:g}x")
        sys.exit(1)


if __name__ == "__main__":
    main()
