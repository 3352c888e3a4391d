"""report.html: one self-contained page that compares the models of a run.

The page is written from the same record as metrics.json, so the two always
agree. Figures are embedded as base64 PNG; the page loads no script, style
sheet, font or image from anywhere else and needs no server.

Reading order: first which model is better on which value, and by how many
standard deviations. Then the run (generator, split, models, metrics), one
section per metric with its values, tables and figures (models side by
side), the samples (image grids, mean images), the training losses and the
versions.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qcdtool.core.spec import RunSpec

#: A difference counts as significant from this many combined standard deviations.
SIGNIFICANCE = 2.0

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5rem auto; max-width: 1500px;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; border-bottom: 1px solid #ccc; margin-top: 2.2rem; }
h3 { font-size: 1.08rem; margin-top: 1.4rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.86rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f1f3f5; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 600; background: #e7f5e9; }
.small { color: #666; font-size: 0.78rem; }
.note { color: #444; font-size: 0.8rem; max-width: 60rem; }
.status-failed { color: #b00020; font-weight: 600; } .status-skipped { color: #8a6d00; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; flex: 1 1 600px; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e0; }
figcaption { font-size: 0.8rem; color: #555; }
nav ul { columns: 2; font-size: 0.9rem; }
pre { background: #f6f8fa; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
"""


def write_report(record: Mapping[str, Any], spec: RunSpec, run_dir: Path, output: Path) -> None:
    """Write report.html for an evaluation record (the content of metrics.json)."""
    from qcdtool.core.dataset import TEMPORARY_SUFFIX

    text = render_report(record, spec, run_dir)
    temporary = output.with_name(output.name + TEMPORARY_SUFFIX)
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(output)


def render_report(record: Mapping[str, Any], spec: RunSpec, run_dir: Path) -> str:
    """Return the report page as HTML text."""
    models: Mapping[str, Any] = record["models"]
    sections = [
        ("comparison", "Models side by side", _comparison_section(record, spec)),
        ("run", "The run", _run_section(record, spec)),
        *[
            (
                f"metric-{_anchor(metric.label)}",
                f"Metric {metric.label} ({metric.plugin})",
                _metric_section(metric.label, models, run_dir),
            )
            for metric in spec.metrics
        ],
        ("samples", "Samples against the truth", _samples_section(models, run_dir)),
        ("training", "Training", _training_section(record, run_dir)),
        ("reading", "How to read this report", _reading_section()),
        ("versions", "Versions", _versions_section(record)),
    ]
    toc = "".join(f'<li><a href="#{anchor}">{_text(title)}</a></li>' for anchor, title, _ in sections)
    body = "".join(f'<h2 id="{anchor}">{_text(title)}</h2>{content}' for anchor, title, content in sections)
    title = f"qcdtool report: {record.get('run', spec.run.name)}"
    version = record.get("versions", {}).get("qcdtool", "")
    spec_hash = str(record.get("spec_hash", ""))[:16]
    header = (
        f"<h1>{_text(title)}</h1>"
        f'<p class="small">written {_text(record.get("created", ""))} by qcdtool {_text(version)}; '
        f"spec hash {_text(spec_hash)}; every number below is also in metrics.json beside this file, every figure "
        "as PNG and PDF under figures/.</p>"
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
        f"<body>{header}<nav><ul>{toc}</ul></nav>{body}</body></html>\n"
    )


# --------------------------------------------------------------------------
# Small pieces


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _anchor(label: str) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "-" for character in label)


def format_number(value: float | None, digits: int = 3) -> str:
    """Format a number with ``digits`` significant digits, or a dash for a missing one."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def format_measurement(value: float | None, uncertainty: float | None) -> str:
    """``value ± uncertainty``, the value given to the uncertainty's second significant digit."""
    if value is None or not math.isfinite(value):
        return "–"
    if uncertainty is None or not math.isfinite(uncertainty) or uncertainty <= 0.0:
        return format_number(value, 4) + ("" if uncertainty is None or not math.isfinite(uncertainty) else " ± 0")
    if value == 0.0:
        return f"0 ± {uncertainty:.2g}"
    digits = max(1, math.floor(math.log10(abs(value))) - math.floor(math.log10(uncertainty)) + 2)
    return f"{value:.{digits}g} ± {uncertainty:.2g}"


