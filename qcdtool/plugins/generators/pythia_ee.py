"""e+e- -> gamma*/Z -> q qbar with PYTHIA 8, at parton and at hadron level.

Two PYTHIA instances do the work:

- the *parton* instance generates the hard process and the shower
  (``HadronLevel:all = off`` in ``rehadronize`` mode);
- the *hadronizer* (``ProcessLevel:all = off``) hadronizes a given parton
  record. A user hook restores an explicit copy of the saved record at the
  start of every event, so ``nextBatch`` hadronizes one configuration many
  times and returns whole batches as awkward arrays, with no Python loop
  over events or particles.

In ``independent`` mode the parton instance runs with hadronization on and
each event is its own configuration.

Every unit of work reseeds its instances with seeds derived from the run
seed and the unit, so a unit's events do not depend on which process makes
them or what it made before.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator

from qcdtool.core.contracts import EventBatch, Generator, PluginContext, PluginParams, WorkUnit
from qcdtool.core.errors import QcdtoolError
from qcdtool.core.hookspecs import hookimpl
from qcdtool.core.particles import PARTICLE_COLUMNS, ParticleBatch, offsets_from_counts
from qcdtool.core.seeds import derive_seed

log = logging.getLogger(__name__)

#: PDG ids of the quark flavours the hard process may produce.
FLAVOUR_IDS: dict[str, int] = {"d": 1, "u": 2, "s": 3, "c": 4, "b": 5}
NEUTRINO_IDS = (12, 14, 16)
#: Events per work unit. Fixed, because the unit boundaries decide the seeds.
UNIT_EVENTS = 1000
#: Event counts of each mode, with their defaults.
MODE_COUNTS: dict[str, dict[str, int]] = {
    "rehadronize": {"parton_events": 2, "hadronizations": 1000},
    "independent": {"events": 10000},
}
#: Settings qcdtool makes itself, by key prefix (lower case): what controls
#: them, and what to do instead.
RESERVED_SETTINGS: dict[str, tuple[str, str]] = {
    "beams:": ("ecm (qcdtool sets e+e- beams at ecm)", "set [generator] ecm instead"),
    "pdf:lepton": (
        "the process definition (no beam photon radiation, so every event has exactly ecm)",
        "it is fixed for this generator",
    ),
    "weaksingleboson:": ("the process definition (gamma*/Z -> q qbar)", "it is fixed for this generator"),
    "23:": (
        "flavors (the Z decay channels; of the Z's own properties only m0, mWidth, mMin and mMax may be set)",
        "set [generator] flavors instead",
    ),
    "processlevel:all": ("the generation mode", "set [generator] mode instead"),
    "hadronlevel:all": ("the generation mode", "set [generator] mode instead"),
    "random:": ("the run seed", "set [run] seed instead"),
}
#: Properties of the Z (id 23) that extra settings may change: the mass
#: window of the gamma*/Z. Its decay channels are set from ``flavors``.
OPEN_Z_SETTINGS = ("23:m0", "23:mwidth", "23:mmin", "23:mmax")
#: Values that PYTHIA reads as a true or a false flag (lower case); any other
#: word it reads as false without complaint.
FLAG_WORDS = ("on", "off", "true", "false", "yes", "no", "ok", "1", "0")
#: Particle-data properties by the kind of value they hold (lower case), as
#: in ``id:property = value``, with the ParticleData method that reads them.
PARTICLE_PARMS = {"m0": "m0", "mwidth": "mWidth", "mmin": "mMin", "mmax": "mMax", "tau0": "tau0"}
PARTICLE_MODES = {"spintype": "spinType", "chargetype": "chargeType", "coltype": "colType"}
PARTICLE_FLAGS = {
    "maydecay": "mayDecay",
    "isresonance": "isResonance",
    "isvisible": "isVisible",
    "varwidth": "varWidth",
    "doexternaldecay": "doExternalDecay",
    "doforcewidth": "doForceWidth",
    "taucalc": "tauCalc",
}
#: Settings that stop PYTHIA from listing or counting events during
#: generation. Its init() output (the processes, the changed settings and
#: particle data) still goes to the run's log.
QUIET_EVENTS = (
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowProcess = 0",
    "Next:numberShowInfo = 0",
)
#: ``nextBatch`` gives up after this many tries per requested event.
MAX_TRIES_PER_EVENT = 10.0


class PythiaEEParams(PluginParams):
    """Parameters of the ``pythia-ee`` generator."""

    ecm: float = Field(91.188, gt=0.0, le=1.0e5, description="Centre-of-mass energy in GeV.")
    flavors: list[str] = Field(
        default_factory=lambda: ["udscb"],
        min_length=1,
        description=(
            "Quark flavour groups of the hard process. Each entry is a group of the letters d, u, s, c, b "
            "('uds' is the light quarks); configurations cycle through the groups, and within a group the "
            "flavour follows the gamma*/Z branching ratios."
        ),
    )
    mode: Literal["rehadronize", "independent"] = Field(
        "rehadronize",
        description=(
            "rehadronize: parton_events configurations, each hadronized `hadronizations` times; "
            "independent: `events` events, each with its own parton configuration."
        ),
    )
    events: int | None = Field(
        None, ge=1, description="Number of events in independent mode (default 10000); not used in rehadronize mode."
    )
    parton_events: int | None = Field(
        None,
        ge=1,
        description=(
            "Distinct parton-level configurations in rehadronize mode (default 2); not used in independent mode."
        ),
    )
    hadronizations: int | None = Field(
        None,
        ge=1,
        description=(
            "Hadronizations of each configuration in rehadronize mode (default 1000); not used in independent mode."
        ),
    )
    pythia: list[str] = Field(
        default_factory=list,
        description="Extra PYTHIA settings, applied in order to both instances, e.g. 'StringZ:aLund = 0.7'.",
    )
    final_state: Literal["visible", "all", "charged"] = Field(
        "visible",
        description="Hadron-level particles kept: visible (all but neutrinos), all, or charged only.",
    )

    @field_validator("flavors")
    @classmethod
    def _check_flavors(cls, groups: list[str]) -> list[str]:
        seen: set[str] = set()
        for group in groups:
            if not group:
                raise ValueError("an empty flavour group; use letters d, u, s, c, b, e.g. 'uds' or 'b'")
            for letter in group:
                if letter not in FLAVOUR_IDS:
                    raise ValueError(
                        f"unknown flavour '{letter}' in '{group}'; allowed: d, u, s, c, b "
                        "(combine letters for a group, e.g. 'uds')"
                    )
                if letter in seen:
                    raise ValueError(f"flavour '{letter}' appears in more than one group")
                seen.add(letter)
        return groups

    @field_validator("pythia")
    @classmethod
    def _check_pythia_settings(cls, settings: list[str]) -> list[str]:
        for index, setting in enumerate(settings):
            key = _split_setting(setting)[0].lower()
            if key in OPEN_Z_SETTINGS:
                continue
            for prefix, (owner, advice) in RESERVED_SETTINGS.items():
                if key.startswith(prefix):
                    raise ValueError(f"pythia[{index}] = {setting!r} changes what qcdtool sets from {owner}; {advice}")
        problems = _setting_problems(settings)
        if problems:
            raise ValueError(problems[0])
        return settings

    @model_validator(mode="after")
    def _check_ecm_in_mass_window(self) -> PythiaEEParams:
        mass_settings = tuple(s for s in self.pythia if _split_setting(s)[0].lower() in OPEN_Z_SETTINGS)
        low, high = _gamma_z_mass_window(mass_settings)
        if self.ecm < low:
            raise ValueError(
                f"ecm = {self.ecm:g} GeV is below the lowest gamma*/Z mass that PYTHIA generates, "
                f"23:mMin = {low:g} GeV, so no event could be made; lower it in pythia, e.g. "
                f"'23:mMin = {self.ecm / 2:g}'"
            )
        if high > low and self.ecm > high:
            raise ValueError(
                f"ecm = {self.ecm:g} GeV is above the highest gamma*/Z mass that PYTHIA generates, "
                f"23:mMax = {high:g} GeV, so no event could be made; raise it in pythia, or set '23:mMax = 0' "
                "for no upper limit"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _mode_defaults(cls, data: Any) -> Any:
        """Fill in the counts of the chosen mode; reject counts of the other mode."""
        if not isinstance(data, dict):
            return data
        mode = data.get("mode", "rehadronize")
        if mode not in MODE_COUNTS:
            return data  # the Literal check reports the invalid mode
        data = dict(data)
        for key, default in MODE_COUNTS[mode].items():
            data.setdefault(key, default)
        for other_mode, counts in MODE_COUNTS.items():
            for key in counts:
                if other_mode != mode and key in data and key not in MODE_COUNTS[mode]:
                    made = "`events` events" if mode == "independent" else "parton_events x hadronizations events"
                    raise ValueError(f"'{key}' has no effect in mode '{mode}', which makes {made}; remove it")
        return data


def _split_setting(setting: str) -> tuple[str, str]:
    """Return the key and the value of ``key = value`` (or ``key value``, which PYTHIA also reads)."""
    if "=" in setting:
        key, value = setting.split("=", 1)
    else:
        key, _, value = setting.strip().partition(" ")
    return key.strip(), value.strip()


def _setting_problems(settings: Sequence[str]) -> list[str]:
    """Describe each setting that PYTHIA rejects or would read as another value than the one written.

    PYTHIA rejects unknown keys and values out of range. A malformed value it
    reads without complaint: ``0,7`` as the number 0, ``3.5`` as the whole
    number 3, any word but on, true, yes, ok or 1 as the flag off. So each
    value is also parsed as the kind of setting it belongs to. PYTHIA's
    messages are discarded.
    """
    if not settings:
        return []
    import os

    import pythia8mc

    from qcdtool.core.capture import redirect_fd1

    problems = []
    with redirect_fd1(os.devnull):
        pythia = pythia8mc.Pythia("", False)
        for index, setting in enumerate(settings):
            if not pythia.readString(setting):
                problems.append(
                    f"PYTHIA rejects the setting {setting!r} (pythia[{index}]); check its name and value against "
                    "the PYTHIA manual"
                )
                continue
            misread = _misread_value(pythia, setting)
            if misread is not None:
                problems.append(f"pythia[{index}] = {setting!r}: {misread}")
    return problems


def _misread_value(pythia: Any, setting: str) -> str | None:
    """Describe how PYTHIA reads the value of ``setting`` when that differs from the text; None otherwise."""
    key, value = _split_setting(setting)
    settings = pythia.settings
    if settings.isParm(key):
        return _check_value(value, "parm", lambda: settings.parm(key))
    if settings.isMode(key):
        return _check_value(value, "mode", lambda: settings.mode(key))
    if settings.isFlag(key):
        return _check_value(value, "flag", lambda: settings.flag(key))
    particle, _, prop = key.partition(":")
    if not particle.strip().lstrip("-").isdigit():
        return None
    code, prop = int(particle), prop.strip().lower()
    data = pythia.particleData
    for kind, methods in (("parm", PARTICLE_PARMS), ("mode", PARTICLE_MODES), ("flag", PARTICLE_FLAGS)):
        if prop in methods:
            return _check_value(value, kind, partial(getattr(data, methods[prop]), code))
    return None


def _check_value(value: str, kind: str, read_stored: Any) -> str | None:
    """Describe why ``value`` is not a valid ``kind`` (parm, mode or flag) and what PYTHIA stored; None if valid."""
    if kind == "flag":
        if value.lower() in FLAG_WORDS:
            return None
        return f"{value!r} is not a flag, and PYTHIA reads it as {'on' if read_stored() else 'off'}; write on or off"
    parse = float if kind == "parm" else int
    try:
        parse(value)
    except ValueError:
        expected = "a number" if kind == "parm" else "a whole number"
        hint = "write a decimal point, not a comma" if "," in value else f"write {expected}"
        return f"{value!r} is not {expected}, and PYTHIA reads it as {read_stored()!r}; {hint}"
    return None


@cache
def _gamma_z_mass_window(settings: tuple[str, ...]) -> tuple[float, float]:
    """Return PYTHIA's (23:mMin, 23:mMax) in GeV after ``settings``; mMax <= mMin means no upper limit.

    ``settings`` contains only settings of :data:`OPEN_Z_SETTINGS`, which keeps
    the number of distinct cache keys small.
    """
    import os

    import pythia8mc

    from qcdtool.core.capture import redirect_fd1

    with redirect_fd1(os.devnull):
        pythia = pythia8mc.Pythia("", False)
        for setting in settings:
            pythia.readString(setting)
        return float(pythia.particleData.mMin(23)), float(pythia.particleData.mMax(23))


def pythia_version() -> str:
    """Installed version of the pythia8mc package."""
    return importlib.metadata.version("pythia8mc")


class PythiaSettingError(QcdtoolError):
    """A PYTHIA setting that PYTHIA rejected, or an initialization that failed."""


class PythiaEE(Generator):
    """PYTHIA 8 e+e- annihilation to quarks at parton and hadron level."""

    name: ClassVar[str] = "pythia-ee"
    summary: ClassVar[str] = "PYTHIA 8 e+e- -> gamma*/Z -> q qbar, rehadronized or independent events"
    Params = PythiaEEParams

    def __init__(self, params: PythiaEEParams, context: PluginContext) -> None:
        super().__init__(params, context)
        self.params: PythiaEEParams = params
        self._parton: dict[int, Any] = {}
        self._hadronizer: _Hadronizer | None = None
        # Charges of the PDG ids met so far, sorted by id.
        self._charge_ids = np.full(1, np.iinfo(np.int32).min, dtype=np.int32)
        self._charge_values = np.zeros(1, dtype=np.float32)

    # -- planning ----------------------------------------------------------

    def _count(self, key: str) -> int:
        value = getattr(self.params, key)
        if value is None:
            raise RuntimeError(f"'{key}' is not set for mode '{self.params.mode}'")
        return int(value)

    def plan(self, n_events: int | None = None) -> list[WorkUnit]:
        """Split into units of at most UNIT_EVENTS events.

        ``rehadronize``: each configuration's hadronizations are split into
        blocks; ``n_events`` (if given) replaces ``hadronizations``.
        ``independent``: events are shared out evenly over the flavour
        groups; ``n_events`` replaces ``events``.
        """
        groups = self.params.flavors
        units: list[WorkUnit] = []
        if self.params.mode == "rehadronize":
            per_config = n_events if n_events is not None else self._count("hadronizations")
            for config in range(self._count("parton_events")):
                for first in range(0, per_config, UNIT_EVENTS):
                    count = min(UNIT_EVENTS, per_config - first)
                    info = {"config": config, "group": config % len(groups), "first": first}
                    units.append(WorkUnit(index=len(units), n_events=count, info=info))
            return units

        total = n_events if n_events is not None else self._count("events")
        per_group = [total // len(groups) + (1 if g < total % len(groups) else 0) for g in range(len(groups))]
        blocks = [[(first, min(UNIT_EVENTS, n - first)) for first in range(0, n, UNIT_EVENTS)] for n in per_group]
        next_config = 0
        for position in range(max((len(b) for b in blocks), default=0)):
            for group, group_blocks in enumerate(blocks):
                if position < len(group_blocks):
                    first, count = group_blocks[position]
                    info = {"config": next_config, "group": group, "first": first}
                    units.append(WorkUnit(index=len(units), n_events=count, info=info))
                    next_config += count
        return units

    # -- set-up ------------------------------------------------------------

    def setup(self) -> None:
        """Initialize every PYTHIA instance; raise PythiaSettingError on a rejected setting."""
        for group in range(len(self.params.flavors)):
            self._parton_instance(group)
        if self.params.mode == "rehadronize":
            self._hadronizer_instance()

    def _parton_instance(self, group: int) -> Any:
        if group not in self._parton:
            quark_ids = " ".join(str(FLAVOUR_IDS[letter]) for letter in self.params.flavors[group])
            settings = [
                "Beams:idA = 11",
                "Beams:idB = -11",
                f"Beams:eCM = {self.params.ecm!r}",
                "PDF:lepton = off",
                "WeakSingleBoson:ffbar2gmZ = on",
                "23:onMode = off",
                f"23:onIfAny = {quark_ids}",
            ]
            if self.params.mode == "rehadronize":
                settings.append("HadronLevel:all = off")
            self._parton[group] = _make_pythia(settings, self.params.pythia, None)
        return self._parton[group]

    def _hadronizer_instance(self) -> _Hadronizer:
        if self._hadronizer is None:
            hook = _restore_hook_class()()
            pythia = _make_pythia(["ProcessLevel:all = off"], self.params.pythia, hook)
            hook.pythia = pythia
            self._hadronizer = _Hadronizer(pythia, hook)
        return self._hadronizer

    def metadata(self) -> dict[str, Any]:
        """PYTHIA version and the settings every instance received."""
        return {
            "pythia8mc": pythia_version(),
            "process": "e+e- -> gamma*/Z -> q qbar (WeakSingleBoson:ffbar2gmZ, PDF:lepton = off)",
            "flavour_groups": list(self.params.flavors),
            "mode": self.params.mode,
            "extra_settings": list(self.params.pythia),
            "unit_events": UNIT_EVENTS,
        }

    # -- generation --------------------------------------------------------

    def run(self, unit: WorkUnit) -> EventBatch:
        """Generate one unit's events."""
        config = int(unit.info["config"])
        group = int(unit.info["group"])
        first = int(unit.info["first"])
        seed = self.context.seed
        if self.params.mode == "rehadronize":
            return self._run_rehadronize(unit, config, group, first, seed)
        return self._run_independent(unit, config, group, seed)

    def _run_independent(self, unit: WorkUnit, config: int, group: int, seed: int) -> EventBatch:
        pythia = self._parton_instance(group)
        pythia.rndm.init(derive_seed(seed, "pythia-ee", "independent", group, unit.info["first"]))
        calls_before = _next_calls(pythia)
        batch = pythia.nextBatch(unit.n_events, MAX_TRIES_PER_EVENT)
        calls = _next_calls(pythia) - calls_before
        columns = _record_columns(batch)
        parton, hadron, flavour = self._split_levels(columns)
        n = len(parton)
        return EventBatch(
            config_id=np.arange(config, config + n, dtype=np.int64),
            flavour=flavour,
            hadronization=np.zeros(n, dtype=np.int32),
            parton=parton,
            hadron=hadron,
            counters={"failed_events": calls - n},
        )

    def _run_rehadronize(self, unit: WorkUnit, config: int, group: int, first: int, seed: int) -> EventBatch:
        # 1. The parton-level configuration: always regenerated from its own
        #    seed, so every unit of this configuration gets the same record.
        pythia = self._parton_instance(group)
        pythia.rndm.init(derive_seed(seed, "pythia-ee", "parton", config))
        if not pythia.next():
            raise RuntimeError(f"PYTHIA failed to generate parton configuration {config}")
        flavour = _hard_quark(pythia.event)
        hadronizer = self._hadronizer_instance()
        hadronizer.hook.saved = _final_state_copy(pythia.event)

        # 2. Its hadronizations: the hook restores the saved copy before every
        #    event, also before a retry of a failed hadronization.
        hadronizer.pythia.rndm.init(derive_seed(seed, "pythia-ee", "hadronize", config, first))
        hadronizer.hook.calls = 0
        batch = hadronizer.pythia.nextBatch(unit.n_events, MAX_TRIES_PER_EVENT)
        columns = _record_columns(batch)
        parton, hadron, _ = self._split_levels(columns)
        n = len(parton)
        return EventBatch(
            config_id=np.full(n, config, dtype=np.int64),
            flavour=np.full(n, flavour, dtype=np.int8),
            hadronization=np.arange(first, first + n, dtype=np.int32),
            parton=parton,
            hadron=hadron,
            counters={"failed_hadronizations": hadronizer.hook.calls - n},
        )

    def _split_levels(self, columns: dict[str, NDArray[Any]]) -> tuple[ParticleBatch, ParticleBatch, NDArray[np.int8]]:
        """Parton- and hadron-level final states, and the hard-process flavour, of whole records."""
        offsets = columns["offsets"]
        status = columns["status"]
        pid = columns["id"]
        n_events = len(offsets) - 1
        counts = np.diff(offsets)
        event = np.repeat(np.arange(n_events, dtype=np.int64), counts)
        local = np.arange(len(status), dtype=np.int64) - np.repeat(offsets[:-1], counts)

        # 1. Parton level: let N be the first entry with |status| >= 71 (the
        #    partons copied for hadronization); keep entries below N that are
        #    final (status > 0) or whose daughters start at or after N.
        first_collected = _first_per_event(np.abs(status) >= 71, event, local, n_events, np.iinfo(np.int64).max)
        boundary = first_collected[event]
        parton_mask = (local < boundary) & ((status > 0) | (columns["daughter1"] >= boundary))

        # 2. Hadron level: final particles, without neutrinos unless asked.
        hadron_mask = status > 0
        absolute_id = np.abs(pid)
        if self.params.final_state != "all":
            hadron_mask &= (absolute_id != 12) & (absolute_id != 14) & (absolute_id != 16)

        # 3. Charges, looked up only for the particles that are kept.
        charge = np.zeros(len(pid), dtype=np.float32)
        kept = parton_mask | hadron_mask
        charge[kept] = self._charge(pid[kept])
        if self.params.final_state == "charged":
            hadron_mask &= charge != 0

        # 4. Flavour: the first quark of the hard process (status -23).
        hard = (np.abs(status) == 23) & (absolute_id >= 1) & (absolute_id <= 5)
        flavour = _first_per_event(hard, event, absolute_id, n_events, 0).astype(np.int8)
        return (
            _particle_batch(columns, charge, event, parton_mask, n_events),
            _particle_batch(columns, charge, event, hadron_mask, n_events),
            flavour,
        )

    def _charge(self, pid: NDArray[np.int32]) -> NDArray[np.float32]:
        """Electric charge of each particle from a sorted table of PDG ids, grown as new ids appear."""
        position = np.searchsorted(self._charge_ids, pid)
        position = np.minimum(position, len(self._charge_ids) - 1)
        known = self._charge_ids[position] == pid
        if not known.all():
            data = next(iter(self._parton.values())).particleData
            new_ids = np.unique(pid[~known])
            ids = np.concatenate([self._charge_ids, new_ids])
            values = np.concatenate([self._charge_values, [float(data.charge(int(code))) for code in new_ids]])
            order = np.argsort(ids)
            self._charge_ids = ids[order].astype(np.int32)
            self._charge_values = values[order].astype(np.float32)
            position = np.searchsorted(self._charge_ids, pid)
        return self._charge_values[position]


