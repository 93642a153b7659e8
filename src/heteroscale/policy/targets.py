"""Targets from the performance model alone, for policies that read none (fixed, static, periodic).

Policies that scale on signals get their targets from the pressure test instead
(``heteroscale.experiments.pressure``); these analytic values are labelled ``source="perf-model"``.
"""

from __future__ import annotations

from heteroscale.domain.hardware import Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.perf import InstancePerf
from heteroscale.policy.context import Targets


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
    prefill: list[tuple[str, float]] = []
    rps_p = 0.0
    for shape in spec.shapes(Role.PREFILL):
        perf = perf_by_shape_key[shape.key]
        t = perf.prefill_time_s(int(mean_input_tokens), mean_input_tokens * mean_input_tokens)
        prefill.append((shape.key, mean_input_tokens / t * margin))
        if not rps_p:
            rps_p = margin / t
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
    )
