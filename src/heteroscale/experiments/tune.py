"""`heteroscale tune` (Algorithm 1, workload-centric policy curation).

(r_opt, m_hat) ← PressureTest: sweep the P/D splits of a small cluster for the best ratio, then pressure
test at that ratio for the per-instance decode-TPS target at SLO (with margin). Then simulate each
candidate policy on the scenario with that ratio and those targets and return the best: the fewest
GPU-hours among those meeting the SLO (attainment ≥ 0.99), else the highest attainment. The sweep's
splits and the candidates run on ``jobs`` processes (or Ray) with the results of a serial run; the
candidates follow ``compare``'s rule on a scenario's policy options (a marked row or a refusal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from heteroscale.experiments.compare import Comparison, check_contenders, run_task
from heteroscale.experiments.parallel import ProgressFn, run_all
from heteroscale.experiments.sweep import sweep_ratio
from heteroscale.perf import Calibration
from heteroscale.sim.scenario import Scenario

CANDIDATES = ("heteroscale", "signal:prefill-tps", "independent-tps", "hpa", "dynamo-sla", "static-peak")
SLO_TARGET = 0.99


def tune(
    scenario: Scenario,
    calibration: Calibration,
    *,
    candidates: Sequence[str] = CANDIDATES,
    instances: int = 8,
    progress: ProgressFn | None = None,
    jobs: int = 1,
    backend: str = "local",
) -> dict[str, Any]:
    check_contenders(scenario, candidates)
    service = scenario.services[0]
    sweep = sweep_ratio(
        scenario, calibration, service=service.spec.name, instances=instances, progress=progress, jobs=jobs,
        backend=backend,
    )  # fmt: skip
    best_split = next(s for s in sweep["splits"] if s["split"] == sweep["best"])
    r_opt = best_split["prefill"] / best_split["decode"]
    spec = dataclasses.replace(service.spec, pd_ratio=round(r_opt, 4))
    tuned = dataclasses.replace(
        scenario,
        services=(dataclasses.replace(service, spec=spec), *scenario.services[1:]),
    )
    comparison = Comparison(tuned, calibration, progress=progress)
    seed = scenario.settings.seed
    comparison.loads(seed)
    runs = run_all(
        run_task, comparison, [(name, seed, None) for name in candidates], jobs=jobs, backend=backend,
        progress=progress, label=lambda t: t[0],
    )  # fmt: skip
    scores: dict[str, dict[str, Any]] = {}
    for name, run in zip(candidates, runs, strict=True):
        s = run.summary
        scores[name] = {
            "gpu_hours": s["gpu_hours"],
            "cost": s["cost"],
            "slo_attainment": s["slo_attainment"],
            "gpu_hours_vs_lower_bound": s["gpu_hours_vs_lower_bound"],
            "gpu_hours_vs_oracle": s["gpu_hours_vs_oracle"],
            "scale_actions_per_hour": s["scale_actions_per_hour"],
            "meets_slo": (s["slo_attainment"] or 0.0) >= SLO_TARGET,
        }
    feasible = [n for n, v in scores.items() if v["meets_slo"]]
    if feasible:
        best = min(feasible, key=lambda n: scores[n]["gpu_hours"])
        why = "fewest GPU-hours among the candidates meeting the SLO"
    else:
        best = max(scores, key=lambda n: scores[n]["slo_attainment"] or 0.0)
        why = "no candidate met the SLO: highest attainment"
    m_hat = comparison.targets[service.spec.name]
    return {
        "scenario": scenario.name,
        "service": service.spec.name,
        "r_opt": round(r_opt, 4),
        "ratio_sweep": {"instances": instances, "best": sweep["best"], "unimodal": sweep["unimodal"]},
        "m_hat_decode_tps_per_instance": dict(m_hat.decode_tps_per_instance),
        "targets": dataclasses.asdict(m_hat),
        "scores": scores,
        "best": best,
        "why": why,
    }
