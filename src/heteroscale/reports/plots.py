"""Run plots: load, instance counts, utilisation and latency over time, one line per policy.

Input is the per-window time series of each run (``WindowRow.flat()`` dicts), one run per policy.
A run with several services gets one column of panels per service. ``None`` values are gaps in a
line; a panel without any value says "no data".

Drawing uses matplotlib's object API on an explicit Agg canvas: pyplot is never imported, so no
display is needed, the process-wide backend is left alone and there is no global figure registry
to leak (each figure is cleared after saving and dropped on return). The style is reset to
matplotlib's defaults while drawing and the PNGs carry no software tag, so the same input and
matplotlib version give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter, FuncFormatter, MaxNLocator

Value = float | int | str | bool | None
Row = Mapping[str, Value]
Metric = Callable[[Sequence[Row]], list[float]]

LOAD_AND_INSTANCES_PNG = "load_and_instances.png"
UTILISATION_PNG = "utilisation.png"
LATENCY_PNG = "latency.png"
PARETO_PNG = "gpu_hours_vs_slo.png"

_DPI = 100
_COL_WIDTH_IN = 7.0
_ROLES = ("prefill", "decode")


@dataclass(frozen=True, slots=True)
class RunSeries:
    """One run's time series: a display label and its ``WindowRow.flat()`` rows."""

    label: str
    rows: Sequence[Row]


@dataclass(frozen=True, slots=True)
class _Policy:
    label: str
    colour: str
    by_service: dict[str, list[Row]]
    background: bool = False  # drawn thin and grey behind the singled-out policies


@dataclass(frozen=True, slots=True)
class ParetoPoint:
    """One contender on the GPU-hours vs SLO-attainment chart: means and 95 % half-widths (None: one run)."""

    label: str
    billed: float
    billed_ci: float | None
    slo_attainment: float  # a fraction, 0–1
    slo_ci: float | None


_OTHERS = "0.72"  # the grey of the contenders not singled out


