"""`heteroscale bench`: the evaluation suite × every contender, as shipped and tuned, on the score parts.

For each scenario of a suite (:mod:`heteroscale.sim.suite`) and each of its score parts:

* one pressure test per service gives the targets at the margin 0.75 (a
  :class:`~heteroscale.experiments.compare.Comparison` per part: its loads, lower bounds and
  ratio-oracle are made once), reused by every contender; a tuned contender's other margin rescales
  those targets (:func:`~heteroscale.experiments.bench_space.targets_at_margin`), no new test;
* every contender starts warm at the same counts, the 0.75-margin ratio-oracle's warm start (its first
  window, raised to the first minute's load: :attr:`~heteroscale.experiments.oracle.OraclePlan.warm_start`;
  ``static-peak`` at its own peak);
* each contender runs twice: as shipped (its defaults, margin 0.75) and tuned (the options and margin
  of ``results/tuned.yaml``). Scoring reads the tuned parameters and never tunes: a contender missing
  from them stops the run with one line.

Retuning (:func:`retune`) runs each contender's configurations
(:func:`~heteroscale.experiments.bench_space.draw_configs`) on the scenario's TUNE part and keeps, per
scenario, the one with the fewest GPU-hours (cost where the GPU types differ) among those with SLO
attainment ≥ 99 %, else the highest attainment. Every run of either kind is independent and runs on
``jobs`` processes (or Ray) with the results of a serial run.

Fidelity: a figure from a request-level run is labelled ``request``; one from a fluid run carries
``estimate`` (:func:`fidelity_label`): its latencies and SLO attainment are estimates until the
fluid-vs-request agreement is established for its regime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heteroscale.domain.hardware import Role
from heteroscale.errors import ConfigError
from heteroscale.experiments.bench_space import (
    CONFIGS,
    MARGINS,
    SEARCH_SEED,
    SHIPPED,
    Config,
    draw_configs,
    targets_at_margin,
    tunable,
)
from heteroscale.experiments.compare import DEFAULT_POLICIES, Comparison
from heteroscale.experiments.parallel import ProgressFn, run_all
from heteroscale.experiments.pressure import DEFAULT_MARGIN
from heteroscale.perf import Calibration
from heteroscale.policy.registry import make_policy
from heteroscale.sim.scenario import Scenario
from heteroscale.sim.suite import Suite, SuiteEntry

SCHEMA_VERSION = 1
TUNED_SCHEMA_VERSION = 1
TUNED = "[tuned]"  # the row of a contender with its tuned parameters
SLO_TARGET = 0.99
CONTENDERS = DEFAULT_POLICIES
FIGURES = (
    "gpu_hours",
    "gpu_hours_vs_lower_bound",
    "cost",
    "cost_vs_lower_bound",
    "slo_attainment",
    "ttft_p99_s",
    "tbt_p99_s",
    "requests_failed",
    "requests_failed_by_scale_in",
    "scale_actions_per_hour",
)
BY_SERVICE_ROLE = "gpu_hours_by_service_role"  # {"<service>/<role>": GPU-hours} of a run
SLO_BY_SERVICE = "slo_attainment_by_service"  # {"<service>": SLO attainment} of a run
Calibrate = Callable[[Scenario], Calibration]
Progress = ProgressFn  # hears of each run as a Step (done of total, label)
# one run: (scenario@part, margin, contender, options, row name)
Task = tuple[str, float, str, tuple[tuple[str, Any], ...], str]


def fidelity_label(fidelity: str) -> str:
    """``request`` for a request-level run; ``estimate`` for a fluid run (its latencies and SLO)."""
    return "request" if fidelity == "request" else "estimate"


def gpu_mix(scenario: Scenario) -> bool:
    """Whether GPU types differ within a role: then cost, not GPU-hours, is what a contender bills."""
    return any(len(run.spec.shapes(role)) > 1 for run in scenario.services for role in Role)


def billed_key(scenario: Scenario) -> str:
    return "cost" if gpu_mix(scenario) else "gpu_hours"


def _figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in FIGURES:
        value = summary.get(key)
        out[key] = round(float(value), 6) if isinstance(value, float) else value
    out["requests_total"] = summary.get("requests_total")
    out["fidelity"] = str(summary.get("fidelity"))
    out["fidelity_label"] = fidelity_label(out["fidelity"])
    # where the GPU-hours go, so a loss can be traced to a service and a role
    out[BY_SERVICE_ROLE] = {
        f"{name}/{role}": round(float(hours), 6)
        for name, figures in sorted((summary.get("services") or {}).items())
        for role, hours in sorted((figures.get("gpu_hours_by_role") or {}).items())
    }
    out[SLO_BY_SERVICE] = {
        name: figures.get("slo_attainment") for name, figures in sorted((summary.get("services") or {}).items())
    }
    return out


@dataclass(slots=True)
class Runs:
    """What every worker gets: a comparison per (scenario@part, margin), sharing each part's loads."""

    comparisons: dict[tuple[str, float], Comparison]


