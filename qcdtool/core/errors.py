"""Exceptions for mistakes a user can fix.

The CLI catches :class:`QcdtoolError` once, prints its message without a
traceback and exits with status 2. Any other exception is a bug in qcdtool
or a plugin and keeps its traceback (shown with ``-v``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class QcdtoolError(Exception):
    """An error caused by the user's input: a spec, a file, an option."""

    exit_code = 2


@dataclass(frozen=True)
class SpecProblem:
    """One problem found in a run spec, located by its TOML path."""

    #: Dotted TOML path with list indices, e.g. ``models[0].shift``; empty
    #: for a problem with the file as a whole.
    path: str
    message: str

    def render(self, source: str) -> str:
        """Format as one line: ``file: path: message``."""
        return f"{source}: {self.path}: {self.message}" if self.path else f"{source}: {self.message}"


class SpecError(QcdtoolError):
    """A run spec with one or more problems, all reported at once."""

    def __init__(self, source: Path | str, problems: Sequence[SpecProblem]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        super().__init__("\n".join(problem.render(self.source) for problem in self.problems))


class PluginError(QcdtoolError):
    """A plugin that cannot be used: unknown, broken or in conflict."""


class DatasetError(QcdtoolError):
    """A dataset file that is missing, incomplete, foreign or inconsistent."""


class StageUnavailable(QcdtoolError):
    """A pipeline stage that this installation cannot run."""
