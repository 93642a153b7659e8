"""The run summary: request outcomes, latency percentiles, SLO attainment, GPU-hours, utilisation.

Utilisation figures are GPU-time weighted over everything billed: a GPU that is starting, idle or
draining counts as billed and not busy, as DCGM would report it.

Latency percentiles: ``ttft_p50/p90/p99_s`` and ``tbt_p50/p90/p99_s`` (definitions in
``heteroscale.sim.records``), and ``latency``: p50/p90/p99 of ``ttft_s``, ``tbt_s``, ``e2e_s``
(arrival → last token), ``queueing_s`` (arrival → prefill start), ``transfer_s`` (prefill end → KV
landed, NIC queue included), ``ttft_splitwise_s`` and ``tbt_splitwise_s`` (SplitwiseSim's TTFT, to the
prefill end, and its per-request TBT; see ``heteroscale.sim.records``). The fluid engine
estimates TTFT and TBT only; its other latency figures are null.

``requests_failed`` counts every failed request; ``requests_failed_by_scale_in`` those failed because
an instance was removed under them (killed, or drained past its deadline), and
``requests_failed_by_cause`` splits the total by FailureCause (``scale-in``, ``kv-capacity``).

``instances_gated`` / ``instances_gated_s`` / ``gpu_hours_gated``: Ready instances held out of service
discovery by ratio gating (:mod:`heteroscale.sim.gating`), billed and serving nothing.
``fluid_load_fraction`` / ``fluid_regime`` / ``fluid_estimates``: which fluid latency and SLO figures
to trust (:mod:`heteroscale.sim.fidelity`); None at request fidelity.

``summarise`` reads a finished run and changes nothing: the run brings its engine's accumulators up to
the end first (``Engine.finalize``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from heteroscale.domain.hardware import Role
from heteroscale.perf import Calibration
from heteroscale.perf.engines import assumptions
from heteroscale.sim.engine import Engine, ServiceLoad
from heteroscale.sim.fidelity import fluid_labels
from heteroscale.sim.gating import GatingTally
from heteroscale.sim.records import ServiceStats
from heteroscale.sim.scenario import EngineSettings, Fidelity
from heteroscale.sim.telemetry import percentile


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What a summary reads from a finished run."""

    scenario: str
    fidelity: Fidelity
    seed: int
    perf_engine: str
    engine_settings: EngineSettings
    calibration: Calibration
    loads: list[ServiceLoad]
    engine: Engine
    initial_launches: int
    gating: GatingTally
    # per service, the peak load fraction of a fluid run (None: unknown); None at request fidelity
    load_fractions: dict[str, float | None] | None = None


def _quantile_keys(ttft: Sequence[float | None], tbt: Sequence[float | None]) -> dict[str, float | None]:
    """The summary's TTFT and TBT p50/p90/p99 keys from their (p50, p90, p99)."""
    out: dict[str, float | None] = {}
    for name, values in (("ttft", ttft), ("tbt", tbt)):
        for q, value in zip((50, 90, 99), values, strict=True):
            out[f"{name}_p{q}_s"] = _r(value)
    return out


def _r(value: float | None, digits: int = 6) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


_QS = (0.5, 0.9, 0.99)
_PHASES = (("e2e_s", "e2e"), ("queueing_s", "queue"), ("transfer_s", "xfer"))


def _pcts(values: list[float | None]) -> dict[str, float | None]:
    return {f"p{round(q * 100)}": _r(v) for q, v in zip(_QS, values, strict=True)}


def _latency(stats: list[ServiceStats], ttft: list[float | None], tbt: list[float | None]) -> dict[str, Any]:
    """p50/p90/p99 of every latency the summary reports (None where the engine does not measure it)."""
    out: dict[str, Any] = {"ttft_s": _pcts(ttft), "tbt_s": _pcts(tbt)}
    for key, name in (*_PHASES, ("ttft_splitwise_s", "ttft_splitwise"), ("tbt_splitwise_s", "tbt_splitwise")):
        out[key] = _pcts(_quantiles(stats, name))
    return out


def _quantiles(stats: list[ServiceStats], name: str) -> list[float | None]:
    """p50/p90/p99 of the per-request values ``name`` over ``stats``, exactly :func:`percentile` of the
    sorted values: a run has 10⁵–10⁶, so numpy places only the ranks it reads (a partition, not a sort)."""
    parts = [np.frombuffer(s.values(name), dtype=np.float64) for s in stats]
    values = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.zeros(0)
    n = len(values)
    if n > 1:  # the ranks percentile reads: ⌊(n−1)q⌋ and the next one
        ranks = {r for q in _QS for lo in (math.floor((n - 1) * q),) for r in (lo, min(lo + 1, n - 1))}
        values = np.partition(values, sorted(ranks))
    # numpy items: float() keeps the summary's values plain floats (the same numbers)
    return [None if (v := percentile(values, q)) is None else float(v) for q in _QS]


