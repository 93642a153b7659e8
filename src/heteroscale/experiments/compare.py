"""`heteroscale compare`: several policies on one scenario, the same load, the same targets.

Every policy starts warm at the oracle's first-window counts (``static-peak`` at the oracle's peak),
reads targets from one pressure test of each service, and is scored against the oracle.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heteroscale.errors import ConfigError
from heteroscale.experiments.oracle import OraclePlan, oracle_plan
from heteroscale.experiments.pressure import DEFAULT_MARGIN, PressureResult, pressure_test
from heteroscale.experiments.ramps import ramp_slo
from heteroscale.perf import Calibration
from heteroscale.policy.context import Targets
from heteroscale.policy.registry import POLICY_NAMES
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import PolicySpec, Scenario
from heteroscale.sim.telemetry import WindowRow

DEFAULT_POLICIES = (
    "heteroscale",
    "static-peak",
    "hpa",
    "aibrix-apa",
    "kthena",
    "dynamo-sla",
    "independent-tps",
    "pure-latency",
)
ProgressFn = Callable[[str], None]


@dataclass(slots=True)
class PolicyRun:
    name: str
    seed: int
    summary: dict[str, Any]
    rows: list[WindowRow]
    journal_records: int


def policy_dir_name(name: str) -> str:
    """A policy's output folder (``signal:ttft`` → ``signal_ttft``)."""
    return name.replace(":", "_")


def pd_ratio_deviation(rows: Sequence[WindowRow], ratio: float) -> float | None:
    """Time average over windows with D > 0 of |P − round(r·D)| ÷ max(1, round(r·D)), Ready instances."""
    num = den = 0.0
    for row in rows:
        d = row.decode.instances_ready
        if d <= 0:
            continue
        want = round(ratio * d)
        num += abs(row.prefill.instances_ready - want) / max(1, want) * row.window_s
        den += row.window_s
    return num / den if den > 0 else None


def _fixed_ratio(spec_ratio: float, options: dict[str, object]) -> float | None:
    """The P/D ratio a run holds (its ``pd_ratio`` option, else the service's); None when it adapts it."""
    if options.get("adaptive_ratio") is not None:
        return None
    given = options.get("pd_ratio")
    return float(given) if isinstance(given, int | float) else spec_ratio


def _mean_ci(values: list[float]) -> dict[str, float]:
    arr = np.array(values, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) < 2:
        return {"mean": mean, "ci95": 0.0, "n": float(len(arr))}
    # Student t for 95 %, small n
    t_table = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}
    t = t_table.get(len(arr), 1.96)
    return {"mean": mean, "ci95": float(t * arr.std(ddof=1) / math.sqrt(len(arr))), "n": float(len(arr))}


