"""Small builders for policy tests; each takes keyword overrides so a test states only what it is about.

The default service: one H100 TP4 shape per role, P/D ratio 0.5, bounds [1, 100] per role, SLO
TTFT 2 s / TBT 0.1 s, max decode batch 256. Default targets: 1000 decode tok/s and 10 000 prefill tok/s
per instance, GPU utilisation 0.8, latency thresholds TTFT 1.6 s / TBT 0.08 s, 1 waiting prefill
request per instance, decode batch utilisation 0.5; the default observation sits on those two (10
waiting over 10 prefill instances, 2560 running over 20 decode instances = 128 of 256). Dynamo's
profile: 0.1 ms of prefill per prompt token, decode ITL = 20 ms + 0.2 µs per token of KV in the batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from heteroscale.domain.decision import Step
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.domain.service import ServiceSpec, Slo
from heteroscale.policy.context import PolicyContext, PolicyMemory, PolicyResult, RoleCounts, ServiceCounts, Targets

D_SHAPE = InstanceShape(Role.DECODE, "h100-sxm", 4)
D_SHAPE_2 = InstanceShape(Role.DECODE, "h20", 8)
P_SHAPE = InstanceShape(Role.PREFILL, "h100-sxm", 4)
M_DECODE = 1000.0  # decode tok/s target per H100 instance
M_DECODE_2 = 500.0  # … per H20 instance
M_PREFILL = 10_000.0
NOW = 10_000.0  # the time of every context these builders make, unless given


def spec(**overrides: Any) -> ServiceSpec:
    base: dict[str, Any] = {
        "name": "svc",
        "model": "llama-3.1-70b",
        "prefill_shapes": (P_SHAPE,),
        "decode_shapes": (D_SHAPE,),
        "pd_ratio": 0.5,
        "slo": Slo(ttft_s=2.0, tbt_s=0.1),
        "min_prefill": 1,
        "max_prefill": 100,
        "min_decode": 1,
        "max_decode": 100,
    }
    base.update(overrides)
    return ServiceSpec(**base)


def targets(**overrides: Any) -> Targets:
    base: dict[str, Any] = {
        "decode_tps_per_instance": ((D_SHAPE.key, M_DECODE), (D_SHAPE_2.key, M_DECODE_2)),
        "prefill_tps_per_instance": ((P_SHAPE.key, M_PREFILL),),
        "prefill_gpu_util": 0.8,
        "decode_gpu_util": 0.8,
        "prefill_sm_activity": 0.6,
        "decode_sm_activity": 0.5,
        "ttft_s": 1.6,
        "tbt_s": 0.08,
        "requests_per_s_per_prefill": 5.0,
        "requests_per_s_per_decode": 2.0,
        "mean_input_tokens": 2000.0,
        "mean_output_tokens": 200.0,
        "prefill_queue_per_instance": 1.0,
        "decode_batch_util": 0.5,
        "prefill_s_per_input_token": 1e-4,
        "decode_itl_floor_s": 0.02,
        "decode_itl_s_per_request": 0.0,
        "decode_itl_s_per_kv_token": 2e-7,
        "decode_kv_capacity_tokens": 1e6,
    }
    base.update(overrides)
    return Targets(**base)


def counts(
    prefill: int = 10,
    decode: int = 20,
    *,
    prefill_starting: int = 0,
    decode_starting: int = 0,
    decode_by_shape: tuple[tuple[str, int], ...] = (),
) -> ServiceCounts:
    return ServiceCounts(
        prefill=RoleCounts(ready=prefill, starting=prefill_starting),
        decode=RoleCounts(ready=decode, starting=decode_starting, by_shape=decode_by_shape),
    )


def observation(
    *,
    decode_tps: float | None = 20_000.0,
    prefill_tps: float | None = 100_000.0,
    decode_ready: int = 20,
    prefill_ready: int = 10,
    decode_util: float | None = 0.8,
    prefill_util: float | None = 0.8,
    decode_sm: float | None = 0.5,
    prefill_sm: float | None = 0.6,
    prefill_queue: float | None = 10.0,
    decode_running: float | None = 2560.0,
    **overrides: Any,
) -> Observation:
    base: dict[str, Any] = {
        "service": "svc",
        "window_start_s": 0.0,
        "window_end_s": 60.0,
        "prefill": RoleSignals(
            prefill_ready, prefill_tps, gpu_util=prefill_util, sm_activity=prefill_sm, queue_len=prefill_queue
        ),
        "decode": RoleSignals(
            decode_ready, decode_tps, gpu_util=decode_util, sm_activity=decode_sm, running=decode_running
        ),
        "ttft_p90_s": 0.5,
        "tbt_p90_s": 0.05,
        "requests_per_s": 10.0,
        "mean_input_tokens": 2000.0,
        "mean_output_tokens": 200.0,
    }
    base.update(overrides)
    return Observation(**base)


def memory(**overrides: Any) -> PolicyMemory:
    return dataclasses.replace(PolicyMemory(), **overrides)


WARM_KEY = "warmup.first_observation_s"  # heteroscale.policy.stages.WarmUp's default key


def warmed(base: PolicyMemory | None = None, since_s: float = 0.0) -> PolicyMemory:
    """``base`` (default: empty) of a policy that has observed since ``since_s``: its warm-up is over."""
    base = PolicyMemory() if base is None else base
    return dataclasses.replace(base, values=tuple(sorted({**dict(base.values), WARM_KEY: since_s}.items())))


_UNSET: Any = object()


def ctx(
    *,
    now_s: float = NOW,
    obs: Observation | None = _UNSET,
    error: str | None = None,
    **overrides: Any,
) -> PolicyContext:
    base: dict[str, Any] = {
        "now_s": now_s,
        "spec": spec(),
        "observation": observation() if obs is _UNSET else obs,
        "observation_error": error,
        "counts": counts(),
        "targets": targets(),
        "memory": PolicyMemory(),
    }
    base.update(overrides)
    return PolicyContext(**base)


def desired(result: PolicyResult) -> tuple[int, int]:
    """A decision's desired (prefill, decode)."""
    return result.decision.desired_prefill, result.decision.desired_decode


def step(result: PolicyResult, name: str) -> Step:
    """The decision's step called ``name`` (an assertion error naming the steps when there is none)."""
    matches = [s for s in result.decision.steps if s.name == name]
    assert matches, f"no step {name!r} in {[s.name for s in result.decision.steps]}"
    return matches[0]
