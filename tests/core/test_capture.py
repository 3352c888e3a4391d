"""Tests of the file descriptor 1 redirect used to capture C and C++ output."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qcdtool.core.capture import redirect_fd1

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_redirect_to_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.txt"
    with redirect_fd1(log):
        os.write(1, b"inside\n")
    os.write(1, b"outside\n")
    assert log.read_text() == "inside\n"
    assert capfd.readouterr().out == "outside\n"


def test_redirect_flushes_c_stdio(tmp_path: Path) -> None:
    # C's stdout is fully buffered when descriptor 1 is a pipe (unless
    # PYTHONUNBUFFERED is set), so "from C" reaches the log only if the
    # redirect flushes it before switching back.
    log = tmp_path / "log.txt"
    code = textwrap.dedent(
        f"""
        import ctypes, os
        from qcdtool.core.capture import redirect_fd1
        libc = ctypes.CDLL(None)
        with redirect_fd1({str(log)!r}):
            libc.printf(b"from C\\n")
        os.write(1, b"after\\n")
        """
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert log.read_text() == "from C\n"
    assert result.stdout == "after\n"


def test_redirect_appends(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("first\n")
    with redirect_fd1(log):
        os.write(1, b"second\n")
    assert log.read_text() == "first\nsecond\n"


def test_redirect_to_descriptor(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT)
    try:
        with redirect_fd1(descriptor):
            os.write(1, b"via descriptor\n")
        os.write(descriptor, b"still open\n")
    finally:
        os.close(descriptor)
    assert log.read_text() == "via descriptor\nstill open\n"


def test_redirect_restores_after_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.txt"
    with pytest.raises(RuntimeError), redirect_fd1(log):
        raise RuntimeError("inside")
    os.write(1, b"restored\n")
    assert capfd.readouterr().out == "restored\n"
