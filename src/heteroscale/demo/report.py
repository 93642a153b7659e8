"""The demo's report, beside the controller's journal: what the simulated cluster went through.

* ``decisions.txt`` — one line per decision of the controller (``reports.decisions``);
* ``summary.json`` — the simulator's run summary (requests, SLO attainment, latencies, GPU-hours), as
  ``heteroscale simulate`` writes it, for the load the demo offered and the instances the controller ran;
* ``timeseries.csv`` and the plots of ``reports.plots`` (load and instances, utilisation, latency) —
  the simulator's own telemetry per 30 simulated seconds, the ground truth next to what Prometheus saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heteroscale.reports.decisions import decision_text
from heteroscale.reports.files import write_summary, write_timeseries
from heteroscale.reports.plots import LOAD_AND_INSTANCES_PNG, RunSeries, write_plots
from heteroscale.sim.runner import SimulationRun


def write_report(
    run_dir: Path, sim: SimulationRun, end_s: float, decisions: list[dict[str, Any]]
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the files of the module doc; return them by what they show, and the run summary."""
    lines = [decision_text(d) for d in decisions]
    decisions_path = run_dir / "decisions.txt"
    decisions_path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    summary = sim.summary(end_s)
    summary_path = write_summary(run_dir, summary)
    rows = sim.telemetry.rows
    write_timeseries(run_dir, rows)
    specs = {r.spec.name: r.spec for r in sim.scenario.services}
    slo = {name: (spec.slo.ttft_s, spec.slo.tbt_s) for name, spec in specs.items()}
    write_plots(run_dir, {"demo": RunSeries("live controller, simulated cluster", [r.flat() for r in rows])}, slo)
    files = {
        "decisions": decisions_path,
        "simulated cluster summary": summary_path,
        "load and instances plot": run_dir / LOAD_AND_INSTANCES_PNG,
    }
    return files, summary


def summary_line(summary: dict[str, Any]) -> str:
    """Requests, SLO attainment and GPU-hours of the simulated cluster, in one line."""
    slo = summary.get("slo_attainment")
    attained = "n/a" if slo is None else f"{100 * slo:.1f} %"
    return (
        f"simulated cluster: {summary.get('requests_total')} requests, {summary.get('requests_completed')} "
        f"completed, SLO attainment {attained}, {summary.get('gpu_hours')} GPU-hours"
    )
