"""A served model with its SLOs, allowed shapes per role, P/D ratio and bounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from heteroscale.domain.hardware import InstanceShape, Role


class GpuMix(StrEnum):
    """How a role with several allowed shapes picks them: the listed preference order (with fallback
    when a shape has no room), or the cheapest mix per served token (a MILP, see scheduling.mix)."""

    PREFERENCE = "preference"
    COST = "cost"


class AffinityLevel(StrEnum):
    S1 = "s1"
    S2 = "s2"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True)
class Slo:
    ttft_s: float
    tbt_s: float


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    model: str  # canonical model id
    prefill_shapes: tuple[InstanceShape, ...]  # preference order
    decode_shapes: tuple[InstanceShape, ...]
    pd_ratio: float  # prefill instances per decode instance
    slo: Slo
    min_prefill: int = 1
    max_prefill: int = 1000
    min_decode: int = 1
    max_decode: int = 1000
    priority: int = 0
    affinity: AffinityLevel = AffinityLevel.S2
    prefix_cache_hit_rate: float = 0.0  # used when the trace does not say
    max_prefill_tokens: int = 8192  # prefill token budget per batch
    max_decode_batch: int = 256
    gpu_mix: GpuMix = GpuMix.PREFERENCE
    gpu_mix_time_limit_s: float = 0.2  # the mix solver's time budget per decision
    extra: dict[str, object] = field(default_factory=dict)

    def shapes(self, role: Role) -> tuple[InstanceShape, ...]:
        return self.prefill_shapes if role is Role.PREFILL else self.decode_shapes

    def preferred_shape(self, role: Role) -> InstanceShape:
        return self.shapes(role)[0]
