"""Measure imager throughput against a per-constituent Python loop.

Usage (from the repository root):

    PYTHONPATH=. python benchmarks/bench_imagers.py [--jets 100000] [--loop-jets 2000]

Real PYTHIA 8 hadron-level jets (e+e- -> Z -> q qbar at 91.188 GeV, R = 0.8
cones around the leading hadron) are tiled to ``--jets`` jets. Each imager
draws them as both levels of one ``render`` call, so a call draws twice
``--jets`` images; rates count every drawn image. Every timed call gets new
batch objects, so no pt, eta or phi cached by a batch is reused, and the
best of ``--repeats`` calls after one warm-up call is kept. The baseline is
the plain Python loop of ``tests/imagers/imager_reference.py`` on the same
jets, timed on ``--loop-jets`` of them and scaled per jet. The eta-phi rows
are also timed in calls of ``--unit`` jets, the size of the calls that
generation makes (one per work unit of 1,000 events). Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "imagers"))

from imager_reference import generate_events, paired_jets, reference_eta_phi

from qcdtool.core.contracts import Imager, JetBatch, PluginContext
from qcdtool.core.particles import ParticleBatch
from qcdtool.plugins.imagers.angular import AngularImager, AngularParams
from qcdtool.plugins.imagers.eta_phi import EtaPhiImager, EtaPhiParams
from qcdtool.plugins.imagers.event import EventImager, EventParams

RADIUS = 0.8


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Return the shortest wall time of ``repeats`` calls after one untimed call, in seconds."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def best_render_time(imager: Imager, make_input: Callable[[], Any], repeats: int) -> float:
    """Return the shortest wall time of one ``render`` call after one untimed call, in seconds.

    Each call gets new input objects from ``make_input``, made outside the timing.
    """
    times = []
    for _ in range(repeats + 1):
        parton, hadron = make_input(), make_input()
        start = time.perf_counter()
        imager.render(parton, hadron)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def best_sliced_time(imager: Imager, make_slices: Callable[[], list[JetBatch]], repeats: int) -> float:
    """Return the shortest wall time of rendering every slice once, after one untimed pass, in seconds.

    Each pass gets new slices from ``make_slices``, made outside the timing;
    every slice is drawn as both levels.
    """
    times = []
    for _ in range(repeats + 1):
        slices = list(zip(make_slices(), make_slices(), strict=True))
        start = time.perf_counter()
        for parton, hadron in slices:
            imager.render(parton, hadron)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def tile_jets(jets: JetBatch, n: int) -> JetBatch:
    index = np.resize(np.arange(len(jets)), n)
    return JetBatch(axis=jets.axis[index], constituents=jets.constituents.take(index))


def tile_events(events: ParticleBatch, n: int) -> ParticleBatch:
    return events.take(np.resize(np.arange(len(events)), n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=100_000, help="jets (and events) drawn per level")
    parser.add_argument("--loop-jets", type=int, default=2_000, help="jets drawn by the Python loop")
    parser.add_argument("--events", type=int, default=5_000, help="distinct PYTHIA events generated")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is kept")
    parser.add_argument("--unit", type=int, default=1_000, help="jets per call in the sliced eta-phi rows")
    args = parser.parse_args()

    parton, hadron = generate_events(args.events, seed=4711)
    _, hadron_jets = paired_jets(parton, hadron, RADIUS)
    jets = tile_jets(hadron_jets, args.jets)
    loop_jets = tile_jets(hadron_jets, args.loop_jets)
    multiplicity = float(jets.constituents.counts.mean())
    context = PluginContext(jet_radius=RADIUS)

    def make_jets() -> JetBatch:
        return tile_jets(hadron_jets, args.jets)

    def make_slices() -> list[JetBatch]:
        index = np.resize(np.arange(len(hadron_jets)), args.jets)
        return [
            JetBatch(axis=hadron_jets.axis[part], constituents=hadron_jets.constituents.take(part))
            for part in np.array_split(index, max(1, args.jets // args.unit))
        ]

    rows = []
    for size in (16, 32):
        imager = EtaPhiImager(EtaPhiParams(size=size), context)
        vectorized = 2 * args.jets / best_render_time(imager, make_jets, args.repeats)
        loop_seconds = best_time(lambda size=size: reference_eta_phi(loop_jets, RADIUS, size), 1)
        loop = args.loop_jets / loop_seconds
        rows.append((f"eta-phi, {size}x{size}", vectorized, loop))
        sliced = 2 * args.jets / best_sliced_time(imager, make_slices, args.repeats)
        rows.append((f"eta-phi, {size}x{size}, calls of {args.unit:,} jets", sliced, loop))

    for size in (16, 32):
        imager = AngularImager(AngularParams(size=size), context)
        rows.append(
            (
                f"angular, {size}x{size}",
                2 * args.jets / best_render_time(imager, make_jets, args.repeats),
                None,
            )
        )

    n_events = args.jets // 5
    events_hadron = tile_events(hadron, n_events)
    event_imager = EventImager(EventParams(), context)
    seconds = best_render_time(event_imager, lambda: tile_events(hadron, n_events), args.repeats)
    rows.append(("event, 2x31x31, hadron thrust frame", 2 * n_events / seconds, None))

    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    print(
        f"jets per level: {args.jets} (tiled from {len(hadron_jets)} PYTHIA jets, "
        f"{multiplicity:.1f} constituents on average); loop on {args.loop_jets} jets; "
        f"event imager on {n_events} events ({float(events_hadron.counts.mean()):.1f} hadrons on average)"
    )
    print()
    print("| imager | images/s (vectorized) | images/s (Python loop) | speed-up |")
    print("| --- | --- | --- | --- |")
    for name, vectorized, loop in rows:
        if loop is None:
            print(f"| {name} | {vectorized:,.0f} | | |")
        else:
            print(f"| {name} | {vectorized:,.0f} | {loop:,.0f} | {vectorized / loop:.0f}x |")


if __name__ == "__main__":
    main()
