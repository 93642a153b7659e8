"""`heteroscale sweep-ratio` (the paper's Fig. 4): sustainable throughput of every P/D split of N.

For each split of N instances into P prefill and D decode, the pressure test's bisection finds the
highest request rate served within SLO; the split's figures are the prefill and decode TPS at that
rate and the GPU utilisation and SM activity of each role there. ``best`` is the split with the
highest sustainable request rate. A split whose highest probe still met the SLO says so
(``knee_is_lower_estimate``). The splits are independent and run on ``jobs`` processes (or Ray).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from heteroscale.domain.service import ServiceSpec
from heteroscale.errors import ConfigError, did_you_mean
from heteroscale.experiments.parallel import ProgressFn, run_all
from heteroscale.experiments.pressure import KneePoint, find_knee, length_mix, upper_bracket_met
from heteroscale.perf import Calibration
from heteroscale.sim.scenario import Scenario
from heteroscale.sim.traces import RequestTrace


@dataclass(frozen=True, slots=True)
class _Sweep:
    """What every split's knee search shares."""

    scenario: Scenario
    spec: ServiceSpec
    calibration: Calibration
    mix: RequestTrace
    duration_s: float
    iterations: int


def _split_knee(sweep: _Sweep, split: tuple[int, int]) -> tuple[KneePoint, bool]:
    prefill, decode = split
    knee, probes = find_knee(
        sweep.scenario, sweep.spec, sweep.calibration, prefill, decode, sweep.mix,
        duration_s=sweep.duration_s, iterations=sweep.iterations, seed=sweep.scenario.settings.seed,
    )  # fmt: skip
    return knee, upper_bracket_met(probes)


def sweep_ratio(
    scenario: Scenario,
    calibration: Calibration,
    *,
    service: str | None = None,
    instances: int = 16,
    duration_s: float = 300.0,
    iterations: int = 6,
    progress: ProgressFn | None = None,
    jobs: int = 1,
    backend: str = "local",
) -> dict[str, Any]:
    names = [r.spec.name for r in scenario.services]
    if service is not None and service not in names:
        raise ConfigError(
            f"--service: scenario {scenario.name} has no service {service!r}{did_you_mean(service, names)} "
            f"(services: {', '.join(names)})"
        )
    run = next(r for r in scenario.services if service is None or r.spec.name == service)
    spec = run.spec
    mix = length_mix(run, scenario.settings.duration_s, scenario.settings.seed)
    shared = _Sweep(scenario, spec, calibration, mix, duration_s, iterations)
    pairs = [(prefill, instances - prefill) for prefill in range(1, instances)]
    knees = run_all(
        _split_knee, shared, pairs, jobs=jobs, backend=backend, progress=progress, label=lambda t: f"{t[0]}P{t[1]}D"
    )
    splits = [
        _split(p, d, knee) | {"knee_is_lower_estimate": lower}
        for (p, d), (knee, lower) in zip(pairs, knees, strict=True)
    ]
    best = max(splits, key=lambda s: s["max_rate_rps"])
    return {
        "scenario": scenario.name,
        "service": spec.name,
        "instances": instances,
        "slo": {"ttft_s": spec.slo.ttft_s, "tbt_s": spec.slo.tbt_s},
        "splits": splits,
        "best": best["split"],
        "unimodal": is_unimodal([s["max_rate_rps"] for s in splits]),
    }


def _split(prefill: int, decode: int, knee: KneePoint) -> dict[str, Any]:
    d = dataclasses.asdict(knee)
    return {
        "split": f"{prefill}P{decode}D",
        "prefill": prefill,
        "decode": decode,
        "max_rate_rps": round(knee.rate_rps, 4),
        "max_prefill_tps": round(knee.prefill_tps, 2),
        "max_decode_tps": round(knee.decode_tps, 2),
        "prefill_gpu_util": d["prefill_gpu_util"],
        "decode_gpu_util": d["decode_gpu_util"],
        "prefill_sm_activity": d["prefill_sm_activity"],
        "decode_sm_activity": d["decode_sm_activity"],
        "ttft_p90_s": round(knee.ttft_p90_s, 5),
        "tbt_p90_s": round(knee.tbt_p90_s, 5),
    }


def is_unimodal(values: list[float], tolerance: float = 0.03) -> bool:
    """Rises (within a relative tolerance for bisection noise) to one peak, then falls."""
    if not values:
        return True
    peak = max(range(len(values)), key=lambda i: values[i])
    scale = max(values) or 1.0
    rising = all(values[i + 1] >= values[i] - tolerance * scale for i in range(peak))
    falling = all(values[i + 1] <= values[i] + tolerance * scale for i in range(peak, len(values) - 1))
    return rising and falling
