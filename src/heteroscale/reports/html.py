"""A self-contained HTML run report: who wins (a verdict per scenario and service), the headline
comparison table (fits a 1,280 px window), the other figures, targets and notes as tables, the plots.

The page has inline CSS, no JavaScript and no external assets; images are referenced by their path
relative to the report, so the directory can be moved or archived as a whole. Every piece of text is
escaped. Missing or ``None`` figures are shown as "—". The output has no timestamp: the same inputs
give the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPORT_HTML = "report.html"
MISSING = "—"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 80rem; padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 1rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.3rem 0.6rem; }
th { background: #f3f3f3; text-align: center; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { font-weight: 600; }
tbody tr:nth-child(even) { background: #fafafa; }
tr.pick td { font-weight: 700; background: #fff6d6; }
th { white-space: normal; max-width: 7rem; }
td.text { max-width: 60rem; }
span.ci { display: block; font-size: 0.75rem; color: #666; }
ul.verdict li { margin: 0.3rem 0; }
.scroll { overflow-x: auto; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85rem; }
""".strip()

Formatter = Callable[[Any], str]


# -- formatting -----------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _fixed(digits: int) -> Formatter:
    def fmt(value: Any) -> str:
        x = _number(value)
        return _other(value) if x is None else f"{x:,.{digits}f}"

    return fmt


def _pct(value: Any) -> str:
    x = _number(value)
    return _other(value) if x is None else f"{100.0 * x:.1f} %"


def _ms(value: Any) -> str:
    x = _number(value)
    if x is None:
        return _other(value)
    ms = 1000.0 * x
    return f"{ms:,.0f} ms" if abs(ms) >= 100.0 else f"{ms:.1f} ms"


def _other(value: Any) -> str:
    """Text for something that is not a finite number: None, NaN and containers are missing."""
    if value is None or isinstance(value, Mapping | list | tuple | float):
        return MISSING
    return str(value)