def run_one(runs: Runs, task: Task) -> dict[str, Any]:
    """One contender on one part: its figures (what a parallel worker runs)."""
    part, margin, contender, options, _ = task
    comparison = runs.comparisons[(part, margin)]
    run = comparison.run_policy(contender, comparison.scenario.settings.seed, options=dict(options))
    return _figures(run.summary)


def prepare(comparison_and_seed: tuple[Scenario, Calibration]) -> Comparison:
    """A part's comparison: its pressure test, loads, lower bounds and ratio-oracle (a worker's task)."""
    scenario, calibration = comparison_and_seed
    comparison = Comparison(scenario, calibration, margin=DEFAULT_MARGIN)
    comparison.loads(scenario.settings.seed)
    return comparison


def _prepare_task(_: None, item: tuple[Scenario, Calibration]) -> Comparison:
    return prepare(item)


def _comparisons(
    parts: Sequence[Scenario],
    margins: Sequence[float],
    calibrate: Calibrate,
    *,
    jobs: int,
    backend: str,
    progress: Progress | None,
) -> Runs:
    """Every part's comparison at 0.75 (pressure tests in parallel), and its copies at ``margins``."""
    made = run_all(
        _prepare_task,
        None,
        [(part, calibrate(part)) for part in parts],
        jobs=jobs,
        backend=backend,
        progress=progress,
        label=lambda t: f"pressure test, loads and bounds of {t[0].name}",
    )
    out: dict[tuple[str, float], Comparison] = {}
    for part, base in zip(parts, made, strict=True):
        out[(part.name, DEFAULT_MARGIN)] = base
        for margin in margins:
            if margin != DEFAULT_MARGIN:
                targets = {name: targets_at_margin(t, margin) for name, t in base.targets.items()}
                out[(part.name, margin)] = base.retargeted(targets)
    return Runs(out)


def select_entries(suite: Suite, scenarios: Sequence[str] | None) -> list[SuiteEntry]:
    if not scenarios:
        return list(suite.entries)
    known = [entry.scenario.name for entry in suite.entries]
    unknown = [name for name in scenarios if name not in known]
    if unknown:
        raise ConfigError(f"bench: no scenario {', '.join(unknown)} in suite {suite.name} (it has: {', '.join(known)})")
    return [entry for entry in suite.entries if entry.scenario.name in scenarios]


def check_contenders(contenders: Sequence[str]) -> None:
    for name in contenders:
        if not tunable(name):
            raise ConfigError(f"bench: contender {name!r} has no search space (contenders: {', '.join(CONTENDERS)})")


# --- tuned parameters ------------------------------------------------------------------------------


