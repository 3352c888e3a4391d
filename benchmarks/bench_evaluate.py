"""Time the evaluate stage on one model with about 100k generated 16x16 images.

Usage::

    PYTHONPATH=. python benchmarks/bench_evaluate.py [--conditions 25000] [--per-condition 4]

What it does:

1. generates a real PYTHIA dataset in ``--folder``: two parton
   configurations, rehadronized. Half of the events are test events, so
   ``--conditions`` test conditions need about 2 x ``--conditions`` events;
2. trains and samples the ``mean-target`` test model
   (``tests/evaluation_support.py``) through the core, so the samples file
   has the format of ``qcdtool sample``, and replaces its generated images
   by the true images of random other test conditions plus Gaussian noise
   of standard deviation 5e-4 (dense images, as diffusion samples are);
3. times ``evaluate_run`` on that model with every metric except ``emd``,
   end to end (reading samples, metrics, figures, metrics.json, report.html),
   and prints each metric's own time from metrics.json;
4. times the ``emd`` metric alone for several ``max_pairs`` (and once
   without its threshold, on the dense noisy images), and ``fpd`` alone for
   several numbers of generated images.

Needs the repository root on the path (``PYTHONPATH=.``) for the test model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from qcdtool.core.evaluate import METRICS_FILE, EvaluateOptions, evaluate_run, read_samples
from qcdtool.core.train import model_pairs
from tests.evaluation_support import generate, replace_generated, train_and_sample, write_spec

SPEC = """
[run]
name = "bench-evaluate"
seed = 31

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = {hadronizations}

[[imagers]]
plugin = "eta-phi"
size = 16

[split]
validation = 0.1
test = 0.5

[sampling]
per_condition = {per_condition}
max_conditions = {conditions}

[[models]]
plugin = "mean-target"
label = "model"

[[metrics]]
plugin = "inversion-accuracy"

[[metrics]]
plugin = "pixel-distance"

[[metrics]]
plugin = "observables-w1"

[[metrics]]
plugin = "intensity-w1"

[[metrics]]
plugin = "fpd"
"""
NOISE = 5e-4


def noisy_other_truths(per_condition: int, seed: int) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
    """Generated images: the truths of random other conditions plus small Gaussian noise."""

    def make(truth: NDArray[np.float32]) -> NDArray[np.float32]:
        rng = np.random.default_rng(seed)
        n = len(truth)
        offset = rng.integers(1, n, size=(n, per_condition))
        drawn = truth[(np.arange(n)[:, None] + offset) % n]
        return (drawn + rng.normal(0.0, NOISE, size=drawn.shape)).astype(np.float32)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, default=25_000, help="test conditions sampled")
    parser.add_argument("--per-condition", type=int, default=4, help="generated images per condition")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/qcdtool-bench-evaluate"), help="run folder")
    parser.add_argument("--emd-pairs", type=int, nargs="+", default=[500, 1000, 2000, 5000], help="EMD max_pairs")
    parser.add_argument("--fpd-images", type=int, nargs="+", default=[10_000, 50_000, 100_000], help="FPD sizes")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    shutil.rmtree(args.folder, ignore_errors=True)
    hadronizations = int(np.ceil(args.conditions / 0.5 / 2 * 1.03))
    spec = write_spec(
        args.folder,
        SPEC.format(hadronizations=hadronizations, per_condition=args.per_condition, conditions=args.conditions),
    )

    # 1. Dataset, model and samples.
    start = time.perf_counter()
    generate(spec)
    print(f"dataset: {2 * hadronizations} events in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    train_and_sample(spec)
    replace_generated(spec, "model", noisy_other_truths(args.per_condition, seed=1))
    loaded = read_samples(spec, spec.models[0])
    n, k = loaded.samples.generated.shape[:2]
    print(f"samples: {n} conditions x {k} = {n * k} generated images ({time.perf_counter() - start:.1f} s)")

    # 2. The whole evaluation of one model, every metric but emd.
    start = time.perf_counter()
    outcome = evaluate_run(spec, EvaluateOptions(force=True))
    total = time.perf_counter() - start
    record = json.loads((spec.run_dir / METRICS_FILE).read_text())
    metrics = record["models"]["model"]["metrics"]
    for label, result in metrics.items():
        print(f"  {label}: {result.get('seconds', 0.0):.2f} s ({result['status']})")
    in_metrics = sum(result.get("seconds", 0.0) for result in metrics.values())
    print(f"evaluate, {n * k} generated images, all metrics but emd: {total:.1f} s")
    print(f"  of which metrics {in_metrics:.1f} s, reading, figures and report {total - in_metrics:.1f} s")
    print(f"  {outcome.message}")

    # 3. emd by number of pairs, fpd by number of generated images.
    from qcdtool.core.contracts import PluginContext, References
    from qcdtool.plugins.metrics.emd import Emd, EmdParams
    from qcdtool.plugins.metrics.fpd import Fpd, FpdParams

    pairs = model_pairs(spec, spec.models[0])
    references = References(train=pairs["train"], test=pairs["test"], seed=5)
    context = PluginContext(jet_radius=spec.jets.radius)
    Emd(EmdParams(max_pairs=2), context).compute(loaded.samples, references)  # warm-up: imports POT
    for max_pairs in args.emd_pairs:
        metric = Emd(EmdParams(max_pairs=max_pairs), context)
        start = time.perf_counter()
        result = metric.compute(loaded.samples, references)
        seconds = time.perf_counter() - start
        emd = result.values["emd"].value
        print(f"emd, max_pairs {max_pairs} (and as many baseline pairs): {seconds:.2f} s; emd {emd:.4f}")
    dense_pairs = min(args.emd_pairs)
    start = time.perf_counter()
    Emd(EmdParams(max_pairs=dense_pairs, threshold=0.0), context).compute(loaded.samples, references)
    seconds = time.perf_counter() - start
    print(f"emd, max_pairs {dense_pairs}, threshold 0 (generated images dense with noise): {seconds:.2f} s")
    for images in args.fpd_images:
        conditions = min(n, max(images // k, 1))
        subset = dataclasses.replace(
            loaded.samples,
            conditions=loaded.samples.conditions[:conditions],
            truth=loaded.samples.truth[:conditions],
            generated=loaded.samples.generated[:conditions],
            labels={name: values[:conditions] for name, values in loaded.samples.labels.items()},
        )
        start = time.perf_counter()
        result = Fpd(FpdParams(), context).compute(subset, references)
        seconds = time.perf_counter() - start
        print(f"fpd, {conditions * k} generated vs {conditions} true images: {seconds:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
