"""Fixtures of the model plugin tests: a real PYTHIA dataset of two parton configurations, and its split.

The run seed 1 gives one b and one light-quark configuration whose parton
images differ (L2 distance 1.18), and a nearest-class-mean classifier on
the hadron images tells them apart 90% of the time. Other seeds can give two
configurations with the same single-pixel parton image, for which the
inverse map is not learnable at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.typing import NDArray

from qcdtool.core.cli import cli
from qcdtool.core.dataset import Dataset
from qcdtool.core.split import SplitSettings, split_rows

DATASET_SPEC = """
[run]
name = "models"
seed = 1

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 2
hadronizations = 1000

[[imagers]]
plugin = "eta-phi"
size = 15
"""


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dataset.h5 of 2 x 1000 hadronizations with 15x15 eta-phi images, made by 'qcdtool generate'."""
    folder = tmp_path_factory.mktemp("models-data")
    spec = folder / "spec.toml"
    spec.write_text(DATASET_SPEC)
    result = CliRunner().invoke(cli, ["generate", str(spec), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "runs" / "models" / "dataset.h5"


@pytest.fixture(scope="session")
def split(dataset: Path) -> dict[str, NDArray[np.int64]]:
    """Train, validation and test rows: 70%, 10% and 20% of every configuration's hadronizations."""
    with Dataset(dataset) as data:
        config = data.column("config_id")
        hadronization = data.column("hadronization")
    return split_rows(config, hadronization, SplitSettings(by="hadronization", validation=0.1, test=0.2), 3)
