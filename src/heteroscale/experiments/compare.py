"""`heteroscale compare`: several policies on one scenario, the same load, the same targets.

Every policy starts warm at the ratio-oracle's warm start (its first-window counts, raised to those
for the load of the first minute; ``static-peak`` at its peak),
reads targets from one pressure test of each service, and is scored against the true lower bound
(``× LB``, :mod:`heteroscale.experiments.lower_bound`) and, as a reference at the SLO knee, against the
ratio-oracle (:mod:`heteroscale.experiments.oracle`).

Fair options. What a service shares — its targets (pressure-tested or pinned), the margin, its P/D
ratio, SLO and bounds — goes to every contender. A scenario's ``policy.options`` belong to one
policy, so a plain row (``heteroscale``) runs that policy's defaults like every peer, and the
scenario's options run only in the marked row ``heteroscale[scenario-options]``; a list that names
the plain row of a policy the scenario gives options to, without its marked row, is refused in one
line rather than compared one-sidedly or silently without them. A variant is a named row of the
scenario's own (it keeps the service's options underneath its own, as its description says).

For the benchmark (:mod:`heteroscale.experiments.bench`) a comparison can run a plain row with given
options (a tuned contender's), start every policy at one given warm start, and be ``retargeted`` at
another margin while keeping its loads and lower bounds.

Runs are independent: ``jobs`` > 1 (or ``backend="ray"``) runs contenders and seeds in parallel with
the very results of a serial run (:mod:`heteroscale.experiments.parallel`). Seeds vary the load (a
Poisson load's arrivals; a fluid run's arrival counts); a trace replay is the same load under every
seed, so it runs once and the result says so (``seeds_identical``) instead of a 0-width interval.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heteroscale.domain.hardware import Role
from heteroscale.errors import ConfigError, did_you_mean
from heteroscale.experiments.figures import SCHEMA_VERSION, aggregate
from heteroscale.experiments.lower_bound import DEFAULT_WINDOW_S, LowerBound, lower_bound
from heteroscale.experiments.oracle import OraclePlan, oracle_plan
from heteroscale.experiments.parallel import ProgressFn, run_all
from heteroscale.experiments.pressure import DEFAULT_MARGIN, PressureResult, pressure_test
from heteroscale.experiments.ramps import ramp_slo
from heteroscale.perf import Calibration
from heteroscale.policy.context import Targets
from heteroscale.policy.registry import POLICY_NAMES
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.fluid_engine import arrival_bins, arrivals_rng
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import Fidelity, PolicySpec, Scenario
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
logger = logging.getLogger(__name__)
MARK = "[scenario-options]"  # a row that runs the scenario's own options for its policy


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


def scenario_options(scenario: Scenario) -> dict[str, tuple[str, ...]]:
    """Per registry policy, the option names the scenario's services give it (only those with options)."""
    out: dict[str, set[str]] = {}
    for run in scenario.services:
        if run.policy.options:
            out.setdefault(run.policy.name, set()).update(k for k, _ in run.policy.options)
    return {name: tuple(sorted(keys)) for name, keys in out.items()}


def check_contenders(scenario: Scenario, names: Sequence[str]) -> None:
    """Refuse, in one line, an unknown row, a marked row with nothing to mark, or a plain row of a policy
    the scenario gives options to that would run one-sided (its marked row is not in ``names``)."""
    given = scenario_options(scenario)
    for name in names:
        base = name.removesuffix(MARK)
        if name in scenario.variants or name == "static-peak":
            continue
        if base not in POLICY_NAMES:
            variants = f"; variants of {scenario.name}: {', '.join(scenario.variants)}" if scenario.variants else ""
            known = ["static-peak", *POLICY_NAMES, *scenario.variants]
            raise ConfigError(
                f"compare: unknown policy {name!r}{did_you_mean(name, known)} "
                f"(policies: static-peak, {', '.join(POLICY_NAMES)}{variants})"
            )
        if name != base and base not in given:
            raise ConfigError(f"compare: {name!r}: scenario {scenario.name} gives {base} no options to mark")
        if name == base and base in given and base + MARK not in names:
            raise ConfigError(
                f"compare: scenario {scenario.name} gives {base} options ({', '.join(given[base])}) that no other "
                f"contender gets: compare them as the marked row {base + MARK!r} (beside {base!r} if you like) "
                "or move them into a variant"
            )


