"""The only place that picks real or simulated parts and joins config to the engines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario, write_resolved_config
from heteroscale.experiments.pressure import pressure_test
from heteroscale.reports.files import write_summary, write_timeseries
from heteroscale.sim.runner import ProgressFn, SimulationRun
from heteroscale.sim.scenario import Fidelity, Scenario

# policies that read no targets; every other policy gets its targets from a pressure test
TARGET_FREE_POLICIES = frozenset({"fixed", "static", "periodic"})


def with_overrides(
    scenario: Scenario,
    *,
    fidelity: str | None = None,
    duration_s: float | None = None,
    seed: int | None = None,
    skip_bad_rows: bool = False,
) -> Scenario:
    """The scenario as it will run: command-line overrides applied to its settings and loads."""
    settings = scenario.settings
    changes: dict[str, Any] = {}
    if fidelity is not None:
        changes["fidelity"] = Fidelity(fidelity)
    if duration_s is not None:
        changes["duration_s"] = duration_s
    if seed is not None:
        changes["seed"] = seed
    if changes:
        scenario = dataclasses.replace(scenario, settings=dataclasses.replace(settings, **changes))
    if skip_bad_rows:
        services = tuple(
            dataclasses.replace(run, load=dataclasses.replace(run.load, skip_bad_rows=True))
            for run in scenario.services
        )
        scenario = dataclasses.replace(scenario, services=services)
    return scenario


def simulate(
    scenario_ref: str,
    *,
    fidelity: str | None = None,
    duration_s: float | None = None,
    seed: int | None = None,
    out_dir: Path | None = None,
    skip_bad_rows: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    scenario = with_overrides(
        load_scenario(scenario_ref),
        fidelity=fidelity,
        duration_s=duration_s,
        seed=seed,
        skip_bad_rows=skip_bad_rows,
    )
    calibration = calibration_for(scenario)
    targets = {
        r.spec.name: pressure_test(scenario, r.spec.name, calibration, seed=scenario.settings.seed).targets
        for r in scenario.services
        if r.policy.name not in TARGET_FREE_POLICIES and r.targets is None
    }
    run = SimulationRun(scenario, calibration, out_dir=out_dir, targets=targets)
    skipped = sum(ld.trace.skipped_rows for ld in run.loads)
    summary = run.run(progress)
    summary["trace_rows_skipped"] = skipped
    if out_dir is not None:
        write_resolved_config(scenario, out_dir / "resolved.yaml")
        write_timeseries(out_dir, run.telemetry.rows)
        write_summary(out_dir, summary)
    return summary