def _table(rows: Sequence[Sequence[str]], numeric: Iterable[int] = ()) -> str:
    """Build an HTML table from rows of cells, the first row being the header; ``numeric`` columns align right."""
    if not rows:
        return ""
    columns = set(numeric)
    parts = ["<tr>" + "".join(f"<th>{_text(value)}</th>" for value in rows[0]) + "</tr>"]
    for row in rows[1:]:
        cells = [
            f'<td class="number">{_text(value)}</td>' if column in columns else f"<td>{_text(value)}</td>"
            for column, value in enumerate(row)
        ]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(parts) + "</table>"


def _image(run_dir: Path, paths: Mapping[str, str], caption: str) -> str:
    """Embed a figure as a base64 PNG, with a caption and the paths of its files."""
    png = run_dir / paths["png"]
    if not png.exists():
        return f'<p class="status-failed">figure {_text(paths["png"])} is missing</p>'
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_text(caption)}">'
        f"<figcaption>{_text(caption)} ({_text(paths['png'])}, {_text(paths.get('pdf', ''))})</figcaption></figure>"
    )


# --------------------------------------------------------------------------
# The comparison table


def compare(cells: Mapping[str, Mapping[str, Any]], better: str | None) -> tuple[str, str | None]:
    """Say which model is better on one value, by how much and how significantly.

    ``cells`` maps model labels to value records. Returns the text and the
    label of the model to highlight (None when no model is significantly
    better). The best model is compared with the runner-up; their
    uncertainties are combined in quadrature.
    """
    finite = {label: cell for label, cell in cells.items() if cell.get("value") is not None}
    if better is None:
        return "reference value", None
    if len(finite) < 2:
        return "–", None
    ordered = sorted(finite.items(), key=lambda item: item[1]["value"], reverse=better == "higher")
    (best, first), (_, second) = ordered[0], ordered[1]
    difference = abs(first["value"] - second["value"])
    sigma_first, sigma_second = first.get("uncertainty"), second.get("uncertainty")
    if sigma_first is None or sigma_second is None:
        return f"{best}, by {format_number(difference, 2)} (uncertainty unknown)", None
    combined = math.hypot(sigma_first, sigma_second)
    if combined == 0.0:
        return (f"{best}, by {format_number(difference, 2)}", best) if difference > 0.0 else ("equal", None)
    significance = difference / combined
    if significance < SIGNIFICANCE:
        return f"no significant difference ({significance:.1f}σ)", None
    return f"{best}, by {format_number(difference, 2)} ({significance:.1f}σ)", best


def comparable_groups(models: Mapping[str, Any]) -> dict[str, list[str]]:
    """Group model labels by direction and imager: only models of one group score the same task."""
    groups: dict[str, list[str]] = {}
    for label, entry in models.items():
        groups.setdefault(f"{entry['direction']} models on imager {entry['imager']}", []).append(label)
    return groups


def comparison_rows(
    models: Mapping[str, Any], metrics: Iterable[str]
) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """(metric label, value name, {model: value record}, better) for every value any of the models has."""
    rows = []
    for metric in metrics:
        names: dict[str, None] = {}
        for entry in models.values():
            names.update(dict.fromkeys(entry["metrics"].get(metric, {}).get("values", {})))
        for name in names:
            cells = {
                label: entry["metrics"][metric]["values"][name]
                for label, entry in models.items()
                if name in entry["metrics"].get(metric, {}).get("values", {})
            }
            better = next((cell.get("better") for cell in cells.values()), None)
            rows.append((metric, name, cells, better))
    return rows


