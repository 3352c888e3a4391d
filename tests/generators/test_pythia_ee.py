"""The pythia-ee generator on real PYTHIA events: conservation laws, flavours, rehadronization."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from qcdtool.core.contracts import EventBatch, PluginContext
from qcdtool.plugins.generators import pythia_ee
from qcdtool.plugins.generators.pythia_ee import PythiaEE, PythiaEEParams, PythiaSettingError

ECM = 91.188


def generate(seed: int = 5, **params: Any) -> EventBatch:
    """All events of a small run, joined into one batch."""
    generator = PythiaEE(PythiaEEParams(**params), PluginContext(seed=seed))
    generator.setup()
    batches = [generator.run(unit) for unit in generator.plan()]
    return join(batches)


def join(batches: list[EventBatch]) -> EventBatch:
    from qcdtool.core.particles import ParticleBatch

    counters: dict[str, int] = {}
    for batch in batches:
        for key, value in batch.counters.items():
            counters[key] = counters.get(key, 0) + value
    return EventBatch(
        config_id=np.concatenate([b.config_id for b in batches]),
        flavour=np.concatenate([b.flavour for b in batches]),
        hadronization=np.concatenate([b.hadronization for b in batches]),
        parton=ParticleBatch.concatenate([b.parton for b in batches]),
        hadron=ParticleBatch.concatenate([b.hadron for b in batches]),
        counters=counters,
    )


@pytest.fixture(scope="module")
def independent_all() -> EventBatch:
    """Independent events with every final-state particle kept, neutrinos included."""
    return generate(mode="independent", events=600, final_state="all")


@pytest.fixture(scope="module")
def rehadronized() -> EventBatch:
    return generate(parton_events=3, hadronizations=200, flavors=["b", "uds"])


def test_hadron_level_conserves_momentum(independent_all: EventBatch) -> None:
    total = independent_all.hadron.sum_four_momentum()
    deviation = np.abs(total - [0.0, 0.0, 0.0, ECM]).max()
    assert deviation < 1e-6 * ECM


def test_parton_level_conserves_momentum(independent_all: EventBatch) -> None:
    total = independent_all.parton.sum_four_momentum()
    deviation = np.abs(total - [0.0, 0.0, 0.0, ECM]).max()
    assert deviation < 1e-6 * ECM


def test_hadron_level_conserves_charge(independent_all: EventBatch) -> None:
    charge = np.bincount(independent_all.hadron.entry_index, weights=independent_all.hadron.charge)
    assert np.abs(charge).max() < 1e-6


def test_rehadronized_conserves_momentum() -> None:
    batch = generate(parton_events=2, hadronizations=100, final_state="all")
    total = batch.hadron.sum_four_momentum()
    assert np.abs(total - [0.0, 0.0, 0.0, ECM]).max() < 1e-6 * ECM


def test_visible_drops_neutrinos() -> None:
    batch = generate(mode="independent", events=300, flavors=["b"])
    assert not np.isin(np.abs(batch.hadron.pid), [12, 14, 16]).any()


def test_charged_keeps_charged_only() -> None:
    batch = generate(mode="independent", events=100, final_state="charged")
    assert np.all(batch.hadron.charge != 0)


def test_charged_multiplicity_near_lep(independent_all: EventBatch) -> None:
    # LEP measured about 20.9 charged particles per hadronic Z decay.
    charged = np.count_nonzero(independent_all.hadron.charge) / len(independent_all)
    assert 19.0 < charged < 23.0


def test_single_flavour_enforced() -> None:
    batch = generate(mode="independent", events=200, flavors=["c"])
    assert set(np.unique(batch.flavour).tolist()) == {4}


def test_groups_alternate_configurations(rehadronized: EventBatch) -> None:
    flavour_of = {int(c): set(rehadronized.flavour[rehadronized.config_id == c].tolist()) for c in range(3)}
    assert flavour_of[0] == {5}
    assert flavour_of[1] <= {1, 2, 3}
    assert flavour_of[2] == {5}


def test_parton_content_repeats(rehadronized: EventBatch) -> None:
    for config in range(3):
        rows = np.flatnonzero(rehadronized.config_id == config)
        partons = rehadronized.parton.take(rows)
        first = partons.take(np.zeros(len(rows), dtype=np.int64))
        assert np.array_equal(partons.px, first.px)
        assert np.array_equal(partons.pid, first.pid)


def test_hadron_content_differs(rehadronized: EventBatch) -> None:
    rows = np.flatnonzero(rehadronized.config_id == 0)
    energies = {tuple(np.round(rehadronized.hadron.take(rows[i : i + 1]).E, 9)) for i in range(len(rows))}
    assert len(energies) == len(rows)


def test_configurations_differ(rehadronized: EventBatch) -> None:
    first = rehadronized.parton.take(np.flatnonzero(rehadronized.config_id == 0)[:1])
    third = rehadronized.parton.take(np.flatnonzero(rehadronized.config_id == 2)[:1])
    assert not np.array_equal(first.E, third.E)


def test_hadronization_index(rehadronized: EventBatch) -> None:
    rows = rehadronized.config_id == 1
    assert np.array_equal(rehadronized.hadronization[rows], np.arange(200))


def test_saved_record_unchanged() -> None:
    generator = PythiaEE(PythiaEEParams(parton_events=1, hadronizations=50), PluginContext(seed=9))
    generator.setup()
    generator.run(generator.plan()[0])
    hadronizer = generator._hadronizer_instance()
    saved = hadronizer.hook.saved
    before = [(saved[i].id(), saved[i].status(), saved[i].px(), saved[i].e()) for i in range(saved.size())]
    hadronizer.pythia.nextBatch(20, 10.0)
    after = [(saved[i].id(), saved[i].status(), saved[i].px(), saved[i].e()) for i in range(saved.size())]
    assert after == before


def test_unit_independent_of_history() -> None:
    params = PythiaEEParams(parton_events=3, hadronizations=40)
    fresh = PythiaEE(params, PluginContext(seed=4))
    fresh.setup()
    used = PythiaEE(params, PluginContext(seed=4))
    used.setup()
    units = used.plan()
    used.run(units[0])
    used.run(units[1])
    assert np.array_equal(fresh.run(units[2]).hadron.E, used.run(units[2]).hadron.E)


def test_other_seed_differs() -> None:
    first = generate(seed=1, parton_events=1, hadronizations=20)
    second = generate(seed=2, parton_events=1, hadronizations=20)
    assert not np.array_equal(first.parton.E, second.parton.E)


def test_failed_hadronizations_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    restore_cls = pythia_ee._restore_hook_class()

    class BreakEveryThird(restore_cls):  # type: ignore[misc, valid-type]
        """Restore the record, then on every third event give one parton a colour tag that no other parton carries."""

        def onBeginEvent(self) -> None:
            super().onBeginEvent()
            if self.calls % 3 == 0:
                event = self.pythia.event
                coloured = next(i for i in range(1, event.size()) if event[i].col() > 0)
                event[coloured].col(99999)

    monkeypatch.setattr(pythia_ee, "_restore_hook_class", lambda: BreakEveryThird)
    batch = generate(parton_events=1, hadronizations=30)
    assert len(batch) == 30
    # Calls 3, 6, ... fail: 30 good events take 44 calls, 14 of them failed.
    assert batch.counters["failed_hadronizations"] == 14


def test_rejected_setting_named() -> None:
    with pytest.raises(ValidationError, match=r"PYTHIA rejects the setting 'Foo:bar = 3' \(pythia\[1\]\)"):
        PythiaEEParams(pythia=["StringZ:aLund = 0.6", "Foo:bar = 3"])


def test_reserved_setting_rejected() -> None:
    with pytest.raises(ValidationError, match=r"pythia\[0\] = 'Beams:eCM = 200' changes what qcdtool sets from ecm"):
        PythiaEEParams(pythia=["Beams:eCM = 200"])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("StringZ:aLund = 0,7", r"'0,7' is not a number, and PYTHIA reads it as 0.0; write a decimal point"),
        ("TimeShower:nGluonToQuark = 3.5", r"'3.5' is not a whole number, and PYTHIA reads it as 3"),
        ("HadronLevel:Decay = offf", r"'offf' is not a flag, and PYTHIA reads it as off"),
        ("111:m0 = 0,13", r"'0,13' is not a number, and PYTHIA reads it as 0.0"),
        ("111:mayDecay = of", r"'of' is not a flag, and PYTHIA reads it as off"),
    ],
)
def test_misread_value_rejected(setting: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PythiaEEParams(pythia=["StringZ:aLund = 0.6", setting])


def test_well_formed_values_accepted() -> None:
    settings = ["StringZ:aLund = 0.68", "Tune:ee = 7", "HadronLevel:Decay = on", "111:mayDecay = off", "111:m0 0.135"]
    assert PythiaEEParams(pythia=settings).pythia == settings


def test_ecm_below_mass_window_rejected() -> None:
    with pytest.raises(ValidationError, match=r"ecm = 5 GeV is below .* 23:mMin = 10 GeV"):
        PythiaEEParams(ecm=5.0)


def test_ecm_above_mass_window_rejected() -> None:
    with pytest.raises(ValidationError, match=r"ecm = 91.188 GeV is above .* 23:mMax = 50 GeV"):
        PythiaEEParams(pythia=["23:mMax = 50"])


def test_reserved_setting_names_spec_key() -> None:
    with pytest.raises(ValidationError, match=r"'HadronLevel:all = off' .* set \[generator\] mode instead"):
        PythiaEEParams(pythia=["HadronLevel:all = off"])


def test_decay_channels_stay_reserved() -> None:
    with pytest.raises(ValidationError, match=r"'23:onMode = on' changes what qcdtool sets from flavors"):
        PythiaEEParams(pythia=["23:onMode = on"])


def test_low_ecm_with_opened_window_conserves_momentum() -> None:
    batch = generate(
        mode="independent", events=100, ecm=5.0, flavors=["uds"], final_state="all", pythia=["23:mMin = 2"]
    )
    deviation = np.abs(batch.hadron.sum_four_momentum() - [0.0, 0.0, 0.0, 5.0]).max()
    assert deviation < 1e-6 * 5.0


def test_setup_rejects_setting() -> None:
    # Parameters built without validation reach setup(), which checks again.
    params = PythiaEEParams.model_construct(**{**PythiaEEParams().model_dump(), "pythia": ["Foo:bar = 3"]})
    generator = PythiaEE(params, PluginContext())
    with pytest.raises(PythiaSettingError, match=r"'Foo:bar = 3' \(generator.pythia\[0\]\)"):
        generator.setup()


def test_failed_init_gives_reason() -> None:
    # Below the b-quark pair threshold (about 9.6 GeV) with the mass window opened.
    generator = PythiaEE(PythiaEEParams(ecm=5.0, flavors=["b"], pythia=["23:mMin = 2.0"]), PluginContext())
    with pytest.raises(PythiaSettingError, match="all processes have vanishing cross sections"):
        generator.setup()


def test_plan_covers_events() -> None:
    generator = PythiaEE(PythiaEEParams(mode="independent", events=2501, flavors=["b", "c"]), PluginContext())
    units = generator.plan()
    assert sum(unit.n_events for unit in units) == 2501
    # 1251 b events and 1250 c events, in blocks of at most 1000, groups alternating.
    assert [unit.n_events for unit in units] == [1000, 1000, 251, 250]
    assert [unit.info["group"] for unit in units] == [0, 1, 0, 1]
    assert [unit.info["config"] for unit in units] == [0, 1000, 2000, 2251]


@pytest.fixture(scope="module")
def pythia_batch() -> Any:
    """A nextBatch result of 30 independent events."""
    generator = PythiaEE(PythiaEEParams(mode="independent", events=30), PluginContext(seed=3))
    generator.setup()
    return generator._parton_instance(0).nextBatch(30, 10.0)


def flattened_columns(particles: Any) -> dict[str, np.ndarray]:
    """The columns by awkward's own flattening, the reference for _record_columns."""
    import awkward as ak

    return {
        "offsets": np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(particles)))]),
        "id": ak.to_numpy(ak.flatten(particles.id)),
        "E": ak.to_numpy(ak.flatten(particles.p.e)),
        "daughter1": ak.to_numpy(ak.flatten(particles.daughter1)),
    }


@pytest.mark.parametrize("rows", [slice(None), slice(7, 19), [4, 2, 9]])
def test_record_columns_match_flatten(pythia_batch: Any, rows: Any) -> None:
    # The whole batch is read in place. A slice has offsets that do not start
    # at 0. A list of rows gives a layout that must be packed first.
    particles = pythia_batch["prt"][rows]
    columns = pythia_ee._record_columns({"prt": particles})
    expected = flattened_columns(particles)
    for name, values in expected.items():
        np.testing.assert_array_equal(columns[name], values, err_msg=name)
