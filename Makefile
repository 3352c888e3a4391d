# One-command set-up and the two jobs a new user needs:
#   make quickstart   run the bundled quickstart spec (specs/quickstart.toml);
#                     its report is runs/quickstart/report.html
#   make test         run the test suite
#   make setup        only create .venv and install
# Both create .venv with Python 3.11 and install qcdtool, its test tools and
# the example plugin package on first use.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# On machines without an NVIDIA GPU, the CPU build of torch (a small wheel);
# elsewhere any torch release that qcdtool supports.
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch>=2.2,torch==2.13.0)

.PHONY: setup quickstart test check clean

$(VENV)/.installed: pyproject.toml examples/qcdtool-plugin-example/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]" ./examples/qcdtool-plugin-example
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	$(BIN)/qcdtool run specs/quickstart.toml

test: setup
	$(BIN)/python -m pytest

check: setup
	$(BIN)/ruff check qcdtool tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs/quickstart
