"""What a plugin of each kind is: the base classes that plugins subclass.

A plugin is a class. qcdtool reads its class attributes (``name``,
``summary``, ``Params``, ``api_version``) without instantiating it, checks
them when the plugin registers, and builds an instance with validated
parameters only when a run spec selects it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from qcdtool.core.particles import ParticleBatch

if TYPE_CHECKING:
    import logging

    from qcdtool.core.pairs import ImagePairs

#: Version of the plugin contract. A plugin declares the version it was
#: written against; qcdtool loads only plugins whose version equals this.
API_VERSION = 1


class PluginKind(enum.StrEnum):
    """The four kinds of plugin; each has its own registration hook."""

    GENERATOR = "generator"
    IMAGER = "imager"
    MODEL = "model"
    METRIC = "metric"


class PluginParams(BaseModel):
    """Base of every plugin's parameter model.

    Unknown keys are errors, values are checked strictly (a string is never
    turned into a number; an integer is accepted where a float is expected)
    and instances are immutable. Every field must have a default and a
    description, which ``qcdtool plugins show`` prints.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


@dataclass(frozen=True)
class PluginContext:
    """Run-wide settings that a plugin may need besides its own parameters."""

    seed: int = 1
    device: str = "auto"
    jet_radius: float = 0.8
    jet_algorithm: str = "antikt"
    run_dir: Path | None = None
    log: logging.Logger | None = None


class Plugin:
    """Common class attributes of all plugins."""

    kind: ClassVar[PluginKind]
    #: Unique within its kind, kebab-case (``eta-phi``).
    name: ClassVar[str]
    #: One line, shown by ``qcdtool plugins list``.
    summary: ClassVar[str]
    Params: ClassVar[type[PluginParams]] = PluginParams
    api_version: ClassVar[int] = API_VERSION

    def __init__(self, params: PluginParams, context: PluginContext) -> None:
        self.params = params
        self.context = context


# --------------------------------------------------------------------------
# Generators


@dataclass(frozen=True)
class WorkUnit:
    """One independent, reproducible piece of generation.

    A generator splits its work into units whose content depends only on the
    run seed and the unit itself, never on which process runs it or in what
    order. The dataset stores units in ``index`` order, so any number of
    workers or shards gives the same file content.
    """

    index: int
    n_events: int
    #: JSON-serializable description (configuration id, flavour group...).
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventBatch:
    """Events at parton and hadron level, as a generator returns them.

    ``flavour`` is the PDG id (1 to 5) of the quark of the hard process,
    ``config_id`` the parton-level configuration each event belongs to and
    ``hadronization`` the index of the event among the hadronizations of that
    configuration (0 in ``independent`` mode, where each configuration is
    hadronized once).
    """

    config_id: NDArray[np.int64]
    flavour: NDArray[np.int8]
    hadronization: NDArray[np.int32]
    parton: ParticleBatch
    hadron: ParticleBatch
    #: Counters to add up over the run (failed hadronizations retried...).
    counters: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.config_id)


class Generator(Plugin):
    """Produces events at parton and hadron level.

    The core calls :meth:`plan` once, :meth:`setup` once in every worker
    process and then :meth:`run` for the units that the worker is given.
    """

    kind: ClassVar[PluginKind] = PluginKind.GENERATOR

    def plan(self, n_events: int | None = None) -> list[WorkUnit]:
        """Split the requested events into work units, deterministically.

        ``n_events`` overrides the event count of the parameters when given
        (``qcdtool generate --events``).
        """
        raise NotImplementedError

    def setup(self) -> None:
        """Prepare the generator in the current process (before any ``run``)."""

    def run(self, unit: WorkUnit) -> EventBatch:
        """Generate the events of one unit."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Versions and settings to store in the dataset file (JSON-serializable)."""
        return {}


# --------------------------------------------------------------------------
# Imagers


class ImagerInput(enum.StrEnum):
    """What an imager draws: one jet per event, or the whole event."""

    JET = "jet"
    EVENT = "event"


