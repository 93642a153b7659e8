"""Peer autoscalers as shipped, on P/D-disaggregated serving (HETEROSCALE.md §7).

Each keeps its upstream algorithm and stabilisation defaults ("as shipped"); its docstring names the
upstream files and versions it follows and every way it differs. What they share here, by design:

* targets come from the one pressure test × one margin (``Targets``), in each peer's own terms;
* the wrapper (:mod:`.wrapper`) runs each peer's tolerance, stabilisation, rate rules and bounds with
  the peer's own settings, and holds on a missing, stale or partial observation (HPA never scales on
  missing metrics either);
* a reconcile every 30 s of the controller (upstream: 15 s for HPA and Kthena, 10 s for AIBrix), so
  a rule over a 15 s period sees one decision;
* scale-in by KILL after Kubernetes' 30 s termination grace (peers do not drain in-flight work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from heteroscale.domain.decision import Reason
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.errors import ConfigError
from heteroscale.policy.context import PolicyContext
from heteroscale.policy.normalize import PD, ROLES, ceil_count, current_counts
from heteroscale.policy.outcome import KILL, ScaleIn, remember_sample, window_mean
from heteroscale.policy.sizing import fleet_capacity
from heteroscale.policy.stages import Bounds, Panic, RateLimit, RatioBand, Stabilise, Tolerance, repair_ratio_band
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping

UTIL_SIGNALS = ("prefill.gpu_util", "decode.gpu_util")


def _ready(ctx: PolicyContext, observation: Observation, role: Role) -> int:
    """Running, ready pods of a role — the pods a per-pod average is over: the controller's ready count
    (instances held out of discovery included: their pods run and report), else the observation's."""
    return ctx.counts.role(role).ready or observation.role(role).instances_ready


def _needs(value: float | None, name: str, policy: str) -> float:
    if value is None or not value > 0:
        raise ConfigError(f"{policy} needs targets.{name} > 0 (measured by the pressure test), got {value}")
    return value


# --- Kubernetes HPA -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HpaParams:
    """HPA's defaults (kubernetes ``pkg/apis/autoscaling/v2/defaults.go``, the controller's flags)."""

    tolerance: float = 0.1  # --horizontal-pod-autoscaler-tolerance
    scale_down_stabilisation_s: float = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
    scale_up_percent: float = 100.0  # behavior.scaleUp: Percent 100 / 15 s …
    scale_up_pods: int = 4  # … and Pods 4 / 15 s, selectPolicy Max
    scale_in: ScaleIn = field(default_factory=lambda: KILL)


def hpa_shaping(params: HpaParams) -> Shaping:
    """Tolerance, scale-down stabilisation (highest of 300 s), the default behavior's rate rules, bounds."""
    stages = (
        Tolerance(params.tolerance, params.tolerance),
        Stabilise(params.scale_down_stabilisation_s),
        RateLimit(1 + params.scale_up_percent / 100, params.scale_up_pods, 0.0),  # scale-down: 100 % / 15 s
        Bounds(),
    )
    return Shaping(stages, UTIL_SIGNALS, params.scale_in)


class HpaPolicy(ShapedPolicy):
    """Kubernetes HPA with its default behavior, one per role on the role's GPU utilisation.

    Follows kubernetes/kubernetes v1.30: ``pkg/controller/podautoscaler/replica_calculator.go``
    (``GetMetricReplicas``/``calcPlainMetricReplicas``, ``groupPods``), ``horizontal.go``
    (``stabilizeRecommendationWithBehaviors``, ``calculateScaleUpLimitWithScalingRules``) and
    ``pkg/apis/autoscaling/v2/defaults.go`` (scale-up: max(100 %, 4 pods) per 15 s, no stabilisation;
    scale-down: 100 % per 15 s, 300 s stabilisation; tolerance 0.1).

    Per role: usage ratio = Σ utilisation ÷ (pods × target), desired = ceil(Σ utilisation ÷ target);
    within the tolerance the count stays. GPU utilisation is a Pods metric (DCGM through a custom
    metrics adapter), so ``groupPods`` counts every Running pod with a sample — an instance still
    loading its model reads 0 % (its GPU runs no kernel): starting instances count as pods at 0.

    Differences: HPA syncs every 15 s (here 30 s, so each 15 s rate period holds one decision); the
    Pending phase (not modelled: an instance is placed at once) would be "unready" rather than 0 %;
    draining instances are in the observed average (HPA ignores terminating pods); one HPA per role.
    """

    def __init__(self, params: HpaParams | None = None, *, shaping: Shaping | None = None, name: str = "hpa") -> None:
        self.params = params or HpaParams()
        self.shaping = shaping or hpa_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        goal = {Role.PREFILL: ctx.targets.prefill_gpu_util, Role.DECODE: ctx.targets.decode_gpu_util}
        counts: dict[Role, int] = {}
        usage: dict[Role, float] = {}
        notes: list[str] = []
        for role in ROLES:
            target = _needs(goal[role], f"{role.value}_gpu_util", self.name)
            util = seen.signals[f"{role.value}.gpu_util"]
            ready = _ready(ctx, seen.observation, role)
            pods = ready + ctx.counts.role(role).starting
            total = util * ready / target  # Σ utilisation ÷ target, in pods
            counts[role] = ceil_count(total)
            usage[role] = total / pods if pods > 0 else (math.inf if total > 0 else 1.0)
            notes.append(f"{role.value} ceil({util:.3g}·{ready}/{target:.3g}) = {counts[role]} ({pods} pods)")
        raw = PD(counts[Role.PREFILL], counts[Role.DECODE])
        return Raw(raw, Reason.PROPORTIONAL, "; ".join(notes), usage=(usage[Role.PREFILL], usage[Role.DECODE]))