def aggregate(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and 95 % confidence intervals of every numeric field over seeds (nested dicts too)."""
    first = summaries[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        values = [s.get(key) for s in summaries]
        if isinstance(value, bool) or value is None:
            out[key] = value
        elif isinstance(value, (int, float)) and all(isinstance(v, (int, float)) for v in values):
            out[key] = _mean_ci([float(v) for v in values])  # type: ignore[arg-type]
        elif isinstance(value, dict):
            out[key] = (
                aggregate([s[key] for s in summaries])
                if all(isinstance(s.get(key), dict) for s in summaries)
                else value
            )
        else:
            out[key] = value
    return out


class Comparison:
    """One scenario, its loads per seed, its pressure-tested targets and its oracle."""

    def __init__(self, scenario: Scenario, calibration: Calibration, *, margin: float = DEFAULT_MARGIN) -> None:
        self.scenario = scenario
        self.calibration = calibration
        self.margin = margin
        self.pressure: dict[str, PressureResult] = {}
        self.targets: dict[str, Targets] = {}
        for run in scenario.services:
            if run.targets is not None:  # pinned in the scenario (e.g. a resolved config)
                self.targets[run.spec.name] = run.targets
                continue
            result = pressure_test(scenario, run.spec.name, calibration, margin=margin, seed=scenario.settings.seed)
            self.pressure[run.spec.name] = result
            self.targets[run.spec.name] = result.targets
        self._loads: dict[int, list[ServiceLoad]] = {}
        self.oracles: dict[str, OraclePlan] = {}

    def loads(self, seed: int) -> list[ServiceLoad]:
        if seed not in self._loads:
            probe = SimulationRun(self._with_counts({}), self.calibration, seed=seed, targets=self.targets)
            self._loads[seed] = probe.loads
            if not self.oracles:
                horizon = self.horizon_s(probe)
                for load in probe.loads:
                    self.oracles[load.spec.name] = oracle_plan(load, self.targets[load.spec.name], horizon)
        return self._loads[seed]

    def horizon_s(self, probe: SimulationRun) -> float:
        return probe.duration_s if probe.duration_s is not None else probe.load_end_s()

    def _with_counts(
        self, counts: dict[str, tuple[int, int]], cap_at: dict[str, tuple[int, int]] | None = None
    ) -> Scenario:
        services = []
        for r in self.scenario.services:
            if r.spec.name in counts:
                p, d = counts[r.spec.name]
                r = dataclasses.replace(r, policy=dataclasses.replace(r.policy, prefill=p, decode=d))
            if cap_at and r.spec.name in cap_at:
                p, d = cap_at[r.spec.name]
                r = dataclasses.replace(r, spec=dataclasses.replace(r.spec, max_prefill=p, max_decode=d))
            services.append(r)
        return dataclasses.replace(self.scenario, services=tuple(services))

    def run_policy(
        self,
        name: str,
        seed: int,
        out_dir: Path | None = None,
        *,
        start_at_peak: bool = False,
        cap_at_peak: bool = False,
    ) -> PolicyRun:
        """Run one policy. It starts warm at the oracle's first window (or its peak with
        ``start_at_peak``); ``cap_at_peak`` bounds the service at the oracle's peak (the provisioned
        size), as in the paper's testbed runs of one driving signal each."""
        loads = self.loads(seed)
        policies: dict[str, tuple[str, dict[str, object]]] = {}
        counts: dict[str, tuple[int, int]] = {}
        variant = self.scenario.variants.get(name)
        for run in self.scenario.services:
            oracle = self.oracles[run.spec.name]
            peak = oracle.peak
            if name == "static-peak":
                counts[run.spec.name] = peak
                policies[run.spec.name] = ("static", {"prefill": peak[0], "decode": peak[1]})
            else:
                first = oracle.windows[0]
                counts[run.spec.name] = peak if start_at_peak else (first.prefill, first.decode)
                if variant is not None:
                    policies[run.spec.name] = (variant.policy, variant.service_options(run))
                else:
                    options = dict(run.policy.options) if name == run.policy.name else {}
                    policies[run.spec.name] = (name, options)
        caps = {r.spec.name: self.oracles[r.spec.name].peak for r in self.scenario.services} if cap_at_peak else None
        scenario = self._with_counts(counts, caps)
        if variant is not None:
            services = tuple(dataclasses.replace(r, spec=variant.service_spec(r.spec)) for r in scenario.services)
            scenario = dataclasses.replace(scenario, services=services)
            if variant.ignore_budget:
                scenario = dataclasses.replace(scenario, budget=None)
        sim = SimulationRun(
            scenario,
            self.calibration,
            seed=seed,
            loads=loads,
            targets=self.targets,
            policies=policies,
            out_dir=out_dir,
        )
        summary = sim.run()
        hours = max(1e-9, float(summary["simulated_s"]) / 3600.0)
        summary["scale_actions_per_hour"] = round(summary["scale_actions"] / hours, 4)
        devs = [
            pd_ratio_deviation(sim.telemetry.series(r.spec.name), ratio)
            for r in self.scenario.services
            if (ratio := _fixed_ratio(r.spec.pd_ratio, policies[r.spec.name][1])) is not None
        ]
        known = [d for d in devs if d is not None]
        summary["pd_ratio_deviation"] = round(sum(known) / len(known), 6) if known else None
        oracle_hours = sum(o.gpu_hours for o in self.oracles.values())
        summary["gpu_hours_vs_oracle"] = round(summary["gpu_hours"] / oracle_hours, 6) if oracle_hours > 0 else None
        summary["policy"] = name
        summary["ramps"] = {
            r.spec.name: ramp_slo(sim.telemetry.series(r.spec.name)).as_dict() for r in self.scenario.services
        }
        return PolicyRun(name, seed, summary, list(sim.telemetry.rows), sim.journal.count)

    def pinned(self) -> Scenario:
        """The scenario with every service's targets pinned (what a resolved config records)."""
        services = tuple(dataclasses.replace(r, targets=self.targets[r.spec.name]) for r in self.scenario.services)
        return dataclasses.replace(self.scenario, services=services)

    def describe(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "targets": {k: dataclasses.asdict(v) for k, v in self.targets.items()},
            "pressure_test": {k: v.as_dict() for k, v in self.pressure.items()},
            "oracle": {
                k: {"gpu_hours": round(o.gpu_hours, 4), "peak": list(o.peak), "peak_instances": o.peak_instances}
                for k, o in self.oracles.items()
            },
        }


def default_policies(scenario: Scenario) -> tuple[str, ...]:
    """What ``compare`` runs when not told: the scenario's own list, else every built-in contender."""
    return scenario.compare_policies or DEFAULT_POLICIES


def compare(
    scenario: Scenario,
    calibration: Calibration,
    policies: Sequence[str] | None = None,
    *,
    seeds: int = 1,
    progress: ProgressFn | None = None,
    out_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, list[PolicyRun]]]:
    """Run every policy for every seed; return the JSON result and the runs (for reports).

    With ``out_dir``, the first seed of each policy writes its request records and DecisionRecord
    journal under ``out_dir/<policy>/``."""
    if policies is None:
        policies = default_policies(scenario)
    unknown = [p for p in policies if p not in scenario.variants and p != "static-peak" and p not in POLICY_NAMES]
    if unknown:
        variants = f"; variants of {scenario.name}: {', '.join(scenario.variants)}" if scenario.variants else ""
        raise ConfigError(f"compare: unknown policy {unknown[0]!r} (policies: {', '.join(POLICY_NAMES)}{variants})")
    comparison = Comparison(scenario, calibration)
    base_seed = scenario.settings.seed
    runs: dict[str, list[PolicyRun]] = {}
    for name in policies:
        for k in range(seeds):
            if progress is not None:
                progress(f"{name} (seed {base_seed + k})")
            policy_dir = out_dir / policy_dir_name(name) if out_dir is not None and k == 0 else None
            runs.setdefault(name, []).append(comparison.run_policy(name, base_seed + k, policy_dir))
    result: dict[str, Any] = comparison.describe()
    result["resolved_scenario"] = comparison.pinned()
    result["seeds"] = seeds
    result["policies"] = {
        name: (rs[0].summary if seeds == 1 else aggregate([r.summary for r in rs])) for name, rs in runs.items()
    }
    return result, runs


__all__ = [
    "DEFAULT_POLICIES",
    "Comparison",
    "PolicyRun",
    "PolicySpec",
    "compare",
    "default_policies",
    "pd_ratio_deviation",
]