def _first_per_event(
    mask: NDArray[np.bool_], event: NDArray[np.int64], values: NDArray[Any], n_events: int, missing: int
) -> NDArray[np.int64]:
    """``values`` at the first entry of each event where ``mask`` holds; ``missing`` where it never does.

    Entries are grouped by event, so the first of each run of equal event
    numbers among the masked entries is that event's first.
    """
    chosen = np.flatnonzero(mask)
    owners = event[chosen]
    starts = np.ones(len(chosen), dtype=bool)
    starts[1:] = owners[1:] != owners[:-1]
    result = np.full(n_events, missing, dtype=np.int64)
    result[owners[starts]] = values[chosen[starts]]
    return result


# --------------------------------------------------------------------------
# PYTHIA plumbing


def _next_calls(pythia: Any) -> int:
    """Return how many times ``next()`` has been called (PYTHIA's event counter 3)."""
    return int(pythia.infoPython().getCounter(3))


def _make_pythia(settings: Sequence[str], extra: Sequence[str], hook: Any) -> Any:
    """Create and initialize a quiet PYTHIA instance; raise PythiaSettingError on a rejected setting."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    quiet = [*QUIET_EVENTS, "Random:setSeed = on", "Random:seed = 1"]
    for setting in [*quiet, *settings]:
        if not pythia.readString(setting):
            raise RuntimeError(f"PYTHIA rejected qcdtool's own setting {setting!r}")
    for index, setting in enumerate(extra):
        if not pythia.readString(setting):
            raise PythiaSettingError(
                f"PYTHIA rejected the setting {setting!r} (generator.pythia[{index}]); check the name "
                "and the value against the PYTHIA manual; PYTHIA's message is in the run's log"
            )
    if hook is not None:
        pythia.setUserHooksPtr(hook)
    if not pythia.init():
        reason = _init_failure_reason([*settings, *extra])
        raise PythiaSettingError(
            f"PYTHIA failed to initialize ({reason}) with these settings: " + "; ".join([*settings, *extra])
        )
    return pythia


def _init_failure_reason(settings: Sequence[str]) -> str:
    """PYTHIA's own error lines for a failed ``init()``.

    PYTHIA prints them to file descriptor 1, which is the run's log, so the
    initialization is repeated on a fresh instance whose output goes to a
    temporary file that can be read back.
    """
    import tempfile

    import pythia8mc

    from qcdtool.core.capture import redirect_fd1

    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "pythia.txt"
        with redirect_fd1(output):
            pythia = pythia8mc.Pythia("", False)
            for setting in settings:
                pythia.readString(setting)
            pythia.init()
        lines = output.read_text(errors="replace").splitlines()
    errors = [line.strip() for line in lines if "PYTHIA Error" in line or "PYTHIA Abort" in line]
    return "; ".join(dict.fromkeys(errors)) or "PYTHIA gave no reason"


@cache
def _restore_hook_class() -> type:
    """The hadronizer's user hook, defined on first use so that importing this module stays cheap."""
    import pythia8mc

    class RestoreRecord(pythia8mc.UserHooks):  # type: ignore[misc]
        """Before every event, replace the hadronizer's record by a copy of the saved one."""

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.saved: Any = None
            self.pythia: Any = None

        def onBeginEvent(self) -> None:
            self.calls += 1
            # assign() copies every particle into the hadronizer's own record;
            # the saved event itself is never handed to PYTHIA.
            self.pythia.event.assign(self.saved)

    return RestoreRecord


