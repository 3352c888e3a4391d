"""Logging set-up for the command line: rich on the terminal, full detail in the run's log file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def verbosity_level(verbosity: int) -> int:
    """Terminal log level: -1 (``-q``) warnings, 0 info, 1 or more (``-v``) debug."""
    if verbosity < 0:
        return logging.WARNING
    if verbosity == 0:
        return logging.INFO
    return logging.DEBUG


def setup_logging(verbosity: int, console: Console) -> None:
    """Send log records to ``console`` (stderr) at the level ``verbosity`` selects.

    Replaces handlers installed by an earlier call, so that repeated CLI
    invocations in one process (tests) do not stack handlers.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_qcdtool", False):
            root.removeHandler(handler)
    handler = RichHandler(console=console, show_path=verbosity > 0, show_time=verbosity > 0, markup=False)
    handler.setLevel(verbosity_level(verbosity))
    handler._qcdtool = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Third-party libraries stay at WARNING unless -vv.
    for noisy in ("matplotlib", "PIL", "h5py", "numba"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)


@contextmanager
def log_to_file(path: Path) -> Iterator[logging.Handler]:
    """Also write every record (debug included) to ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()
