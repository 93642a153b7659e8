"""Shared normalisation steps: each is a pure function returning a Step that carries the counts.

Every step states a Reason and a human detail, so ``ScalingDecision.steps`` lists every clamp in the
order it was applied. Counts are (prefill, decode) pairs (:class:`PD`); "current" always means the
capacity of the service (ready + starting instances), so instances still loading count.

Time only enters through ``now_s`` and the timestamps kept in :class:`PolicyMemory`; cooldowns compare
timestamps and never count ticks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.service import ServiceSpec
from heteroscale.policy.context import PolicyMemory, ServiceCounts
from heteroscale.policy.defaults import (
    SCALE_IN_COOLDOWN_S,
    SCALE_OUT_COOLDOWN_S,
    THETA_IN,
    THETA_OUT,
)

ROLES = (Role.PREFILL, Role.DECODE)


@dataclass(frozen=True, slots=True)
class PD:
    """A pair of instance counts, prefill and decode."""

    prefill: int
    decode: int

    @staticmethod
    def of(step: Step) -> PD:
        return PD(step.prefill, step.decode)

    def role(self, role: Role) -> int:
        return self.prefill if role is Role.PREFILL else self.decode

    def with_role(self, role: Role, value: int) -> PD:
        return PD(value, self.decode) if role is Role.PREFILL else PD(self.prefill, value)


@dataclass(frozen=True, slots=True)
class Stability:
    """Hysteresis, cooldowns and damping shared by the metric-driven policies (HETEROSCALE.md §4)."""

    theta_out: float = THETA_OUT  # scale out if R = desired/current > 1 + theta_out
    theta_in: float = THETA_IN  # scale in if R < 1 − theta_in
    scale_out_cooldown_s: float = SCALE_OUT_COOLDOWN_S  # after a scale-out, before another scale-out
    scale_in_cooldown_s: float = SCALE_IN_COOLDOWN_S  # after a scale-out, before a scale-in
    # [ours] after a scale-in, before the next one; None: scale_in_cooldown_s, as shipped (300 s saved 2-4 %
    # of GPU-hours on the suite's tune parts but cost 1.5 pt of SLO on mix-shift: docs/POLICY.md)
    scale_in_step_s: float | None = None
    max_up_fraction: float = 1.0  # one step adds at most +100 % of current …
    max_down_fraction: float = 0.25  # … and removes at most 25 %
    min_step: int = 1  # but always at least this many when moving
    # [ours] a scale-in goes no lower than the highest raw recommendation of this window (HPA's
    # scale-down stabilisation), so a noise trough does not trigger it; 0 disables
    scale_in_window_s: float = 300.0

    def __post_init__(self) -> None:
        names = (
            "theta_out",
            "theta_in",
            "scale_out_cooldown_s",
            "scale_in_cooldown_s",
            "max_up_fraction",
            "scale_in_window_s",
        )
        if self.scale_in_step_s is not None and self.scale_in_step_s < 0:
            raise ValueError(f"Stability.scale_in_step_s must be ≥ 0, got {self.scale_in_step_s}")
        for name in names:
            if getattr(self, name) < 0:
                raise ValueError(f"Stability.{name} must be ≥ 0, got {getattr(self, name)}")
        if not 0 <= self.max_down_fraction <= 1:
            raise ValueError(f"Stability.max_down_fraction must be in [0, 1], got {self.max_down_fraction}")
        if self.min_step < 1:
            raise ValueError(f"Stability.min_step must be ≥ 1, got {self.min_step}")


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's round() rounds halves to even)."""
    return math.floor(x + 0.5)


def ceil_count(x: float) -> int:
    """Ceiling that ignores float noise (20.000000000004 instances is 20), never below 0."""
    return max(0, math.ceil(x - 1e-9))


def current_counts(counts: ServiceCounts) -> PD:
    """Current counts of a service: ready + starting instances (draining ones excluded)."""
    return PD(counts.prefill.capacity, counts.decode.capacity)


def read_signal(observation: Observation, name: str) -> float | None:
    """A signal by name: ``prefill.<field>``/``decode.<field>`` of RoleSignals, or an Observation field."""
    owner: object = observation
    field_name = name
    if "." in name:
        role_name, field_name = name.split(".", 1)
        owner = observation.role(Role(role_name))
    value = getattr(owner, field_name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"signal {name!r} is not a number")
    return float(value)