def _get(summary: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# -- columns --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    tooltip: str
    path: tuple[str, ...]
    fmt: Formatter
    latency: bool = False  # marked "(est.)" when the run's latencies are estimates
    optional: bool = False  # shown only when some summary has the key


# the headline columns first (who wins: SLO, bill, against the bound and the oracle, stability), short
# headers with the full meaning in a tooltip, so that the main table fits a 1,280 px window
_COLUMNS: tuple[_Column, ...] = (
    _Column("SLO attainment", "requests meeting both TTFT and TBT SLOs ÷ all requests", ("slo_attainment",), _pct),
    _Column("GPU-hours", "GPUs × time from launch to gone", ("gpu_hours",), _fixed(1)),
    _Column("cost", "GPU-hours weighted by relative SKU cost (A100 = 1.0)", ("cost",), _fixed(1)),
    _Column(
        "× LB",
        "GPU-hours ÷ the true lower bound (the offered work at saturation on the cheapest GPUs)",
        ("gpu_hours_vs_lower_bound",),
        _fixed(3),
        optional=True,
    ),
    _Column(
        "vs oracle",
        "GPU-hours ÷ the ratio-oracle's (a reference at the SLO knee, not a bound)",
        ("gpu_hours_vs_oracle",),
        _fixed(3),
        optional=True,
    ),
    _Column("actions/h", "scale actions per simulated hour", ("scale_actions_per_hour",), _fixed(2), optional=True),
    _Column(
        "P/D dev",
        "time-averaged deviation of the Ready prefill/decode ratio from its target",
        ("pd_ratio_deviation",),
        _fixed(3),
        optional=True,
    ),
    _Column("TTFT p99", "time to first token, 99th percentile", ("ttft_p99_s",), _ms, latency=True),
    _Column("TBT p99", "time between tokens, 99th percentile", ("tbt_p99_s",), _ms, latency=True),
    _Column("failed", "failed requests, every cause", ("requests_failed",), _fixed(0), optional=True),
    _Column(
        "killed",
        "requests failed because an instance was removed under them (killed, or drained past its deadline)",
        ("requests_failed_by_scale_in",),
        _fixed(0),
        optional=True,
    ),
)

# the rest of each run's figures, in a second table under the headline one
_DETAIL_COLUMNS: tuple[_Column, ...] = (
    _Column("TTFT p50", "time to first token, median over requests", ("ttft_p50_s",), _ms, latency=True),
    _Column("TBT p50", "time between tokens, median over requests", ("tbt_p50_s",), _ms, latency=True),
    _Column("GPU util", "GPU-time-weighted kernel-busy share of billed time", ("avg_gpu_util",), _pct),
    _Column("GPU util prefill", "GPU utilisation of prefill instances", ("avg_gpu_util_by_role", "prefill"), _pct),
    _Column("GPU util decode", "GPU utilisation of decode instances", ("avg_gpu_util_by_role", "decode"), _pct),
    _Column("SM activity", "busy fraction × per-phase SM occupancy", ("avg_sm_activity",), _pct),
    _Column(
        "peak GPUs held",
        "the most GPUs held by instances (pending to draining) after any reconcile",
        ("peak_gpus_held",),
        _fixed(0),
        optional=True,
    ),
    _Column("scale actions", "launches plus removals after the initial deployment", ("scale_actions",), _fixed(0)),
)


def _columns(summaries: Mapping[str, Mapping[str, Any]], columns: Sequence[_Column] = _COLUMNS) -> list[_Column]:
    return [
        c
        for c in columns
        if not c.optional or any(isinstance(s, Mapping) and c.path[0] in s for s in summaries.values())
    ]


# -- page -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerdictLine:
    """Who wins in one scenario and service: the verdict sentence and the rows it singles out."""

    scope: str  # e.g. "default / chat"
    sentence: str


def write_html_report(
    out_dir: Path,
    title: str,
    summaries: Mapping[str, Mapping[str, Any]],
    images: Sequence[Path],
    notes: Sequence[str | tuple[str, str]] = (),
    *,
    verdicts: Sequence[VerdictLine] = (),
    targets: Mapping[str, Mapping[str, Any]] | None = None,
    highlight: Sequence[str] = (),
) -> Path:
    """Write ``report.html`` into ``out_dir`` and return its path.

    ``summaries`` maps a policy name to its run summary (the dict of ``sim.summary.summarise``, plus
    optional comparison figures; a figure may be ``{mean, ci95, n}`` over seeds, shown as mean ± ci95);
    ``images`` are shown in order, referenced relative to ``out_dir``; ``verdicts`` open the page;
    ``targets`` (per service, the pressure-tested targets) and ``notes`` (a topic and its text) are
    shown as tables; rows named in ``highlight`` are set in bold.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if verdicts:
        parts += [
            "<h2>Verdict</h2>",
            '<ul class="verdict">',
            *(f"<li><b>{escape(v.scope)}</b>: {escape(v.sentence)}</li>" for v in verdicts),
            "</ul>",
        ]
    parts += ["<h2>Comparison</h2>", _table("comparison", summaries, _columns(summaries), highlight)]
    parts += ["<h2>Details</h2>", _table("details", summaries, _columns(summaries, _DETAIL_COLUMNS), highlight)]
    per_service = _service_table(summaries)
    if per_service:
        parts += ["<h2>Per service</h2>", per_service]
    if targets:
        parts += ["<h2>Targets</h2>", _targets_table(targets)]
    if notes:
        parts += ["<h2>Notes</h2>", _notes_table(notes)]
    if images:
        parts += ["<h2>Figures</h2>", *(_figure(out_dir, image) for image in images)]
    parts += ["</body>", "</html>", ""]
    path = out_dir / REPORT_HTML
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _cell(column: _Column, value: Any) -> tuple[str, str | None]:
    """A figure's text and, for a ``{mean, ci95, n}`` figure over several runs, its 95 % half-width."""
    if isinstance(value, Mapping) and "mean" in value:
        text = column.fmt(value.get("mean"))
        ci = _number(value.get("ci95"))
        return text, None if ci is None or text == MISSING else f"± {column.fmt(ci)}"
    return column.fmt(value), None


def _table(
    table_id: str, summaries: Mapping[str, Mapping[str, Any]], columns: Sequence[_Column], highlight: Sequence[str]
) -> str:
    head = "".join(f'<th title="{escape(c.tooltip)}">{escape(c.header)}</th>' for c in columns)
    lines = [
        f'<div class="scroll"><table id="{escape(table_id)}">',
        f"<thead><tr><th>policy</th>{head}</tr></thead>",
        "<tbody>",
    ]
    for name, summary in summaries.items():
        estimated = isinstance(summary, Mapping) and summary.get("latency_estimated") is True
        cells = []
        for c in columns:
            text, ci = _cell(c, _get(summary, c.path))
            if c.latency and estimated and text != MISSING:
                text += " (est.)"
            # the interval on a line of its own, small: the column stays as narrow as its figure
            below = "" if ci is None else f'<span class="ci">{escape(ci)}</span>'
            cells.append(f'<td class="num">{escape(text)}{below}</td>')
        marked = ' class="pick"' if name in highlight else ""
        lines.append(f'<tr{marked}><td class="name">{escape(str(name))}</td>{"".join(cells)}</tr>')
    if not summaries:
        lines.append(f'<tr><td colspan="{len(columns) + 1}">no runs</td></tr>')
    lines += ["</tbody>", "</table></div>"]
    return "\n".join(lines)


def _plain_value(value: Any) -> str:
    """A target's value, readable: four significant digits, a per-shape table as ``shape = value`` pairs."""
    if isinstance(value, list | tuple) and all(isinstance(v, list | tuple) and len(v) == 2 for v in value):
        return "; ".join(f"{k} = {_plain_value(v)}" for k, v in value)
    x = _number(value)
    if x is None:
        return MISSING if value is None else str(value)
    if isinstance(value, int) or x.is_integer():
        return f"{x:,.0f}"
    return f"{x:,.4g}" if abs(x) >= 1e-3 else f"{x:.3g}"


def _targets_table(targets: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per target, one column per service."""
    services = list(targets)
    keys: dict[str, None] = {}
    for figures in targets.values():
        keys.update(dict.fromkeys(figures))
    head = "".join(f"<th>{escape(s)}</th>" for s in services)
    rows = [
        f'<tr><td class="name">{escape(k)}</td>'
        + "".join(f'<td class="num">{escape(_plain_value(targets[s].get(k)))}</td>' for s in services)
        + "</tr>"
        for k in keys
    ]
    lines = ['<div class="scroll"><table id="targets">', f"<thead><tr><th>target</th>{head}</tr></thead>", "<tbody>"]
    return "\n".join([*lines, *rows, "</tbody>", "</table></div>"])


def _notes_table(notes: Sequence[str | tuple[str, str]]) -> str:
    rows = []
    for note in notes:
        topic, text = ("", note) if isinstance(note, str) else note
        rows.append(f'<tr><td class="name">{escape(topic)}</td><td class="text">{escape(text)}</td></tr>')
    return "\n".join(['<table id="notes">', "<tbody>", *rows, "</tbody>", "</table>"])


def _mean(value: Any) -> Any:
    """A ``{mean, ci95, n}`` figure's mean (compare's seeds aggregated), else the value itself."""
    return value.get("mean") if isinstance(value, Mapping) and "mean" in value else value


def _service_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Per (policy, service) outcome and SLO targets; empty when no summary lists services."""
    rows: list[str] = []
    for name, summary in summaries.items():
        services = _get(summary, ("services",))
        if not isinstance(services, Mapping):
            continue
        for service, figures in services.items():
            if not isinstance(figures, Mapping):
                continue
            cells = [
                _fixed(0)(_mean(figures.get("requests_completed"))),
                _fixed(0)(_mean(figures.get("requests_total"))),
                _fixed(0)(_mean(figures.get("requests_failed_by_scale_in"))),
                _pct(_mean(figures.get("slo_attainment"))),
                _ms(_mean(figures.get("ttft_p99_s"))),
                _ms(_mean(figures.get("tbt_p99_s"))),
                _ms(_mean(_get(figures, ("slo", "ttft_s")))),
                _ms(_mean(_get(figures, ("slo", "tbt_s")))),
            ]
            rows.append(
                f'<tr><td class="name">{escape(str(name))}</td><td>{escape(str(service))}</td>'
                + "".join(f'<td class="num">{escape(c)}</td>' for c in cells)
                + "</tr>"
            )
    if not rows:
        return ""
    headers = (
        "policy",
        "service",
        "completed",
        "requests",
        "failed by scale-in",
        "SLO attainment",
        "TTFT p99",
        "TBT p99",
    )
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    head += '<th title="TTFT target">TTFT SLO</th><th title="TBT target">TBT SLO</th>'
    return "\n".join(
        [
            '<div class="scroll"><table id="services">',
            f"<thead><tr>{head}</tr></thead>",
            "<tbody>",
            *rows,
            "</tbody>",
            "</table></div>",
        ]
    )


def _figure(out_dir: Path, image: Path) -> str:
    rel = Path(os.path.relpath(image.resolve(), out_dir.resolve())).as_posix()
    src = escape(quote(rel), quote=True)
    caption = escape(image.stem.replace("_", " "))
    return f'<figure><img src="{src}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
