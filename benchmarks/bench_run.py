"""Wall time of ``qcdtool run`` against its stages run as separate commands, and its peak memory.

Run by hand (never part of the test suite)::

    PYTHONPATH=. python benchmarks/bench_run.py --repeats 2

It writes a small but complete spec into a temporary folder: 2 PYTHIA
configurations x 1000 hadronizations and a 15x15 eta-phi imager. A ddpm and
a shift-ddpm model learn the inverse map for 500 steps, 10-step DDIM
samples them, and the pixel-distance and intensity-w1 metrics score them.
Each repeat then measures, each way in a fresh run folder, by hand first in
odd repeats and run first in even ones:

- by hand: ``qcdtool generate``, ``qcdtool train``, ``qcdtool sample --model``
  for each model and ``qcdtool evaluate`` (metrics.json and report.html), each
  a separate process, their wall times summed;
- run: ``qcdtool run`` as one process, with its peak memory (maximum resident
  set size of that process alone, from ``os.wait4``);
- rerun: ``qcdtool run`` again on the finished run folder, where every stage
  is current.

Both ways must give the same dataset arrays, the same samples arrays and the
same values of every metric of every model; differences are printed. The
commands are the console script next to this Python, with the repository
first on PYTHONPATH, so that the code of this checkout runs. Results are
printed as Markdown tables.

The measured commands use one torch thread unless ``--threads`` sets
another count, the same for both ways. With torch's default of 2 threads on
2 cores shared with other jobs, training took 223 s instead of 20 s in one
trial, and such scatter hides a 5% difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
QCDTOOL = Path(sys.executable).parent / "qcdtool"
RUN_NAME = "bench-run"
MODELS = ("ddpm", "shift-ddpm")
STAGES = ("generate", "images", "train", "sample", "evaluate", "report")

MODEL_TABLE = """timesteps = 100
base_channels = 16
channel_multipliers = [1, 2]
res_blocks = 1
training_steps = 500
batch_size = 64
warmup_steps = 20
validation_interval = 100
checkpoint_interval = 250"""

SPEC = f"""
[run]
name = "{RUN_NAME}"
output = "runs"
seed = 20231
device = "cpu"

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
mode = "rehadronize"
parton_events = 2
hadronizations = 1000

[[imagers]]
plugin = "eta-phi"
size = 15

[split]
by = "hadronization"
validation = 0.1
test = 0.2

[sampling]
sampler = "ddim"
steps = 10
per_condition = 2
max_conditions = 400

[[models]]
plugin = "ddpm"
label = "ddpm"
imager = "eta-phi"
direction = "inverse"
{MODEL_TABLE}

[[models]]
plugin = "shift-ddpm"
label = "shift-ddpm"
imager = "eta-phi"
direction = "inverse"
condition_input = true
shift_width = 8
{MODEL_TABLE}

[[metrics]]
plugin = "pixel-distance"

[[metrics]]
plugin = "intensity-w1"
"""


@dataclass
class Timing:
    """Wall time and peak memory of one process."""

    command: str
    seconds: float
    peak_mb: float


@dataclass
class RunTimings:
    """``qcdtool run`` on a fresh folder, and again on the finished folder."""

    run: Timing
    rerun: Timing
    #: Seconds of each stage of the first run, from the timestamps of its log.txt.
    stages: dict[str, float]
    #: Stages that the rerun found current.
    rerun_current: list[str]


@dataclass
class Repeat:
    """Measurements of one repeat."""

    order: str
    #: Load average over 1 minute when the repeat started.
    load: float
    by_hand: list[Timing]
    run: RunTimings
    differences: list[str]

    @property
    def by_hand_seconds(self) -> float:
        return sum(timing.seconds for timing in self.by_hand)

    @property
    def ratio(self) -> float:
        return self.run.run.seconds / self.by_hand_seconds

    @property
    def by_hand_untrained_seconds(self) -> float:
        """Seconds of the by-hand commands other than ``qcdtool train``."""
        return sum(timing.seconds for timing in self.by_hand if timing.command.split()[1] != "train")

    @property
    def run_untrained_seconds(self) -> float:
        """Seconds of ``qcdtool run`` outside its train stage."""
        return self.run.run.seconds - self.run.stages.get("train", 0.0)


def child_environment(threads: int) -> dict[str, str]:
    """Build the environment of the measured commands: this checkout first on PYTHONPATH, and torch's thread count."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    if threads > 0:
        environment["OMP_NUM_THREADS"] = str(threads)
    return environment