class _Hadronizer:
    def __init__(self, pythia: Any, hook: Any) -> None:
        self.pythia = pythia
        self.hook = hook


def _final_state_copy(event: Any) -> Any:
    """An explicit copy of the final state of a parton-level record.

    Only the system entry and the final particles (partons about to
    hadronize, and photons or leptons of the shower) are kept, with their
    colour tags; mother and daughter links are dropped. Hadronization reads
    nothing else, and a record a third of the size makes every restore and
    every returned batch cheaper.
    """
    import pythia8mc

    if event.sizeJunction() > 0:
        return pythia8mc.Event(event)  # junction links need the full record
    saved = pythia8mc.Event(event)
    saved.reset()
    for index in range(1, event.size()):
        particle = event[index]
        if particle.isFinal():
            saved.append(
                particle.id(),
                particle.status(),
                0,
                0,
                0,
                0,
                particle.col(),
                particle.acol(),
                particle.px(),
                particle.py(),
                particle.pz(),
                particle.e(),
                particle.m(),
                particle.scale(),
                particle.pol(),
            )
    return saved


def _hard_quark(event: Any) -> int:
    """PDG id (1..5) of the quark of the hard process."""
    for index in range(event.size()):
        particle = event[index]
        if abs(particle.status()) == 23 and 1 <= particle.idAbs() <= 5:
            return int(particle.idAbs())
    raise RuntimeError("no quark of the hard process (status 23) in the PYTHIA record")


