"""Adaptive P/D ratio: the prefill-per-decode ratio estimated online from the two demands.

The paper fixes the ratio per service from a pressure test. When the request mix moves within the
day (e.g. conversation in the evening, long-prompt code traffic in office hours) the ratio that
serves it best moves too: long prompts with short answers need more prefill per decode instance.

Estimate, once per decision (``dt`` = time since the last one, τ = ``smoothing_s``)::

    P_need = prefill TPS (cache-missed prompt tokens/s) ÷ m_p      m_p, m_d: per-instance targets of
    D_need = decode TPS (generated tokens/s)            ÷ m_d      the preferred shapes (pressure test)
    P̄, D̄  ← EWMA of P_need, D_need with weight 1 − exp(−dt/τ)   (demand-weighted: a quiet hour
    r*     = clamp(P̄ / D̄, min_ratio, max_ratio)                  does not swing the ratio)

then, with r the ratio in use:

    |r* − r| ≤ hysteresis · r                  → keep r                     (within the band)
    else move r towards r* by at most          → r ± max_change_per_min · r · dt/60   (rate limit)

A saturated prefill pool under-reports its demand (it processes at capacity), but capacity is
1/margin of the per-instance target, so the estimate still rises above the ratio in use and the
ratio climbs until the pool keeps up. State lives in the policy's memory (``ratio.*`` values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.policy.context import PolicyContext, PolicyMemory, RoleCounts
from heteroscale.policy.normalize import current_counts
from heteroscale.policy.outcome import with_values
from heteroscale.policy.sizing import fleet_capacity


@dataclass(frozen=True, slots=True)
class AdaptiveRatio:
    """Bounds, hysteresis and rate limit of the adaptive P/D ratio (module doc)."""

    min_ratio: float = 0.25
    max_ratio: float = 8.0
    hysteresis: float = 0.1  # relative deviation of the estimate tolerated before the ratio moves
    max_change_per_min: float = 0.1  # at most this fraction of the current ratio per minute
    smoothing_s: float = 300.0  # EWMA time constant of the demands

    def __post_init__(self) -> None:
        if not 0 < self.min_ratio <= self.max_ratio:
            raise ValueError(f"adaptive ratio needs 0 < min_ratio ≤ max_ratio, got {self.min_ratio}, {self.max_ratio}")
        for name in ("hysteresis", "max_change_per_min", "smoothing_s"):
            value = getattr(self, name)
            if not value >= 0 or not math.isfinite(value):
                raise ValueError(f"adaptive ratio: {name} must be a finite number ≥ 0, got {value}")

    def clamp(self, ratio: float) -> float:
        return min(self.max_ratio, max(self.min_ratio, ratio))


_CURRENT, _P_NEED, _D_NEED, _AT = "ratio.current", "ratio.p_need", "ratio.d_need", "ratio.at_s"


def current_ratio(memory: PolicyMemory, base: float, params: AdaptiveRatio) -> float:
    """The ratio in use: the remembered one, else the service's (pressure-tested) ratio within bounds."""
    return memory.value(_CURRENT, params.clamp(base))


def restored_ratio(memory: PolicyMemory, ratio: float) -> PolicyMemory:
    """Memory carrying ``ratio`` as the ratio in use (a controller restarting from its journal)."""
    return with_values(memory, {_CURRENT: ratio})


def held_ratio(memory: PolicyMemory, now_s: float, base: float, params: AdaptiveRatio) -> PolicyMemory:
    """Memory after a decision that did not estimate: the ratio kept, the clock of the rate limit moved
    on (time without an estimate earns no extra change for the next one)."""
    return with_values(memory, {_CURRENT: current_ratio(memory, base, params), _AT: now_s})


def _target(ctx: PolicyContext, role: Role) -> float:
    """Tokens/s one instance of the role's preferred shape should carry (a one-line error when missing)."""
    return fleet_capacity(RoleCounts(), ctx.spec.shapes(role), ctx.targets.tps_per_instance(role))[1]


def adapt_ratio(ctx: PolicyContext, base: float, params: AdaptiveRatio) -> tuple[float, Step, PolicyMemory]:
    """This decision's ratio, the step that explains it (counts unchanged) and the updated memory."""
    memory = ctx.memory
    ratio = current_ratio(memory, base, params)
    current = current_counts(ctx.counts)
    obs = ctx.observation
    prefill_tps = obs.prefill.tps if obs is not None else None
    decode_tps = obs.decode.tps if obs is not None else None

    def step(reason: Reason, detail: str) -> Step:
        return Step("ratio", current.prefill, current.decode, reason, detail)

    if prefill_tps is None or decode_tps is None or not (math.isfinite(prefill_tps) and math.isfinite(decode_tps)):
        updated = held_ratio(memory, ctx.now_s, base, params)
        return ratio, step(Reason.RATIO_HELD, f"r={ratio:.3g} kept: prefill or decode TPS not measured"), updated
    m_p = _target(ctx, Role.PREFILL)
    m_d = _target(ctx, Role.DECODE)
    p_need, d_need = max(0.0, prefill_tps) / m_p, max(0.0, decode_tps) / m_d
    last_at = memory.value(_AT, math.nan)
    dt = ctx.now_s - last_at if math.isfinite(last_at) else math.inf
    weight = 1.0 if dt == math.inf or params.smoothing_s <= 0 else 1.0 - math.exp(-max(0.0, dt) / params.smoothing_s)
    p_bar = weight * p_need + (1 - weight) * memory.value(_P_NEED, p_need)
    d_bar = weight * d_need + (1 - weight) * memory.value(_D_NEED, d_need)
    seen = f"P_need={prefill_tps:.4g}/{m_p:.4g}={p_need:.3g}, D_need={decode_tps:.4g}/{m_d:.4g}={d_need:.3g}"
    values = {_P_NEED: p_bar, _D_NEED: d_bar, _AT: ctx.now_s}
    if d_bar <= 1e-9:
        values[_CURRENT] = ratio
        return (
            ratio,
            step(Reason.RATIO_HELD, f"r={ratio:.3g} kept: no decode demand; {seen}"),
            with_values(memory, values),
        )
    raw = p_bar / d_bar
    target = params.clamp(raw)
    notes = [seen, f"smoothed {p_bar:.3g}/{d_bar:.3g} → r*={raw:.3g}"]
    if target != raw:
        notes.append(f"bounded to [{params.min_ratio:g}, {params.max_ratio:g}] → {target:.3g}")
    if abs(target - ratio) <= params.hysteresis * ratio + 1e-12:
        values[_CURRENT] = ratio
        notes.append(f"within ±{params.hysteresis:.0%} of r={ratio:.3g}: kept")
        return ratio, step(Reason.RATIO_WITHIN_BAND, "; ".join(notes)), with_values(memory, values)
    limit = params.max_change_per_min * ratio * (60.0 if dt == math.inf else max(0.0, dt)) / 60.0
    new = ratio + max(-limit, min(limit, target - ratio))
    reason = Reason.RATIO_ADAPTED
    if abs(new - target) > 1e-12:
        reason = Reason.RATIO_RATE_LIMITED
        notes.append(f"rate limit {params.max_change_per_min:.0%}/min: {ratio:.3g}→{new:.3g}")
    else:
        notes.append(f"r {ratio:.3g}→{new:.3g}")
    new = params.clamp(new)
    values[_CURRENT] = new
    return new, step(reason, "; ".join(notes)), with_values(memory, values)


__all__ = ["AdaptiveRatio", "adapt_ratio", "current_ratio", "held_ratio", "restored_ratio"]