@dataclass(frozen=True)
class JetBatch:
    """Jets of one level: axes and constituents.

    ``axis`` has shape (n, 4) with the (px, py, pz, E) of each jet in GeV.
    """

    axis: NDArray[np.float64]
    constituents: ParticleBatch

    def __len__(self) -> int:
        return len(self.axis)


@dataclass(frozen=True)
class ImageDescription:
    """How to read an imager's pixels; stored as attributes beside its images.

    Axes are listed in array order: ``axes[0]`` runs along the rows (height),
    ``axes[1]`` along the columns (width). ``extents`` gives the lower and
    upper edge of each axis in ``units``.
    """

    axes: tuple[str, str]
    extents: tuple[tuple[float, float], tuple[float, float]]
    units: str
    intensity: str
    channels: tuple[str, ...]
    shape: tuple[int, int, int]

    def to_attrs(self) -> dict[str, Any]:
        """Flatten into HDF5-storable attributes."""
        return {
            "axes": list(self.axes),
            "extents": np.asarray(self.extents, dtype=np.float64),
            "units": self.units,
            "intensity": self.intensity,
            "channels": list(self.channels),
            "shape": np.asarray(self.shape, dtype=np.int64),
        }


@dataclass(frozen=True)
class ImageSet:
    """Images of both levels for the same events, (n, C, H, W) float32 each.

    ``per_image`` contains extra per-event columns the imager wants stored,
    for example the momentum fraction that fell outside the window.
    """

    parton: NDArray[np.float32]
    hadron: NDArray[np.float32]
    per_image: Mapping[str, NDArray[np.generic]] = field(default_factory=dict)


class Imager(Plugin):
    """Turns jets (or whole events) of both levels into images.

    Both levels are drawn by the same imager with the same parameters, in one
    call, so that an imager whose frame comes from one level (the event
    imager) can draw the other level in that same frame.
    """

    kind: ClassVar[PluginKind] = PluginKind.IMAGER
    input: ClassVar[ImagerInput] = ImagerInput.JET

    def describe(self) -> ImageDescription:
        """Axes, extents, units and intensity of the images this imager makes."""
        raise NotImplementedError

    def render(self, parton: JetBatch | ParticleBatch, hadron: JetBatch | ParticleBatch) -> ImageSet:
        """Draw the images of ``n`` events.

        Jet imagers receive :class:`JetBatch` objects; event imagers receive
        all final-state particles of each event as :class:`ParticleBatch`.
        """
        raise NotImplementedError


# --------------------------------------------------------------------------
# Models


class Direction(enum.StrEnum):
    """Which way a model maps images."""

    #: parton image -> distribution of hadron images
    FORWARD = "forward"
    #: hadron image -> the parton image it came from
    INVERSE = "inverse"


@dataclass(frozen=True)
class TrainingProgress:
    """What a model reports as it trains, for the progress bar."""

    step: int
    total_steps: int
    loss: float
    images_per_second: float


@dataclass(frozen=True)
class TrainingRun:
    """Where and how a model trains; set by the core.

    ``folder`` (the run's ``models/<label>/``) receives the model's
    checkpoints and ``loss.csv``: a header line, then one line per logged
    step, with at least the columns ``step`` and ``loss``. ``device`` is a
    torch device name already resolved from the spec (``cpu``, ``cuda``,
    ``mps``).
    """

    folder: Path
    seed: int
    device: str
    resume: bool = False
    on_progress: Callable[[TrainingProgress], None] | None = None