def _record_columns(batch: Any) -> dict[str, NDArray[Any]]:
    """Flat numpy columns and offsets of a ``nextBatch`` result, without copies where possible."""
    import awkward as ak

    particles = batch["prt"]
    if not _plain_record(particles.layout):
        particles = ak.to_packed(particles)
    layout = particles.layout
    offsets = np.asarray(layout.offsets.data, dtype=np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    record = layout.content
    momentum = record.content("p")

    # Field i of a record array belongs to record i, so the particles of the
    # batch are entries first..last of every field.
    def column(content: Any) -> NDArray[Any]:
        return np.asarray(content.data)[first:last]

    return {
        "offsets": offsets - first,
        "id": column(record.content("id")).astype(np.int32, copy=False),
        "status": column(record.content("status")),
        "daughter1": column(record.content("daughter1")),
        "px": column(momentum.content("px")),
        "py": column(momentum.content("py")),
        "pz": column(momentum.content("pz")),
        "E": column(momentum.content("e")),
    }


def _plain_record(layout: Any) -> bool:
    """Tell whether the columns can be read from ``layout`` as it is, which nextBatch's arrays allow.

    That needs lists given by offsets over a record array whose fields (and
    those of its momentum record) are plain numpy buffers. Anything else is
    packed first, at the cost of a copy of every field.
    """
    import awkward as ak

    contents = ak.contents
    if not isinstance(layout, contents.ListOffsetArray) or not isinstance(layout.content, contents.RecordArray):
        return False
    record = layout.content
    if not all(record.has_field(name) for name in ("id", "status", "daughter1", "p")):
        return False
    momentum = record.content("p")
    return (
        all(isinstance(record.content(name), contents.NumpyArray) for name in ("id", "status", "daughter1"))
        and isinstance(momentum, contents.RecordArray)
        and all(isinstance(momentum.content(name), contents.NumpyArray) for name in ("px", "py", "pz", "e"))
    )


def _particle_batch(
    columns: dict[str, NDArray[Any]],
    charge: NDArray[np.float32],
    event: NDArray[np.int64],
    mask: NDArray[np.bool_],
    n_events: int,
) -> ParticleBatch:
    counts = np.bincount(event[mask], minlength=n_events)
    data = {
        "px": columns["px"][mask],
        "py": columns["py"][mask],
        "pz": columns["pz"][mask],
        "E": columns["E"][mask],
        "pid": columns["id"][mask],
        "charge": charge[mask],
    }
    typed = {name: np.ascontiguousarray(values, dtype=PARTICLE_COLUMNS[name]) for name, values in data.items()}
    return ParticleBatch(**typed, offsets=offsets_from_counts(counts))


@hookimpl
def register_generators(register: Any) -> None:
    """Register the PYTHIA e+e- generator."""
    register(PythiaEE)