def write_plots(
    out_dir: Path,
    runs: Mapping[str, RunSeries],
    slo: Mapping[str, tuple[float, float]] | None = None,
    highlight: Sequence[str] = (),
) -> list[Path]:
    """Write ``load_and_instances.png``, ``utilisation.png`` and ``latency.png``; return their paths.

    ``runs`` maps a policy id to its series (legend entries use ``RunSeries.label``, in mapping order);
    ``slo`` maps a service to its ``(ttft_s, tbt_s)`` targets, drawn as horizontal lines. With
    ``highlight`` (policy ids), those policies are drawn in colour on top and every other one thin and
    grey, under one legend entry.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    picked = [k for k in highlight if k in runs]  # in the order given: the first gets the first colour
    # the grey ones first, so the picked ones draw on top (and lead the legend in the order given)
    keys = sorted(runs, key=lambda k: (k in picked, picked.index(k) if k in picked else 0))
    policies = [
        _Policy(
            label=runs[key].label,
            colour=f"C{picked.index(key) % 10}" if key in picked else (_OTHERS if picked else f"C{i % 10}"),
            by_service=_by_service(runs[key].rows),
            background=bool(picked) and key not in picked,
        )
        for i, key in enumerate(keys)
    ]
    services = _services(policies)
    targets = dict(slo or {})
    with matplotlib.style.context("default"):
        return [
            _save(_load_and_instances(policies, services), out_dir / LOAD_AND_INSTANCES_PNG),
            _save(_utilisation(policies, services), out_dir / UTILISATION_PNG),
            _save(_latency(policies, services, targets), out_dir / LATENCY_PNG),
        ]


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return path


# -- series ---------------------------------------------------------------------------------------


def _num(value: Value) -> float:
    """A finite float, or NaN (a gap) for None, text, booleans and non-finite numbers."""
    if value is None or isinstance(value, bool | str):
        return math.nan
    x = float(value)
    return x if math.isfinite(x) else math.nan


def _by_service(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Rows grouped by service (first-appearance order), each sorted by time; rows without a time dropped."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        if math.isnan(_num(row.get("t_s"))):
            continue
        service = row.get("service")
        out.setdefault("" if service is None else str(service), []).append(row)
    for series in out.values():
        series.sort(key=lambda r: _num(r.get("t_s")))
    return out


def _services(policies: Sequence[_Policy]) -> list[str]:
    seen: dict[str, None] = {}
    for p in policies:
        for service in p.by_service:
            seen.setdefault(service, None)
    return list(seen)


def _hours(rows: Sequence[Row]) -> list[float]:
    return [_num(r.get("t_s")) / 3600.0 for r in rows]


def _col(key: str, scale: float = 1.0) -> Metric:
    def metric(rows: Sequence[Row]) -> list[float]:
        return [_num(r.get(key)) * scale for r in rows]

    return metric


def _total(*keys: str) -> Metric:
    def metric(rows: Sequence[Row]) -> list[float]:
        return [math.fsum(_num(r.get(k)) for k in keys) for r in rows]

    return metric


# -- drawing --------------------------------------------------------------------------------------


def _figure(n_rows: int, n_cols: int, row_height_in: float, title: str) -> tuple[Figure, list[list[Axes]]]:
    fig = Figure(figsize=(_COL_WIDTH_IN * n_cols, 1.2 + row_height_in * n_rows), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    grid = fig.subplots(n_rows, n_cols, sharex="col", squeeze=False)
    axes: list[list[Axes]] = [[grid[r][c] for c in range(n_cols)] for r in range(n_rows)]
    return fig, axes


def _no_data_figure(title: str) -> Figure:
    fig, axes = _figure(1, 1, 2.5, title)
    _no_data(axes[0][0])
    axes[0][0].set_xticks([])
    axes[0][0].set_yticks([])
    return fig


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=12)


def _draw(
    ax: Axes,
    policies: Sequence[_Policy],
    service: str,
    metric: Metric,
    *,
    linestyle: str = "-",
    steps: bool = False,
) -> list[float]:
    """One line per policy with rows for the service; returns every finite value drawn."""
    finite: list[float] = []
    for p in policies:
        rows = p.by_service.get(service, [])
        if not rows:
            continue
        ys = metric(rows)
        ax.plot(
            _hours(rows),
            ys,
            color=p.colour,
            linestyle=linestyle,
            linewidth=0.8 if p.background else 1.6,
            alpha=0.8 if p.background else 1.0,
            drawstyle="steps-post" if steps else "default",
        )
        finite.extend(y for y in ys if not math.isnan(y))
    return finite


def _finish_column(axes: Sequence[Axes], service: str, n_services: int) -> None:
    if n_services > 1 or service:
        axes[0].set_title(service or "(unnamed service)", fontsize=10, loc="left")
    axes[-1].set_xlabel("time (h)")
    for ax in axes:
        ax.grid(True, linewidth=0.4, alpha=0.5)


def _plain(value: float, _pos: int | None = None) -> str:
    """A log-axis tick label without scientific notation: 0.5, 20, 1,000, 100,000."""
    return f"{value:,.0f}" if value >= 1.0 else f"{value:g}"


class _LogMinorFormatter(Formatter):
    """Plain labels on some minor ticks of a log axis, only when it spans two decades or less."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if self.axis is None or x <= 0.0:
            return ""
        lo, hi = sorted(self.axis.get_view_interval())
        span = hi / lo if lo > 0.0 else math.inf
        mantissa = x / 10.0 ** math.floor(math.log10(x))
        digit = round(mantissa)
        if abs(mantissa - digit) > 1e-6 or span > 100.0:
            return ""
        return _plain(x) if digit in ((2, 3, 4, 5, 6, 8) if span <= 5.0 else (2, 5)) else ""


def _legend(fig: Figure, policies: Sequence[_Policy], extra: Sequence[Line2D] = ()) -> None:
    """One legend under the panels, inside the figure (constrained layout makes room for every row)."""
    handles = [Line2D([], [], color=p.colour, linewidth=1.6, label=p.label) for p in policies if not p.background]
    others = [p.label for p in policies if p.background]
    if others:
        handles.append(Line2D([], [], color=_OTHERS, linewidth=1.0, label=f"others ({len(others)})"))
    handles.extend(extra)
    if not handles:
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width_px = fig.bbox.width
    for ncols in range(min(len(handles), 4), 0, -1):  # as many columns as fit the figure's width
        legend = fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=9, frameon=False)
        if ncols == 1 or legend.get_window_extent(renderer).width <= width_px - 4:
            return
        legend.remove()