class Comparison:
    """One scenario, its loads and lower bounds per seed, its pressure-tested targets and its ratio-oracle."""

    def __init__(
        self,
        scenario: Scenario,
        calibration: Calibration,
        *,
        margin: float = DEFAULT_MARGIN,
        bound_window_s: float = DEFAULT_WINDOW_S,
        progress: ProgressFn | None = None,
        warm_start: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        self.scenario = scenario
        self.calibration = calibration
        self.margin = margin
        self.bound_window_s = bound_window_s
        self.requests_csv = False  # keep each run's per-request records (gzip) beside its journal
        # per service, the (P, D) every policy but static-peak starts at; None: the ratio-oracle's warm start
        self.warm_start = dict(warm_start) if warm_start is not None else None
        self.pressure: dict[str, PressureResult] = {}
        self.targets: dict[str, Targets] = {}
        for run in scenario.services:
            if run.targets is not None:  # pinned in the scenario (e.g. a resolved config)
                self.targets[run.spec.name] = run.targets
                continue
            result = pressure_test(
                scenario, run.spec.name, calibration, margin=margin, seed=scenario.settings.seed, progress=progress
            )
            self.pressure[run.spec.name] = result
            self.targets[run.spec.name] = result.targets
        self._loads: dict[int, list[ServiceLoad]] = {}
        self._curve_counts: dict[int, list[np.ndarray | None]] = {}
        self.oracles: dict[str, OraclePlan] = {}
        self.bounds: dict[int, dict[str, LowerBound]] = {}  # per seed, per service
        self._horizon_s: dict[int, float] = {}

    def loads(self, seed: int) -> list[ServiceLoad]:
        """The loads of ``seed`` (made once), with their lower bounds and, for the first, the ratio-oracle."""
        if seed not in self._loads:
            probe = SimulationRun(self._with_counts({}), self.calibration, seed=seed, targets=self.targets)
            self._loads[seed] = probe.loads
            horizon = self._horizon_s[seed] = self.horizon_s(probe)
            curves: list[np.ndarray | None] = [None] * len(probe.loads)
            step_s = self.scenario.settings.fluid_step_s
            if probe.fidelity is Fidelity.FLUID:  # the fluid run draws its arrival counts from the seed
                bins = arrival_bins(probe.loads, step_s, arrivals_rng(seed))
                curves = [b[0] if ld.rate_curve is not None else None for ld, b in zip(probe.loads, bins, strict=True)]
            self._curve_counts[seed] = curves
            self.bounds[seed] = {
                load.spec.name: lower_bound(
                    load,
                    costs,
                    horizon,
                    window_s=self.bound_window_s,
                    curve_counts=(counts, step_s) if counts is not None else None,
                )
                for load, costs, counts in zip(probe.loads, probe.costs, curves, strict=True)
            }
            if not self.oracles:
                for load in probe.loads:
                    self.oracles[load.spec.name] = oracle_plan(load, self.targets[load.spec.name], horizon)
        return self._loads[seed]

    def retargeted(self, targets: Mapping[str, Targets]) -> Comparison:
        """This comparison's loads and lower bounds (those made so far) under other targets, e.g. at another
        margin: its ratio-oracle follows the targets; its warm start stays this comparison's."""
        services = tuple(dataclasses.replace(r, targets=targets[r.spec.name]) for r in self.scenario.services)
        warm = self.warm_start
        if warm is None and self.oracles:
            warm = {name: o.warm_start for name, o in self.oracles.items()}
        other = Comparison(
            dataclasses.replace(self.scenario, services=services),
            self.calibration,
            margin=self.margin,
            bound_window_s=self.bound_window_s,
            warm_start=warm,
        )
        other._loads, other._curve_counts = dict(self._loads), dict(self._curve_counts)
        other.bounds, other._horizon_s = dict(self.bounds), dict(self._horizon_s)
        if self._horizon_s:
            horizon = next(iter(self._horizon_s.values()))
            for load in next(iter(self._loads.values())):
                other.oracles[load.spec.name] = oracle_plan(load, other.targets[load.spec.name], horizon)
        return other

    def same_load(self, a: int, b: int) -> bool:
        """Whether seeds ``a`` and ``b`` give every service the very same requests (a trace replay)."""
        for la, lb in zip(self.loads(a), self.loads(b), strict=True):
            ta, tb = la.trace, lb.trace
            for x, y in ((ta.arrival_s, tb.arrival_s), (ta.input_tokens, tb.input_tokens),
                         (ta.output_tokens, tb.output_tokens), (la.cached_tokens, lb.cached_tokens)):  # fmt: skip
                if not np.array_equal(x, y):
                    return False
        for ca, cb in zip(self._curve_counts[a], self._curve_counts[b], strict=True):
            if (ca is None) != (cb is None) or (ca is not None and cb is not None and not np.array_equal(ca, cb)):
                return False
        return True

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
        options: Mapping[str, object] | None = None,
    ) -> PolicyRun:
        """Run one policy. It starts warm at the oracle's warm start (or the comparison's
        ``warm_start``, or its peak with ``start_at_peak``); ``cap_at_peak`` bounds the service at the
        oracle's peak (the provisioned size), as in the paper's testbed runs of one driving signal each.
        ``options`` go to every service's policy in a plain row (a tuned contender's), not to variants."""
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
                warm = oracle.warm_start
                if self.warm_start is not None:
                    warm = self.warm_start[run.spec.name]
                counts[run.spec.name] = peak if start_at_peak else warm
                if variant is not None:
                    policies[run.spec.name] = (variant.policy, variant.service_options(run))
                else:
                    base = name.removesuffix(MARK)
                    # only the marked row runs the scenario's options; a plain row runs the defaults
                    marked = name != base and run.policy.name == base
                    given = dict(run.policy.options) if marked else dict(options or {})
                    policies[run.spec.name] = (base, given)
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
        if out_dir is not None:
            _keep_or_drop_requests(out_dir / "requests.csv", self.requests_csv)
        summary.pop("wall_s", None)  # the machine's speed, not the policy's: a comparison repeats byte for byte
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
        bound_hours = sum(b.gpu_hours for b in self.bounds[seed].values())
        bound_cost = sum(b.cost for b in self.bounds[seed].values())
        summary["gpu_hours_vs_lower_bound"] = round(summary["gpu_hours"] / bound_hours, 6) if bound_hours > 0 else None
        summary["cost_vs_lower_bound"] = round(summary["cost"] / bound_cost, 6) if bound_cost > 0 else None
        summary["policy"] = name
        logger.info(
            "%s (seed %d): %.1f GPU-hours, SLO attainment %s, %d scale actions, %.1f simulated hours",
            name,
            seed,
            summary["gpu_hours"],
            "n/a" if summary["slo_attainment"] is None else f"{100.0 * summary['slo_attainment']:.2f} %",
            summary["scale_actions"],
            hours,
        )
        summary["ramps"] = {
            r.spec.name: ramp_slo(sim.telemetry.series(r.spec.name)).as_dict() for r in self.scenario.services
        }
        return PolicyRun(name, seed, summary, list(sim.telemetry.rows), sim.journal.count)

    def pinned(self) -> Scenario:
        """The scenario with every service's targets pinned (what a resolved config records)."""
        services = tuple(dataclasses.replace(r, targets=self.targets[r.spec.name]) for r in self.scenario.services)
        return dataclasses.replace(self.scenario, services=services)

    def describe(self, seed: int | None = None) -> dict[str, Any]:
        """Targets, pressure tests, the ratio-oracle and the lower bound (of ``seed``'s load, else the
        first made)."""
        bounds = self.bounds.get(seed if seed is not None else next(iter(self.bounds), -1), {})
        return {
            "scenario": self.scenario.name,
            "targets": {k: dataclasses.asdict(v) for k, v in self.targets.items()},
            "pressure_test": {k: v.as_dict() for k, v in self.pressure.items()},
            "oracle": {
                k: {"gpu_hours": round(o.gpu_hours, 4), "peak": list(o.peak), "peak_instances": o.peak_instances}
                for k, o in self.oracles.items()
            },
            "lower_bound": {k: b.as_dict() for k, b in bounds.items()},
            "gpu_mix": any(len(r.spec.shapes(role)) > 1 for r in self.scenario.services for role in Role),
        }


