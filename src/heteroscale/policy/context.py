"""What a policy sees and returns. Policies are pure functions of a PolicyContext.

The controller builds the context (observation, counts, targets, the policy's own memory from the
previous call) and stores the returned memory for the next call; a policy never keeps state itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from heteroscale.domain.decision import Recommendation, ScalingDecision
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import ScaleInMode
from heteroscale.policy.defaults import DRAIN_GRACE_S
from heteroscale.policy.forecast import ForecastState


@dataclass(frozen=True, slots=True)
class RoleCounts:
    """Instances of one role of one service, by lifecycle. ``by_shape`` counts capacity per shape key."""

    ready: int = 0
    starting: int = 0  # pending or cold-starting: counted as capacity, serving nothing yet
    draining: int = 0
    in_discovery: int = 0
    by_shape: tuple[tuple[str, int], ...] = ()

    @property
    def capacity(self) -> int:
        """Instances that are or will be serving: ready + starting (draining excluded)."""
        return self.ready + self.starting


@dataclass(frozen=True, slots=True)
class ServiceCounts:
    prefill: RoleCounts = field(default_factory=RoleCounts)
    decode: RoleCounts = field(default_factory=RoleCounts)

    def role(self, role: Role) -> RoleCounts:
        return self.prefill if role is Role.PREFILL else self.decode


@dataclass(frozen=True, slots=True)
class Targets:
    """Per-service targets, all derived from one pressure test (value at the SLO knee × margin).

    ``*_per_instance`` maps an InstanceShape key (``role:sku:tpN``) to the per-instance value, so a
    role with several GPU types counts capacity, not instances.
    """

    decode_tps_per_instance: tuple[tuple[str, float], ...]
    prefill_tps_per_instance: tuple[tuple[str, float], ...]
    prefill_gpu_util: float
    decode_gpu_util: float
    prefill_sm_activity: float
    decode_sm_activity: float
    ttft_s: float  # latency thresholds for latency-driven policies (the knee's p90, with margin)
    tbt_s: float
    requests_per_s_per_prefill: float  # SLA-feasible request rate per instance (dynamo-sla)
    requests_per_s_per_decode: float
    mean_input_tokens: float  # the pressure test's length mix (dynamo-sla rescales by observed ISL/OSL)
    mean_output_tokens: float
    margin: float = 0.85
    source: str = "pressure-test"
    # the peers' own target terms, from the same knee × margin (None: not measured; the peer says so)
    prefill_queue_per_instance: float | None = None  # waiting prefill requests per instance (AIBrix P/D)
    decode_batch_util: float | None = None  # running decode requests ÷ max batch, 0–1 (AIBrix P/D)
    # the performance profile Dynamo's planner interpolates (its pre-deployment profiling), from the
    # performance model at the pressure test's length mix, preferred shapes
    prefill_s_per_input_token: float | None = None  # queue-free prefill time ÷ prompt tokens
    decode_itl_floor_s: float | None = None  # decode step time at batch 1
    decode_itl_s_per_request: float | None = None  # added step time per request in the batch …
    decode_itl_s_per_kv_token: float | None = None  # … and per token of context it holds
    decode_kv_capacity_tokens: float | None = None  # KV tokens one decode instance holds (caps its batch)

    def tps_per_instance(self, role: Role) -> tuple[tuple[str, float], ...]:
        """The per-instance TPS targets of ``role``'s shapes, by shape key."""
        return self.prefill_tps_per_instance if role is Role.PREFILL else self.decode_tps_per_instance

    def decode_tps(self, shape_key: str) -> float:
        return dict(self.decode_tps_per_instance)[shape_key]

    def prefill_tps(self, shape_key: str) -> float:
        return dict(self.prefill_tps_per_instance)[shape_key]


@dataclass(frozen=True, slots=True)
class PolicyMemory:
    """What a policy remembers between calls (returned by it, stored by the controller)."""

    last_scale_out_s: float | None = None
    last_scale_in_s: float | None = None
    last_direction: int = 0  # +1 out, −1 in, 0 none yet
    # recent (time_s, prefill, decode) recommendations, for stabilisation windows
    recommendations: tuple[tuple[float, int, int], ...] = ()
    values: tuple[tuple[str, float], ...] = ()  # anything else a policy needs, by name
    forecast: ForecastState | None = None  # the forecaster's state (predictive scaling), None until used
    # named samples (name, time_s, value) a policy keeps for its own windows and predictors
    samples: tuple[tuple[str, float, float], ...] = ()

    def value(self, name: str, default: float = 0.0) -> float:
        return dict(self.values).get(name, default)

    def series(self, name: str) -> list[tuple[float, float]]:
        """The samples kept under ``name``, oldest first, as (time_s, value)."""
        return [(t, v) for n, t, v in self.samples if n == name]


@dataclass(frozen=True, slots=True)
class PolicyContext:
    now_s: float
    spec: ServiceSpec
    observation: Observation | None  # None when the metric source could not answer
    observation_error: str | None
    counts: ServiceCounts
    targets: Targets
    memory: PolicyMemory
    tick_s: float = 30.0
    window_s: float = 60.0  # the observation window the controller reads (a warm-up waits one)


@dataclass(frozen=True, slots=True)
class PolicyResult:
    recommendation: Recommendation  # the raw desired counts, before normalisation
    decision: ScalingDecision  # after every normalisation step, each with its reason
    memory: PolicyMemory
    scale_in_mode: ScaleInMode = ScaleInMode.DRAIN
    drain_grace_s: float = DRAIN_GRACE_S
    pd_ratio: float | None = None  # the P/D ratio this decision used (None: the service's)
    # the roles were sized together (a Coordinate stage): the decided P:D split is the one to hold
    coordinated: bool = False


class Policy(Protocol):
    name: str

    def decide(self, ctx: PolicyContext) -> PolicyResult: ...