# --- AIBrix APA (the P/D sample) -----------------------------------------------------------------

APA_SIGNALS = ("prefill.queue_len", "decode.running")


@dataclass(frozen=True, slots=True)
class ApaParams:
    """AIBrix's APA defaults (``pkg/controller/podautoscaler/context/context.go``, ``metrics/client.go``)."""

    up_tolerance: float = 0.1  # scale up when metric/target > 1.1
    down_tolerance: float = 0.1  # scale down when metric/target < 0.9
    max_scale_up_rate: float = 2.0  # at most ceil(2 × current) per step
    max_scale_down_rate: float = 2.0  # at least floor(current / 2) per step
    scale_down_cooldown_s: float = 300.0  # the scale-down window of the controller's stabilisation
    stable_window_s: float = 180.0  # the metric is averaged over this window
    scale_in: ScaleIn = field(default_factory=lambda: KILL)


def apa_shaping(params: ApaParams) -> Shaping:
    """Fluctuation tolerances, the scale rates, the controller's stabilisation (lowest of 300 s), bounds."""
    stages = (
        Tolerance(params.up_tolerance, params.down_tolerance),
        RateLimit(params.max_scale_up_rate, 0, 1 / params.max_scale_down_rate),
        Stabilise(params.scale_down_cooldown_s, lowest=True),
        Bounds(),
    )
    return Shaping(stages, APA_SIGNALS, params.scale_in)


