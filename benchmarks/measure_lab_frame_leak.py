"""Measure how well the lab-frame orientation alone identifies a parton configuration.

Usage (from the repository root):

    PYTHONPATH=. python benchmarks/measure_lab_frame_leak.py [--configs 20] [--hadronizations 300]

PYTHIA 8 generates ``--configs`` parton-level e+e- -> Z -> q qbar events at
91.188 GeV and hadronizes each ``--hadronizations`` times. A nearest-class-mean
classifier is trained on half of the hadronizations of every configuration
and predicts the configuration of the other half from

- the lab-frame direction of the hadron-level thrust axis (as the outer
  product ``n n^T``, which does not depend on the sign of ``n``);
- the ``event`` imager's hadron images (pixels, default options).

Both are measured on the events as generated and after a random 3D rotation
of every event. Prints a Markdown table of top-1 accuracies (chance is
1 / configs).
"""

from __future__ import annotations

import argparse

import numpy as np
import pythia8mc
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from qcdtool.core.contracts import PluginContext
from qcdtool.core.particles import ParticleBatch, offsets_from_counts
from qcdtool.core.thrust import thrust_frame
from qcdtool.plugins.imagers.event import EventImager, EventParams

SETTINGS = (
    "Beams:idA = 11",
    "Beams:idB = -11",
    "Beams:eCM = 91.188",
    "PDF:lepton = off",
    "WeakSingleBoson:ffbar2gmZ = on",
    "23:onMode = off",
    "23:onIfAny = 1 2 3 4 5",
    "HadronLevel:all = off",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Random:setSeed = on",
)


def hadronize(n_configs: int, n_hadronizations: int, seed: int) -> tuple[ParticleBatch, NDArray[np.int64]]:
    """Return the final-state hadrons of every hadronization and its configuration label."""
    pythia = pythia8mc.Pythia("", False)
    for setting in (*SETTINGS, f"Random:seed = {seed}"):
        if not pythia.readString(setting):
            raise RuntimeError(f"PYTHIA rejected the setting {setting!r}")
    if not pythia.init():
        raise RuntimeError("PYTHIA failed to initialize")
    columns: list[list[float]] = []
    counts: list[int] = []
    labels: list[int] = []
    for config in range(n_configs):
        if not pythia.next():
            raise RuntimeError("PYTHIA failed to generate a parton-level event")
        saved = pythia8mc.Event(pythia.event)
        for _ in range(n_hadronizations):
            pythia.event.assign(saved)
            if not pythia.forceHadronLevel():
                continue
            final = [p for p in pythia.event.particles() if p.isFinal() and p.idAbs() not in (12, 14, 16)]
            columns.extend([p.px(), p.py(), p.pz(), p.e(), p.charge()] for p in final)
            counts.append(len(final))
            labels.append(config)
    table = np.asarray(columns, dtype=np.float64)
    batch = ParticleBatch(
        px=table[:, 0].copy(),
        py=table[:, 1].copy(),
        pz=table[:, 2].copy(),
        E=table[:, 3].copy(),
        pid=np.zeros(len(table), dtype=np.int32),
        charge=table[:, 4].astype(np.float32),
        offsets=offsets_from_counts(np.asarray(counts, dtype=np.int64)),
    )
    return batch, np.asarray(labels, dtype=np.int64)


def rotate_each_event(batch: ParticleBatch, seed: int) -> ParticleBatch:
    """Rotate every event by its own random 3D rotation."""
    matrices = Rotation.random(len(batch), random_state=seed).as_matrix()[batch.entry_index]
    p = np.einsum("ijk,ik->ij", matrices, np.stack([batch.px, batch.py, batch.pz], axis=1))
    return ParticleBatch(
        px=p[:, 0].copy(),
        py=p[:, 1].copy(),
        pz=p[:, 2].copy(),
        E=batch.E,
        pid=batch.pid,
        charge=batch.charge,
        offsets=batch.offsets,
    )


def nearest_class_mean_accuracy(features: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    """Train on the even-numbered hadronizations of each class, test on the odd ones."""
    position = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = labels == label
        position[members] = np.arange(members.sum())
    train, test = position % 2 == 0, position % 2 == 1
    classes = np.unique(labels)
    means = np.stack([features[train & (labels == c)].mean(axis=0) for c in classes])
    distance = ((features[test, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    return float(np.mean(classes[np.argmin(distance, axis=1)] == labels[test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=20, help="parton-level configurations")
    parser.add_argument("--hadronizations", type=int, default=300, help="hadronizations per configuration")
    parser.add_argument("--seed", type=int, default=2718, help="PYTHIA seed")
    args = parser.parse_args()

    hadrons, labels = hadronize(args.configs, args.hadronizations, args.seed)
    imager = EventImager(EventParams(), PluginContext())
    print(f"{args.configs} configurations, {len(labels)} hadronizations, chance {1 / args.configs:.3f}")
    print()
    print("| events | lab-frame thrust direction | event images (thrust frame) |")
    print("| --- | --- | --- |")
    for name, batch in (("as generated", hadrons), ("each rotated at random", rotate_each_event(hadrons, 1))):
        axis = thrust_frame(batch).axis
        direction = np.einsum("ij,ik->ijk", axis, axis).reshape(len(axis), 9)
        images = imager.render(batch, batch).hadron.reshape(len(batch), -1).astype(np.float64)
        lab = nearest_class_mean_accuracy(direction, labels)
        pixels = nearest_class_mean_accuracy(images, labels)
        print(f"| {name} | {lab:.3f} | {pixels:.3f} |")


if __name__ == "__main__":
    main()
