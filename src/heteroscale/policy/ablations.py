"""HeteroScale with one idea taken away, to show what each idea is worth.

* ``independent-tps``: each pool sized on its own TPS (prefill TPS vs the prefill per-instance target,
  decode TPS vs the decode target, capacity counted per GPU type as HeteroScale), with HeteroScale's
  stabilisation, hysteresis, cooldowns and damping, but *no* P/D coordination: each role is judged on
  its own R and has its own cooldown clock.
* ``pure-latency``: TBT p90 drives decode and TTFT p90 drives prefill against the thresholds of
  ``Targets`` (``tbt_s`` / ``ttft_s``): +1 instance while above, −1 while below 0.5× the threshold,
  else hold; per-role cooldowns (HeteroScale's defaults), then bounds. No damping needed (±1).

Both count as baselines: by default they scale in by KILL with a 30 s grace, like the peers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.policy.context import PolicyContext
from heteroscale.policy.defaults import SCALE_IN_COOLDOWN_S, SCALE_OUT_COOLDOWN_S
from heteroscale.policy.normalize import PD, Stability, current_counts
from heteroscale.policy.outcome import KILL, ScaleIn
from heteroscale.policy.sizing import size_role_by_tps
from heteroscale.policy.stages import Bounds, Cooldown, limit_stages, stability_stages
from heteroscale.policy.wrapper import Raw, Seen, ShapedPolicy, Shaping

# --- independent-tps ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndependentTpsParams:
    stability: Stability = field(default_factory=Stability)
    scale_in: ScaleIn = field(default_factory=lambda: KILL)


def independent_shaping(params: IndependentTpsParams) -> Shaping:
    """HeteroScale's stabilisation and hysteresis judged per role, per-role cooldowns, damping, bounds."""
    stages = (*stability_stages(params.stability, None), *limit_stages(params.stability, per_role=True))
    return Shaping(stages, ("prefill.tps", "decode.tps"), params.scale_in)


class IndependentTpsPolicy(ShapedPolicy):
    """Each pool on its own TPS, HeteroScale's stability steps, no coordination."""

    def __init__(
        self,
        params: IndependentTpsParams | None = None,
        *,
        shaping: Shaping | None = None,
        name: str = "independent-tps",
    ) -> None:
        self.params = params or IndependentTpsParams()
        self.shaping = shaping or independent_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        signals = seen.signals
        p = size_role_by_tps(signals["prefill.tps"], Role.PREFILL, ctx.counts, ctx.spec.prefill_shapes, ctx.targets)
        d = size_role_by_tps(signals["decode.tps"], Role.DECODE, ctx.counts, ctx.spec.decode_shapes, ctx.targets)
        return Raw(PD(p.count, d.count), Reason.PROPORTIONAL, f"prefill {p.detail}; decode {d.detail}")


# --- pure-latency -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PureLatencyParams:
    step: int = 1  # instances added / removed per decision
    in_factor: float = 0.5  # scale in while p90 < in_factor × threshold
    scale_out_cooldown_s: float = SCALE_OUT_COOLDOWN_S
    scale_in_cooldown_s: float = SCALE_IN_COOLDOWN_S
    scale_in_step_s: float | None = None  # None: scale_in_cooldown_s
    scale_in: ScaleIn = field(default_factory=lambda: KILL)

    def __post_init__(self) -> None:
        if self.step < 1 or not 0 < self.in_factor < 1:
            raise ValueError("pure-latency needs step ≥ 1 and 0 < in_factor < 1")


def latency_steps(
    current: PD, ttft_p90_s: float, tbt_p90_s: float, ttft_s: float, tbt_s: float, params: PureLatencyParams
) -> Step:
    """±``params.step`` per role from its latency p90 against its threshold."""
    out: dict[Role, int] = {}
    notes: list[str] = []
    moves: set[int] = set()
    for role, p90, threshold in ((Role.PREFILL, ttft_p90_s, ttft_s), (Role.DECODE, tbt_p90_s, tbt_s)):
        cur = current.role(role)
        label = "TTFT" if role is Role.PREFILL else "TBT"
        if p90 > threshold:
            out[role], move = cur + params.step, 1
            notes.append(f"{label} p90 {p90:.4g} s > {threshold:g} s: {role.value} +{params.step}")
        elif p90 < params.in_factor * threshold:
            out[role], move = max(0, cur - params.step), -1
            notes.append(f"{label} p90 {p90:.4g} s < {params.in_factor * threshold:g} s: {role.value} −{params.step}")
        else:
            out[role], move = cur, 0
            notes.append(f"{label} p90 {p90:.4g} s in band: {role.value} holds")
        moves.add(move)
    if 1 in moves:
        reason = Reason.LATENCY_ABOVE
    elif -1 in moves:
        reason = Reason.LATENCY_BELOW
    else:
        reason = Reason.LATENCY_IN_BAND
    return Step("latency", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join(notes))


def pure_latency_shaping(params: PureLatencyParams) -> Shaping:
    """Per-role cooldowns (HeteroScale's defaults) and bounds; no damping needed (±1)."""
    cool = Cooldown(
        params.scale_out_cooldown_s, params.scale_in_cooldown_s, per_role=True, scale_in_step_s=params.scale_in_step_s
    )
    return Shaping((cool, Bounds()), ("ttft_p90_s", "tbt_p90_s"), params.scale_in)


class PureLatencyPolicy(ShapedPolicy):
    """TBT drives decode, TTFT drives prefill, one instance at a time."""

    def __init__(
        self, params: PureLatencyParams | None = None, *, shaping: Shaping | None = None, name: str = "pure-latency"
    ) -> None:
        self.params = params or PureLatencyParams()
        self.shaping = shaping or pure_latency_shaping(self.params)
        self.name = name

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        if seen is None:
            raise ValueError(f"{self.name} needs an observation")
        current = current_counts(ctx.counts)
        ttft_s, tbt_s = seen.signals["ttft_p90_s"], seen.signals["tbt_p90_s"]
        moved = latency_steps(current, ttft_s, tbt_s, ctx.targets.ttft_s, ctx.targets.tbt_s, self.params)
        return Raw(PD.of(moved), Reason.LATENCY_THRESHOLD, moved.detail, steps=(moved,))


__all__ = [
    "IndependentTpsParams",
    "IndependentTpsPolicy",
    "PureLatencyParams",
    "PureLatencyPolicy",
    "independent_shaping",
    "latency_steps",
    "pure_latency_shaping",
]
