"""Turning a decision's steps into a PolicyResult, and what a policy remembers between calls.

``conclude`` is the one place that stamps actions into memory: after the last step, a role whose
desired count is above its current count scaled out at ``now_s`` and one below scaled in. The
timestamps are kept service-wide (``PolicyMemory.last_scale_out_s`` / ``last_scale_in_s``) and per
role (``values["prefill.last_scale_out_s"]`` …), so cooldowns can compare either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from heteroscale.domain.decision import Recommendation, ScalingDecision, Step
from heteroscale.domain.state import ScaleInMode
from heteroscale.policy.context import PolicyContext, PolicyMemory, PolicyResult
from heteroscale.policy.defaults import DRAIN_GRACE_S, KILL_GRACE_S
from heteroscale.policy.normalize import PD, ROLES, clamp_bounds, current_counts


@dataclass(frozen=True, slots=True)
class ScaleIn:
    """How instances leave when a policy scales in."""

    mode: ScaleInMode = ScaleInMode.DRAIN
    grace_s: float = DRAIN_GRACE_S

    def __post_init__(self) -> None:
        if self.grace_s < 0:
            raise ValueError(f"scale-in grace must be ≥ 0 s, got {self.grace_s}")


DRAIN = ScaleIn()
KILL = ScaleIn(ScaleInMode.KILL, KILL_GRACE_S)


def with_values(memory: PolicyMemory, updates: Mapping[str, float]) -> PolicyMemory:
    """Memory with named values set (others kept, order stable)."""
    merged = dict(memory.values)
    merged.update(updates)
    return replace(memory, values=tuple(sorted(merged.items())))


def remember_actions(memory: PolicyMemory, now_s: float, current: PD, final: PD) -> PolicyMemory:
    """Stamp the scale-out / scale-in that ``final`` makes against ``current`` into memory."""
    ups = [role for role in ROLES if final.role(role) > current.role(role)]
    downs = [role for role in ROLES if final.role(role) < current.role(role)]
    if not ups and not downs:
        return memory
    stamps: dict[str, float] = {}
    for role in ups:
        stamps[f"{role.value}.last_scale_out_s"] = now_s
    for role in downs:
        stamps[f"{role.value}.last_scale_in_s"] = now_s
    out_s = now_s if ups else memory.last_scale_out_s
    in_s = now_s if downs else memory.last_scale_in_s
    direction = memory.last_direction
    if ups and not downs:
        direction = 1
    elif downs and not ups:
        direction = -1
    updated = replace(memory, last_scale_out_s=out_s, last_scale_in_s=in_s, last_direction=direction)
    return with_values(updated, stamps)


def conclude(
    ctx: PolicyContext,
    recommendation: Recommendation,
    steps: Sequence[Step],
    *,
    memory: PolicyMemory | None = None,
    scale_in: ScaleIn = DRAIN,
) -> PolicyResult:
    """Build the PolicyResult: decision from the last step, memory stamped with the action taken."""
    if not steps:
        raise ValueError("a decision needs at least one step")
    current = current_counts(ctx.counts)
    final = PD.of(steps[-1])
    base = ctx.memory if memory is None else memory
    decision = ScalingDecision(
        service=ctx.spec.name,
        current_prefill=current.prefill,
        current_decode=current.decode,
        desired_prefill=final.prefill,
        desired_decode=final.decode,
        steps=tuple(steps),
    )
    return PolicyResult(
        recommendation=recommendation,
        decision=decision,
        memory=remember_actions(base, ctx.now_s, current, final),
        scale_in_mode=scale_in.mode,
        drain_grace_s=scale_in.grace_s,
    )


def conclude_hold(
    ctx: PolicyContext,
    hold_step: Step,
    *,
    memory: PolicyMemory | None = None,
    scale_in: ScaleIn = DRAIN,
) -> PolicyResult:
    """A hold: the observation step at current counts, then bounds that may only raise (to min)."""
    current = current_counts(ctx.counts)
    rec = Recommendation(ctx.spec.name, current.prefill, current.decode, hold_step.reason, hold_step.detail)
    bounds = clamp_bounds(ctx.spec, current, current, allow_scale_in=False)
    return conclude(ctx, rec, (hold_step, bounds), memory=memory, scale_in=scale_in)


def trim_recommendations(
    history: Sequence[tuple[float, int, int]], now_s: float, window_s: float
) -> tuple[tuple[float, int, int], ...]:
    """Recommendations no older than ``window_s`` before ``now_s``."""
    return tuple(entry for entry in history if now_s - entry[0] <= window_s)


def remember_recommendation(memory: PolicyMemory, now_s: float, raw: PD, window_s: float) -> PolicyMemory:
    """Memory with ``raw`` appended to the recommendations and those older than ``window_s`` dropped."""
    history = (*memory.recommendations, (now_s, raw.prefill, raw.decode))
    return replace(memory, recommendations=trim_recommendations(history, now_s, window_s))


def remember_sample(
    memory: PolicyMemory,
    name: str,
    now_s: float,
    value: float,
    *,
    keep_s: float | None = None,
    keep_n: int | None = None,
) -> PolicyMemory:
    """Memory with ``(now_s, value)`` added to the samples under ``name``, keeping only those no older
    than ``keep_s`` before ``now_s`` and at most the newest ``keep_n``; other names untouched."""
    mine = [(t, v) for t, v in memory.series(name) if keep_s is None or now_s - t <= keep_s]
    mine.append((now_s, value))
    if keep_n is not None:
        mine = mine[-keep_n:]
    others = tuple(entry for entry in memory.samples if entry[0] != name)
    return replace(memory, samples=(*others, *((name, t, v) for t, v in mine)))


def window_mean(memory: PolicyMemory, name: str, now_s: float, window_s: float) -> float | None:
    """Mean of the samples under ``name`` no older than ``window_s`` (None when there are none)."""
    recent = [v for t, v in memory.series(name) if now_s - t <= window_s]
    return sum(recent) / len(recent) if recent else None
