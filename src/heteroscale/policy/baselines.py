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

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.policy.context import PolicyContext, PolicyResult, Targets
from heteroscale.policy.normalize import (
    PD,
    ROLES,
    ceil_count,
    clamp_bounds,
    cooldown,
    current_counts,
    hysteresis,
    stabilise_scale_in,
    usable_observation,
)
from heteroscale.policy.outcome import KILL, ScaleIn, conclude, conclude_hold, recommend, remember_recommendation
from heteroscale.policy.sizing import size_role_by_tps

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


def hpa_rate_limit(current: PD, desired: PD, factor: float = 2.0, pods: int = 4) -> Step:
    """HPA's default scale-up rule: a role grows to at most max(factor × current, current + pods)."""
    out: dict[Role, int] = {}
    notes: list[str] = []
    for role in ROLES:
        cur, want = current.role(role), desired.role(role)
        cap = max(ceil_count(cur * factor), cur + pods)
        got = min(want, cap) if want > cur else want
        if got != want:
            notes.append(f"{role.value} {cur}→{want} limited to {got}")
        out[role] = got
    reason = Reason.RATE_LIMITED if notes else Reason.WITHIN_STEP_LIMIT
    notes.append(f"scale-up ≤ max({factor:g}×current, current+{pods})")
    return Step("rate-limit", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join(notes))


class HpaPolicy:
    """``desired = ceil(ready · util / target)`` per role, tolerance, scale-down stabilisation, rate rule."""

    def __init__(self, params: HpaParams | None = None, name: str = "hpa") -> None:
        self.params = params or HpaParams()
        self.name = name

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        prm = self.params
        observation, _, checked = usable_observation(ctx.observation, ctx.observation_error, ctx.counts, UTIL_SIGNALS)
        if observation is None:
            return conclude_hold(ctx, checked, scale_in=prm.scale_in)
        current = current_counts(ctx.counts)
        ratios = _util_ratios(observation, ctx.targets)
        computed: dict[Role, int] = {}
        notes: list[str] = []
        for role in ROLES:
            ready = _ready(ctx, observation, role)
            computed[role] = _with_signal(ceil_count(ready * ratios[role]), ratios[role], current.role(role))
            notes.append(f"{role.value} ceil({ready}·{ratios[role]:.3g}) = {computed[role]}")
        raw = PD(computed[Role.PREFILL], computed[Role.DECODE])
        rec = recommend(ctx, raw, Reason.PROPORTIONAL, "; ".join(notes))
        within = {role: abs(ratios[role] - 1.0) <= prm.tolerance for role in ROLES}
        tolerated = PD(
            current.prefill if within[Role.PREFILL] else raw.prefill,
            current.decode if within[Role.DECODE] else raw.decode,
        )
        words = [f"{r.value} util/target={ratios[r]:.3g} {'within' if within[r] else 'outside'}" for r in ROLES]
        reason = Reason.WITHIN_TOLERANCE if all(within.values()) else Reason.OUTSIDE_TOLERANCE
        tolerance = Step("tolerance", tolerated.prefill, tolerated.decode, reason, "; ".join(words))
        memory = remember_recommendation(ctx.memory, ctx.now_s, tolerated, prm.scale_down_stabilisation_s)
        stabilised = stabilise_scale_in(
            ctx.now_s, memory.recommendations, current, tolerated, window_s=prm.scale_down_stabilisation_s
        )
        limited = hpa_rate_limit(current, PD.of(stabilised), prm.scale_up_factor, prm.scale_up_pods)
        bounds = clamp_bounds(ctx.spec, current, PD.of(limited))
        steps = (checked, tolerance, stabilised, limited, bounds)
        return conclude(ctx, rec, steps, memory=memory, scale_in=prm.scale_in)


# --- AIBrix APA ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApaParams:
    up_tolerance: float = 0.1  # up if r > 1 + up_tolerance
    down_tolerance: float = 0.1  # down if r < 1 − down_tolerance
    max_scale_up_rate: float = 2.0  # at most ×2 per step
    max_scale_down_rate: float = 2.0  # at least ½ per step
    scale_down_cooldown_s: float = 300.0  # after any scaling action, per role
    scale_in: ScaleIn = field(default_factory=lambda: KILL)


