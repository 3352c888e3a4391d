"""Redirection of output that C and C++ libraries write to standard output.

PYTHIA and FastJet print with ``std::cout``, which writes to file descriptor
1 directly. Replacing ``sys.stdout`` does not reach it, so the descriptor
itself is pointed elsewhere with ``os.dup2``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

STDOUT_FD = 1


def _flush_c_stdio() -> None:
    """Flush the buffers of the C library's ``FILE`` streams.

    ``std::cout`` goes through C's ``stdout`` stream (libstdc++ keeps the two
    in sync by default), which is fully buffered when descriptor 1 is a file
    or a pipe. Unflushed text would be written after the descriptor has been
    switched back, to the wrong place.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.fflush(None)
    except (OSError, AttributeError, TypeError):
        # NOTE: on platforms where the C library cannot be loaded this way
        # (Windows), buffered C output may land after the switch back.
        pass


def _flush_all() -> None:
    if sys.stdout is not None:
        sys.stdout.flush()
    _flush_c_stdio()


@contextmanager
def redirect_fd1(target: str | os.PathLike[str] | int) -> Iterator[None]:
    """Send everything written to file descriptor 1 to ``target`` while inside.

    ``target`` is a path, opened for appending and created if missing
    (``os.devnull`` discards the output), or an open file descriptor, which
    is left open. Python's ``sys.stdout`` and the C library's stream buffers
    are flushed on entry and on exit, so output lands on the side of the
    switch where it was written.

    The redirect applies to the whole process: output from other threads
    goes to ``target`` too while inside.
    """
    _flush_all()
    if isinstance(target, int):
        target_fd = target
        close_target = False
    else:
        target_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        close_target = True
    saved_fd = os.dup(STDOUT_FD)
    try:
        os.dup2(target_fd, STDOUT_FD)
        try:
            yield
        finally:
            _flush_all()
            os.dup2(saved_fd, STDOUT_FD)
    finally:
        os.close(saved_fd)
        if close_target:
            os.close(target_fd)
