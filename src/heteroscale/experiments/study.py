"""`heteroscale study-metrics` (the paper's Fig. 6 and Fig. 2): which signal should drive scaling.

One run per driving signal on the diurnal load, each sizing both pools at the ratio, with its GPU-count
time series and summary. As in the paper's testbed, each run starts at the provisioned size (the
ratio-oracle's peak, which covers the day) and may not exceed it, so what a signal shows is whether it
follows the load down and back up; plus a no-autoscaling run (held at the ratio-oracle's peak) whose
signal shapes correspond to Fig. 2: prefill utilisation follows the load while decode utilisation stays
high.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from heteroscale.domain.hardware import Role
from heteroscale.experiments.compare import Comparison, PolicyRun
from heteroscale.experiments.parallel import ProgressFn, Step
from heteroscale.perf import Calibration
from heteroscale.sim.scenario import Scenario
from heteroscale.sim.telemetry import RoleWindow

SIGNALS = (
    "prefill-tps",
    "decode-tps",
    "prefill-gpu-util",
    "decode-gpu-util",
    "prefill-sm-activity",
    "decode-sm-activity",
    "ttft",
    "tbt",
)


def gpu_series(run: PolicyRun, gpus_per_prefill: int, gpus_per_decode: int) -> list[dict[str, float]]:
    """Per telemetry window: time, load and GPUs held (ready + starting) per role."""
    out = []
    for row in run.rows:
        p = sum(_held_or_serving(row.prefill))
        d = sum(_held_or_serving(row.decode))
        out.append(
            {
                "t_s": row.t_s,
                "arrivals_per_s": round(row.arrivals_per_s, 4),
                "decode_tps": round(row.decode.tps, 2),
                "prefill_gpus": p * gpus_per_prefill,
                "decode_gpus": d * gpus_per_decode,
            }
        )
    return out


def _held_or_serving(role: RoleWindow) -> tuple[int, int, int, int]:
    """Every instance that holds GPUs: ready, starting, draining and held out of discovery."""
    return role.instances_ready, role.instances_starting, role.instances_draining, role.instances_held


def signal_series(run: PolicyRun) -> list[dict[str, float | None]]:
    """Per telemetry window: the signals of Fig. 2."""
    return [
        {
            "t_s": row.t_s,
            "arrivals_per_s": round(row.arrivals_per_s, 4),
            "prefill_gpu_util": row.prefill.gpu_util,
            "decode_gpu_util": row.decode.gpu_util,
            "prefill_sm_activity": row.prefill.sm_activity,
            "decode_sm_activity": row.decode.sm_activity,
            "prefill_tps": round(row.prefill.tps, 2),
            "decode_tps": round(row.decode.tps, 2),
            "ttft_p90_s": row.ttft_p90_s,
            "tbt_p90_s": row.tbt_p90_s,
        }
        for row in run.rows
    ]


def direction_reversals(counts: Sequence[float]) -> int:
    """How many times the GPU count changes direction (up then down, or down then up)."""
    last_dir = 0
    reversals = 0
    for a, b in itertools.pairwise(counts):
        if b == a:
            continue
        d = 1 if b > a else -1
        if last_dir and d != last_dir:
            reversals += 1
        last_dir = d
    return reversals


def study_metrics(
    scenario: Scenario,
    calibration: Calibration,
    *,
    signals: Sequence[str] = SIGNALS,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], dict[str, PolicyRun]]:
    comparison = Comparison(scenario, calibration, progress=progress)
    seed = scenario.settings.seed
    spec = scenario.services[0].spec
    gp = spec.preferred_shape(Role.PREFILL).gpus
    gd = spec.preferred_shape(Role.DECODE).gpus
    runs: dict[str, PolicyRun] = {}
    total = 1 + len(signals)
    if progress is not None:
        progress(Step("no autoscaling", 0, total))
    runs["no-autoscaling"] = comparison.run_policy("static-peak", seed)
    for k, signal in enumerate(signals):
        if progress is not None:
            progress(Step(f"signal:{signal}", 1 + k, total))
        runs[f"signal:{signal}"] = comparison.run_policy(f"signal:{signal}", seed, start_at_peak=True, cap_at_peak=True)
    if progress is not None:
        progress(Step("done", total, total))
    result: dict[str, Any] = comparison.describe()
    base = runs["no-autoscaling"]
    result["no_autoscaling"] = {"summary": base.summary, "series": signal_series(base)}
    result["signals"] = {}
    for name, run in runs.items():
        if name == "no-autoscaling":
            continue
        series = gpu_series(run, gp, gd)
        totals = [s["prefill_gpus"] + s["decode_gpus"] for s in series]
        peak = max(totals) if totals else 0
        result["signals"][name.removeprefix("signal:")] = {
            "summary": run.summary,
            "series": series,
            "peak_gpus": peak,
            "min_gpus": min(totals) if totals else 0,
            "min_over_peak": round(min(totals) / peak, 4) if peak else None,
            "direction_reversals": direction_reversals(totals),
            "gpu_hours_vs_no_autoscaling": round(run.summary["gpu_hours"] / base.summary["gpu_hours"], 4)
            if base.summary["gpu_hours"]
            else None,
        }
    return result, runs