def tuned_config(tuned: Mapping[str, Any], scenario: str, contender: str, source: str) -> Config:
    """The tuned configuration of ``contender`` on ``scenario``; one line naming the file when missing."""
    entry = tuned.get("scenarios", {}).get(scenario, {}).get("contenders", {}).get(contender)
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{source}: no tuned parameters for contender {contender!r} on scenario {scenario!r}; "
            "run `heteroscale bench --retune` (scoring never tunes)"
        )
    where = f"{source}: scenarios.{scenario}.contenders.{contender}"
    try:
        config = Config.of(float(entry["margin"]), dict(entry.get("options") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: needs a margin (a number) and options (a mapping)") from exc
    if not config.margin > 0:
        raise ConfigError(f"{where}.margin must be > 0, got {config.margin}")
    if contender != "static-peak":
        try:
            make_policy(contender, config.options_dict())
        except ValueError as exc:
            raise ConfigError(f"{where}.options: {exc}") from exc
    return config


def plan_score(
    entries: Sequence[SuiteEntry], contenders: Sequence[str], tuned: Mapping[str, Any], source: str
) -> list[Task]:
    """Every score part × contender, as shipped and tuned; the tuned parameters are read, never searched."""
    tasks: list[Task] = []
    for entry in entries:
        configs = {name: tuned_config(tuned, entry.scenario.name, name, source) for name in contenders}
        for part in entry.score_scenarios():
            for name in contenders:
                tasks.append((part.name, SHIPPED.margin, name, SHIPPED.options, name))
                config = configs[name]
                tasks.append((part.name, config.margin, name, config.options, name + TUNED))
    return tasks


def score(
    suite: Suite,
    calibrate: Calibrate,
    tuned: Mapping[str, Any],
    *,
    tuned_source: str = "results/tuned.yaml",
    contenders: Sequence[str] = CONTENDERS,
    scenarios: Sequence[str] | None = None,
    jobs: int = 1,
    backend: str = "local",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run every score part × contender (as shipped and tuned); the result is ``results/bench.json``'s
    content, without the verdicts (:mod:`heteroscale.reports.bench` adds them)."""
    check_contenders(contenders)
    entries = select_entries(suite, scenarios)
    tasks = plan_score(entries, contenders, tuned, tuned_source)
    parts = [part for entry in entries for part in entry.score_scenarios()]
    margins = sorted({t[1] for t in tasks})
    runs = _comparisons(parts, margins, calibrate, jobs=jobs, backend=backend, progress=progress)
    unique = list(dict.fromkeys(_run_key(t) for t in tasks))  # a tuned row as shipped runs once
    figures = run_all(run_one, runs, unique, jobs=jobs, backend=backend, progress=progress, label=_label)
    by_run = dict(zip(unique, figures, strict=True))
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "suite": suite.name,
        "contenders": list(contenders),
        "slo_target": SLO_TARGET,
        "scenarios": {},
    }
    for entry in entries:
        scenario = entry.scenario
        rows: dict[str, Any] = {}
        for part_name, margin, name, options, row in tasks:
            if not part_name.startswith(scenario.name + "@"):
                continue
            part = part_name.removeprefix(scenario.name + "@")
            kind = "tuned" if row.endswith(TUNED) else "as-shipped"
            entry_row = rows.setdefault(row, {"contender": name, "kind": kind, "margin": margin,
                                              "options": dict(options), "parts": {}})  # fmt: skip
            entry_row["parts"][part] = by_run[(part_name, margin, name, options, name)]
        for entry_row in rows.values():
            entry_row["mean"] = mean_figures(list(entry_row["parts"].values()))
        bounds = {}
        for p in entry.score:
            base = runs.comparisons[(f"{scenario.name}@{p.name}", DEFAULT_MARGIN)]
            seed_bounds = base.bounds[scenario.settings.seed]
            bounds[p.name] = {
                "gpu_hours": round(sum(b.gpu_hours for b in seed_bounds.values()), 6),
                "cost": round(sum(b.cost for b in seed_bounds.values()), 6),
                # a reference, not a bound: the clairvoyant ratio-oracle at the shared targets (10-min
                # windows, no cold start); where it bills well above the bound, so must every policy
                "ratio_oracle_gpu_hours": round(sum(o.gpu_hours for o in base.oracles.values()), 6),
            }
        result["scenarios"][scenario.name] = {
            "description": scenario.description,
            "gpu_mix": gpu_mix(scenario),
            "billed": billed_key(scenario),
            "tune_part": entry.tune.name,
            "score_parts": [p.name for p in entry.score],
            "lower_bound": bounds,
            "rows": rows,
        }
    return result


def mean_figures(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean over parts of each figure (None where a part has none); the label of the least faithful."""
    out: dict[str, Any] = {}
    for key in (*FIGURES, "requests_total"):
        values = [p.get(key) for p in parts]
        known = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        out[key] = round(sum(known) / len(known), 6) if known and len(known) == len(values) else None
    keys = sorted({k for p in parts for k in p.get(BY_SERVICE_ROLE, {})})
    out[BY_SERVICE_ROLE] = {
        k: round(sum(p.get(BY_SERVICE_ROLE, {}).get(k, 0.0) for p in parts) / len(parts), 6) for k in keys
    }
    services = sorted({k for p in parts for k in p.get(SLO_BY_SERVICE, {})})
    out[SLO_BY_SERVICE] = {
        k: round(sum(float(p.get(SLO_BY_SERVICE, {}).get(k) or 0.0) for p in parts) / len(parts), 6) for k in services
    }
    labels = {p["fidelity_label"] for p in parts}
    out["fidelity"] = ",".join(sorted({str(p["fidelity"]) for p in parts}))
    out["fidelity_label"] = "estimate" if "estimate" in labels else "request"
    return out


def _label(task: Task) -> str:
    return f"{task[4]} on {task[0]}"


def _run_key(task: Task) -> Task:
    """The run behind a row (its name left out: a tuned row with the shipped config is the same run)."""
    part, margin, name, options, _ = task
    return (part, margin, name, options, name)


# --- retuning --------------------------------------------------------------------------------------


def plan_retune(
    entries: Sequence[SuiteEntry], contenders: Sequence[str]
) -> tuple[list[Task], dict[str, tuple[Config, ...]]]:
    """Every tune part × contender × configuration."""
    configs = {name: draw_configs(name) for name in contenders}
    tasks: list[Task] = []
    for entry in entries:
        part = entry.tune_scenario().name
        for name in contenders:
            for k, config in enumerate(configs[name]):
                tasks.append((part, config.margin, name, config.options, f"{name}#{k}"))
    return tasks, configs


def pick(figures: Sequence[Mapping[str, Any]], billed: str) -> tuple[int, str]:
    """The index of the best configuration and why: the least billed meeting the SLO target, else the
    highest attainment (the least billed among equals)."""
    slo = [float(f["slo_attainment"] or 0.0) for f in figures]
    cost = [float(f[billed]) for f in figures]
    feasible = [k for k in range(len(figures)) if slo[k] >= SLO_TARGET]
    if feasible:
        return min(feasible, key=lambda k: (cost[k], k)), f"fewest {billed} with SLO attainment ≥ {SLO_TARGET:.0%}"
    best = max(range(len(figures)), key=lambda k: (slo[k], -cost[k], -k))
    return best, f"no configuration met SLO attainment ≥ {SLO_TARGET:.0%}: the highest attainment"


def retune(
    suite: Suite,
    calibrate: Calibrate,
    *,
    contenders: Sequence[str] = CONTENDERS,
    scenarios: Sequence[str] | None = None,
    jobs: int = 1,
    backend: str = "local",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Tune every contender on every scenario's tune part; the content of ``results/tuned.yaml``."""
    check_contenders(contenders)
    entries = select_entries(suite, scenarios)
    tasks, configs = plan_retune(entries, contenders)
    parts = [entry.tune_scenario() for entry in entries]
    runs = _comparisons(parts, MARGINS, calibrate, jobs=jobs, backend=backend, progress=progress)
    figures = run_all(run_one, runs, tasks, jobs=jobs, backend=backend, progress=progress, label=_label)
    by_task = dict(zip(tasks, figures, strict=True))
    out: dict[str, Any] = {
        "schema_version": TUNED_SCHEMA_VERSION,
        "suite": suite.name,
        "procedure": {
            "configs": CONFIGS,
            "search_seed": SEARCH_SEED,
            "margins": list(MARGINS),
            "slo_target": SLO_TARGET,
            "objective": "fewest GPU-hours (cost where GPU types differ) with SLO attainment ≥ slo_target on the "
            "tune part, else the highest attainment; configuration 0 is the contender as shipped",
        },
        "scenarios": {},
    }
    for entry in entries:
        part = entry.tune_scenario().name
        billed = billed_key(entry.scenario)
        contenders_out: dict[str, Any] = {}
        for name in contenders:
            tried = [by_task[t] for t in tasks if t[0] == part and t[2] == name]
            best, why = pick(tried, billed)
            config = configs[name][best]
            contenders_out[name] = {
                "margin": config.margin,
                "options": config.options_dict(),
                "config": best,
                "as_shipped": config.as_shipped,
                "why": why,
                "tune": {k: tried[best][k] for k in ("gpu_hours", "cost", "slo_attainment")},
                "tried": [
                    {**configs[name][k].as_dict(), **{f: tried[k][f] for f in ("gpu_hours", "cost", "slo_attainment")}}
                    for k in range(len(tried))
                ],
            }
        out["scenarios"][entry.scenario.name] = {"tune_part": entry.tune.name, "billed": billed,
                                                 "contenders": contenders_out}  # fmt: skip
    return out


def wall_record(
    score_s: float, retune_s: float | None, jobs: int, load_avg: float, old: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The whole suite's wall times for the README: this scoring run's and the last ``--retune``'s (this
    run's, else the one ``old`` recorded)."""
    last = (old or {}).get("wall") or {}
    return {
        "scoring_s": round(score_s, 1),
        "retune_s": round(retune_s, 1) if retune_s is not None else last.get("retune_s"),
        "jobs": jobs,
        "load_avg": round(load_avg, 2),
        "cpus": os.cpu_count(),
    }


def merged(old: Mapping[str, Any] | None, new: Mapping[str, Any], suite: Suite) -> dict[str, Any]:
    """``new`` with the scenarios of ``old`` it did not run (a partial run keeps the rest), in suite order."""
    if old is None or old.get("suite") != new.get("suite") or old.get("schema_version") != new.get("schema_version"):
        return dict(new)
    scenarios = {**old.get("scenarios", {}), **new["scenarios"]}
    order = [entry.scenario.name for entry in suite.entries]
    out = {**new, "scenarios": {name: scenarios[name] for name in order if name in scenarios}}
    if "wall" in old and "wall" not in new:
        out["wall"] = old["wall"]
    return out
