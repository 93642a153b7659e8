"""Targets from the performance model alone, for policies that read none (fixed, static, periodic).

Policies that scale on signals get their targets from the pressure test instead
(``heteroscale.experiments.pressure``); these analytic values are labelled ``source="perf-model"``.
The prefill queue target here is an assumption (one waiting request per instance × margin): only a
pressure test measures it.
"""

from __future__ import annotations

from heteroscale.domain.hardware import Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.perf import InstancePerf
from heteroscale.policy.context import Targets

ANALYTIC_QUEUE_PER_INSTANCE = 1.0  # [assumption] one waiting prefill request per instance at the knee


def decode_itl_profile(perf: InstancePerf, max_batch: int, context_tokens: float) -> tuple[float, float, float]:
    """Dynamo's decode ITL profile of an instance as three numbers, ITL(b, ctx) = floor + (b − 1) ·
    (per_request + per_kv_token · ctx): (floor, per_request, per_kv_token), fitted to the performance
    model's step times at batch 1 and at the largest batch, at ``context_tokens`` and twice that (the
    per-request term carries the compute a batch adds, the per-token one its KV reads)."""
    ctx = max(1.0, context_tokens)
    top = max(2, min(max_batch, int(perf.kv_capacity_tokens // (2 * ctx))))
    floor_s = perf.decode_step_time_s(1, int(ctx))
    at_ctx = perf.decode_step_time_s(top, int(top * ctx))
    at_twice = perf.decode_step_time_s(top, int(2 * top * ctx))
    per_kv = max(0.0, (at_twice - at_ctx) / ((top - 1) * ctx))
    per_request = max(0.0, (at_ctx - floor_s) / (top - 1) - per_kv * ctx)
    return floor_s, per_request, max(per_kv, 1e-15)


def analytic_targets(
    spec: ServiceSpec,
    perf_by_shape_key: dict[str, InstancePerf],
    mean_input_tokens: float,
    mean_output_tokens: float,
    margin: float = 0.75,
) -> Targets:
    """Per-instance capacities at the TBT SLO from the performance model, × margin."""
    ctx_per_seq = mean_input_tokens + mean_output_tokens / 2.0
    decode: list[tuple[str, float]] = []
    rps_d = 0.0
    profile: tuple[float, float, float] | None = None
    kv_tokens: float | None = None
    batch_util = margin
    for shape in spec.shapes(Role.DECODE):
        perf = perf_by_shape_key[shape.key]
        batch = 1
        for b in range(1, spec.max_decode_batch + 1):
            if perf.decode_step_time_s(b, int(b * ctx_per_seq)) > spec.slo.tbt_s:
                break
            batch = b
        tps = batch / perf.decode_step_time_s(batch, int(batch * ctx_per_seq))
        decode.append((shape.key, tps * margin))
        if not rps_d:
            rps_d = tps / max(1.0, mean_output_tokens) * margin
            profile = decode_itl_profile(perf, spec.max_decode_batch, ctx_per_seq)
            kv_tokens = float(perf.kv_capacity_tokens)
            batch_util = batch / max(1, spec.max_decode_batch) * margin
    prefill: list[tuple[str, float]] = []
    rps_p = 0.0
    prefill_s_per_token = 0.0
    for shape in spec.shapes(Role.PREFILL):
        perf = perf_by_shape_key[shape.key]
        t = perf.prefill_time_s(int(mean_input_tokens), mean_input_tokens * mean_input_tokens)
        prefill.append((shape.key, mean_input_tokens / t * margin))
        if not rps_p:
            rps_p = margin / t
            prefill_s_per_token = t / max(1.0, mean_input_tokens)
    return Targets(
        decode_tps_per_instance=tuple(decode),
        prefill_tps_per_instance=tuple(prefill),
        prefill_gpu_util=margin,
        decode_gpu_util=margin,
        prefill_sm_activity=margin * 0.85,
        decode_sm_activity=margin * 0.69,
        ttft_s=spec.slo.ttft_s * margin,
        tbt_s=spec.slo.tbt_s * margin,
        requests_per_s_per_prefill=rps_p,
        requests_per_s_per_decode=rps_d,
        mean_input_tokens=mean_input_tokens,
        mean_output_tokens=mean_output_tokens,
        margin=margin,
        source="perf-model",
        prefill_queue_per_instance=ANALYTIC_QUEUE_PER_INSTANCE * margin,
        decode_batch_util=batch_util,
        prefill_s_per_input_token=prefill_s_per_token or None,
        decode_itl_floor_s=None if profile is None else profile[0],
        decode_itl_s_per_request=None if profile is None else profile[1],
        decode_itl_s_per_kv_token=None if profile is None else profile[2],
        decode_kv_capacity_tokens=kv_tokens,
    )