class Model(Plugin):
    """A conditional generative model of one level's image given the other's.

    Its ``Params`` must have a ``direction`` field (:class:`Direction`):
    ``forward`` models hadron images given parton images, ``inverse`` parton
    images given hadron images. Images reach the model as stored in the
    dataset (float32, the imager's intensity); any transform of
    intensities is the model's own and must be stored with its checkpoint.
    """

    kind: ClassVar[PluginKind] = PluginKind.MODEL
    #: Parameters that do not change what training produces (how often to
    #: log, how many images to sample at a time...). Changing them does not
    #: make a trained model out of date.
    runtime_params: ClassVar[frozenset[str]] = frozenset()

    def fit(self, train: ImagePairs, validation: ImagePairs, run: TrainingRun) -> dict[str, float]:
        """Train on ``train`` (validating on ``validation``); return summary numbers.

        Writes checkpoints to ``run.folder``. With ``run.resume`` it continues
        from the last checkpoint there, so that the loss curve on CPU equals
        that of an uninterrupted run with the same seed.
        """
        raise NotImplementedError

    def load(self, folder: Path, device: str) -> None:
        """Restore the trained model from the checkpoint in ``folder``.

        Raises a QcdtoolError for a checkpoint of another model, image shape
        or format version.
        """
        raise NotImplementedError

    def sample(
        self,
        conditions: NDArray[np.float32],
        n_per_condition: int,
        sampler: str,
        steps: int | None,
        seed: int,
        device: str,
    ) -> NDArray[np.float32]:
        """Draw ``n_per_condition`` targets for each condition: (n, K, C, H, W) float32.

        ``sampler`` is ``ddpm`` or ``ddim``; ``steps`` the number of sampling
        steps (None: the model's default).
        """
        raise NotImplementedError


# --------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True)
class MetricValue:
    """One number a metric reports, with its uncertainty and a reference.

    ``baseline`` is the value the metric takes on truth against truth (or a
    ceiling or chance level), so that a result can be judged against it.
    ``better`` says which way the value improves (``higher`` or ``lower``);
    None marks a reference number that does not depend on how good the
    model is, such as a classifier's ceiling, and the report ranks models
    only on values that have a direction.
    """

    value: float
    uncertainty: float
    baseline: float | None = None
    note: str = ""
    better: Literal["higher", "lower"] | None = None


@dataclass(frozen=True)
class SampleSet:
    """What one model generated on the test conditions, with the truth and labels.

    Images are in the dataset's intensity units: ``conditions`` and
    ``truth`` (n, C, H, W), ``generated`` (n, K, C, H, W) with K samples per
    condition. ``labels`` contains ``config_id``, ``flavour`` and
    ``hadronization`` (n,). ``image`` holds the imager's description
    attributes (``axes``, ``extents``, ``units``, ``intensity``, ``channels``).
    """

    model: str
    plugin: str
    direction: Direction
    conditions: NDArray[np.float32]
    truth: NDArray[np.float32]
    generated: NDArray[np.float32]
    labels: Mapping[str, NDArray[np.generic]]
    image: Mapping[str, Any]


@dataclass(frozen=True)
class References:
    """Data a metric may use beyond the samples: the dataset's own image pairs.

    ``train`` and ``test`` are the image pairs of the model's imager and
    direction in the training and test sets (read lazily), for example to
    train a classifier of configurations on true images or to split the true
    hadronizations of a configuration into two halves for a truth-vs-truth
    baseline.
    """

    train: ImagePairs
    test: ImagePairs
    seed: int


@dataclass(frozen=True)
class MetricResult:
    """Named values of one metric for one model, with optional figures and tables.

    ``figures`` maps a name to a matplotlib Figure; the core saves each as
    PNG and PDF and embeds it in the report. ``tables`` maps a name to rows
    of cells (the first row is the header), e.g. a confusion matrix.
    """

    values: Mapping[str, MetricValue]
    figures: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, list[list[str]]] = field(default_factory=dict)


class Metric(Plugin):
    """Scores generated images against the truth."""

    kind: ClassVar[PluginKind] = PluginKind.METRIC
    #: Directions the metric makes sense for; the core skips it for the others.
    directions: ClassVar[frozenset[Direction]] = frozenset({Direction.FORWARD, Direction.INVERSE})

    def compute(self, samples: SampleSet, references: References) -> MetricResult:
        """Score one model's samples."""
        raise NotImplementedError


#: The registration callable handed to every ``register_<kind>s`` hook.
Register = Callable[[type[Plugin]], None]

BASE_CLASSES: dict[PluginKind, type[Plugin]] = {
    PluginKind.GENERATOR: Generator,
    PluginKind.IMAGER: Imager,
    PluginKind.MODEL: Model,
    PluginKind.METRIC: Metric,
}
