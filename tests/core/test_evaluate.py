"""The evaluate stage and report.html, on a real run with a perfect and a poor model.

Both models are ``mean-target`` models trained and sampled through the core
on a real PYTHIA dataset. Their samples files then get known content.
``perfect`` draws the true parton image of its condition, and ``poor`` the
true image of a random other test condition (a model that ignores its
condition).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from qcdtool.core.cli import cli
from qcdtool.core.cli.base import CliState
from qcdtool.core.contracts import Direction, PluginContext, PluginParams, References, SampleSet
from qcdtool.core.evaluate import METRICS_FILE, REPORT_FILE, run_metric
from qcdtool.core.report import comparable_groups, compare, format_measurement, sampling_settings, steps_text
from qcdtool.core.spec import RunSpec
from tests.evaluation_support import (
    AlwaysFailsMetric,
    generate,
    other_truths,
    perfect,
    references,
    replace_generated,
    sample_set,
    source_registry,
    split_pairs,
    train_and_sample,
    write_spec,
)

SPEC = """
[run]
name = "evaluate"
seed = 7

[generator]
plugin = "pythia-ee"
flavors = ["b", "uds"]
parton_events = 3
hadronizations = 300

[[imagers]]
plugin = "eta-phi"
size = 16

[sampling]
per_condition = 4

[[models]]
plugin = "mean-target"
label = "perfect"

[[models]]
plugin = "mean-target"
label = "poor"

[[metrics]]
plugin = "inversion-accuracy"
cnn = false

[[metrics]]
plugin = "pixel-distance"

[[metrics]]
plugin = "observables-w1"
n_bootstrap = 10
configuration_figures = 0

[[metrics]]
plugin = "intensity-w1"
n_bootstrap = 5

[[metrics]]
plugin = "fpd"
n_batches = 5

[[metrics]]
plugin = "emd"
max_pairs = 300
"""
PER_CONDITION = 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str) -> Result:
    """Run the CLI with the registry of this repository's entry points and the test model."""
    return CliRunner().invoke(cli, list(args), obj=CliState(_registry=source_registry()), catch_exceptions=False)


@dataclass(frozen=True)
class EvaluatedRun:
    spec: RunSpec
    spec_path: Path
    result: Result
    record: dict[str, Any]
    report: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> EvaluatedRun:
    folder = tmp_path_factory.mktemp("evaluate")
    spec = write_spec(folder, SPEC)
    generate(spec)
    train_and_sample(spec)
    replace_generated(spec, "perfect", perfect(PER_CONDITION))
    replace_generated(spec, "poor", other_truths(PER_CONDITION, seed=3))
    result = invoke("evaluate", str(folder / "spec.toml"))
    record = json.loads((spec.run_dir / METRICS_FILE).read_text())
    report = (spec.run_dir / REPORT_FILE).read_text()
    return EvaluatedRun(spec, folder / "spec.toml", result, record, report)