class ApaPolicy:
    """``r = util / target`` per role; up if r > 1.1 (≤ 2× per step), down if r < 0.9 (≥ ½ per step)."""

    def __init__(self, params: ApaParams | None = None, name: str = "aibrix-apa") -> None:
        self.params = params or ApaParams()
        self.name = name

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        prm = self.params
        observation, _, checked = usable_observation(ctx.observation, ctx.observation_error, ctx.counts, UTIL_SIGNALS)
        if observation is None:
            return conclude_hold(ctx, checked, scale_in=prm.scale_in)
        current = current_counts(ctx.counts)
        ratios = _util_ratios(observation, ctx.targets)
        raw_counts: dict[Role, int] = {}
        banded: dict[Role, int] = {}
        limited: dict[Role, int] = {}
        band_notes: list[str] = []
        rate_notes: list[str] = []
        for role in ROLES:
            cur, r = current.role(role), ratios[role]
            raw_counts[role] = _with_signal(ceil_count(_ready(ctx, observation, role) * r), r, cur)
            if r > 1 + prm.up_tolerance or r < 1 - prm.down_tolerance:
                banded[role] = raw_counts[role]
                band_notes.append(f"{role.value} r={r:.3g} outside band → {raw_counts[role]}")
            else:
                banded[role] = cur
                band_notes.append(f"{role.value} r={r:.3g} within band")
            lo = ceil_count(cur / prm.max_scale_down_rate)
            hi = max(1, int(cur * prm.max_scale_up_rate + 1e-9))
            limited[role] = min(max(banded[role], lo), hi) if banded[role] != cur else cur
            if limited[role] != banded[role]:
                rate_notes.append(f"{role.value} {banded[role]} limited to {limited[role]}")
        raw = PD(raw_counts[Role.PREFILL], raw_counts[Role.DECODE])
        rec = recommend(ctx, raw, Reason.PROPORTIONAL, "; ".join(band_notes))
        any_out = any(banded[role] != current.role(role) for role in ROLES)
        band_reason = Reason.OUTSIDE_TOLERANCE if any_out else Reason.WITHIN_TOLERANCE
        band = Step("tolerance", banded[Role.PREFILL], banded[Role.DECODE], band_reason, "; ".join(band_notes))
        rate_notes.append(f"per step ≤ ×{prm.max_scale_up_rate:g}, ≥ ×1/{prm.max_scale_down_rate:g}")
        rate_reason = Reason.RATE_LIMITED if len(rate_notes) > 1 else Reason.WITHIN_STEP_LIMIT
        rate = Step("rate-limit", limited[Role.PREFILL], limited[Role.DECODE], rate_reason, "; ".join(rate_notes))
        cool = cooldown(
            ctx.now_s,
            ctx.memory,
            current,
            PD.of(rate),
            scale_out_s=0.0,
            scale_in_s=prm.scale_down_cooldown_s,
            per_role=True,
        )
        bounds = clamp_bounds(ctx.spec, current, PD.of(cool))
        return conclude(ctx, rec, (checked, band, rate, cool, bounds), scale_in=prm.scale_in)


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


def repair_ratio_band(current: PD, desired: PD, min_ratio: float, max_ratio: float) -> Step:
    """Keep P/D within [min_ratio, max_ratio] by scaling the short side up."""
    p, d = desired.prefill, desired.decode
    band = f"P/D band [{min_ratio:.3g}, {max_ratio:.3g}]"
    if d > 0 and p < d * min_ratio - 1e-9:
        fixed = ceil_count(d * min_ratio)
        detail = f"P/D = {p}/{d} below band: prefill {p}→{fixed}; {band}"
        return Step("ratio-band", fixed, d, Reason.RATIO_BAND_REPAIRED, detail)
    if p > 0 and (d == 0 or p > d * max_ratio + 1e-9):
        fixed = ceil_count(p / max_ratio)
        detail = f"P/D = {p}/{d} above band: decode {d}→{fixed}; {band}"
        return Step("ratio-band", p, fixed, Reason.RATIO_BAND_REPAIRED, detail)
    return Step("ratio-band", p, d, Reason.RATIO_BAND_OK, band)


class KthenaPolicy:
    """Per-role TPS (proportional per role), tolerance, scale-in cooldown, then the ratio band repair."""

    def __init__(self, params: KthenaParams | None = None, name: str = "kthena") -> None:
        self.params = params or KthenaParams()
        self.name = name

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        prm = self.params
        driving = ("prefill.tps", "decode.tps")
        observation, signals, checked = usable_observation(ctx.observation, ctx.observation_error, ctx.counts, driving)
        if observation is None:
            return conclude_hold(ctx, checked, scale_in=prm.scale_in)
        current = current_counts(ctx.counts)
        p = size_role_by_tps(signals["prefill.tps"], Role.PREFILL, ctx.counts, ctx.spec.prefill_shapes, ctx.targets)
        d = size_role_by_tps(signals["decode.tps"], Role.DECODE, ctx.counts, ctx.spec.decode_shapes, ctx.targets)
        raw = PD(p.count, d.count)
        rec = recommend(ctx, raw, Reason.PROPORTIONAL, f"prefill {p.detail}; decode {d.detail}")
        tolerated = hysteresis(current, raw, theta_out=prm.tolerance, theta_in=prm.tolerance, driver=None)
        cool = cooldown(
            ctx.now_s,
            ctx.memory,
            current,
            PD.of(tolerated),
            scale_out_s=0.0,
            scale_in_s=prm.scale_down_cooldown_s,
            per_role=True,
        )
        ratio = ctx.spec.pd_ratio if prm.pd_ratio is None else prm.pd_ratio
        band = repair_ratio_band(current, PD.of(cool), ratio * prm.min_ratio_factor, ratio * prm.max_ratio_factor)
        bounds = clamp_bounds(ctx.spec, current, PD.of(band))
        return conclude(ctx, rec, (checked, tolerated, cool, band, bounds), scale_in=prm.scale_in)


__all__ = [
    "ApaParams",
    "ApaPolicy",
    "HpaParams",
    "HpaPolicy",
    "KthenaParams",
    "KthenaPolicy",
    "hpa_rate_limit",
    "repair_ratio_band",
]
