"""Shared pieces of the command line: the error boundary, verbosity options, consoles."""

from __future__ import annotations

import errno
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from qcdtool.core.errors import QcdtoolError, SpecError
from qcdtool.core.logs import setup_logging
from qcdtool.core.registry import PluginRegistry, create_registry

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Width of tables written to a file or a pipe, where no terminal sets one.
PIPE_WIDTH = 160
#: Key of click's ``ctx.meta`` (shared by every context of one call) that stores the command line's arguments.
ARGUMENTS_KEY = "qcdtool.arguments"


@dataclass
class CliState:
    """Per-invocation state shared by all commands."""

    verbosity: int = 0
    _registry: PluginRegistry | None = field(default=None, repr=False)

    @property
    def out(self) -> Console:
        """Console for a command's output (stdout); wide when stdout is a file or a pipe."""
        width = None if sys.stdout.isatty() else PIPE_WIDTH
        return Console(soft_wrap=False, highlight=False, width=width)

    @property
    def err(self) -> Console:
        """Console for logs, progress and errors (stderr)."""
        return Console(stderr=True, highlight=False)

    @property
    def registry(self) -> PluginRegistry:
        """The plugin registry, discovered once per invocation."""
        if self._registry is None:
            self._registry = create_registry()
        return self._registry


def get_state() -> CliState:
    """The CliState of the running command."""
    ctx = click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:
        state = ctx.ensure_object(CliState)
    return state


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    state = ctx.ensure_object(CliState)
    if param.name == "verbose" and value:
        state.verbosity = max(state.verbosity, 0) + int(value)
    elif param.name == "quiet" and value:
        state.verbosity = -1
    setup_logging(state.verbosity, state.err)
    return value


def verbosity_options(command: F) -> F:
    """Add ``-v/--verbose`` and ``-q/--quiet`` to a command."""
    command = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity,
        help="Show only warnings and errors.",
    )(command)
    command = click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=_set_verbosity,
        help="Show debug messages and tracebacks of internal errors; -vv also shows libraries' debug messages.",
    )(command)
    return command


@dataclass(frozen=True)
class Continuation:
    """How to go on after a command stopped early: what it keeps, and the command line that goes on."""

    #: A sentence on what the command keeps, or empty.
    kept: str
    command: str


def continuation(arguments: Sequence[str]) -> Continuation:
    """Build the command line that continues an interrupted command from its arguments (those after ``qcdtool``).

    ``generate`` and ``train`` continue only with --resume, and ``train
    --force`` would start the training over, so --force is dropped there.
    ``run`` continues when it is given the same arguments. Other commands
    keep no unfinished file and start again.
    """
    words = list(arguments)
    # The group's own options are flags, so the first word that is not an option names the command.
    name = next((word for word in words if not word.startswith("-")), None)
    if name == "generate":
        return Continuation("Finished units of events are kept.", _command_line(_with_resume(words)))
    if name == "train":
        words = _with_resume([word for word in words if word != "--force"])
        return Continuation("Training goes on from each model's last checkpoint.", _command_line(words))
    if name == "run":
        if "--force" in words or any(word == "--from" or word.startswith("--from=") for word in words):
            kept = "With --force or --from, the same command also redoes the stages that finished."
        else:
            kept = "Finished stages and units of events are kept."
        return Continuation(kept, _command_line(words))
    return Continuation("", _command_line(words))


def _with_resume(words: list[str]) -> list[str]:
    return words if "--resume" in words else [*words, "--resume"]


def _command_line(words: Sequence[str]) -> str:
    return shlex.join(["qcdtool", *words])


class QcdtoolGroup(click.Group):
    """A click group that reports user errors in one line each and exits with status 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta.setdefault(ARGUMENTS_KEY, list(args))  # the outermost group receives the whole command line
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QcdtoolError as exc:
            err = Console(stderr=True, highlight=False)
            lines = (
                [problem.render(exc.source) for problem in exc.problems]
                if isinstance(exc, SpecError)
                else str(exc).splitlines()
            )
            for line in lines:
                err.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            going_on = continuation(ctx.meta.get(ARGUMENTS_KEY, []))
            kept = f" {going_on.kept}" if going_on.kept else ""
            Console(stderr=True, highlight=False).print(
                f"[yellow]interrupted.[/]{escape(kept)} To continue, run:\n  {escape(going_on.command)}",
                soft_wrap=True,
            )
            ctx.exit(130)
        except OSError as exc:
            if not disk_full(exc):
                _internal_error(ctx, exc)
                raise  # only reached with -v, where the traceback is wanted
            where = f" while writing {exc.filename}" if exc.filename else ""
            going_on = continuation(ctx.meta.get(ARGUMENTS_KEY, []))
            kept = f" {going_on.kept}" if going_on.kept else ""
            Console(stderr=True, highlight=False).print(
                f"[bold red]error:[/] no space left on the device{escape(where)}. Unfinished files are never "
                f"used.{escape(kept)} Free some space, then run:\n  {escape(going_on.command)}",
                soft_wrap=True,
            )
            ctx.exit(1)
        except Exception as exc:
            _internal_error(ctx, exc)
            raise


def disk_full(exc: OSError) -> bool:
    """Tell whether an OSError means that the disk or the user's quota is full (h5py keeps only the text)."""
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc)


def _internal_error(ctx: click.Context, exc: Exception) -> None:
    """Report an unexpected exception in one line and exit with 1; with -v, return so the caller re-raises."""
    state = ctx.find_object(CliState)
    if state is not None and state.verbosity > 0:
        return
    err = Console(stderr=True, highlight=False)
    err.print(
        f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}\n"
        "This is a bug in qcdtool or one of its plugins; run the command again with -v "
        "to see the traceback, and report it.",
        soft_wrap=True,
    )
    ctx.exit(1)
