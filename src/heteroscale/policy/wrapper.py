"""One wrapper shapes every policy: a policy returns its raw recommendation, the wrapper does the rest.

As Ray Serve applies one autoscaling config around any policy, every policy here is a
:class:`ShapedPolicy`: it implements only ``recommend(ctx, seen) -> Raw`` (its desired counts with a
reason and a detail, plus any memory of its own) and carries a :class:`Shaping` that says which stages
shape that recommendation, in which order, with which settings (:mod:`.stages`):

1. observation  (``Shaping.driving`` not None) hold at current counts on a missing, stale or partial
                observation or a missing driving signal; then only bounds that may raise to the min;
2. the policy's own steps (``Raw.steps``), e.g. its estimate of the P/D ratio;
3. the stages of ``Shaping.stages``: stabilisation, hysteresis or tolerance, P/D coordination, the
   latency floor, the warm-up, cooldowns, panic mode, damping or rate limits, the ratio band, an
   adjustment interval, bounds.

A policy may name the role that drives this one recommendation (``Raw.driver``, e.g. prefill when its
backlog decides): hysteresis and P/D coordination stages with a driver then judge and follow that role.
The scale-out a latency floor adds (the roles it raises above the earlier stages) passes a later cooldown.

The first stage starts from the raw recommendation; each later one from the step before it. Every stage
returns a Step with a Reason, so the DecisionRecord lists every clamp in order. After the last step,
:func:`heteroscale.policy.outcome.conclude` stamps the actions taken into memory (for cooldowns).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from heteroscale.domain.decision import Reason, Recommendation, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.policy.context import PolicyContext, PolicyMemory, PolicyResult
from heteroscale.policy.demand import queue_draining
from heteroscale.policy.normalize import (
    PD,
    ROLES,
    clamp_bounds,
    cooldown,
    coordinate_pd,
    current_counts,
    hysteresis,
    limit_step,
    stabilise_scale_in,
    usable_observation,
)
from heteroscale.policy.outcome import DRAIN, ScaleIn, conclude, conclude_hold, remember_recommendation, with_values
from heteroscale.policy.safety import latency_safety_net
from heteroscale.policy.stages import (
    Bounds,
    Cooldown,
    Coordinate,
    Damping,
    Hysteresis,
    Interval,
    LatencyFloor,
    Panic,
    RateLimit,
    RatioBand,
    Stabilise,
    Stage,
    Tolerance,
    WarmUp,
    interval_step,
    panic_step,
    rate_limit,
    repair_ratio_band,
    tolerance_step,
    warm_up_step,
)


@dataclass(frozen=True, slots=True)
class Shaping:
    """How the wrapper shapes one policy's recommendations (module doc)."""

    stages: tuple[Stage, ...] = (Bounds(),)
    driving: tuple[str, ...] | None = ()  # signals the observation must carry; None: no observation check
    scale_in: ScaleIn = DRAIN

    def __post_init__(self) -> None:
        if not self.stages or not isinstance(self.stages[-1], Bounds):
            raise ValueError("a policy's shaping must end with its bounds")


@dataclass(frozen=True, slots=True)
class Seen:
    """What the observation stage let through: the observation and the driving signals' values."""

    observation: Observation
    signals: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Raw:
    """A policy's raw recommendation and what the stages need to know about it."""

    desired: PD
    reason: Reason
    detail: str = ""
    steps: tuple[Step, ...] = ()  # the policy's own steps, before the stages (e.g. a ratio estimate)
    memory: PolicyMemory | None = None  # the policy's memory after this call; None: unchanged
    usage: tuple[float, float] | None = None  # (prefill, decode) metric ÷ target, for a Tolerance stage
    ratio: float | None = None  # the P/D ratio Coordinate / RatioBand use; None: the service's
    pd_ratio: float | None = None  # the P/D ratio the decision reports (PolicyResult.pd_ratio)
    notes: tuple[tuple[str, str], ...] = field(default=())  # extra detail for a stage, by step name
    driver: Role | None = None  # the role driving this recommendation, over the stages' own (None: theirs)
    urgent: bool = False  # sized from demand that the capacity ordered cannot serve: passes a Cooldown


@dataclass(frozen=True, slots=True)
class Held:
    """What a policy keeps when the wrapper holds on a bad observation."""

    memory: PolicyMemory | None = None
    pd_ratio: float | None = None


class ShapedPolicy:
    """A policy the wrapper shapes: subclasses set ``name`` and ``shaping`` and implement ``recommend``."""

    name: str
    shaping: Shaping

    def recommend(self, ctx: PolicyContext, seen: Seen | None) -> Raw:
        """The raw recommendation (``seen`` is None only when the shaping checks no observation)."""
        raise NotImplementedError

    def held(self, ctx: PolicyContext) -> Held:
        """Memory and ratio to keep while the wrapper holds on a bad observation."""
        return Held()

    def decide(self, ctx: PolicyContext) -> PolicyResult:
        return shape(ctx, self)


