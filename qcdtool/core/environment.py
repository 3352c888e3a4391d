"""The environment record of a run: versions of everything that shaped its results."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import sys
from collections.abc import Iterable
from typing import Any

from qcdtool.core.registry import PluginInfo

#: Distributions whose versions every run records.
RECORDED_PACKAGES = ("qcdtool", "torch", "pythia8mc", "fastjet", "numpy", "h5py", "awkward", "pydantic", "pluggy")


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``not installed``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_record(plugins: Iterable[PluginInfo]) -> dict[str, Any]:
    """Versions of Python, the recorded packages and every plugin used."""
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in RECORDED_PACKAGES},
        "plugins": [
            {
                "kind": str(info.kind),
                "name": info.name,
                "distribution": info.source.distribution,
                "version": info.source.version,
            }
            for info in plugins
        ],
    }