def _comparison_section(record: Mapping[str, Any], spec: RunSpec) -> str:
    models: Mapping[str, Any] = record["models"]
    groups = comparable_groups(models)
    parts = [_failures(models)]
    if len(groups) > 1:
        parts.append(
            "<p>Models that map in different directions or use different images do not score the same task, so "
            "they are compared within each group only.</p>"
        )
    for title, labels in groups.items():
        if len(groups) > 1:
            parts.append(f"<h3>{_text(title)}</h3>")
        parts.append(_comparison_table({label: models[label] for label in labels}, spec))
    parts.append(_model_overview(models))
    return "".join(parts)


def _comparison_table(models: Mapping[str, Any], spec: RunSpec) -> str:
    """Values of models of one group side by side, with the verdict on each."""
    labels = list(models)
    rows = comparison_rows(models, [metric.label for metric in spec.metrics])
    wins = dict.fromkeys(labels, 0)
    undecided = 0
    body = []
    for metric, name, cells, better in rows:
        verdict, best = compare(cells, better)
        if best is not None:
            wins[best] += 1
        elif better is not None and len(cells) > 1:
            undecided += 1
        body.append(_comparison_row(metric, name, cells, better, labels, verdict, best))

    header = "".join(f"<th>{_text(label)}</th>" for label in labels)
    table = (
        f"<table><tr><th>metric</th><th>value</th>{header}<th>baseline</th><th>better</th></tr>{''.join(body)}</table>"
        if body
        else "<p>No metric values: the spec has no [[metrics]] tables, or every metric failed or was skipped.</p>"
    )
    summary = ""
    if len(labels) > 1 and any(better is not None for *_, better in rows):
        # No tally of wins: many values are views of the same thing (pooled and
        # per-configuration distances, a summary of several W1), so a count
        # would weigh a metric by how many numbers it reports.
        summary = (
            f"<p>A highlighted cell is at least {SIGNIFICANCE:g}σ better than the runner-up on that value; "
            "read the rows of the metric that answers your question (for the inverse map: "
            "inversion-accuracy) rather than counting cells. <b>The uncertainties are statistical: they come "
            "from the finite test sample and do not include the spread between trainings of the same model "
            "with other seeds</b>, which can be larger; to see it, train a copy of a model under another label "
            "(the training seed follows from the run seed and the label). Hover over a value's name for how it "
            "is computed; the sections below give every note, table and figure.</p>"
        )
    return summary + table


#: A baseline smaller than this fraction of its value is treated as zero: the
#: ratio would only say how exactly the truth agrees with itself (the inverse
#: truth is one image per configuration, so its halves agree perfectly).
RATIO_FLOOR = 1e-3


def _ratio_meaningful(cell: Mapping[str, Any], better: str | None) -> bool:
    """Return whether "value × baseline" is informative: a ranked value and a baseline not negligible beside it."""
    value, baseline = cell.get("value"), cell.get("baseline")
    if better is None or value is None or not baseline:
        return False
    return bool(abs(baseline) >= RATIO_FLOOR * abs(value))


def _comparison_row(
    metric: str,
    name: str,
    cells: Mapping[str, Mapping[str, Any]],
    better: str | None,
    labels: Sequence[str],
    verdict: str,
    best: str | None,
) -> str:
    """Format one row of the comparison table: the value of each model, the baseline and the verdict."""
    baselines = {cell.get("baseline") for cell in cells.values()}
    baseline = format_number(next(iter(baselines)), 3) if len(baselines) == 1 else "see cells"
    note = next((cell.get("note", "") for cell in cells.values()), "")
    row = [f'<td>{_text(metric)}</td><td title="{_text(note)}">{_text(name)}</td>']

    for label in labels:
        cell = cells.get(label)
        if cell is None:
            row.append('<td class="small">not computed</td>')
            continue
        extra = ""
        if len(baselines) > 1 and cell.get("baseline") is not None:
            extra += f'<br><span class="small">baseline {format_number(cell["baseline"])}</span>'
        if _ratio_meaningful(cell, better):
            ratio = format_number(cell["value"] / cell["baseline"], 2)
            extra += f'<br><span class="small">{ratio} × baseline</span>'
        style = "number best" if label == best else "number"
        measurement = format_measurement(cell.get("value"), cell.get("uncertainty"))
        row.append(f'<td class="{style}">{_text(measurement)}{extra}</td>')

    row.append(f'<td class="number">{_text(baseline)}</td>')
    direction = {"higher": "higher is better", "lower": "lower is better"}.get(better or "", "")
    row.append(f'<td>{_text(verdict)}<br><span class="small">{_text(direction)}</span></td>')
    return "<tr>" + "".join(row) + "</tr>"