def hold_on_bad_observation(
    observation: Observation | None,
    observation_error: str | None,
    counts: ServiceCounts,
    driving: Sequence[str] = (),
) -> tuple[bool, Step]:
    """Hold at current counts on a missing, stale or partial observation, or a missing driving signal.

    Partial means a role has ready instances (by the observation or by ``counts``) but no TPS. A hold
    is a hold: no scale-in and no latency scale-out either, until a complete observation arrives.
    Returns ``(hold, step)``.
    """
    cur = current_counts(counts)
    suffix = "; holding at current counts (no scale-in, no scale-out) until a complete observation"
    if observation is None:
        why = observation_error or "metric source returned nothing"
        return True, Step("observation", cur.prefill, cur.decode, Reason.HOLD_MISSING, f"no observation: {why}{suffix}")
    if observation.stale:
        detail = f"observation stale (window {observation.window_start_s:g}–{observation.window_end_s:g} s){suffix}"
        return True, Step("observation", cur.prefill, cur.decode, Reason.HOLD_STALE, detail)
    partial = []
    for role in ROLES:
        sig = observation.role(role)
        ready = max(sig.instances_ready, counts.role(role).ready)
        if ready > 0 and sig.tps is None:
            partial.append(f"{role.value} has {ready} ready instance(s) but no TPS")
    if partial:
        return True, Step("observation", cur.prefill, cur.decode, Reason.HOLD_PARTIAL, "; ".join(partial) + suffix)
    absent = [name for name in driving if read_signal(observation, name) is None]
    if absent:
        detail = f"driving signal(s) {', '.join(absent)} not measured{suffix}"
        return True, Step("observation", cur.prefill, cur.decode, Reason.HOLD_NO_SIGNAL, detail)
    shown = ", ".join(f"{name}={read_signal(observation, name):.4g}" for name in driving)
    return False, Step("observation", cur.prefill, cur.decode, Reason.OBSERVATION_OK, shown or "complete")


def usable_observation(
    observation: Observation | None,
    observation_error: str | None,
    counts: ServiceCounts,
    driving: Sequence[str] = (),
) -> tuple[Observation | None, dict[str, float], Step]:
    """:func:`hold_on_bad_observation` for a policy's opening: the observation when it can drive a
    decision (None when the policy must hold), the driving signals' values by name, and the step."""
    hold, step = hold_on_bad_observation(observation, observation_error, counts, driving)
    if hold or observation is None:
        return None, {}, step
    values = {name: read_signal(observation, name) for name in driving}
    return observation, {name: v for name, v in values.items() if v is not None}, step


def clamp_bounds(spec: ServiceSpec, current: PD, desired: PD, *, allow_scale_in: bool = True) -> Step:
    """Clamp each role to the service's [min, max]. With ``allow_scale_in=False`` (a hold) the max bound
    never pushes a role below its current count: that scale-in waits for a complete observation."""
    lo = PD(spec.min_prefill, spec.min_decode)
    hi = PD(spec.max_prefill, spec.max_decode)
    out: dict[Role, int] = {}
    notes: list[str] = []
    raised = lowered = False
    for role in ROLES:
        want = desired.role(role)
        top = hi.role(role) if allow_scale_in else max(hi.role(role), current.role(role))
        got = min(max(want, lo.role(role)), top)
        out[role] = got
        if got > want:
            raised = True
            notes.append(f"{role.value} {want}→{got} (min {lo.role(role)})")
        elif got < want:
            lowered = True
            notes.append(f"{role.value} {want}→{got} (max {hi.role(role)})")
        if not allow_scale_in and current.role(role) > hi.role(role):
            notes.append(f"{role.value} above max {hi.role(role)}: scale-in deferred while holding")
    if raised:
        reason = Reason.CLAMPED_MIN
    elif lowered:
        reason = Reason.CLAMPED_MAX
    else:
        reason = Reason.WITHIN_BOUNDS
    span = f"P∈[{spec.min_prefill},{spec.max_prefill}] D∈[{spec.min_decode},{spec.max_decode}]"
    return Step("bounds", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join([*notes, span]))


