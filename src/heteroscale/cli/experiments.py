"""Wiring of the experiment commands: compare, study-metrics, sweep-ratio, tune."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario, write_resolved_config
from heteroscale.controller.journal import to_plain
from heteroscale.experiments.compare import PolicyRun, compare, policy_dir_name
from heteroscale.experiments.study import study_metrics
from heteroscale.experiments.sweep import sweep_ratio
from heteroscale.experiments.tune import tune
from heteroscale.reports.files import write_summary, write_timeseries

Progress = Callable[[str], None]


def run_compare(
    scenario_ref: str,
    policies: Sequence[str] | None,
    *,
    seeds: int = 1,
    out_dir: Path | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
    backend: str = "local",
) -> dict[str, Any]:
    scenario = load_scenario(scenario_ref)
    result, runs = compare(
        scenario,
        calibration_for(scenario),
        policies,
        seeds=seeds,
        progress=progress,
        out_dir=out_dir,
        jobs=jobs,
        backend=backend,
    )
    pinned = result.pop("resolved_scenario")
    if out_dir is not None:
        write_report(out_dir, f"compare: {scenario.name}", result, runs, scenario)
        write_resolved_config(pinned, out_dir / "resolved.yaml")  # with the pressure-tested targets
    return result


def write_report(
    out_dir: Path, title: str, result: dict[str, Any], runs: dict[str, list[PolicyRun]], scenario: Any
) -> None:
    """summary.json, one time series per policy, the plots and report.html."""
    from heteroscale.reports.html import write_html_report
    from heteroscale.reports.plots import RunSeries, write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    write_summary(out_dir, to_plain(result))
    series: dict[str, RunSeries] = {}
    for name, rs in runs.items():
        policy_dir = out_dir / policy_dir_name(name)
        policy_dir.mkdir(parents=True, exist_ok=True)
        write_timeseries(policy_dir, rs[0].rows)
        write_summary(policy_dir, rs[0].summary)
        series[name] = RunSeries(label=name, rows=[r.flat() for r in rs[0].rows])
    slo = {r.spec.name: (r.spec.slo.ttft_s, r.spec.slo.tbt_s) for r in scenario.services}
    images = write_plots(out_dir, series, slo)
    notes = [
        f"Targets from one pressure test per service: {json.dumps(result.get('targets', {}), default=str)[:600]}",
        "× LB: GPU-hours ÷ the true lower bound — the saturation GPU time of the offered work on the cheapest "
        "allowed GPUs, no ratio, no cold start, no SLO; no run can bill less.",
        "vs ratio-oracle: GPU-hours ÷ a reference at the SLO knee (per 10-minute window the minimum (P, D) at "
        "the service's ratio covering the window's mean load with the targets' margin; not a bound).",
    ]
    summaries = {name: rs[0].summary for name, rs in runs.items()}
    write_html_report(out_dir, title, summaries, images, notes)


def run_study(scenario_ref: str, *, out_dir: Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    scenario = load_scenario(scenario_ref)
    result, runs = study_metrics(scenario, calibration_for(scenario), progress=progress)
    if out_dir is not None:
        write_report(out_dir, f"study-metrics: {scenario.name}", result, {k: [v] for k, v in runs.items()}, scenario)
    return result


def run_sweep(
    scenario_ref: str,
    *,
    instances: int,
    service: str | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
    backend: str = "local",
) -> dict[str, Any]:
    scenario = load_scenario(scenario_ref)
    return sweep_ratio(
        scenario,
        calibration_for(scenario),
        service=service,
        instances=instances,
        progress=progress,
        jobs=jobs,
        backend=backend,
    )


def run_tune(
    scenario_ref: str,
    *,
    instances: int = 8,
    progress: Progress | None = None,
    jobs: int = 1,
    backend: str = "local",
) -> dict[str, Any]:
    scenario = load_scenario(scenario_ref)
    return tune(scenario, calibration_for(scenario), instances=instances, progress=progress, jobs=jobs, backend=backend)
