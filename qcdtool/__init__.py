"""qcdtool: learn the QCD hadronization map with conditional diffusion models.

The functions of :mod:`qcdtool.api` are also reachable here
(``qcdtool.load_spec``, ``qcdtool.run``...). They are imported on first use,
so that ``import qcdtool`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("qcdtool")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from qcdtool import api
    from qcdtool.api import (
        compute_metric,
        image_pairs,
        load_model,
        load_spec,
        open_dataset,
        parse_spec,
        read_samples,
        run,
        sample,
        sample_set,
        validate_spec,
    )

__all__ = [
    "__version__",
    "api",
    "compute_metric",
    "image_pairs",
    "load_model",
    "load_spec",
    "open_dataset",
    "parse_spec",
    "read_samples",
    "run",
    "sample",
    "sample_set",
    "validate_spec",
]
_API_NAMES = frozenset(__all__) - {"__version__", "api"}


def __getattr__(name: str) -> Any:
    """Import :mod:`qcdtool.api` when one of its names is first used (PEP 562)."""
    if name == "api":
        return import_module("qcdtool.api")
    if name in _API_NAMES:
        return getattr(import_module("qcdtool.api"), name)
    raise AttributeError(f"module 'qcdtool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