def limit_step(
    current: PD,
    desired: PD,
    *,
    max_up_fraction: float = 1.0,
    max_down_fraction: float = 0.25,
    min_step: int = 1,
) -> Step:
    """Damping: one step moves a role by at most +max_up / −max_down of its current count, and by at
    least ``min_step`` instances when it moves at all."""
    out: dict[Role, int] = {}
    notes: list[str] = []
    for role in ROLES:
        cur, want = current.role(role), desired.role(role)
        if want > cur:
            got = min(want, cur + max(min_step, math.floor(cur * max_up_fraction + 1e-9)))
        elif want < cur:
            got = max(want, cur - max(min_step, math.floor(cur * max_down_fraction + 1e-9)), 0)
        else:
            got = want
        out[role] = got
        if got != want:
            notes.append(f"{role.value} {cur}→{want} limited to {got}")
    reason = Reason.DAMPED if notes else Reason.WITHIN_STEP_LIMIT
    limits = f"+{max_up_fraction:.0%}/−{max_down_fraction:.0%} per step, at least {min_step}"
    return Step("damping", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join([*notes, limits]))


def _last(memory: PolicyMemory, key: str, role: Role | None) -> float | None:
    """A last-action timestamp: service-wide from the memory's fields, or per role from its values."""
    if role is None:
        return memory.last_scale_out_s if key == "out" else memory.last_scale_in_s
    stored = dict(memory.values).get(f"{role.value}.last_scale_{key}_s")
    return stored


def cooldown(
    now_s: float,
    memory: PolicyMemory,
    current: PD,
    desired: PD,
    *,
    scale_out_s: float = SCALE_OUT_COOLDOWN_S,
    scale_in_s: float = SCALE_IN_COOLDOWN_S,
    per_role: bool = False,
    scale_in_step_s: float | None = None,
) -> Step:
    """Block a scale-out within ``scale_out_s`` of the last scale-out, and a scale-in within ``scale_in_s``
    of the last scale-out or within ``scale_in_step_s`` (default ``scale_in_s``) of the last scale-in.
    Timestamps are service-wide, or per role with ``per_role``."""
    step_in_s = scale_in_s if scale_in_step_s is None else scale_in_step_s
    out: dict[Role, int] = {}
    notes: list[str] = []
    blocked_out = blocked_in = False
    for role in ROLES:
        cur, want = current.role(role), desired.role(role)
        got = want
        key_role = role if per_role else None
        last_out = _last(memory, "out", key_role)
        last_in = _last(memory, "in", key_role)
        if want > cur and last_out is not None and now_s - last_out < scale_out_s:
            got = cur
            blocked_out = True
            wait = scale_out_s - (now_s - last_out)
            notes.append(
                f"{role.value} scale-out {cur}→{want} blocked: last scale-out at {last_out:g} s, {wait:g} s left"
            )
        elif want < cur:
            waits = [(t, span) for t, span in ((last_out, scale_in_s), (last_in, step_in_s)) if t is not None]
            blocking = [(t, span - (now_s - t)) for t, span in waits if now_s - t < span]
            if blocking:
                last_any, wait = max(blocking, key=lambda b: b[1])
                got = cur
                blocked_in = True
                notes.append(
                    f"{role.value} scale-in {cur}→{want} blocked: last action at {last_any:g} s, {wait:g} s left"
                )
        out[role] = got
    if blocked_out:
        reason = Reason.COOLDOWN_OUT
    elif blocked_in:
        reason = Reason.COOLDOWN_IN
    else:
        reason = Reason.COOLDOWN_CLEAR
    spans = f"cooldowns {scale_out_s:g} s out, {scale_in_s:g} s in" + (" (per role)" if per_role else "")
    return Step("cooldown", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join([*notes, spans]))