class _Run:
    """One pass through the stages: the context, the raw recommendation, the memory being built."""

    def __init__(self, ctx: PolicyContext, raw: Raw, seen: Seen | None) -> None:
        self.ctx = ctx
        self.raw = raw
        self.seen = seen
        self.current = current_counts(ctx.counts)
        self.memory = ctx.memory if raw.memory is None else raw.memory
        self.notes = dict(raw.notes)
        self.panicking: frozenset[Role] = frozenset()  # roles a Panic stage put in panic mode this call
        self.latency_floor: PD | None = None  # what a LatencyFloor stage raised roles to this call

    def driver(self, stage_driver: Role | None) -> Role | None:
        """The role a driven stage follows: the policy's for this call, else the stage's own."""
        if stage_driver is None or self.raw.driver is None:
            return stage_driver
        return self.raw.driver

    def apply(self, stage: Stage, desired: PD) -> Step:
        ctx, current = self.ctx, self.current
        ratio = self.raw.ratio
        if isinstance(stage, Stabilise):
            self.memory = remember_recommendation(self.memory, ctx.now_s, desired, stage.window_s)
            history = self.memory.recommendations
            return stabilise_scale_in(
                ctx.now_s, history, current, desired, window_s=stage.window_s, lowest=stage.lowest
            )
        if isinstance(stage, Hysteresis):
            driver = self.driver(stage.driver)
            return hysteresis(current, desired, theta_out=stage.theta_out, theta_in=stage.theta_in, driver=driver)
        if isinstance(stage, Tolerance):
            if self.raw.usage is None:
                raise ValueError(f"policy {ctx.spec.name}: a tolerance stage needs the metric's usage ratios")
            return tolerance_step(current, desired, self.raw.usage, stage)
        if isinstance(stage, Coordinate):
            lead = self.driver(stage.driver) or stage.driver
            return coordinate_pd(ctx.spec, current, desired, driver=lead, ratio=ratio)
        if isinstance(stage, LatencyFloor):
            if self.seen is None:
                raise ValueError("the latency stage needs an observation")
            obs = self.seen.observation
            draining = queue_draining(self.memory, obs)
            step = latency_safety_net(
                obs, ctx.spec, ctx.counts, desired, stage.tiers, targets=ctx.targets, drain_s=stage.drain_s,
                draining=draining,
            )  # fmt: skip
            raised = PD.of(step)
            if raised.prefill > desired.prefill or raised.decode > desired.decode:  # the tier's own scale-out
                self.latency_floor = PD(
                    raised.prefill if raised.prefill > desired.prefill else 0,
                    raised.decode if raised.decode > desired.decode else 0,
                )
            return step
        if isinstance(stage, WarmUp):
            stored = dict(self.memory.values).get(stage.key)
            if stored is None:  # the first usable observation since start-up (a journal restore has none)
                stored = ctx.now_s
                self.memory = with_values(self.memory, {stage.key: stored})
            return warm_up_step(ctx.now_s, stored, max(ctx.window_s, stage.span_s), current, desired)
        if isinstance(stage, Cooldown):
            if stage.passes_demand and self.raw.urgent:
                # demand counts starting capacity already: a scale-out now asks only for what nobody ordered
                return self._cooldown_passed(stage, desired, self._scale_outs(desired), Reason.COOLDOWN_DEMAND)
            if stage.passes_rising_latency is not None and self._latency_rising(stage.passes_rising_latency):
                # half-way to a breach, the scale-out the signal already asks for cannot wait out a cooldown
                raised = self._scale_outs(desired)
                why = Reason.COOLDOWN_LATENCY if raised == self.latency_floor else Reason.COOLDOWN_RISING
                return self._cooldown_passed(stage, desired, raised, why)
            if self.latency_floor is not None:
                return self._cooldown_passed(stage, desired, self.latency_floor, Reason.COOLDOWN_LATENCY)
            return cooldown(
                ctx.now_s,
                self.memory,
                current,
                desired,
                scale_out_s=stage.scale_out_s,
                scale_in_s=stage.scale_in_s,
                per_role=stage.per_role,
                scale_in_step_s=stage.scale_in_step_s,
            )
        if isinstance(stage, Damping):
            return limit_step(
                current,
                desired,
                max_up_fraction=stage.max_up_fraction,
                max_down_fraction=stage.max_down_fraction,
                min_step=stage.min_step,
            )
        if isinstance(stage, RateLimit):
            return rate_limit(current, desired, stage, self.panicking)
        if isinstance(stage, Panic):
            return self._panic(stage, desired)
        if isinstance(stage, RatioBand):
            r = ctx.spec.pd_ratio if ratio is None else ratio
            return repair_ratio_band(current, desired, r * stage.min_factor, r * stage.max_factor)
        if isinstance(stage, Interval):
            last = dict(self.memory.values).get(stage.key)
            step = interval_step(ctx.now_s, last, current, desired, stage, self.notes.get("interval", ""))
            if step.reason is Reason.ADJUSTED or last is None:
                self.memory = with_values(self.memory, {stage.key: ctx.now_s})
            return step
        return clamp_bounds(ctx.spec, current, desired)

    def _cooldown_passed(self, stage: Cooldown, desired: PD, floor: PD, reason: Reason) -> Step:
        """The roles raised to ``floor`` (0: not raised) by the latency stage or by demand: that scale-out
        passes any cooldown; the rest of ``desired`` is held as usual, and the step says what was passed."""
        ctx = self.ctx
        would = cooldown(
            ctx.now_s,
            self.memory,
            self.current,
            desired,
            scale_out_s=stage.scale_out_s,
            scale_in_s=stage.scale_in_s,
            per_role=stage.per_role,
            scale_in_step_s=stage.scale_in_step_s,
        )
        held = PD.of(would)
        out = PD(max(held.prefill, floor.prefill), max(held.decode, floor.decode))
        if out == held:
            return would
        passed = ", ".join(
            f"{r.value} {self.current.role(r)}→{out.role(r)}" for r in ROLES if out.role(r) > held.role(r)
        )
        what = {Reason.COOLDOWN_LATENCY: "latency-tier", Reason.COOLDOWN_RISING: "latency-rising"}.get(
            reason, "demand-sized"
        )
        detail = f"{what} scale-out passes: {passed}; {would.detail}"
        return Step("cooldown", out.prefill, out.decode, reason, detail)

    def _scale_outs(self, desired: PD) -> PD:
        """Each role ``desired`` scales out (0 for the others), at least what the latency stage raised."""
        floor = self.latency_floor or PD(0, 0)
        out = (desired.role(r) if desired.role(r) > self.current.role(r) else 0 for r in ROLES)
        return PD(*(max(floor.role(r), o) for r, o in zip(ROLES, out, strict=True)))

    def _latency_rising(self, factor: float) -> bool:
        """TTFT p90 or TBT p90 above ``factor`` × its SLO in this observation."""
        if self.seen is None:
            return False
        obs, slo = self.seen.observation, self.ctx.spec.slo
        return (obs.ttft_p90_s is not None and obs.ttft_p90_s > factor * slo.ttft_s) or (
            obs.tbt_p90_s is not None and obs.tbt_p90_s > factor * slo.tbt_s
        )

    def _panic(self, stage: Panic, desired: PD) -> Step:
        stored = dict(self.memory.values)
        until = {
            role: stored[f"panic.{role.value}.until_s"] for role in ROLES if f"panic.{role.value}.until_s" in stored
        }
        step, ends = panic_step(self.ctx.now_s, until, self.current, desired, stage)
        self.memory = with_values(self.memory, {f"panic.{role.value}.until_s": t for role, t in ends.items()})
        self.panicking = frozenset(role for role, t in ends.items() if self.ctx.now_s <= t)
        return step


