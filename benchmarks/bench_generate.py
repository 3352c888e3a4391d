"""Throughput and memory of event generation against raw PYTHIA, measured in one run.

Run by hand (never part of the test suite)::

    python benchmarks/bench_generate.py --events 100000

For each mode (independent, rehadronize) it measures, one after another on
the same machine:

1. raw PYTHIA with the generator's own settings and no analysis:
   - independent: ``next()`` with hadronization on, once per event;
   - rehadronize: once per configuration ``next()`` with hadronization off and
     a copy of the record, then per hadronization a restore of the copy and
     ``forceHadronLevel()`` (the same work the generator asks of PYTHIA);
   - rehadronize, per event: ``next()`` + copy + ``forceHadronLevel()`` for
     every event, which is what the same number of events costs without
     rehadronization;
2. the full path with one worker: PYTHIA, jets at both levels and the HDF5
   file (``generate_dataset``), no imagers;
3. the full path with two workers;
4. peak memory (maximum resident set size) of the full path for N/10 and N
   events, each in a fresh process.

Every measurement runs in its own subprocess, so that memory and caches of
one do not leak into the next. Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FLAVOURS = "1 2 3 4 5"
EE_SETTINGS = [
    "Beams:idA = 11",
    "Beams:idB = -11",
    "Beams:eCM = 91.188",
    "PDF:lepton = off",
    "WeakSingleBoson:ffbar2gmZ = on",
    "23:onMode = off",
    f"23:onIfAny = {FLAVOURS}",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Random:setSeed = on",
    "Random:seed = 4711",
]
PER_CONFIG = 1000


def raw_pythia(mode: str, events: int) -> float:
    """Events per second of raw PYTHIA in ``mode``; runs in the calling process."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    settings = list(EE_SETTINGS)
    if mode != "independent":
        settings.append("HadronLevel:all = off")
    for setting in settings:
        pythia.readString(setting)
    pythia.init()
    start = time.perf_counter()
    if mode == "independent":
        for _ in range(events):
            pythia.next()
    elif mode == "rehadronize":
        for _ in range(events // PER_CONFIG):
            pythia.next()
            saved = pythia8mc.Event(pythia.event)
            for _ in range(PER_CONFIG):
                pythia.event.assign(saved)
                pythia.forceHadronLevel()
    else:  # rehadronize work without reuse: a new parton-level event each time
        for _ in range(events):
            pythia.next()
            saved = pythia8mc.Event(pythia.event)
            pythia.event.assign(saved)
            pythia.forceHadronLevel()
    return events / (time.perf_counter() - start)


def full_path(mode: str, events: int, workers: int) -> float:
    """Events per second of generate_dataset; runs in the calling process."""
    from qcdtool.core.generate import GenerateOptions, generate_dataset
    from qcdtool.core.registry import create_registry
    from qcdtool.core.spec import parse_spec

    counts = (
        f"events = {events}"
        if mode == "independent"
        else (f"parton_events = {events // PER_CONFIG}\nhadronizations = {PER_CONFIG}")
    )
    text = textwrap.dedent(
        f"""
        [run]
        name = "bench"
        seed = 4711
        [generator]
        plugin = "pythia-ee"
        mode = "{mode}"
        {counts}
        """
    )
    with tempfile.TemporaryDirectory() as folder:
        spec = parse_spec(text, create_registry(), base_dir=Path(folder))
        start = time.perf_counter()
        generate_dataset(spec, GenerateOptions(workers=workers))
        return events / (time.perf_counter() - start)


def measure(kind: str, mode: str, events: int, workers: int = 1) -> dict[str, float]:
    """Run one measurement in a fresh Python process; return its rate and peak memory."""
    code = (
        "import json, resource, sys; sys.path.insert(0, 'benchmarks'); import bench_generate as b; "
        f"rate = b.{kind}({mode!r}, {events}{', ' + str(workers) if kind == 'full_path' else ''}); "
        "print(json.dumps({'rate': rate, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per measurement (a multiple of 1000)")
    parser.add_argument("--modes", nargs="+", default=["independent", "rehadronize"])
    args = parser.parse_args()
    n = args.events

    rows = []
    for mode in args.modes:
        raw = measure("raw_pythia", mode, n)["rate"]
        one = measure("full_path", mode, n, 1)
        two = measure("full_path", mode, n, 2)["rate"]
        row = {"mode": mode, "raw": raw, "one": one["rate"], "two": two, "peak_full": one["peak_mb"]}
        if mode == "rehadronize":
            row["raw_per_event"] = measure("raw_pythia", "per-event", n)["rate"]
        small = measure("full_path", mode, n // 10, 1)["peak_mb"]
        row["peak_small"] = small
        rows.append(row)
        print(json.dumps(row), flush=True)

    print()
    print(f"events per measurement: {n}")
    print(
        "| mode | raw PYTHIA (ev/s) | full path, 1 worker (ev/s) | ratio | 2 workers (ev/s) | 2 vs 1 | "
        f"peak MB at {n // 10} | peak MB at {n} | memory ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['mode']} | {row['raw']:.0f} | {row['one']:.0f} | {row['one'] / row['raw']:.2f} | "
            f"{row['two']:.0f} | {row['two'] / row['one']:.2f} | {row['peak_small']:.0f} | {row['peak_full']:.0f} | "
            f"{row['peak_full'] / row['peak_small']:.2f} |"
        )
        if "raw_per_event" in row:
            print(
                f"| rehadronize against next() + copy + forceHadronLevel() per event | {row['raw_per_event']:.0f} | "
                f"{row['one']:.0f} | {row['one'] / row['raw_per_event']:.2f} | | | | | |"
            )


if __name__ == "__main__":
    main()
