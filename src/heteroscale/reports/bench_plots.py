"""One plot per benchmark scenario: what each row billed (GPU-hours, or cost in a GPU mix) against its SLO
attainment, as-shipped rows as circles and tuned rows as triangles, the Pareto line through the rows no
other row dominates (:func:`heteroscale.reports.domination.pareto_front`) and heteroscale's rows
ringed; a second panel zooms on the rows within 2 points of the best attainment. Drawn like
:mod:`.plots`: matplotlib's object API on an Agg canvas, default style, no software tag, so the same
result gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from heteroscale.reports.domination import pareto_front

_DPI = 80
ZOOM_PP = 2.0  # the right panel: rows within this many points of the best SLO attainment


def write_pareto_plots(result: Mapping[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.style.context("default"):
        for name, scenario in result["scenarios"].items():
            paths.append(_plot(name, scenario, out_dir / f"{name}.png"))
    return paths


def _plot(name: str, scenario: Mapping[str, Any], path: Path) -> Path:
    """Every row (left) and those within ``ZOOM_PP`` points of the best SLO attainment (right)."""
    billed = scenario["billed"]
    fig = Figure(figsize=(11.0, 4.5))
    FigureCanvasAgg(fig)
    scores = {
        row_name: (float(row["mean"]["slo_attainment"] or 0.0), float(row["mean"][billed]))
        for row_name, row in scenario["rows"].items()
    }
    best = max(slo for slo, _ in scores.values())
    near = {n for n, (slo, _) in scores.items() if slo >= best - ZOOM_PP / 100.0}
    for k, shown in enumerate((set(scores), near)):
        ax = fig.add_subplot(1, 2, k + 1)
        _draw(ax, scenario, scores, shown)
        title = (
            f"{name}: mean over {', '.join(scenario['score_parts'])}"
            if k == 0
            else f"within {ZOOM_PP:g} pt of the best SLO"
        )
        ax.set_title(title + " (o as shipped, ^ tuned)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return path


def _draw(ax: Any, scenario: Mapping[str, Any], scores: Mapping[str, tuple[float, float]], shown: set[str]) -> None:
    billed = scenario["billed"]
    contenders = list(dict.fromkeys(row["contender"] for row in scenario["rows"].values()))
    for row_name, row in scenario["rows"].items():
        if row_name not in shown:
            continue
        slo, cost = scores[row_name]
        colour = f"C{contenders.index(row['contender']) % 10}"
        marker = "^" if row["kind"] == "tuned" else "o"
        ax.scatter([cost], [100.0 * slo], color=colour, marker=marker, s=40, zorder=3)
        ax.annotate(row_name, (cost, 100.0 * slo), fontsize=6, xytext=(3, 3), textcoords="offset points")
        if row["contender"] == "heteroscale":
            ax.scatter([cost], [100.0 * slo], facecolors="none", edgecolors="black", s=140, zorder=4)
    front = pareto_front({n: scores[n] for n in scores if n in shown})
    ax.plot([scores[n][1] for n in front], [100.0 * scores[n][0] for n in front], color="grey", lw=1, ls="--",
            zorder=2, label="Pareto line")  # fmt: skip
    ax.set_xlabel("cost (A100 GPU-hour units)" if billed == "cost" else "GPU-hours")
    ax.set_ylabel("SLO attainment (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
