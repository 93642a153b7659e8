"""HeteroScale's metrics-driven policy: decode TPS sizes both pools, latency is a scale-out safety net.

One decision, in order (each step with its reason, HETEROSCALE.md §4). The policy computes step 2, its
raw recommendation; the wrapper (:mod:`.wrapper`) runs the others with the settings of
:func:`heteroscale_shaping`:

1. observation   hold at current counts on a missing, stale or partial observation (no scale-in, no
                 latency scale-out either);
2. recommendation  M = observed decode tokens/s; D_new from the capacity of the decode fleet counted
                 per GPU type (``sizing.size_by_capacity``; ``ceil(M / m_target)`` for one type);
                 P_new = max(1, round(D_new · r)). A ``demand`` step first asks whether M is censored
                 by prefill (prefill saturated, or a prefill backlog confirmed by a TTFT-bound breach
                 or a growing queue; :mod:`.demand`): then M = max(M, arrivals × mean output length) and, if
                 the arrivals plus the backlog need more prefill than round(D_new · r), prefill drives
                 this decision (P_new from that need, decode follows at the ratio);
3. stabilisation a scale-in goes no lower than the highest D_new of the last 5 minutes;
4. hysteresis    R = D_new / D_current; out if R > 1 + θ_out, in if R < 1 − θ_in, else hold;
5. pd-ratio      P = max(min_prefill, round(D · r)), never moving against D;
6. latency       if TBT p90 or TTFT p90 is at or above 1.1× its SLO, both pools get at least +10 %
                 of their ready count (ceil, at least +1); at or above 1.5×, +20 %; and at least the
                 count that serves the arrivals and clears the pool's queue within ``drain_s`` (for a
                 TTFT-only breach whose prefill queue shrinks, that count alone: the p90 lags).
                 Starting instances count: a pool whose capacity already covers that is not grown
                 again; while a tier is reached, neither pool scales in;
7. warm-up       no scale-in until the scale-in stabilisation window (300 s, at least one observation
                 window) has passed since start-up or a restart;
8. cooldown      3 min between scale-outs, 10 min after any action before a scale-in; the latency
                 tier's own scale-out (where it raises a pool) is never held, nor any scale-out while
                 TTFT p90 or TBT p90 is above half its SLO;
9. damping       at most +100 % / −25 % per step;
10. bounds       the service's [min, max] per role.

With ``predictive`` set, step 2 sizes for max(M, F) where F is decode TPS forecast ``lead_s`` (cold start
+ one tick) ahead from a seasonal profile and the recent trend (:mod:`.forecast`); the recommendation's
reason is ``forecast`` when F decided it. With ``adaptive_ratio`` set, a ``ratio`` step before the
recommendation estimates r online from the prefill and decode demands (bounded, with hysteresis and a
rate limit; :mod:`.ratio`) and every later step uses it.

"Current" is ready + starting instances throughout, so a slow cold start causes no repeated scale-out.
Scale-in drains (no new work; in-flight requests finish within ``drain_grace_s``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import ScaleInMode
from heteroscale.policy.context import PolicyContext
from heteroscale.policy.defaults import DRAIN_GRACE_S
from heteroscale.policy.demand import Demand, DemandParams, see_demand
from heteroscale.policy.forecast import ForecastParams, ForecastState, forecast, observe
from heteroscale.policy.normalize import PD, Stability, ceil_count, round_half_up
from heteroscale.policy.outcome import ScaleIn
from heteroscale.policy.ratio import AdaptiveRatio, adapt_ratio, current_ratio, held_ratio
from heteroscale.policy.safety import DEFAULT_TIERS, LatencyTier
from heteroscale.policy.sizing import size_role_by_tps
from heteroscale.policy.stages import LatencyFloor, WarmUp, limit_stages, stability_stages
from heteroscale.policy.wrapper import Held, Raw, Seen, ShapedPolicy, Shaping


@dataclass(frozen=True, slots=True)
class HeteroScaleParams:
    """Every knob of the HeteroScale policy, with the defaults of HETEROSCALE.md §4."""

    stability: Stability = field(default_factory=Stability)
    latency_tiers: tuple[LatencyTier, ...] = DEFAULT_TIERS  # [ours] 1.1× → +10 %, 1.5× → +20 %
    pd_ratio: float | None = None  # None: the service's spec.pd_ratio (fixed online, from pressure testing)
    drain_grace_s: float = DRAIN_GRACE_S
    # [ours] None: the ratio is fixed; else estimated online from the prefill and decode demands
    adaptive_ratio: AdaptiveRatio | None = None
    # [ours] predictive scaling: None = reactive; else decode TPS is forecast ``lead_s`` ahead (seasonal
    # profile + recent trend, :mod:`.forecast`) and both pools are sized for max(observed, forecast)
    predictive: ForecastParams | None = None
    lead_s: float = 150.0  # how far ahead to size: the cold start (120 s) plus one reconcile tick
    # [ours] demand sizing when prefill censors decode TPS (:mod:`.demand`); None: decode TPS alone
    demand: DemandParams | None = field(default_factory=DemandParams)
    # [ours] the latency floor also clears a pool's queue within this many seconds (None: tier steps only)
    backlog_drain_s: float | None = 60.0
    # [ours] a scale-out the signal asks for passes the scale-out cooldown while TTFT p90 or TBT p90 is
    # above this × its SLO (None: only the latency tiers and demand pass it)
    rising_latency_factor: float | None = 0.5

    def __post_init__(self) -> None:
        if self.pd_ratio is not None and self.pd_ratio <= 0:
            raise ValueError(f"pd_ratio must be > 0, got {self.pd_ratio}")
        if self.drain_grace_s < 0:
            raise ValueError(f"drain_grace_s must be ≥ 0, got {self.drain_grace_s}")
        if not self.lead_s >= 0:
            raise ValueError(f"lead_s must be ≥ 0, got {self.lead_s}")
        if self.backlog_drain_s is not None and not self.backlog_drain_s > 0:
            raise ValueError(f"backlog_drain_s must be > 0, got {self.backlog_drain_s}")
        if self.rising_latency_factor is not None and not self.rising_latency_factor > 0:
            raise ValueError(f"rising_latency_factor must be > 0, got {self.rising_latency_factor}")


def heteroscale_shaping(params: HeteroScaleParams) -> Shaping:
    """Stabilisation, hysteresis, P/D coordination, the latency floor, warm-up, cooldown, damping, bounds."""
    stages = (
        *stability_stages(params.stability, Role.DECODE),
        LatencyFloor(params.latency_tiers, params.backlog_drain_s),
        WarmUp(params.stability.scale_in_window_s),
        *limit_stages(
            params.stability,
            passes_demand=params.demand is not None and params.demand.passes_cooldown,
            passes_rising_latency=params.rising_latency_factor,
        ),
    )
    return Shaping(stages, ("decode.tps",), ScaleIn(ScaleInMode.DRAIN, params.drain_grace_s))


class HeteroScalePolicy(ShapedPolicy):
    """Decode TPS → both pools at the P/D ratio, with the latency safety net (module doc)."""

    def __init__(
        self, params: HeteroScaleParams | None = None, *, shaping: Shaping | None = None, name: str = "heteroscale"
    ) -> None:
        self.params = params or HeteroScaleParams()
        self.shaping = shaping or heteroscale_shaping(self.params)
        self.name = name

    def _ratio(self, ctx: PolicyContext) -> float:
        return ctx.spec.pd_ratio if self.params.pd_ratio is None else self.params.pd_ratio

    def held(self, ctx: PolicyContext) -> Held:
        ratio = self._ratio(ctx)
        adaptive = self.params.adaptive_ratio
        if adaptive is None:
            return Held(pd_ratio=ratio)
        memory = held_ratio(ctx.memory, ctx.now_s, ratio, adaptive)
        return Held(memory, current_ratio(memory, ratio, adaptive))

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError("heteroscale needs an observation")
        ratio = self._ratio(ctx)
        opening: tuple[Step, ...] = ()
        if self.params.adaptive_ratio is not None:
            ratio, ratio_step, adapted = adapt_ratio(ctx, ratio, self.params.adaptive_ratio)
            opening = (ratio_step,)
            ctx = dataclasses.replace(ctx, memory=adapted)
        observed_tps = m_tps = seen.signals["decode.tps"]
        shown = f"M={m_tps:.4g} tok/s"
        reason = Reason.PROPORTIONAL
        if self.params.predictive is not None:
            m_tps, shown, ctx = self._look_ahead(ctx, m_tps, self.params.predictive)
            if m_tps > observed_tps:
                reason = Reason.FORECAST
        demand = self._demand(ctx, seen)
        if demand is not None:
            opening = (*opening, Step("demand", 0, 0, demand.reason, demand.detail))
            if demand.memory is not None:
                ctx = dataclasses.replace(ctx, memory=demand.memory)
            if demand.censored and demand.decode_tps > m_tps:
                m_tps, reason = demand.decode_tps, Reason.DEMAND
                shown = f"M=max({shown}, demand {demand.decode_tps:.4g} tok/s)"
        sizing = size_role_by_tps(m_tps, Role.DECODE, ctx.counts, ctx.spec.decode_shapes, ctx.targets)
        if self.params.adaptive_ratio is None:
            raw = PD(max(1, round_half_up(sizing.count * ratio)), sizing.count)
            p_how = f"max(1, round({sizing.count}·{ratio:g}))"
        else:
            # the estimated ratio applies to the decode *demand* M/m (not to ceil(M/m)): a fleet of
            # few decode instances would otherwise carry the rounding of D into P, r times over
            d_exact = max(0.0, m_tps) / sizing.preferred_tps
            raw = PD(max(1, ceil_count(d_exact * ratio)), sizing.count)
            p_how = f"max(1, ceil({d_exact:.3g}·{ratio:.3g}))"
        detail = f"{shown}; D_new = {sizing.detail}; P_new = {p_how}"
        driver: Role | None = None
        if demand is not None and demand.censored and demand.prefill_count > raw.prefill:
            # prefill is short of what the arrivals and its backlog need: it drives this decision, and
            # decode follows at the ratio without dropping below its own need (round(P/r) ≥ D_new)
            prefill = max(demand.prefill_count, ceil_count((raw.decode - 0.5) * ratio))
            raw = PD(prefill, max(raw.decode, round_half_up(prefill / ratio)))
            driver, reason = Role.PREFILL, Reason.PREFILL_BACKLOG
            detail += f"; prefill need {demand.prefill_count} > {p_how}: P_new = {prefill}, decode follows"
        follow = ratio if self.params.adaptive_ratio is None or raw.decode <= 0 else raw.prefill / raw.decode
        opening = tuple(
            Step(s.name, raw.prefill, raw.decode, s.reason, s.detail) if s.name == "demand" else s for s in opening
        )
        urgent = demand is not None and demand.short  # short is only ever set on a censored signal
        return Raw(
            raw, reason, detail, steps=opening, memory=ctx.memory, ratio=follow, pd_ratio=ratio, driver=driver,
            urgent=urgent,
        )  # fmt: skip

    def _demand(self, ctx: PolicyContext, seen: Seen) -> Demand | None:
        """Whether decode TPS is censored by prefill, and the demands (None: demand sizing is off)."""
        if self.params.demand is None:
            return None
        return see_demand(seen.observation, ctx.spec, ctx.counts, ctx.targets, ctx.memory, self.params.demand)

    def _look_ahead(self, ctx: PolicyContext, m_tps: float, params: ForecastParams) -> tuple[float, str, PolicyContext]:
        """Learn this observation, forecast ``lead_s`` ahead; size for max(observed, forecast).

        Sizing for the larger of the two scales out a cold start ahead of a ramp and never scales in
        below what is served now; a forecast below the observation only delays a scale-in."""
        state = observe(ctx.memory.forecast or ForecastState(), ctx.now_s, m_tps, params)
        ahead = forecast(state, ctx.now_s, self.params.lead_s, params)
        ctx = dataclasses.replace(ctx, memory=dataclasses.replace(ctx.memory, forecast=state))
        used = max(m_tps, ahead.value)
        which = "forecast" if ahead.value > m_tps else "observed"
        seen = f"M=max(observed {m_tps:.4g}, forecast {ahead.value:.4g}) = {used:.4g} tok/s ({which}; {ahead.detail})"
        return used, seen, ctx


__all__ = ["DEFAULT_TIERS", "HeteroScaleParams", "HeteroScalePolicy", "LatencyTier", "heteroscale_shaping"]