def shape(ctx: PolicyContext, policy: ShapedPolicy) -> PolicyResult:
    """Run ``policy`` and its shaping (module doc)."""
    shaping = policy.shaping
    steps: list[Step] = []
    seen: Seen | None = None
    if shaping.driving is not None:
        observation, signals, checked = usable_observation(
            ctx.observation, ctx.observation_error, ctx.counts, shaping.driving
        )
        if observation is None:
            held = policy.held(ctx)
            result = conclude_hold(ctx, checked, memory=held.memory, scale_in=shaping.scale_in)
            return dataclasses.replace(result, pd_ratio=held.pd_ratio, coordinated=_coordinated(shaping))
        seen = Seen(observation, signals)
        steps.append(checked)
    raw = policy.recommend(ctx, seen)
    run = _Run(ctx, raw, seen)
    steps.extend(raw.steps)
    desired = raw.desired
    for stage in shaping.stages:
        step = run.apply(stage, desired)
        steps.append(step)
        desired = PD.of(step)
    rec = Recommendation(ctx.spec.name, raw.desired.prefill, raw.desired.decode, raw.reason, raw.detail)
    result = conclude(ctx, rec, steps, memory=run.memory, scale_in=shaping.scale_in)
    return dataclasses.replace(result, pd_ratio=raw.pd_ratio, coordinated=_coordinated(shaping))


def _coordinated(shaping: Shaping) -> bool:
    return any(isinstance(stage, Coordinate) for stage in shaping.stages)


__all__ = ["Held", "Raw", "Seen", "ShapedPolicy", "Shaping", "shape"]
