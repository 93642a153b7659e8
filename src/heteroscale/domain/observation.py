"""Observation: per-service, per-role signals over a window, as read from a MetricSource.

The simulator and the Prometheus adapter return the same type. ``None`` means "not measured";
staleness and missing signals are stated, never papered over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from heteroscale.domain.hardware import Role


@dataclass(frozen=True, slots=True)
class RoleSignals:
    """One role's signals over the window (averages over the role's ready instances)."""

    instances_ready: int
    tps: float | None  # prefill: cache-missed prompt tokens/s; decode: generated tokens/s
    gpu_util: float | None = None  # 0–1, DCGM_FI_DEV_GPU_UTIL / 100
    sm_activity: float | None = None  # 0–1, DCGM_FI_PROF_SM_ACTIVE
    compute_efficiency: float | None = None  # achieved / peak FLOPs
    queue_len: float | None = None  # waiting requests (prefill queue or decode admission)
    running: float | None = None  # requests in a batch
    kv_usage: float | None = None  # 0–1, decode KV-cache usage
    # the two counts above averaged over the window (a queue is spiky; an autoscaler that scrapes every
    # second sees its mean); None where the source only has the window-end value
    queue_len_mean: float | None = None
    running_mean: float | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    service: str
    window_start_s: float
    window_end_s: float
    prefill: RoleSignals
    decode: RoleSignals
    ttft_p50_s: float | None = None
    ttft_p90_s: float | None = None
    ttft_p99_s: float | None = None
    tbt_p50_s: float | None = None
    tbt_p90_s: float | None = None
    tbt_p99_s: float | None = None
    requests_per_s: float | None = None
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None
    stale: bool = False
    missing: tuple[str, ...] = field(default=())

    def role(self, role: Role) -> RoleSignals:
        return self.prefill if role is Role.PREFILL else self.decode

    @property
    def complete(self) -> bool:
        return not self.stale and not self.missing
