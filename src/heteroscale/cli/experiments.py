"""Wiring of the experiment commands: compare, study-metrics, sweep-ratio, tune."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario, write_resolved_config
from heteroscale.controller.journal import to_plain
from heteroscale.experiments.compare import PolicyRun, compare, policy_dir_name
from heteroscale.experiments.parallel import ProgressFn
from heteroscale.experiments.study import study_metrics
from heteroscale.experiments.sweep import sweep_ratio
from heteroscale.experiments.tune import tune
from heteroscale.experiments.verdict import COST_RATIO, FOCUS, SLO_SLACK_PP, best_peer, contenders_from, verdict
from heteroscale.reports.files import write_summary, write_timeseries
from heteroscale.reports.html import VerdictLine
from heteroscale.reports.plots import ParetoPoint


def run_compare(
    scenario_ref: str,
    policies: Sequence[str] | None,
    *,
    seeds: int = 1,
    out_dir: Path | None = None,
    progress: ProgressFn | None = None,
    jobs: int = 1,
    backend: str = "local",
    requests_csv: bool = False,
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
        requests_csv=requests_csv,
    )
    pinned = result.pop("resolved_scenario")
    if out_dir is not None:
        write_report(out_dir, f"compare: {scenario.name}", result, runs, scenario)
        write_resolved_config(pinned, out_dir / "resolved.yaml")  # with the pressure-tested targets
    return result


def write_report(
    out_dir: Path,
    title: str,
    result: dict[str, Any],
    runs: dict[str, list[PolicyRun]],
    scenario: Any,
    focus: str = FOCUS,
) -> None:
    """summary.json, one time series per policy, the plots and report.html; the verdict and the plots
    single out ``focus`` (its first row) and the best peer."""
    from heteroscale.reports.html import write_html_report
    from heteroscale.reports.plots import RunSeries, write_pareto, write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    write_summary(out_dir, to_plain(result))
    series: dict[str, RunSeries] = {}
    for name, rs in runs.items():
        policy_dir = out_dir / policy_dir_name(name)
        policy_dir.mkdir(parents=True, exist_ok=True)
        write_timeseries(policy_dir, rs[0].rows)
        write_summary(policy_dir, rs[0].summary)
        series[name] = RunSeries(label=name, rows=[r.flat() for r in rs[0].rows])
    # every seed's figures ({mean, ci95, n}) where compare aggregated them, else the one run
    policies = result.get("policies")
    summaries: dict[str, Any] = (
        dict(policies) if isinstance(policies, dict) else {name: rs[0].summary for name, rs in runs.items()}
    )
    by_cost = bool(result.get("gpu_mix"))
    unit = "cost" if by_cost else "GPU-hours"
    contenders = contenders_from(summaries, by_cost=by_cost)
    focus = next((n for n in summaries if n.startswith(focus)), focus)
    peer = best_peer(contenders, focus=focus)
    highlight = [n for n in (focus, peer) if n is not None and n in summaries]
    verdicts = _verdicts(scenario, summaries, by_cost, unit, focus)
    slo = {r.spec.name: (r.spec.slo.ttft_s, r.spec.slo.tbt_s) for r in scenario.services}
    images = [
        write_pareto(out_dir, _pareto_points(summaries, by_cost), f"{unit} vs SLO attainment", unit, highlight),
        *write_plots(out_dir, series, slo, highlight),
    ]
    notes = [
        ("targets", "from one pressure test per service: every target is the SLO knee's value × one margin"),
        ("verdict", f"X dominates Y when X's SLO attainment ≥ Y's − {SLO_SLACK_PP} pp and X's {unit} < "
         f"{COST_RATIO} × Y's; plots single out {' and '.join(highlight) or 'no contender'}"),
        ("× LB", "GPU-hours ÷ the true lower bound — the saturation GPU time of the offered work on the cheapest "
         "allowed GPUs, no ratio, no cold start, no SLO; no run can bill less."),
        ("vs oracle", "GPU-hours ÷ a reference at the SLO knee (per 10-minute window the minimum (P, D) at "
         "the service's ratio covering the window's mean load with the targets' margin; not a bound)."),
    ]  # fmt: skip
    if result.get("seeds_note"):
        notes.append(("seeds", str(result["seeds_note"])))
    targets = result.get("targets")
    write_html_report(
        out_dir,
        title,
        summaries,
        images,
        notes,
        verdicts=verdicts,
        targets=targets if isinstance(targets, dict) else None,
        highlight=highlight,
    )


def _verdicts(scenario: Any, summaries: dict[str, Any], by_cost: bool, unit: str, focus: str) -> list[VerdictLine]:
    """One verdict per service; with several services, each on its own SLO attainment and the whole bill
    (the bill is not split by service)."""
    names = [r.spec.name for r in scenario.services]
    if len(names) == 1:
        found = verdict(contenders_from(summaries, by_cost=by_cost), focus=focus, unit=unit)
        return [VerdictLine(f"{scenario.name} / {names[0]}", found.sentence)]
    out = []
    for name in names:
        found = verdict(contenders_from(summaries, by_cost=by_cost, service=name), focus=focus, unit=unit)
        out.append(VerdictLine(f"{scenario.name} / {name} (SLO of {name}, {unit} of all services)", found.sentence))
    return out


def _pareto_points(summaries: dict[str, Any], by_cost: bool) -> list[ParetoPoint]:
    def part(value: Any, key: str) -> float | None:
        got = value.get(key) if isinstance(value, dict) else (value if key == "mean" else None)
        return float(got) if isinstance(got, int | float) and not isinstance(got, bool) else None

    points = []
    for name, summary in summaries.items():
        billed, slo = summary.get("cost" if by_cost else "gpu_hours"), summary.get("slo_attainment")
        b, s = part(billed, "mean"), part(slo, "mean")
        if b is not None and s is not None:
            points.append(ParetoPoint(name, b, part(billed, "ci95"), s, part(slo, "ci95")))
    return points


def run_study(scenario_ref: str, *, out_dir: Path | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    scenario = load_scenario(scenario_ref)
    result, runs = study_metrics(scenario, calibration_for(scenario), progress=progress)
    if out_dir is not None:
        runs_by_name = {k: [v] for k, v in runs.items()}
        # the paper's study: decode TPS is the signal it chose, set against the best of the others
        write_report(out_dir, f"study-metrics: {scenario.name}", result, runs_by_name, scenario, "signal:decode-tps")
    return result


def run_sweep(
    scenario_ref: str,
    *,
    instances: int,
    service: str | None = None,
    progress: ProgressFn | None = None,
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
    progress: ProgressFn | None = None,
    jobs: int = 1,
    backend: str = "local",
) -> dict[str, Any]:
    scenario = load_scenario(scenario_ref)
    return tune(scenario, calibration_for(scenario), instances=instances, progress=progress, jobs=jobs, backend=backend)