def timed(arguments: list[str], folder: Path, environment: dict[str, str]) -> Timing:
    """Run ``qcdtool ARGUMENTS`` in ``folder``; return its wall time and its own peak resident memory.

    ``os.wait4`` returns the resource usage of this one child, whereas
    ``RUSAGE_CHILDREN`` keeps the maximum over every child reaped so far.
    Output goes to commands.log in ``folder``, whose tail is printed when the
    command fails.
    """
    log_path = folder / "commands.log"
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"\n$ qcdtool {' '.join(arguments)}\n")
        log.flush()
        start = time.perf_counter()
        process = subprocess.Popen([str(QCDTOOL), *arguments], cwd=folder, env=environment, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log_path.read_text(encoding="utf-8").splitlines()[-30:])
        raise SystemExit(f"qcdtool {' '.join(arguments)} failed with status {process.returncode}:\n{tail}")
    # ru_maxrss is in KiB on Linux.
    return Timing("qcdtool " + " ".join(arguments), seconds, usage.ru_maxrss / 1024)


def measure_by_hand(folder: Path, environment: dict[str, str]) -> list[Timing]:
    """Run generate, train, sample (once per model) and evaluate as separate commands."""
    commands = [["generate", "spec.toml"], ["train", "spec.toml"]]
    commands += [["sample", "spec.toml", "--model", label] for label in MODELS]
    commands += [["evaluate", "spec.toml"]]
    return [timed(command, folder, environment) for command in commands]


def stage_seconds(log_path: Path, since: int, end: float) -> dict[str, float]:
    """Compute the seconds of each stage of the run whose log records start at line ``since`` of the run's log.txt.

    A stage lasts from its "stage NAME:" record to the next one, the last
    stage to ``end`` (time.time() when the process ended). Records have
    millisecond resolution.
    """
    starts: list[tuple[str, float]] = []
    for line in log_path.read_text(encoding="utf-8").splitlines()[since:]:
        if "qcdtool.core.pipeline: stage " not in line:
            continue
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        name = line.split("qcdtool.core.pipeline: stage ", 1)[1].split(":", 1)[0]
        starts.append((name, stamp))
    ends = [stamp for _, stamp in starts[1:]] + [end]
    return {name: stop - start for (name, start), stop in zip(starts, ends, strict=True)}


def current_stages(log_path: Path, since: int) -> list[str]:
    """List the stages that the run logged as current from line ``since`` of log.txt on."""
    lines = log_path.read_text(encoding="utf-8").splitlines()[since:]
    return [name for name in STAGES if any(line.endswith(f"pipeline: stage {name}: current") for line in lines)]


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def measure_run(folder: Path, environment: dict[str, str]) -> RunTimings:
    """Run ``qcdtool run`` on a fresh folder, then once more on the finished one."""
    log_path = folder / "runs" / RUN_NAME / "log.txt"
    run = timed(["run", "spec.toml"], folder, environment)
    stages = stage_seconds(log_path, 0, time.time())
    before = line_count(log_path)
    rerun = timed(["run", "spec.toml"], folder, environment)
    return RunTimings(run, rerun, stages, current_stages(log_path, before))


def array_digests(path: Path) -> dict[str, str]:
    """Hash every array of an HDF5 file with SHA-256, by name; attributes record creation times and are left out."""
    digests: dict[str, str] = {}
    with h5py.File(path, "r") as file:
        names: list[str] = []
        file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        for name in sorted(names):
            digests[name] = hashlib.sha256(np.ascontiguousarray(file[name][()]).tobytes()).hexdigest()
    return digests


def metric_values(path: Path) -> dict[str, Any]:
    """Read the "values" of every metric of every model from metrics.json, keyed "model/metric"."""
    record = json.loads(path.read_text(encoding="utf-8"))
    return {
        f"{model}/{metric}": result.get("values")
        for model, entry in record["models"].items()
        for metric, result in entry["metrics"].items()
    }


def compare_results(by_hand: Path, run: Path) -> list[str]:
    """Compare two run folders (dataset and samples arrays, metric values); return the differences found."""
    differences: list[str] = []
    files = ["dataset.h5", *(f"samples/{label}.h5" for label in MODELS)]
    for name in files:
        left, right = array_digests(by_hand / name), array_digests(run / name)
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                differences.append(f"{name}: array {key} differs")
    left_values, right_values = metric_values(by_hand / "metrics.json"), metric_values(run / "metrics.json")
    for key in sorted(set(left_values) | set(right_values)):
        if left_values.get(key) != right_values.get(key):
            differences.append(f"metrics.json: values of {key} differ")
    return differences