def _keep_or_drop_requests(path: Path, keep: bool) -> None:
    """Per-request records are opt-in (on ``default`` they come to ≈15 MB a contender): compressed when
    kept, else removed."""
    if not path.exists():
        return
    if keep:
        target = path.with_name(path.name + ".gz")
        # no timestamp in the header: the same run gives the same bytes
        with path.open("rb") as src, target.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
    path.unlink()


def default_policies(scenario: Scenario) -> tuple[str, ...]:
    """What ``compare`` runs when not told: the scenario's own list, else every built-in contender —
    with the marked row beside the plain one of a policy the scenario gives options to."""
    if scenario.compare_policies:
        return scenario.compare_policies
    given = scenario_options(scenario)
    out: list[str] = []
    for name in DEFAULT_POLICIES:
        out.append(name)
        if name in given:
            out.append(name + MARK)
    return tuple(out)


def run_task(comparison: Comparison, task: tuple[str, int, Path | None]) -> PolicyRun:
    """One contender on one seed (``task`` = name, seed, output folder): what a parallel worker runs."""
    name, seed, out_dir = task
    return comparison.run_policy(name, seed, out_dir)


def compare(
    scenario: Scenario,
    calibration: Calibration,
    policies: Sequence[str] | None = None,
    *,
    seeds: int = 1,
    progress: ProgressFn | None = None,
    out_dir: Path | None = None,
    jobs: int = 1,
    backend: str = "local",
    requests_csv: bool = False,
) -> tuple[dict[str, Any], dict[str, list[PolicyRun]]]:
    """Run every policy for every seed; return the JSON result and the runs (for reports).

    With ``out_dir``, the first seed of each policy writes its DecisionRecord journal under
    ``out_dir/<policy>/``, and its request records (``requests.csv.gz``) with ``requests_csv``.
    ``jobs`` / ``backend``: see :mod:`.parallel`."""
    if policies is None:
        policies = default_policies(scenario)
    check_contenders(scenario, policies)
    comparison = Comparison(scenario, calibration, progress=progress)
    comparison.requests_csv = requests_csv
    base_seed = scenario.settings.seed
    wanted = [base_seed + k for k in range(seeds)]
    for seed in wanted:
        comparison.loads(seed)
    identical = len(wanted) > 1 and all(comparison.same_load(wanted[0], s) for s in wanted[1:])
    run_seeds = wanted[:1] if identical else wanted
    tasks = [
        (name, seed, out_dir / policy_dir_name(name) if out_dir is not None and k == 0 else None)
        for name in policies
        for k, seed in enumerate(run_seeds)
    ]
    done = run_all(
        run_task,
        comparison,
        tasks,
        jobs=jobs,
        backend=backend,
        progress=progress,
        label=lambda t: f"{t[0]} (seed {t[1]})",
    )
    runs: dict[str, list[PolicyRun]] = {}
    for run in done:
        runs.setdefault(run.name, []).append(run)
    result: dict[str, Any] = comparison.describe(run_seeds[0])
    result["resolved_scenario"] = comparison.pinned()
    result["schema_version"] = SCHEMA_VERSION
    result["seeds"] = seeds
    result["seeds_identical"] = identical
    if identical:
        result["seeds_note"] = (
            f"every seed replays the same requests (trace replay): ran seed {run_seeds[0]} once; no confidence interval"
        )
    result["policies"] = {name: aggregate([r.summary for r in rs]) for name, rs in runs.items()}
    return result, runs


__all__ = [
    "DEFAULT_POLICIES",
    "MARK",
    "Comparison",
    "PolicyRun",
    "PolicySpec",
    "check_contenders",
    "compare",
    "default_policies",
    "pd_ratio_deviation",
    "run_task",
    "scenario_options",
]
