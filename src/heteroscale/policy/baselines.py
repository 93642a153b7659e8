"""Peer autoscalers as users run them on P/D-disaggregated serving (HETEROSCALE.md §7).

* ``hpa``        Kubernetes HPA on each role's GPU utilisation, each pool independent;
* ``aibrix-apa`` AIBrix's APA on the same metric;
* ``kthena``     per-role TPS signals plus a [min_ratio, max_ratio] band on P/D.

Each scales in by KILL with Kubernetes' 30 s termination grace (peers do not drain in-flight work).
Like HPA, each holds on a missing, stale or partial observation (never scales down on missing metrics).

A per-pod average is over the role's *ready* instances, so ``ceil(ready · metric / target)``: this is
what HPA computes when unready pods exist (it counts them at 0 % for a scale-up), and starting
instances still count in the current count that the result is compared with. As in HPA, the result
never moves against the metric (a metric above target never scales in, and vice versa).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from heteroscale.domain.decision import Reason
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.policy.context import PolicyContext, Targets
from heteroscale.policy.normalize import PD, ROLES, ceil_count, current_counts
from heteroscale.policy.outcome import KILL, ScaleIn
from heteroscale.policy.sizing import size_role_by_tps
from heteroscale.policy.stages import (
    ApaRateLimit,
    Bounds,
    Cooldown,
    Hysteresis,
    RateLimit,
    RatioBand,
    Stabilise,
    Tolerance,
    hpa_rate_limit,
    repair_ratio_band,
)
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping

UTIL_SIGNALS = ("prefill.gpu_util", "decode.gpu_util")


def _util_ratios(observation: Observation, targets: Targets) -> dict[Role, float]:
    utils = {role: observation.role(role).gpu_util for role in ROLES}
    goal = {Role.PREFILL: targets.prefill_gpu_util, Role.DECODE: targets.decode_gpu_util}
    out: dict[Role, float] = {}
    for role in ROLES:
        util = utils[role]
        if util is None or goal[role] <= 0:
            raise ValueError(f"{role.value} GPU utilisation or its target is missing")
        out[role] = util / goal[role]
    return out


def _ready(ctx: PolicyContext, observation: Observation, role: Role) -> int:
    return observation.role(role).instances_ready or ctx.counts.role(role).ready


def _with_signal(computed: int, ratio: float, current: int) -> int:
    """Never move against the metric: with starting instances, ``ceil(ready · ratio)`` can fall below
    the current count although the metric is above target (HPA then keeps the current count)."""
    if ratio > 1:
        return max(computed, current)
    if ratio < 1:
        return min(computed, current)
    return current


# --- Kubernetes HPA -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HpaParams:
    tolerance: float = 0.1  # no change while |util/target − 1| ≤ tolerance
    scale_down_stabilisation_s: float = 300.0
    scale_up_factor: float = 2.0  # default scale-up rule: max(2×current, current+4) per step
    scale_up_pods: int = 4
    scale_in: ScaleIn = field(default_factory=lambda: KILL)


def hpa_shaping(params: HpaParams) -> Shaping:
    """Tolerance, scale-down stabilisation, the scale-up rate rule, bounds."""
    stages = (
        Tolerance(params.tolerance, params.tolerance, "hpa"),
        Stabilise(params.scale_down_stabilisation_s),
        RateLimit(params.scale_up_factor, params.scale_up_pods),
        Bounds(),
    )
    return Shaping(stages, UTIL_SIGNALS, params.scale_in)


class HpaPolicy(ShapedPolicy):
    """``desired = ceil(ready · util / target)`` per role, tolerance, scale-down stabilisation, rate rule."""

    def __init__(self, params: HpaParams | None = None, *, shaping: Shaping | None = None, name: str = "hpa") -> None:
        self.params = params or HpaParams()
        self.shaping = shaping or hpa_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        current = current_counts(ctx.counts)
        ratios = _util_ratios(seen.observation, ctx.targets)
        computed: dict[Role, int] = {}
        notes: list[str] = []
        for role in ROLES:
            ready = _ready(ctx, seen.observation, role)
            computed[role] = _with_signal(ceil_count(ready * ratios[role]), ratios[role], current.role(role))
            notes.append(f"{role.value} ceil({ready}·{ratios[role]:.3g}) = {computed[role]}")
        raw = PD(computed[Role.PREFILL], computed[Role.DECODE])
        usage = (ratios[Role.PREFILL], ratios[Role.DECODE])
        return Raw(raw, Reason.PROPORTIONAL, "; ".join(notes), usage=usage)


# --- AIBrix APA ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApaParams:
    up_tolerance: float = 0.1  # up if r > 1 + up_tolerance
    down_tolerance: float = 0.1  # down if r < 1 − down_tolerance
    max_scale_up_rate: float = 2.0  # at most ×2 per step
    max_scale_down_rate: float = 2.0  # at least ½ per step
    scale_down_cooldown_s: float = 300.0  # after any scaling action, per role
    scale_in: ScaleIn = field(default_factory=lambda: KILL)


def apa_shaping(params: ApaParams) -> Shaping:
    """The tolerance band, the scale-up / scale-down rates, a per-role scale-in cooldown, bounds."""
    stages = (
        Tolerance(params.up_tolerance, params.down_tolerance, "apa"),
        ApaRateLimit(params.max_scale_up_rate, params.max_scale_down_rate),
        Cooldown(0.0, params.scale_down_cooldown_s, per_role=True),
        Bounds(),
    )
    return Shaping(stages, UTIL_SIGNALS, params.scale_in)


class ApaPolicy(ShapedPolicy):
    """``r = util / target`` per role; up if r > 1.1 (≤ 2× per step), down if r < 0.9 (≥ ½ per step)."""

    def __init__(
        self, params: ApaParams | None = None, *, shaping: Shaping | None = None, name: str = "aibrix-apa"
    ) -> None:
        self.params = params or ApaParams()
        self.shaping = shaping or apa_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        prm = self.params
        current = current_counts(ctx.counts)
        ratios = _util_ratios(seen.observation, ctx.targets)
        raw_counts: dict[Role, int] = {}
        notes: list[str] = []
        for role in ROLES:
            cur, r = current.role(role), ratios[role]
            raw_counts[role] = _with_signal(ceil_count(_ready(ctx, seen.observation, role) * r), r, cur)
            if r > 1 + prm.up_tolerance or r < 1 - prm.down_tolerance:
                notes.append(f"{role.value} r={r:.3g} outside band → {raw_counts[role]}")
            else:
                notes.append(f"{role.value} r={r:.3g} within band")
        raw = PD(raw_counts[Role.PREFILL], raw_counts[Role.DECODE])
        return Raw(raw, Reason.PROPORTIONAL, "; ".join(notes), usage=(ratios[Role.PREFILL], ratios[Role.DECODE]))


# --- Kthena -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KthenaParams:
    tolerance: float = 0.1  # per-role R band, as HPA's tolerance
    min_ratio_factor: float = 0.75  # band [0.75·r, 1.25·r] around the service's P/D ratio
    max_ratio_factor: float = 1.25
    scale_down_cooldown_s: float = 300.0  # [ours] per role, after any scaling action
    pd_ratio: float | None = None  # None: spec.pd_ratio
    scale_in: ScaleIn = field(default_factory=lambda: KILL)

    def __post_init__(self) -> None:
        if not 0 < self.min_ratio_factor <= 1 <= self.max_ratio_factor:
            raise ValueError("kthena needs 0 < min_ratio_factor ≤ 1 ≤ max_ratio_factor")


def kthena_shaping(params: KthenaParams) -> Shaping:
    """Per-role tolerance on R, a per-role scale-in cooldown, the ratio band repair, bounds."""
    stages = (
        Hysteresis(params.tolerance, params.tolerance, driver=None),
        Cooldown(0.0, params.scale_down_cooldown_s, per_role=True),
        RatioBand(params.min_ratio_factor, params.max_ratio_factor),
        Bounds(),
    )
    return Shaping(stages, ("prefill.tps", "decode.tps"), params.scale_in)


class KthenaPolicy(ShapedPolicy):
    """Per-role TPS (proportional per role), tolerance, scale-in cooldown, then the ratio band repair."""

    def __init__(
        self, params: KthenaParams | None = None, *, shaping: Shaping | None = None, name: str = "kthena"
    ) -> None:
        self.params = params or KthenaParams()
        self.shaping = shaping or kthena_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        signals = seen.signals
        p = size_role_by_tps(signals["prefill.tps"], Role.PREFILL, ctx.counts, ctx.spec.prefill_shapes, ctx.targets)
        d = size_role_by_tps(signals["decode.tps"], Role.DECODE, ctx.counts, ctx.spec.decode_shapes, ctx.targets)
        ratio = ctx.spec.pd_ratio if self.params.pd_ratio is None else self.params.pd_ratio
        return Raw(PD(p.count, d.count), Reason.PROPORTIONAL, f"prefill {p.detail}; decode {d.detail}", ratio=ratio)


__all__ = [
    "ApaParams",
    "ApaPolicy",
    "HpaParams",
    "HpaPolicy",
    "KthenaParams",
    "KthenaPolicy",
    "apa_shaping",
    "hpa_rate_limit",
    "hpa_shaping",
    "kthena_shaping",
    "repair_ratio_band",
]
