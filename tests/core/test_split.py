"""Train, validation and test split of events."""

from __future__ import annotations

import numpy as np
import pytest

from qcdtool.core.errors import DatasetError
from qcdtool.core.split import SplitSettings, split_rows, uniform_labels


def labels(configs: int, hadronizations: int) -> tuple[np.ndarray, np.ndarray]:
    config = np.repeat(np.arange(configs, dtype=np.int64), hadronizations)
    hadronization = np.tile(np.arange(hadronizations, dtype=np.int32), configs)
    return config, hadronization


def test_sets_partition_rows() -> None:
    config, hadronization = labels(4, 500)
    rows = split_rows(config, hadronization, SplitSettings(), seed=3)
    joined = np.sort(np.concatenate(list(rows.values())))
    assert np.array_equal(joined, np.arange(2000))


def test_fractions_near_requested() -> None:
    config, hadronization = labels(10, 2000)
    rows = split_rows(config, hadronization, SplitSettings(validation=0.1, test=0.2), seed=5)
    # Binomial standard deviation of the test share: sqrt(0.2 * 0.8 / 20000) = 0.003.
    assert abs(len(rows["test"]) / 20000 - 0.2) < 0.015
    assert abs(len(rows["validation"]) / 20000 - 0.1) < 0.015


def test_by_hadronization_tests_every_config() -> None:
    config, hadronization = labels(3, 300)
    rows = split_rows(config, hadronization, SplitSettings(), seed=1)
    assert set(config[rows["test"]].tolist()) == {0, 1, 2}
    assert set(config[rows["train"]].tolist()) == {0, 1, 2}


def test_by_configuration_keeps_configs_whole() -> None:
    config, hadronization = labels(40, 20)
    rows = split_rows(config, hadronization, SplitSettings(by="configuration"), seed=2)
    train = set(config[rows["train"]].tolist())
    test = set(config[rows["test"]].tolist())
    validation = set(config[rows["validation"]].tolist())
    assert not train & test
    assert not train & validation
    assert not test & validation


def test_assignment_ignores_row_order() -> None:
    config, hadronization = labels(5, 100)
    order = np.random.default_rng(0).permutation(len(config))
    first = uniform_labels(9, config, hadronization)
    second = uniform_labels(9, config[order], hadronization[order])
    assert np.array_equal(first[order], second)


def test_other_seed_other_split() -> None:
    config, hadronization = labels(2, 200)
    first = split_rows(config, hadronization, SplitSettings(), seed=1)["test"]
    second = split_rows(config, hadronization, SplitSettings(), seed=2)["test"]
    assert not np.array_equal(first, second)


def test_uniform_in_unit_interval() -> None:
    config, hadronization = labels(100, 100)
    u = uniform_labels(7, config, hadronization)
    assert u.min() >= 0.0
    assert u.max() < 1.0


def test_too_few_configurations() -> None:
    config, hadronization = labels(1, 50)
    with pytest.raises(DatasetError, match="too few to split by configuration"):
        split_rows(config, hadronization, SplitSettings(by="configuration"), seed=1)


def test_invalid_fractions() -> None:
    with pytest.raises(ValueError, match="invalid split fractions"):
        SplitSettings(validation=0.6, test=0.5)