def summarise(run: RunFacts, end_s: float) -> dict[str, Any]:
    engine = run.engine
    cluster = engine.cluster
    billing = cluster.close_billing(end_s)
    stats = engine.stats
    total = sum(s.arrivals for s in stats)
    completed = sum(s.completed for s in stats)
    failed = sum(s.failed for s in stats)
    failed_by_cause: dict[str, int] = {}
    for s in stats:
        for cause, n in s.failed_by_cause().items():
            failed_by_cause[cause] = failed_by_cause.get(cause, 0) + n
    met = sum(s.met_slo for s in stats)
    qs = _QS
    if engine.latency_estimated:
        ttft_q, tbt_q = engine.latency_quantiles(None, qs)  # type: ignore[attr-defined]
    else:
        ttft_q, tbt_q = _quantiles(stats, "ttft"), _quantiles(stats, "tbt")

    # busy GPU-seconds per role, from every instance that ever lived
    busy = {r.value: 0.0 for r in Role}
    sm = {r.value: 0.0 for r in Role}
    tokens = {r.value: 0.0 for r in Role}
    for inst in cluster.instances.values():
        tokens[inst.role.value] += inst.acc_tokens
        kernel = inst.acc_kernel_s
        if getattr(inst, "busy", False) and getattr(inst, "batch_end", 0.0) > end_s:
            kernel -= (inst.batch_end - end_s) * inst.batch_kfrac  # type: ignore[attr-defined]
        occ = inst.perf.prefill_sm_occupancy if inst.role is Role.PREFILL else inst.perf.decode_sm_occupancy
        busy[inst.role.value] += kernel * inst.gpus
        sm[inst.role.value] += kernel * inst.gpus * occ
    gpu_s = billing.gpu_s_by_role
    total_gpu_s = sum(gpu_s.values())

    per_service: dict[str, Any] = {}
    latency = _latency(stats, ttft_q, tbt_q)
    for idx, (load, s) in enumerate(zip(run.loads, stats, strict=True)):
        if engine.latency_estimated:
            s_ttft, s_tbt = engine.latency_quantiles(idx, qs)  # type: ignore[attr-defined]
            s_latency = _latency([s], s_ttft, s_tbt)
        elif len(stats) == 1:  # the service's figures are the run's: sort its values once
            s_ttft, s_tbt = ttft_q, tbt_q
            s_latency = {k: dict(v) for k, v in latency.items()}
        else:
            s_ttft, s_tbt = _quantiles([s], "ttft"), _quantiles([s], "tbt")
            s_latency = _latency([s], s_ttft, s_tbt)
        per_service[load.spec.name] = (
            {
                "requests_total": s.arrivals,
                "requests_completed": s.completed,
                "requests_failed": s.failed,
                "requests_failed_by_scale_in": s.failed_scale_in,
                "requests_failed_by_cause": s.failed_by_cause(),
                "slo_attainment": _r(_ratio(s.met_slo, s.arrivals)),
                "gpu_hours": _r(sum(v for (i, _), v in billing.gpu_s_by_service_role.items() if i == idx) / 3600.0),
                "gpu_hours_by_role": {
                    role: _r(billing.gpu_s_by_service_role.get((idx, role), 0.0) / 3600.0) for role in gpu_s
                },
                **_quantile_keys(s_ttft, s_tbt),
                "latency": s_latency,
                "slo": {"ttft_s": load.spec.slo.ttft_s, "tbt_s": load.spec.slo.tbt_s},
            }
            | run.gating.figures(load.spec.name)
            | _labels(run, load.spec.name)
        )

    return {
        "scenario": run.scenario,
        "fidelity": run.fidelity.value,
        "seed": run.seed,
        "latency_estimated": engine.latency_estimated,
        "perf_engine": run.perf_engine,
        "perf_engine_assumptions": assumptions(run.perf_engine, run.calibration),
        # the request engine's behaviours (simulation.engine; the fluid engine ignores them)
        "engine_settings": {
            f.name: (v.value if isinstance(v := getattr(run.engine_settings, f.name), StrEnum) else v)
            for f in dataclasses.fields(run.engine_settings)
        },
        "requests_total": total,
        "requests_completed": completed,
        "requests_failed": failed,
        "requests_failed_by_scale_in": sum(s.failed_scale_in for s in stats),
        "requests_failed_by_cause": failed_by_cause,
        "requests_unfinished": total - completed - failed,
        **_quantile_keys(ttft_q, tbt_q),
        "latency": latency,
        "slo_attainment": _r(_ratio(met, total)),
        "gpu_hours": _r(total_gpu_s / 3600.0),
        "gpu_hours_by_role": {k: _r(v / 3600.0) for k, v in gpu_s.items()},
        "gpu_hours_by_sku": {k: _r(v / 3600.0) for k, v in sorted(billing.gpu_s_by_sku.items())},
        "cost": _r(billing.cost_gpu_s / 3600.0),
        "avg_gpu_util": _r(_ratio(sum(busy.values()), total_gpu_s)),
        "avg_gpu_util_by_role": {k: _r(_ratio(busy[k], gpu_s[k])) for k in busy},
        "avg_sm_activity": _r(_ratio(sum(sm.values()), total_gpu_s)),
        "avg_sm_activity_by_role": {k: _r(_ratio(sm[k], gpu_s[k])) for k in sm},
        "avg_tps_by_role": {k: _r(v / end_s if end_s > 0 else None) for k, v in tokens.items()},
        "scale_actions": billing.launches + billing.removals - run.initial_launches,
        "instances_removed": billing.removals,  # scale-ins that completed (the instance is gone)
        **run.gating.figures(),
        **_labels(run, None),
        "simulated_s": _r(end_s, 3),
        "events": engine.events,
        "services": per_service,
        "wall_s": None,
    }


def _labels(run: RunFacts, service: str | None) -> dict[str, Any]:
    """The fluid labels (:mod:`heteroscale.sim.fidelity`) of one service or the run (its peak)."""
    if run.load_fractions is None:
        return {"fluid_load_fraction": None, "fluid_regime": None, "fluid_estimates": None}
    if service is not None:
        return fluid_labels(run.load_fractions.get(service))
    fractions = list(run.load_fractions.values())
    known = [f for f in fractions if f is not None]
    return fluid_labels(max(known) if known and len(known) == len(fractions) else None)