def coordinate_pd(
    spec: ServiceSpec,
    current: PD,
    desired: PD,
    *,
    driver: Role = Role.DECODE,
    ratio: float | None = None,
) -> Step:
    """Size the follower role from the driver at the P/D ratio r (prefill per decode).

    Driven by decode: P = max(min_prefill, round(D·r)); driven by prefill: D = max(min_decode, round(P/r));
    at least 1 while the driver is above 0. The follower never moves against the driver: if the driver
    scales out the follower does not drop below its current count, and vice versa. When the driver
    holds, the follower is repaired towards the ratio.
    """
    r = spec.pd_ratio if ratio is None else ratio
    if r <= 0:
        raise ValueError(f"P/D ratio must be > 0, got {r}")
    lead = desired.role(driver)
    follower = Role.PREFILL if driver is Role.DECODE else Role.DECODE
    floor = spec.min_prefill if follower is Role.PREFILL else spec.min_decode
    raw = lead * r if follower is Role.PREFILL else lead / r
    target = max(floor, round_half_up(raw), 1 if lead > 0 else 0)
    cur_f = current.role(follower)
    direction = lead - current.role(driver)
    got, reason = target, Reason.PD_COORDINATED
    detail = f"{follower.value} = {target} from {driver.value} {lead} at r={r:g}"
    if direction > 0 and target < cur_f:
        got, reason = cur_f, Reason.PD_DIRECTION_KEPT
        detail += f"; kept at {cur_f}: {driver.value} scales out, {follower.value} must not scale in"
    elif direction < 0 and target > cur_f:
        got, reason = cur_f, Reason.PD_DIRECTION_KEPT
        detail += f"; kept at {cur_f}: {driver.value} scales in, {follower.value} must not scale out"
    result = desired.with_role(follower, got)
    return Step("pd-ratio", result.prefill, result.decode, reason, detail)


def hysteresis(
    current: PD,
    desired: PD,
    *,
    theta_out: float = THETA_OUT,
    theta_in: float = THETA_IN,
    driver: Role | None = Role.DECODE,
) -> Step:
    """R = desired/current of the driver role: move if R > 1+θ_out or R < 1−θ_in, else hold both roles.

    With ``driver=None`` each role is judged on its own R (independent pools).
    """
    judged = ROLES if driver is None else (driver,)
    verdicts: dict[Role, int] = {}
    notes: list[str] = []
    for role in judged:
        cur, want = current.role(role), desired.role(role)
        ratio = want / cur if cur > 0 else (math.inf if want > 0 else 1.0)
        verdict = 1 if ratio > 1 + theta_out else (-1 if ratio < 1 - theta_in else 0)
        verdicts[role] = verdict
        word = {1: "scale out", -1: "scale in", 0: "hold"}[verdict]
        notes.append(f"{role.value} R={want}/{cur}={ratio:.3g} → {word}")
    if driver is None:
        result = PD(
            desired.prefill if verdicts[Role.PREFILL] else current.prefill,
            desired.decode if verdicts[Role.DECODE] else current.decode,
        )
    else:
        result = desired if verdicts[driver] else current
    moves = set(verdicts.values())
    if 1 in moves:
        reason = Reason.HYSTERESIS_OUT
    elif -1 in moves:
        reason = Reason.HYSTERESIS_IN
    else:
        reason = Reason.HYSTERESIS_HOLD
    notes.append(f"band [{1 - theta_in:g}, {1 + theta_out:g}]")
    return Step("hysteresis", result.prefill, result.decode, reason, "; ".join(notes))


def stabilise_scale_in(
    now_s: float,
    history: Sequence[tuple[float, int, int]],
    current: PD,
    desired: PD,
    *,
    window_s: float = 300.0,
    lowest: bool = False,
) -> Step:
    """Scale-down stabilisation: a role scaling in goes only to the highest recommendation of the last
    ``window_s`` (``history`` holds ``(time_s, prefill, decode)`` raw recommendations, this one included),
    never above its current count. Scale-outs pass unchanged.

    With ``lowest`` (AIBrix's controller) a role scaling in goes to the *lowest* recommendation of the
    window instead: the window then speeds a scale-in up rather than holding it back."""
    recent = [(p, d) for t, p, d in history if now_s - t <= window_s]
    out: dict[Role, int] = {}
    notes: list[str] = []
    for role in ROLES:
        cur, want = current.role(role), desired.role(role)
        got = want
        if want < cur:
            seen = [p if role is Role.PREFILL else d for p, d in recent]
            if lowest:
                got = min(want, *seen) if seen else want
                word = "lowest"
            else:
                got = min(cur, max(want, max(seen, default=want)))
                word = "highest"
            if got != want:
                notes.append(f"{role.value} {want}→{got}: {word} recommendation of the last {window_s:g} s")
        out[role] = got
    reason = Reason.STABILISED if notes else Reason.NOT_STABILISED
    notes.append(f"{len(recent)} recommendation(s) in the window")
    return Step("stabilisation", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join(notes))
