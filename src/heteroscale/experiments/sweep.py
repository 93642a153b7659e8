"""`heteroscale sweep-ratio` (the paper's Fig. 4): sustainable throughput of every P/D split of N.

For each split of N instances into P prefill and D decode, the pressure test's bisection finds the
highest request rate served within SLO; the split's figures are the prefill and decode TPS at that
rate and the GPU utilisation and SM activity of each role there. ``best`` is the split with the
highest sustainable request rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from heteroscale.experiments.pressure import KneePoint, find_knee, length_mix
from heteroscale.perf import Calibration
from heteroscale.sim.scenario import Scenario


def sweep_ratio(
    scenario: Scenario,
    calibration: Calibration,
    *,
    service: str | None = None,
    instances: int = 16,
    duration_s: float = 300.0,
    iterations: int = 6,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    run = next(r for r in scenario.services if service is None or r.spec.name == service)
    spec = run.spec
    mix = length_mix(run, scenario.settings.duration_s, scenario.settings.seed)
    splits: list[dict[str, Any]] = []
    for prefill in range(1, instances):
        decode = instances - prefill
        if progress is not None:
            progress(f"{prefill}P{decode}D")
        knee, _ = find_knee(
            scenario, spec, calibration, prefill, decode, mix,
            duration_s=duration_s, iterations=iterations, seed=scenario.settings.seed,
        )  # fmt: skip
        splits.append(_split(prefill, decode, knee))
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
