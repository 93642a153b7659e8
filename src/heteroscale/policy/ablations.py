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
from heteroscale.policy.context import PolicyContext, PolicyResult
from heteroscale.policy.normalize import PD, Stability, current_counts, usable_observation
from heteroscale.policy.outcome import KILL, ScaleIn, conclude, conclude_hold, direction_steps, limit_steps, recommend
from heteroscale.policy.sizing import size_role_by_tps

# --- independent-tps ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndependentTpsParams:
    stability: Stability = field(default_factory=Stability)
    scale_in: ScaleIn = field(default_factory=lambda: KILL)


class IndependentTpsPolicy:
    """Each pool on its own TPS, HeteroScale's stability steps, no coordination."""

    def __init__(self, params: IndependentTpsParams | None = None, name: str = "independent-tps") -> None:
        self.params = params or IndependentTpsParams()
        self.name = name

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        prm = self.params
        driving = ("prefill.tps", "decode.tps")
        observation, signals, checked = usable_observation(ctx.observation, ctx.observation_error, ctx.counts, driving)
        if observation is None:
            return conclude_hold(ctx, checked, scale_in=prm.scale_in)
        p = size_role_by_tps(signals["prefill.tps"], Role.PREFILL, ctx.counts, ctx.spec.prefill_shapes, ctx.targets)
        d = size_role_by_tps(signals["decode.tps"], Role.DECODE, ctx.counts, ctx.spec.decode_shapes, ctx.targets)
        raw = PD(p.count, d.count)
        rec = recommend(ctx, raw, Reason.PROPORTIONAL, f"prefill {p.detail}; decode {d.detail}")
        steps, memory = direction_steps(ctx, raw, prm.stability, driver=None)
        steps = [checked, *steps]
        steps.extend(limit_steps(ctx, PD.of(steps[-1]), prm.stability, per_role=True))
        return conclude(ctx, rec, steps, memory=memory, scale_in=prm.scale_in)


# --- pure-latency -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PureLatencyParams:
    step: int = 1  # instances added / removed per decision
    in_factor: float = 0.5  # scale in while p90 < in_factor × threshold
    scale_out_cooldown_s: float = 180.0
    scale_in_cooldown_s: float = 600.0
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


class PureLatencyPolicy:
    """TBT drives decode, TTFT drives prefill, one instance at a time."""

    def __init__(self, params: PureLatencyParams | None = None, name: str = "pure-latency") -> None:
        self.params = params or PureLatencyParams()
        self.name = name
        self._stability = Stability(
            scale_out_cooldown_s=self.params.scale_out_cooldown_s, scale_in_cooldown_s=self.params.scale_in_cooldown_s
        )

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        prm = self.params
        driving = ("ttft_p90_s", "tbt_p90_s")
        observation, signals, checked = usable_observation(ctx.observation, ctx.observation_error, ctx.counts, driving)
        if observation is None:
            return conclude_hold(ctx, checked, scale_in=prm.scale_in)
        current = current_counts(ctx.counts)
        ttft_s, tbt_s = signals["ttft_p90_s"], signals["tbt_p90_s"]
        moved = latency_steps(current, ttft_s, tbt_s, ctx.targets.ttft_s, ctx.targets.tbt_s, prm)
        rec = recommend(ctx, PD.of(moved), Reason.LATENCY_THRESHOLD, moved.detail)
        steps = [checked, moved, *limit_steps(ctx, PD.of(moved), self._stability, per_role=True, damping=False)]
        return conclude(ctx, rec, steps, scale_in=prm.scale_in)


__all__ = [
    "IndependentTpsParams",
    "IndependentTpsPolicy",
    "PureLatencyParams",
    "PureLatencyPolicy",
    "latency_steps",
]