def _failures(models: Mapping[str, Any]) -> str:
    lines = [
        f'<li><span class="status-{_text(result["status"])}">{_text(result["status"])}</span>: '
        f"{_text(metric)} on {_text(label)}: {_text(result.get('message', ''))}</li>"
        for label, entry in models.items()
        for metric, result in entry["metrics"].items()
        if result["status"] != "done"
    ]
    return f"<ul>{''.join(lines)}</ul>" if lines else ""


def _model_overview(models: Mapping[str, Any]) -> str:
    rows = [["model", "plugin", "direction", "imager", "test conditions", "samples per condition", "sampler", "steps"]]
    for label, entry in models.items():
        samples = entry["samples"]
        rows.append(
            [
                label,
                entry["plugin"],
                entry["direction"],
                str(entry["imager"]),
                f"{samples['conditions']:,}",
                str(samples["per_condition"]),
                str(samples.get("sampler")),
                steps_text(samples.get("steps"), entry.get("params", {})),
            ]
        )
    return "<h3>Models</h3>" + _table(rows)


def steps_text(steps: Any, params: Mapping[str, Any]) -> str:
    """Return the sampling steps as the report shows them (samples files store -1 for the full chain)."""
    if steps is None or int(steps) >= 0:
        return str(steps)
    timesteps = params.get("timesteps")
    return f"{timesteps} (full chain)" if timesteps is not None else "full chain"


# --------------------------------------------------------------------------
# Sections


def _parameters(table: Mapping[str, Any], leave_out: Iterable[str] = ()) -> str:
    skipped = set(leave_out)
    return ", ".join(f"{key} = {value}" for key, value in table.items() if key not in skipped)


def sampling_settings(sampling: Mapping[str, Any]) -> dict[str, Any]:
    """Return the [sampling] table as the report shows it: without ``steps`` where the sampler ignores it."""
    if sampling.get("sampler") == "ddpm":
        return {key: value for key, value in sampling.items() if key != "steps"}
    return dict(sampling)


def _run_section(record: Mapping[str, Any], spec: RunSpec) -> str:
    data = spec.to_dict()
    rows = [
        ["table", "settings"],
        ["[run]", _parameters(data["run"])],
        ["[generator]", _parameters(data["generator"])],
        ["[jets]", _parameters(data["jets"])],
        ["[split]", _parameters(data["split"])],
        ["[sampling]", _parameters(sampling_settings(data["sampling"]))],
    ]
    for key in ("imagers", "models", "metrics"):
        for index, table in enumerate(data.get(key, [])):
            rows.append([f"{key}[{index}]", _parameters(table)])
    summaries = "".join(
        f"<li><b>{_text(metric.label)}</b> ({_text(metric.plugin)}): {_text(metric.info.summary)}</li>"
        for metric in spec.metrics
    )
    return (
        _table(rows)
        + (f"<h3>Metrics</h3><ul>{summaries}</ul>" if summaries else "")
        + f"<details><summary>resolved spec (TOML)</summary><pre>{_text(spec.to_toml())}</pre></details>"
    )