def _load_and_instances(policies: Sequence[_Policy], services: Sequence[str]) -> Figure:
    title = "Load and instances (ready + starting)"
    if not services:
        return _no_data_figure(title)
    fig, axes = _figure(3, len(services), 2.2, title)
    for c, service in enumerate(services):
        load_ax, prefill_ax, decode_ax = axes[0][c], axes[1][c], axes[2][c]
        tps_ax = load_ax.twinx()
        arrivals = _draw(load_ax, policies, service, _col("arrivals_per_s"))
        tps = _draw(tps_ax, policies, service, _col("decode_tps"), linestyle="--")
        load_ax.set_ylabel("arrivals/s")
        tps_ax.set_ylabel("decode tokens/s")
        if not arrivals and not tps:
            _no_data(load_ax)
        for ax, role in ((prefill_ax, "prefill"), (decode_ax, "decode")):
            if not _draw(ax, policies, service, _total(f"{role}_ready", f"{role}_starting"), steps=True):
                _no_data(ax)
            ax.set_ylabel(f"{role} instances")
            ax.set_ylim(bottom=0.0)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _finish_column([load_ax, prefill_ax, decode_ax], service, len(services))
    style_keys = [
        Line2D([], [], color="0.3", linestyle="-", label="arrivals/s (left)"),
        Line2D([], [], color="0.3", linestyle="--", label="decode tokens/s (right)"),
    ]
    _legend(fig, policies, style_keys)
    return fig


def _utilisation(policies: Sequence[_Policy], services: Sequence[str]) -> Figure:
    title = "GPU utilisation and SM activity by role"
    if not services:
        return _no_data_figure(title)
    panels = [
        (f"{role} {label} (%)", _col(f"{role}_{key}", 100.0))
        for key, label in (("gpu_util", "GPU util"), ("sm_activity", "SM activity"))
        for role in _ROLES
    ]
    fig, axes = _figure(len(panels), len(services), 1.8, title)
    for c, service in enumerate(services):
        column = [axes[r][c] for r in range(len(panels))]
        for ax, (ylabel, metric) in zip(column, panels, strict=True):
            if not _draw(ax, policies, service, metric):
                _no_data(ax)
            ax.set_ylabel(ylabel)
            ax.set_ylim(0.0, 105.0)
        _finish_column(column, service, len(services))
    _legend(fig, policies)
    return fig


def _latency(policies: Sequence[_Policy], services: Sequence[str], slo: Mapping[str, tuple[float, float]]) -> Figure:
    title = "Latency p90 per window (log scale), SLO dotted"
    if not services:
        return _no_data_figure(title)
    fig, axes = _figure(2, len(services), 2.4, title)
    for c, service in enumerate(services):
        column = [axes[0][c], axes[1][c]]
        estimated = any(r.get("estimated_latency") is True for p in policies for r in p.by_service.get(service, []))
        suffix = ", estimated" if estimated else ""
        target = slo.get(service)
        for i, (ax, key, name) in enumerate(((column[0], "ttft_p90_s", "TTFT"), (column[1], "tbt_p90_s", "TBT"))):
            values = _draw(ax, policies, service, _col(key, 1000.0))
            line_ms = _num(target[i]) * 1000.0 if target is not None else math.nan
            if not math.isnan(line_ms) and line_ms > 0.0:
                ax.axhline(line_ms, color="black", linestyle=":", linewidth=1.2)
            if not values:
                _no_data(ax)
            if any(v > 0.0 for v in values):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(_plain))
                ax.yaxis.set_minor_formatter(_LogMinorFormatter())
            ax.set_ylabel(f"{name} p90 (ms{suffix})")
        _finish_column(column, service, len(services))
    _legend(fig, policies, [Line2D([], [], color="black", linestyle=":", label="SLO")])
    return fig


def write_pareto(
    out_dir: Path, points: Sequence[ParetoPoint], title: str, unit: str = "GPU-hours", highlight: Sequence[str] = ()
) -> Path:
    """``gpu_hours_vs_slo.png``: each contender's bill against its SLO attainment, with 95 % intervals
    over seeds as error bars; ``highlight`` labels are drawn in colour, the others in grey."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(_COL_WIDTH_IN, 4.6), dpi=_DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        fig.suptitle(title)
        if not points:
            _no_data(ax)
        picked = [p.label for p in points if p.label in highlight]
        for p in sorted(points, key=lambda q: q.label in picked):
            colour = f"C{picked.index(p.label) % 10}" if p.label in picked else "0.45"
            ax.errorbar(
                p.billed,
                100.0 * p.slo_attainment,
                xerr=p.billed_ci,
                yerr=None if p.slo_ci is None else 100.0 * p.slo_ci,
                fmt="o",
                color=colour,
                markersize=7 if p.label in picked else 5,
                capsize=3,
            )
            ax.annotate(
                p.label,
                (p.billed, 100.0 * p.slo_attainment),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=8,
                fontweight="bold" if p.label in picked else "normal",
                color=colour if p.label in picked else "0.25",
            )
        ax.set_xlabel(f"{unit} (lower is better)")
        ax.set_ylabel("SLO attainment (%) (higher is better)")
        ax.grid(True, linewidth=0.4, alpha=0.5)
        ax.margins(x=0.15, y=0.15)
        return _save(fig, out_dir / PARETO_PNG)