def measure_repeat(root: Path, index: int, environment: dict[str, str]) -> Repeat:
    """Measure one repeat: by hand and run in fresh folders, in alternating order, then compare their results."""
    order = ("by hand", "run") if index % 2 == 0 else ("run", "by hand")
    load = os.getloadavg()[0]
    folders: dict[str, Path] = {}
    by_hand: list[Timing] = []
    run: RunTimings | None = None
    for way in order:
        folder = root / f"{index + 1}-{way.replace(' ', '-')}"
        folder.mkdir()
        (folder / "spec.toml").write_text(SPEC, encoding="utf-8")
        folders[way] = folder
        if way == "by hand":
            by_hand = measure_by_hand(folder, environment)
        else:
            run = measure_run(folder, environment)
    if run is None:
        raise RuntimeError(f"the order {order} does not include the run")
    differences = compare_results(folders["by hand"] / "runs" / RUN_NAME, folders["run"] / "runs" / RUN_NAME)
    return Repeat(", ".join(order), load, by_hand, run, differences)


def print_tables(repeats: list[Repeat], loads: tuple[float, float], environment_file: Path, threads: int) -> None:
    """Print the machine, the per-repeat table, the by-hand commands and the stages of the run."""
    versions = json.loads(environment_file.read_text(encoding="utf-8"))
    packages = versions["packages"]
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {versions['python']}, torch {packages['torch']}, "
        f"pythia8mc {packages['pythia8mc']}; torch threads: {threads or 'default'}"
    )
    print(f"load average (1 min): {loads[0]:.2f} before, {loads[1]:.2f} after")
    print()
    print(
        "| repeat | order | load | by hand (s) | qcdtool run (s) | run / by hand "
        "| without training: by hand, run (s) | rerun (s) | peak run (MB) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for number, repeat in enumerate(repeats, 1):
        run, rerun = repeat.run.run, repeat.run.rerun
        print(
            f"| {number} | {repeat.order} | {repeat.load:.2f} | {repeat.by_hand_seconds:.1f} | "
            f"{run.seconds:.1f} | {repeat.ratio:.3f} | "
            f"{repeat.by_hand_untrained_seconds:.1f}, {repeat.run_untrained_seconds:.1f} | "
            f"{rerun.seconds:.2f} | {run.peak_mb:.0f} |"
        )
    print()
    print(f"median run / by hand: {statistics.median(repeat.ratio for repeat in repeats):.3f}")

    print()
    print("| by-hand command | " + " | ".join(f"repeat {n} (s)" for n in range(1, len(repeats) + 1)) + " | peak (MB) |")
    print("| --- |" + " --- |" * (len(repeats) + 1))
    for row, timing in enumerate(repeats[0].by_hand):
        cells = " | ".join(f"{repeat.by_hand[row].seconds:.2f}" for repeat in repeats)
        peak = max(repeat.by_hand[row].peak_mb for repeat in repeats)
        print(f"| `{timing.command}` | {cells} | {peak:.0f} |")

    print()
    print("| qcdtool run stage | " + " | ".join(f"repeat {n} (s)" for n in range(1, len(repeats) + 1)) + " |")
    print("| --- |" + " --- |" * len(repeats))
    names = list(dict.fromkeys(name for repeat in repeats for name in repeat.run.stages))
    for name in names:
        cells = " | ".join(f"{repeat.run.stages.get(name, float('nan')):.2f}" for repeat in repeats)
        print(f"| {name} | {cells} |")

    print()
    for number, repeat in enumerate(repeats, 1):
        stale = [name for name in STAGES if name not in repeat.run.rerun_current]
        print(f"repeat {number}: rerun found current: {', '.join(repeat.run.rerun_current) or 'none'}", end="")
        print(f"; redone: {', '.join(stale)}" if stale else "")
        if repeat.differences:
            print(f"repeat {number}: by hand and run DIFFER:")
            for difference in repeat.differences:
                print(f"  {difference}")
        else:
            print(f"repeat {number}: by hand and run give the same dataset, samples and metric values")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=2, help="number of repeats; the order of the two ways alternates between them"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help=(
            "torch threads of the measured commands (OMP_NUM_THREADS); 0 keeps torch's default. "
            "With 2 threads on 2 cores shared with other jobs, training times scatter by factors of several."
        ),
    )
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the run folders in (default: removed)")
    args = parser.parse_args()
    environment = child_environment(args.threads)

    load_before = os.getloadavg()[0]
    repeats: list[Repeat] = []
    with tempfile.TemporaryDirectory(prefix="bench-run-") as temporary:
        root = args.keep or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        for index in range(args.repeats):
            repeat = measure_repeat(root, index, environment)
            repeats.append(repeat)
            print(
                f"repeat {index + 1} ({repeat.order}): by hand {repeat.by_hand_seconds:.1f} s, "
                f"run {repeat.run.run.seconds:.1f} s, ratio {repeat.ratio:.3f}",
                flush=True,
            )
        environment_file = next(root.glob(f"*-run/runs/{RUN_NAME}/environment.json"))
        print_tables(repeats, (load_before, os.getloadavg()[0]), environment_file, args.threads)


if __name__ == "__main__":
    main()