def _metric_section(label: str, models: Mapping[str, Any], run_dir: Path) -> str:
    parts = []
    figures: dict[str, list[tuple[str, Mapping[str, str]]]] = {}
    tables: dict[str, list[tuple[str, list[list[str]]]]] = {}
    for model, entry in models.items():
        result = entry["metrics"].get(label)
        if result is None:
            continue
        status = result["status"]
        if status != "done":
            message = _text(result.get("message", ""))
            status_text = f'<span class="status-{_text(status)}">{_text(status)}</span>'
            parts.append(f"<p><b>{_text(model)}</b>: {status_text}: {message}</p>")
            continue
        rows = [["value", "result", "baseline", "better", "note"]]
        for name, value in result["values"].items():
            rows.append(
                [
                    name,
                    format_measurement(value["value"], value["uncertainty"]),
                    format_number(value["baseline"]),
                    value.get("better") or "reference",
                    value.get("note", ""),
                ]
            )
        seconds = f'<span class="small">({result.get("seconds", 0):.1f} s)</span>'
        parts.append(f"<h3>{_text(model)} {seconds}</h3>{_table(rows, numeric=(1, 2))}")
        for name, paths in result.get("figures", {}).items():
            figures.setdefault(name, []).append((model, paths))
        for name, table in result.get("tables", {}).items():
            tables.setdefault(name, []).append((model, table))
    for name, entries in tables.items():
        parts.append(f"<h3>Table: {_text(name.replace('_', ' '))}</h3>")
        for model, table in entries:
            parts.append(f"<p><b>{_text(model)}</b></p>{_table(table)}")
    for name, shown in figures.items():
        images = "".join(
            _image(run_dir, paths, f"{model}: {label}, {name.replace('_', ' ')}") for model, paths in shown
        )
        parts.append(f'<h3>Figure: {_text(name.replace("_", " "))}</h3><div class="figures">{images}</div>')
    return "".join(parts) or "<p>No model was scored by this metric.</p>"


def _samples_section(models: Mapping[str, Any], run_dir: Path) -> str:
    parts = []
    for name, title in (
        ("image_grid", "Condition, truth and generated samples"),
        ("mean_images", "Mean images per level"),
    ):
        images = "".join(
            _image(run_dir, entry["figures"][name], f"{model}: {title.lower()}")
            for model, entry in models.items()
            if name in entry.get("figures", {})
        )
        parts.append(f'<h3>{_text(title)}</h3><div class="figures">{images}</div>')
    return "".join(parts)


def _training_section(record: Mapping[str, Any], run_dir: Path) -> str:
    loss = record.get("figures", {}).get("loss")
    if loss is None:
        return "<p>No loss history (models/&lt;label&gt;/loss.csv) was found.</p>"
    return f'<div class="figures">{_image(run_dir, loss, "training loss of each model")}</div>'


def _reading_section() -> str:
    return """
<ul>
<li><b>value ± uncertainty</b>: the uncertainty is one standard deviation: a binomial error for accuracies,
a bootstrap standard deviation for Wasserstein distances, a fit error for FPD, a standard error of the mean
elsewhere. Each value's note names its kind.</li>
<li><b>baseline</b>: what the same number is for the truth itself or by chance, so that a value can be judged
against the noise. For distances between distributions (W1, FPD, forward EMD and pixel distance) it is the
truth compared with truth (two halves of the true images, or two true hadronizations): a model at the baseline is
as close to the truth as the truth's own statistical fluctuations. For accuracies it is chance (1/K). For the
inverse pixel distance and EMD it is a guess that ignores the condition. Classifier ceilings bound what any
inverse model can reach; they are reference values, not scores.</li>
<li><b>× baseline</b>: the value divided by its baseline, left out where the baseline is below a
thousandth of the value (then the truth agrees with itself almost exactly, as the parton images of the
inverse direction do, and the ratio says nothing about the model).</li>
<li><b>better</b>: the best model on that value and its margin over the runner-up, in combined standard
deviations (the two uncertainties added in quadrature, as if independent). Both models are scored against the
same true images, so part of their noise is shared, and the true significance of a difference can be larger.
Below 2σ a difference is reported as not significant.</li>
<li><b>pooled against per configuration</b>: a pooled W1 compares all generated images with all true ones; a
model that ignores its condition can still reproduce the pooled distribution. The per-configuration values
compare each parton configuration's samples with that configuration's own truth, which such a model fails.</li>
</ul>
"""


def _versions_section(record: Mapping[str, Any]) -> str:
    rows = [["package", "version"], *[[name, version] for name, version in record.get("versions", {}).items()]]
    return _table(rows)