class ApaPolicy(ShapedPolicy):
    """AIBrix's APA as its P/D sample runs it: prefill on queue length, decode on batch utilisation.

    Follows vllm-project/aibrix: ``samples/autoscaling/stormservice-pool.yaml`` @ 6baddd3 (one APA per
    role: prefill ``prefill_queue_length`` target 10, decode ``decode_batch_utilization`` target 70 %);
    ``pkg/controller/podautoscaler/algorithm/apa.go`` @ 6da8a5b (r = metric per pod ÷ target; up when
    r > 1 + 0.1 to ceil(current·r), at most ceil(2·current); down when r < 1 − 0.1 to ceil(current·r),
    at least floor(current/2)); ``context/context.go`` @ 2576b18 (rates 2/2, tolerances 0.1/0.1, no
    scale-up cooldown, 300 s scale-down cooldown); ``autoscaler.go`` @ 015a2e5 (pending replicas: at 0
    for a scale-up, at target for a scale-down); ``podautoscaler_controller.go`` @ 015a2e5
    (``stabilizeRecommendation``: a scale-down goes to the *lowest* recommendation of the 300 s window);
    ``metrics/client.go`` (the metric is averaged over a 180 s stable window).

    Targets come from the pressure test at the same margin as everyone's, in APA's terms: the prefill
    queue per instance at the knee × margin (``Targets.prefill_queue_per_instance``), and running decode
    requests per instance ÷ the max batch at the knee × margin (``Targets.decode_batch_util``) — not the
    sample's 10 and 70 %, which fit its hardware, not this service.

    Differences: the queue and running counts are the observation's window means (sums over the role;
    the simulator samples them every second, a Prometheus source gives the window-end value), averaged
    here over the observations of the last 180 s (one per 30 s reconcile); the sample's decode
    ``behavior.scaleDown.stabilizationWindowSeconds: 600`` is not read by APA at that commit (its
    windows come from annotations), so both roles keep the 300 s default; the sample's min/max replicas
    give way to the service's bounds.
    """

    def __init__(
        self, params: ApaParams | None = None, *, shaping: Shaping | None = None, name: str = "aibrix-apa"
    ) -> None:
        self.params = params or ApaParams()
        self.shaping = shaping or apa_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        prm, obs = self.params, seen.observation
        targets = {
            Role.PREFILL: _needs(ctx.targets.prefill_queue_per_instance, "prefill_queue_per_instance", self.name),
            Role.DECODE: _needs(ctx.targets.decode_batch_util, "decode_batch_util", self.name),
        }
        # the window mean where the source has it, else the window-end count
        queue = obs.prefill.queue_len_mean if obs.prefill.queue_len_mean is not None else obs.prefill.queue_len
        running = obs.decode.running_mean if obs.decode.running_mean is not None else obs.decode.running
        per_pod = {
            Role.PREFILL: queue or 0.0,
            Role.DECODE: (running or 0.0) / max(1, ctx.spec.max_decode_batch),
        }
        memory = ctx.memory
        current = current_counts(ctx.counts)
        counts: dict[Role, int] = {}
        usage: dict[Role, float] = {}
        notes: list[str] = []
        for role in ROLES:
            ready = _ready(ctx, obs, role)
            name = f"apa.{role.value}"
            if ready > 0:  # a role with no ready pod reports nothing
                memory = remember_sample(memory, name, ctx.now_s, per_pod[role] / ready, keep_s=prm.stable_window_s)
            value = window_mean(memory, name, ctx.now_s, prm.stable_window_s)
            cur, pending = current.role(role), ctx.counts.role(role).starting
            r = 1.0 if value is None else value / targets[role]
            if r > 1:  # pending pods at 0 (the pending-replica guard)
                counts[role] = max(cur, ceil_count(min(ready, cur) * r))
            elif r < 1:  # pending pods at target
                counts[role] = min(cur, ceil_count(min(ready, cur) * r + pending))
            else:
                counts[role] = cur
            usage[role] = r
            shown = "no sample" if value is None else f"{value:.3g} vs {targets[role]:.3g}"
            notes.append(f"{role.value} {shown} (mean of {prm.stable_window_s:g} s) → {counts[role]}")
        raw = PD(counts[Role.PREFILL], counts[Role.DECODE])
        detail = "prefill queue per pod; decode batch utilisation; " + "; ".join(notes)
        return Raw(raw, Reason.PROPORTIONAL, detail, memory=memory, usage=(usage[Role.PREFILL], usage[Role.DECODE]))


# --- Kthena -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KthenaParams:
    """Kthena's defaults (``pkg/autoscaler/webhook/autoscalingpolicy_mutator.go``, the CRD's)."""

    tolerance: float = 0.1  # tolerancePercent 10
    scale_down_stabilisation_s: float = 300.0  # behavior.scaleDown.stabilizationWindow 5m
    scale_up_percent: float = 100.0  # behavior.scaleUp.stablePolicy: Percent 100 …
    scale_up_instances: int = 1  # … or Instances 1 (selectPolicy Or: the larger), per 15 s
    panic_threshold_percent: float = 200.0  # behavior.scaleUp.panicPolicy.panicThresholdPercent
    panic_hold_s: float = 60.0  # panicModeHold
    panic_percent: float = 1000.0  # panicPolicy.percent: in panic, grow by at most 1000 %
    min_ratio_factor: float = 0.75  # [ours] ratio constraint [0.75·r, 1.25·r] around the P/D ratio
    max_ratio_factor: float = 1.25
    pd_ratio: float | None = None  # None: spec.pd_ratio
    scale_in: ScaleIn = field(default_factory=lambda: KILL)

    def __post_init__(self) -> None:
        if not 0 < self.min_ratio_factor <= 1 <= self.max_ratio_factor:
            raise ValueError("kthena needs 0 < min_ratio_factor ≤ 1 ≤ max_ratio_factor")


def kthena_shaping(params: KthenaParams) -> Shaping:
    """Tolerance, scale-down stabilisation, panic mode, the stable scale-up limit, the ratio band, bounds."""
    stages = (
        Tolerance(params.tolerance, params.tolerance),
        Stabilise(params.scale_down_stabilisation_s),
        Panic(params.panic_threshold_percent / 100, params.panic_hold_s, 1 + params.panic_percent / 100),
        RateLimit(1 + params.scale_up_percent / 100, params.scale_up_instances, 0.0),
        RatioBand(params.min_ratio_factor, params.max_ratio_factor),
        Bounds(),
    )
    return Shaping(stages, ("prefill.tps", "decode.tps"), params.scale_in)


