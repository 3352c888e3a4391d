"""Run spec validation: every problem reported with its TOML path, exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from qcdtool.core.errors import SpecError
from qcdtool.core.registry import create_registry
from qcdtool.core.spec import load_spec, parse_spec

GOOD = """
[run]
name = "test"
seed = 7

[generator]
plugin = "pythia-ee"
parton_events = 2
hadronizations = 10
"""

BAD_SPECS = {
    "unknown top-level key": (
        "[runn]\nname = 'x'\n[generator]\nplugin = 'pythia-ee'\n",
        [
            "runn: unknown key 'runn'; did you mean 'run'? "
            "Allowed keys: run, generator, jets, split, sampling, imagers, models, metrics."
        ],
    ),
    "unknown key in plugin table": (
        "[generator]\nplugin = 'pythia-ee'\necmm = 91.0\n",
        [
            "generator.ecmm: unknown key 'ecmm'; did you mean 'ecm'? Allowed keys: plugin, ecm, flavors, mode, "
            "events, parton_events, hadronizations, pythia, final_state."
        ],
    ),
    "string for a number": (
        "[generator]\nplugin = 'pythia-ee'\necm = '91.2'\n",
        ["generator.ecm: expected a number, got a string ('91.2')"],
    ),
    "negative count": (
        "[generator]\nplugin = 'pythia-ee'\nhadronizations = -5\n",
        ["generator.hadronizations: must be >= 1, got -5"],
    ),
    "zero count": (
        "[generator]\nplugin = 'pythia-ee'\nparton_events = 0\n",
        ["generator.parton_events: must be >= 1, got 0"],
    ),
    "ecm not positive": (
        "[generator]\nplugin = 'pythia-ee'\necm = 0\n",
        ["generator.ecm: must be > 0.0, got 0"],
    ),
    "unknown flavour": (
        "[generator]\nplugin = 'pythia-ee'\nflavors = ['b', 'tq']\n",
        [
            "generator.flavors: unknown flavour 't' in 'tq'; allowed: d, u, s, c, b "
            "(combine letters for a group, e.g. 'uds')"
        ],
    ),
    "seed out of range": (
        "[run]\nseed = 900000001\n[generator]\nplugin = 'pythia-ee'\n",
        ["run.seed: must be <= 900000000, got 900000001"],
    ),
    "unknown plugin name": (
        "[generator]\nplugin = 'pythia-e'\n",
        [
            "generator.plugin: unknown generator plugin 'pythia-e'; did you mean 'pythia-ee'? "
            "Installed generator plugins: pythia-ee."
        ],
    ),
    "missing generator": (
        "[run]\nname = 'x'\n",
        ['generator: missing table [generator]; add one with plugin = "<name>" (generator plugins: pythia-ee)'],
    ),
    "toml syntax error": (
        "[generator]\nplugin 'pythia-ee'\n",
        ["invalid TOML: Expected '=' after a key in a key/value pair (at line 2, column 8)"],
    ),
    "imagers written as a table": (
        "[generator]\nplugin = 'pythia-ee'\n[imagers]\nplugin = 'eta-phi'\n",
        ["imagers: expected an array of tables; write [[imagers]] instead of [imagers]"],
    ),
    "split leaves no training": (
        "[generator]\nplugin = 'pythia-ee'\n[split]\nvalidation = 0.5\ntest = 0.5\n",
        ["split: validation + test = 1 leaves no events for training; their sum must be below 1"],
    ),
    "every problem at once": (
        "[run]\nseed = 0\ndevise = 'cpu'\n[generator]\nplugin = 'pythia-ee'\nmode = 'rehadronise'\n",
        [
            "run.seed: must be >= 1, got 0",
            "run.devise: unknown key 'devise'; did you mean 'device'? "
            "Allowed keys: name, output, seed, device, dataset.",
            "generator.mode: invalid value 'rehadronise'; allowed: 'rehadronize' or 'independent'; "
            "did you mean 'rehadronize'?",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS), ids=list(BAD_SPECS))
def test_bad_spec_message(case: str, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    text, expected = BAD_SPECS[case]
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    result = run_cli("spec", "validate", str(spec))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {spec}: {line}" for line in expected]


def test_missing_file_message(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    missing = tmp_path / "missing.toml"
    result = run_cli("spec", "validate", str(missing))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {missing}: spec file not found"]


def test_directory_message(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli("spec", "validate", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path}: is a directory; expected a TOML spec file"]


def test_no_traceback_for_user_error(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text("[generator]\nplugin = 'nope'\n")
    result = run_cli("spec", "validate", str(spec))
    assert "Traceback" not in result.stderr


def test_integer_accepted_as_float() -> None:
    spec = parse_spec("[generator]\nplugin = 'pythia-ee'\necm = 91\n", create_registry())
    assert spec.generator.params.ecm == 91.0  # type: ignore[attr-defined]


def test_show_round_trips(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(GOOD)
    shown = run_cli("spec", "show", str(spec))
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(shown.stdout)
    registry = create_registry()
    assert load_spec(resolved, registry).to_dict() == load_spec(spec, registry).to_dict()


def test_show_fills_defaults(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(GOOD)
    shown = run_cli("spec", "show", str(spec)).stdout
    assert 'algorithm = "antikt"' in shown
    assert "ecm = 91.188" in shown


def test_output_relative_to_spec(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    path = folder / "spec.toml"
    path.write_text(GOOD)
    spec = load_spec(path, create_registry())
    assert spec.run_dir == folder / "runs" / "test"


def test_output_path_normalized(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    path = folder / "spec.toml"
    path.write_text(GOOD.replace('name = "test"', 'name = "test"\noutput = "../runs"\ndataset = "../data/d.h5"'))
    spec = load_spec(path, create_registry())
    assert spec.run_dir == tmp_path.resolve() / "runs" / "test"
    assert spec.dataset_path == tmp_path.resolve() / "data" / "d.h5"


def test_spec_error_lists_all_problems() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("[run]\nseed = -1\nname = 'a b'\n", create_registry())
    assert [problem.path for problem in info.value.problems] == ["run.name", "run.seed", "generator"]


def test_init_template_validates(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "quickstart.toml"
    created = run_cli("spec", "init", "--output", str(spec))
    assert created.exit_code == 0
    assert run_cli("spec", "validate", str(spec)).exit_code == 0


def test_init_unknown_template(run_cli: Callable[..., Result]) -> None:
    result = run_cli("spec", "init", "--template", "quickstrat")
    assert result.exit_code == 2
    assert "did you mean 'quickstart'?" in result.stderr


def test_init_keeps_existing_file(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "mine.toml"
    spec.write_text("# my own work\n")
    result = run_cli("spec", "init", "--output", str(spec))
    assert result.exit_code == 2
    assert spec.read_text() == "# my own work\n"


def test_bundled_quickstart_is_template() -> None:
    from importlib import resources

    from tests.conftest import REPO_ROOT

    template = resources.files("qcdtool.templates").joinpath("quickstart.toml").read_text(encoding="utf-8")
    bundled = (REPO_ROOT / "specs" / "quickstart.toml").read_text(encoding="utf-8")
    # Only run.name and run.output differ: specs/quickstart.toml writes to
    # <repository>/runs/quickstart, the template to runs/my-run beside the file
    # that spec init writes, so the two never share a run folder.
    template_lines = template.splitlines()
    bundled_lines = bundled.splitlines()
    differing = [pair for pair in zip(template_lines, bundled_lines, strict=False) if pair[0] != pair[1]]
    assert len(template_lines) == len(bundled_lines)
    assert [left.split("#")[0].strip() for left, _ in differing] == ['name = "my-run"', 'output = "runs"']
    assert [right.split("#")[0].strip() for _, right in differing] == ['name = "quickstart"', 'output = "../runs"']


def test_duplicate_label_beside_bad_parameter(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        "[generator]\nplugin = 'pythia-ee'\n"
        "[[imagers]]\nplugin = 'eta-phi'\nsize = 2\n"
        "[[imagers]]\nplugin = 'eta-phi'\n"
    )
    result = run_cli("spec", "validate", str(spec))
    assert result.stderr.splitlines() == [
        f"error: {spec}: imagers[0].size: must be >= 8, got 2",
        f"error: {spec}: imagers[1].label: duplicate label 'eta-phi' (also used by imagers[0]); "
        'give each of the imagers a distinct label = "..."',
    ]


def test_empty_flavour_list(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text("[generator]\nplugin = 'pythia-ee'\nflavors = []\n")
    result = run_cli("spec", "validate", str(spec))
    assert result.stderr.strip() == f"error: {spec}: generator.flavors: must not be empty, got []"