def value(run: EvaluatedRun, model: str, metric: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = run.record["models"][model]["metrics"][metric]["values"][name]
    return found


class ReportParser(HTMLParser):
    """Collects image sources and checks that every non-void element is closed in order."""

    VOID: ClassVar[set[str]] = {"meta", "img", "br", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.mismatched.append(tag)
            return
        self.stack.pop()


@pytest.fixture(scope="module")
def parsed(run: EvaluatedRun) -> ReportParser:
    parser = ReportParser()
    parser.feed(run.report)
    parser.close()
    return parser


# --------------------------------------------------------------------------
# The command and metrics.json


def test_evaluate_exit_zero(run: EvaluatedRun) -> None:
    assert run.result.exit_code == 0
    assert run.result.stdout.strip() == str(run.spec.run_dir / REPORT_FILE)


def test_metrics_versions(run: EvaluatedRun) -> None:
    assert {"qcdtool", "torch", "numpy", "pythia8mc", "fastjet"} <= set(run.record["versions"])


def test_metrics_spec_hash(run: EvaluatedRun) -> None:
    assert run.record["spec_hash"] == run.spec.hash()


def test_every_metric_done(run: EvaluatedRun) -> None:
    for model in ("perfect", "poor"):
        statuses = {label: result["status"] for label, result in run.record["models"][model]["metrics"].items()}
        assert statuses == dict.fromkeys(
            ("inversion-accuracy", "pixel-distance", "observables-w1", "intensity-w1", "fpd", "emd"), "done"
        )


def test_samples_recorded(run: EvaluatedRun) -> None:
    samples = run.record["models"]["perfect"]["samples"]
    assert samples["per_condition"] == PER_CONDITION
    assert samples["path"] == "samples/perfect.h5"


@pytest.mark.parametrize(
    ("metric", "name"),
    [
        ("inversion-accuracy", "accuracy"),
        ("pixel-distance", "mse"),
        ("observables-w1", "w1_mass_per_configuration"),
        ("intensity-w1", "w1_intensity"),
        ("emd", "emd"),
    ],
)
def test_perfect_better_than_poor(run: EvaluatedRun, metric: str, name: str) -> None:
    good, bad = value(run, "perfect", metric, name), value(run, "poor", metric, name)
    if good["better"] == "higher":
        assert good["value"] > bad["value"]
    else:
        assert good["value"] < bad["value"]


@pytest.mark.parametrize(
    ("metric", "name"),
    [
        ("inversion-accuracy", "accuracy"),
        ("pixel-distance", "mse"),
        ("observables-w1", "w1_mass_per_configuration"),
        ("emd", "emd"),
    ],
)
def test_perfect_significantly_better(run: EvaluatedRun, metric: str, name: str) -> None:
    cells = {model: value(run, model, metric, name) for model in ("perfect", "poor")}
    assert compare(cells, cells["perfect"]["better"])[1] == "perfect"


def test_fpd_poor_not_better(run: EvaluatedRun) -> None:
    # A model that ignores its condition still has the true pooled distribution, which FPD cannot tell apart.
    good, bad = value(run, "perfect", "fpd", "fpd"), value(run, "poor", "fpd", "fpd")
    assert good["value"] < bad["value"] + 3.0 * np.hypot(good["uncertainty"], bad["uncertainty"])


def test_figures_png_and_pdf(run: EvaluatedRun) -> None:
    paths = [
        entry
        for model in run.record["models"].values()
        for result in model["metrics"].values()
        for entry in result["figures"].values()
    ]
    paths += [entry for model in run.record["models"].values() for entry in model["figures"].values()]
    assert len(paths) > 10
    for entry in paths:
        assert (run.spec.run_dir / entry["png"]).is_file(), entry["png"]
        assert (run.spec.run_dir / entry["pdf"]).is_file(), entry["pdf"]


def test_loss_figure(run: EvaluatedRun) -> None:
    assert (run.spec.run_dir / run.record["figures"]["loss"]["png"]).is_file()


# --------------------------------------------------------------------------
# report.html


def test_report_parses(parsed: ReportParser) -> None:
    assert parsed.mismatched == []
    assert parsed.stack == []


def test_report_images_embedded(parsed: ReportParser) -> None:
    assert len(parsed.images) > 10
    for source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)


def test_report_every_figure_shown(run: EvaluatedRun, parsed: ReportParser) -> None:
    figures = sum(
        len(result["figures"]) for model in run.record["models"].values() for result in model["metrics"].values()
    )
    figures += sum(len(model["figures"]) for model in run.record["models"].values()) + len(run.record["figures"])
    assert len(parsed.images) == figures


def test_report_no_external_resources(run: EvaluatedRun, parsed: ReportParser) -> None:
    assert "http://" not in run.report
    assert "https://" not in run.report
    assert "script" not in parsed.tags
    assert "link" not in parsed.tags


def test_report_names_both_models(run: EvaluatedRun) -> None:
    assert "<th>perfect</th>" in run.report
    assert "<th>poor</th>" in run.report


# --------------------------------------------------------------------------
# Reruns, missing samples, the pipeline


def test_rerun_skips(run: EvaluatedRun) -> None:
    result = invoke("evaluate", str(run.spec_path))
    assert result.exit_code == 0
    assert "are current" in result.stderr
    assert json.loads((run.spec.run_dir / METRICS_FILE).read_text())["created"] == run.record["created"]


def test_run_pipeline_evaluate_stage(run: EvaluatedRun) -> None:
    result = invoke("run", str(run.spec_path))
    assert result.exit_code == 0
    assert "stage evaluate: current" in result.stderr


def test_missing_samples_exit_two(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC)
    result = invoke("evaluate", str(spec_path))
    assert result.exit_code == 2
    assert "qcdtool sample SPEC --model perfect" in result.stderr
    assert "qcdtool sample SPEC --model poor" in result.stderr


def test_foreign_samples_rejected(run: EvaluatedRun, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run.spec_path.parent, copy)
    with h5py.File(copy / "runs" / "evaluate" / "samples" / "poor.h5", "r+") as file:
        file.attrs["training_hash"] = "0" * 64
    result = invoke("evaluate", str(copy / "spec.toml"), "--force")
    assert result.exit_code == 2
    assert "trained on a different spec, dataset or split" in result.stderr


def test_failing_metric_reported(run: EvaluatedRun, tmp_path: Path) -> None:
    # The metrics are not part of the training hash, so the copied samples stay valid.
    copy = tmp_path / "copy"
    shutil.copytree(run.spec_path.parent, copy)
    spec_text = (
        SPEC.split("[[metrics]]")[0]
        + '[[metrics]]\nplugin = "always-fails"\n\n[[metrics]]\nplugin = "pixel-distance"\n'
    )
    (copy / "spec.toml").write_text(spec_text)
    result = invoke("evaluate", str(copy / "spec.toml"))
    record = json.loads((copy / "runs" / "evaluate" / METRICS_FILE).read_text())
    assert result.exit_code == 1
    assert "always-fails on poor: RuntimeError: no score for poor" in " ".join(result.stderr.split())
    assert record["models"]["poor"]["metrics"]["always-fails"]["status"] == "failed"
    assert record["models"]["poor"]["metrics"]["pixel-distance"]["status"] == "done"
    assert "no score for poor" in (copy / "runs" / "evaluate" / REPORT_FILE).read_text()


def test_unknown_model_label(run: EvaluatedRun) -> None:
    result = invoke("evaluate", str(run.spec_path), "--model", "nobody")
    assert result.exit_code == 2
    assert "no model labelled 'nobody'" in result.stderr


# --------------------------------------------------------------------------
# One metric on one model


@pytest.fixture(scope="module")
def forward_samples(run: EvaluatedRun) -> tuple[SampleSet, References]:
    pairs = split_pairs(run.spec.run_dir / "dataset.h5", "eta-phi", Direction.FORWARD)
    return sample_set(pairs), references(pairs)


def metric_spec(run: EvaluatedRun, label: str) -> Any:
    return next(metric for metric in run.spec.metrics if metric.label == label)


def test_metric_skipped_for_direction(
    run: EvaluatedRun, forward_samples: tuple[SampleSet, References], tmp_path: Path
) -> None:
    table = metric_spec(run, "inversion-accuracy")
    instance = table.info.cls(table.params, PluginContext())
    record = run_metric(table, instance, *forward_samples, tmp_path)
    assert record["status"] == "skipped"
    assert "inverse models only" in record["message"]


def test_failing_metric_recorded(
    run: EvaluatedRun, forward_samples: tuple[SampleSet, References], tmp_path: Path
) -> None:
    table = metric_spec(run, "fpd")
    record = run_metric(table, AlwaysFailsMetric(PluginParams(), PluginContext()), *forward_samples, tmp_path)
    assert record["status"] == "failed"
    assert record["message"] == "RuntimeError: no score for model"


# --------------------------------------------------------------------------
# Report helpers


@pytest.mark.parametrize(
    ("number", "uncertainty", "text"),
    [
        (0.7494, 0.0171, "0.749 ± 0.017"),
        (0.0, 0.032, "0 ± 0.032"),
        (1234.5, 12.0, "1234 ± 12"),
        (float("nan"), 0.1, "–"),
        (None, None, "–"),
    ],
)
def test_format_measurement(number: float | None, uncertainty: float | None, text: str) -> None:
    assert format_measurement(number, uncertainty) == text


def cells(a: float, ua: float, b: float, ub: float) -> dict[str, dict[str, Any]]:
    return {"a": {"value": a, "uncertainty": ua}, "b": {"value": b, "uncertainty": ub}}


def test_compare_significant() -> None:
    assert compare(cells(1.0, 0.1, 2.0, 0.1), "lower") == ("a, by 1 (7.1σ)", "a")


def test_compare_not_significant() -> None:
    assert compare(cells(1.0, 0.3, 1.5, 0.3), "lower") == ("no significant difference (1.2σ)", None)


def test_compare_higher_is_better() -> None:
    assert compare(cells(1.0, 0.1, 2.0, 0.1), "higher")[1] == "b"


def test_compare_reference_value() -> None:
    assert compare(cells(1.0, 0.1, 2.0, 0.1), None) == ("reference value", None)


def test_groups_by_direction_and_imager() -> None:
    models = {
        "a": {"direction": "inverse", "imager": "eta-phi"},
        "b": {"direction": "forward", "imager": "eta-phi"},
        "c": {"direction": "inverse", "imager": "eta-phi"},
    }
    assert list(comparable_groups(models).values()) == [["a", "c"], ["b"]]


def test_report_ranks_accuracy(run: EvaluatedRun) -> None:
    row = re.search(r'<td title="[^"]*">accuracy</td>.*?</tr>', run.report, flags=re.S)
    assert row is not None
    assert "perfect, by" in row.group(0)


def test_report_states_uncertainty_kind(run: EvaluatedRun) -> None:
    assert "do not include the spread between trainings" in run.report


def test_steps_text_full_chain() -> None:
    # Samples files store steps = -1 when the sampler ran the model's whole chain.
    assert steps_text(-1, {"timesteps": 200}) == "200 (full chain)"
    assert steps_text(-1, {}) == "full chain"
    assert steps_text(20, {"timesteps": 200}) == "20"


def test_report_hides_ancestral_steps() -> None:
    # The ancestral sampler runs the whole chain, so [sampling] steps is not shown for it.
    ancestral = {"sampler": "ddpm", "steps": 50, "per_condition": 2}
    ddim = {"sampler": "ddim", "steps": 50, "per_condition": 2}
    assert sampling_settings(ancestral) == {"sampler": "ddpm", "per_condition": 2}
    assert sampling_settings(ddim) == ddim