class KthenaPolicy(ShapedPolicy):
    """Kthena's disaggregated autoscaler: each role on its own metric, then the role ratio constraint.

    Follows volcano-sh/kthena: ``pkg/autoscaler/algorithm/recommendation.go`` @ 3ac46ac (ratio =
    per-instance average ÷ target; within the tolerance the count stays, else ceil(ratio × reporting
    instances); unready instances join at 0 for a scale-up, and a result against the metric's direction
    keeps the count); ``autoscaler/scaler.go`` @ 0e83a0c (panic when the recommendation reaches 200 % of
    the current count); ``algorithm/revision.go`` @ 00d9c98 (in panic: never below current, at most
    +1000 %; stable: scale-down to the highest recommendation of 5 min, scale-up by at most
    max(+100 %, +1) per 15 s); ``autoscaler/status.go`` @ 009abf2 (panic held 60 s);
    ``webhook/autoscalingpolicy_mutator.go`` @ 00d9c98 (those defaults); ``autoscaler/
    disaggregated_scaler.go`` @ 38f62db and ``algorithm/disaggregated_ratio.go`` @ 0ab2f55 (per-role
    scaling, then the ratio constraint repairs the short side upwards).

    The metric is each role's TPS against its per-instance TPS target (the pressure test × margin);
    Kthena takes any metric and knows no GPU types, so the preferred shape's target counts for every
    instance. Differences: the ratio band [0.75·r, 1.25·r] is ours (Kthena's minRatio/maxRatio are set
    by the user); the ratio repair runs before the bounds (Kthena clamps first and searches within them);
    the 15 s periods see one decision per 30 s reconcile.
    """

    def __init__(
        self, params: KthenaParams | None = None, *, shaping: Shaping | None = None, name: str = "kthena"
    ) -> None:
        self.params = params or KthenaParams()
        self.shaping = shaping or kthena_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        current = current_counts(ctx.counts)
        counts: dict[Role, int] = {}
        usage: dict[Role, float] = {}
        notes: list[str] = []
        for role in ROLES:
            target = fleet_capacity(ctx.counts.role(role), ctx.spec.shapes(role), ctx.targets.tps_per_instance(role))[1]
            tps = max(0.0, seen.signals[f"{role.value}.tps"])
            ready, unready, cur = (
                _ready(ctx, seen.observation, role),
                ctx.counts.role(role).starting,
                current.role(role),
            )
            counts[role], usage[role], how = kthena_recommendation(tps / target, ready, unready, cur)
            notes.append(f"{role.value} {tps:.4g}/{target:.4g} tok/s: {how}")
        ratio = ctx.spec.pd_ratio if self.params.pd_ratio is None else self.params.pd_ratio
        raw = PD(counts[Role.PREFILL], counts[Role.DECODE])
        return Raw(
            raw, Reason.PROPORTIONAL, "; ".join(notes), usage=(usage[Role.PREFILL], usage[Role.DECODE]), ratio=ratio
        )


def kthena_recommendation(demand: float, ready: int, unready: int, current: int) -> tuple[int, float, str]:
    """One role's recommendation: (count, the ratio the tolerance judges, how). ``demand`` is the
    metric's total ÷ the per-instance target (instances' worth of load)."""
    if ready <= 0:  # no instance reports: Kthena skips the round
        return current, 1.0, "no ready instance reports: count kept"
    ratio = demand / ready
    if unready <= 0 or ratio < 1:
        return ceil_count(demand), ratio, f"ratio {ratio:.3g} over {ready} → {ceil_count(demand)}"
    newer = demand / (ready + unready)  # a scale-up counts unready instances at 0
    if newer < 1:  # the unready instances already cover it
        return current, 1.0, f"ratio {ratio:.3g}, {newer:.3g} with {unready} unready at 0: count kept"
    count = max(ceil_count(demand), current)  # never against the metric's direction
    return count, newer, f"ratio {newer:.3g} over {ready}+{unready} unready → {count}"


__all__ = [
    "ApaParams",
    "ApaPolicy",
    "HpaParams",
    "HpaPolicy",
    "KthenaParams",
    "KthenaPolicy",
    "apa_shaping",
    "hpa_shaping",
    "kthena_recommendation",
    "kthena_shaping",
    "repair_ratio_band",
]
