"""The stages the policy wrapper runs, each a frozen dataclass of its parameters (:mod:`.wrapper`).

A policy's :class:`~heteroscale.policy.wrapper.Shaping` lists the stages it takes, in order, with its
own settings (HeteroScale its hysteresis, cooldowns and damping; each peer its upstream defaults). The
step functions behind the stages live in :mod:`.normalize` (shared ones) and here (the tolerance,
rate-limit, panic, ratio-band and interval rules the peers use); every one returns a Step with a
Reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.policy.defaults import SCALE_IN_COOLDOWN_S, SCALE_OUT_COOLDOWN_S, THETA_IN, THETA_OUT
from heteroscale.policy.normalize import PD, ROLES, Stability, ceil_count
from heteroscale.policy.safety import DEFAULT_TIERS, LatencyTier


@dataclass(frozen=True, slots=True)
class Stabilise:
    """Scale-down stabilisation: a role scaling in goes no lower than the highest recommendation that
    reached this stage within ``window_s`` (this one included; the stage records it). With ``lowest``
    it goes to the lowest one instead (AIBrix's controller)."""

    window_s: float = 300.0
    lowest: bool = False


@dataclass(frozen=True, slots=True)
class Hysteresis:
    """R = desired/current of the driver (each role's own with ``driver=None``): move only outside
    [1 − θ_in, 1 + θ_out]."""

    theta_out: float = THETA_OUT
    theta_in: float = THETA_IN
    driver: Role | None = Role.DECODE


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Per role, keep the current count while the metric's usage ratio (``Raw.usage``, metric ÷ target)
    is within [1 − down, 1 + up] (Kubernetes HPA's tolerance; AIBrix's fluctuation tolerances)."""

    up: float = 0.1
    down: float = 0.1


@dataclass(frozen=True, slots=True)
class Coordinate:
    """Size the follower role from ``driver`` at the P/D ratio (``Raw.ratio``, else the service's)."""

    driver: Role = Role.DECODE


@dataclass(frozen=True, slots=True)
class LatencyFloor:
    """HeteroScale's latency safety net (:mod:`.safety`): scale-out-only floors from latency tiers, at
    least the count that drains a pool's backlog within ``drain_s`` (None: the tiers' steps only). A later
    :class:`Cooldown` never holds the scale-out those floors add."""

    tiers: tuple[LatencyTier, ...] = DEFAULT_TIERS
    drain_s: float | None = 60.0


@dataclass(frozen=True, slots=True)
class Cooldown:
    """No scale-out within ``scale_out_s`` of the last scale-out, no scale-in within ``scale_in_s`` of any
    action; service-wide clocks, or one per role with ``per_role``. The scale-out an earlier
    :class:`LatencyFloor` adds (roles it raises) always passes (``cooldown-passed-latency``); with
    ``passes_demand``, so does a scale-out the policy sized from demand while its signal is censored
    (``cooldown-passed-demand``); with ``passes_rising_latency`` = f, so does any recommended scale-out
    while TTFT p90 or TBT p90 is above f × its SLO (``cooldown-passed-latency-rising``)."""

    scale_out_s: float = SCALE_OUT_COOLDOWN_S
    scale_in_s: float = SCALE_IN_COOLDOWN_S
    per_role: bool = False
    passes_demand: bool = False
    scale_in_step_s: float | None = None  # after a scale-in, before the next (None: scale_in_s)
    passes_rising_latency: float | None = None


@dataclass(frozen=True, slots=True)
class WarmUp:
    """No scale-in until the policy has observed for max(the observation window
    (``PolicyContext.window_s``), ``span_s``) since start-up or a restart: the time of its first usable
    observation is kept in memory under ``key``, which a journal restore does not carry, so a restarted
    controller waits again. HeteroScale sets ``span_s`` to its scale-in stabilisation window, whose
    maximum over a partly filled window is not yet a stable recommendation."""

    span_s: float = 0.0
    key: str = "warmup.first_observation_s"


@dataclass(frozen=True, slots=True)
class Damping:
    """One step moves a role by at most +max_up / −max_down of its count, and by ``min_step`` at least."""

    max_up_fraction: float = 1.0
    max_down_fraction: float = 0.25
    min_step: int = 1


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Rate rules of the Kubernetes-style peers: a step grows a role to at most
    max(ceil(up_factor × current), current + up_pods) and shrinks it to no less than
    floor(down_factor × current) (0: no limit). Roles in panic mode pass (:class:`Panic`)."""

    up_factor: float = 2.0
    up_pods: int = 4
    down_factor: float = 0.0


@dataclass(frozen=True, slots=True)
class Panic:
    """Kthena's panic mode: a recommendation at or above ``threshold`` × current puts the role in panic
    for ``hold_s``; in panic the role never scales in and grows to at most ``max_factor`` × current,
    and the later stabilisation and rate stages let it pass."""

    threshold: float = 2.0
    hold_s: float = 60.0
    max_factor: float = 11.0


@dataclass(frozen=True, slots=True)
class RatioBand:
    """Keep P/D within [min_factor·r, max_factor·r] by scaling the short side up."""

    min_factor: float = 0.75
    max_factor: float = 1.25


@dataclass(frozen=True, slots=True)
class Interval:
    """Act at most every ``every_s`` seconds; in between hold at the current counts. ``key`` names the
    memory value that keeps the time of the last adjustment."""

    every_s: float = 180.0
    key: str = "interval.last_adjust_s"
    first_adjusts: bool = True  # False: the first call starts the clock (a planner adjusts one interval in)


@dataclass(frozen=True, slots=True)
class Bounds:
    """The service's [min, max] per role."""


Stage = (
    Stabilise
    | Hysteresis
    | Tolerance
    | Coordinate
    | LatencyFloor
    | WarmUp
    | Cooldown
    | Damping
    | RateLimit
    | Panic
    | RatioBand
    | Interval
    | Bounds
)


def stability_stages(stability: Stability, driver: Role | None) -> tuple[Stage, ...]:
    """Stabilisation, hysteresis on the driver's R (each role's own with ``driver=None``) and — with a
    driver — the follower sized at the P/D ratio: the stages that decide whether and where to move."""
    direction: tuple[Stage, ...] = (
        Stabilise(stability.scale_in_window_s),
        Hysteresis(stability.theta_out, stability.theta_in, driver),
    )
    return direction if driver is None else (*direction, Coordinate(driver))


def warm_up_step(now_s: float, first_s: float, window_s: float, current: PD, desired: PD) -> Step:
    """:class:`WarmUp`: ``desired`` with no role below ``current`` until ``window_s`` has passed since
    ``first_s``, the first usable observation since start-up or a restart."""
    seen_s = now_s - first_s
    if seen_s >= window_s - 1e-9:
        return Step("warm-up", desired.prefill, desired.decode, Reason.WINDOW_FULL, f"observed for {seen_s:g} s")
    kept = PD(max(desired.prefill, current.prefill), max(desired.decode, current.decode))
    why = f"observed for {seen_s:g} s of the {window_s:g} s window since start-up or a restart"
    if kept != desired:
        why += f": scale-in to {desired.prefill}P/{desired.decode}D waits; kept at {kept.prefill}P/{kept.decode}D"
    return Step("warm-up", kept.prefill, kept.decode, Reason.WARMING_UP, why)


def limit_stages(
    stability: Stability,
    *,
    per_role: bool = False,
    damping: bool = True,
    passes_demand: bool = False,
    passes_rising_latency: float | None = None,
) -> tuple[Stage, ...]:
    """Cooldown, damping (optional) and bounds: the stages that restrain a move."""
    cool = Cooldown(
        stability.scale_out_cooldown_s,
        stability.scale_in_cooldown_s,
        per_role,
        passes_demand,
        stability.scale_in_step_s,
        passes_rising_latency,
    )
    if not damping:
        return (cool, Bounds())
    return (cool, Damping(stability.max_up_fraction, stability.max_down_fraction, stability.min_step), Bounds())


# --- the peers' step rules ---------------------------------------------------------------------------


def tolerance_step(current: PD, desired: PD, usage: tuple[float, float], stage: Tolerance) -> Step:
    """Per role: ``desired`` when its usage ratio is outside [1 − down, 1 + up], else ``current``."""
    ratios = {Role.PREFILL: usage[0], Role.DECODE: usage[1]}
    within = {role: 1 - stage.down <= ratios[role] <= 1 + stage.up for role in ROLES}
    out = PD(
        current.prefill if within[Role.PREFILL] else desired.prefill,
        current.decode if within[Role.DECODE] else desired.decode,
    )
    notes = [f"{r.value} metric/target={ratios[r]:.3g} {'within' if within[r] else 'outside'}" for r in ROLES]
    notes.append(f"tolerance [{1 - stage.down:g}, {1 + stage.up:g}]")
    reason = Reason.WITHIN_TOLERANCE if all(within.values()) else Reason.OUTSIDE_TOLERANCE
    return Step("tolerance", out.prefill, out.decode, reason, "; ".join(notes))


def rate_limit(current: PD, desired: PD, stage: RateLimit, exempt: frozenset[Role] = frozenset()) -> Step:
    """The :class:`RateLimit` rules; roles in ``exempt`` (in panic mode) pass unchanged."""
    out: dict[Role, int] = {}
    notes: list[str] = []
    for role in ROLES:
        cur, want = current.role(role), desired.role(role)
        got = want
        if role in exempt:
            notes.append(f"{role.value} in panic mode: not rate-limited")
        elif want > cur:
            got = min(want, max(ceil_count(cur * stage.up_factor), cur + stage.up_pods))
        elif want < cur:
            got = max(want, math.floor(cur * stage.down_factor + 1e-9))
        if got != want:
            notes.append(f"{role.value} {cur}→{want} limited to {got}")
        out[role] = got
    reason = Reason.RATE_LIMITED if any(out[r] != desired.role(r) for r in ROLES) else Reason.WITHIN_STEP_LIMIT
    rule = f"scale-up ≤ max({stage.up_factor:g}×current, current+{stage.up_pods})"
    rule += f", scale-down ≥ {stage.down_factor:g}×current" if stage.down_factor > 0 else ", scale-down unlimited"
    notes.append(rule)
    return Step("rate-limit", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join(notes))


def panic_step(
    now_s: float, until_s: dict[Role, float], current: PD, desired: PD, stage: Panic
) -> tuple[Step, dict[Role, float]]:
    """Kthena's panic mode per role (:class:`Panic`): the step, and each role's panic end (updated)."""
    ends = dict(until_s)
    out: dict[Role, int] = {}
    notes: list[str] = []
    for role in ROLES:
        cur, want = current.role(role), desired.role(role)
        triggered = want > cur and want >= stage.threshold * cur
        if triggered:
            ends[role] = now_s + stage.hold_s
        if now_s > ends.get(role, -math.inf):
            out[role] = want
            continue
        cap = math.floor(cur * stage.max_factor + 1e-9) if cur > 0 else want  # no past size to scale from
        out[role] = max(min(want, cap), cur)
        why = "enters panic" if triggered else "in panic"
        notes.append(f"{role.value} {cur}→{want} {why} until {ends[role]:g} s → {out[role]}")
    reason = Reason.PANIC if notes else Reason.STABLE_MODE
    notes.append(f"panic at ≥{stage.threshold:g}× current for {stage.hold_s:g} s: no scale-in, ≤{stage.max_factor:g}×")
    return Step("panic", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join(notes)), ends


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


def interval_due(now_s: float, last_s: float | None, stage: Interval) -> bool:
    """Whether an :class:`Interval` stage adjusts at ``now_s`` (``last_s``: its last adjustment or start)."""
    if last_s is None:
        return stage.first_adjusts
    return now_s - last_s >= stage.every_s


def interval_step(now_s: float, last_s: float | None, current: PD, desired: PD, stage: Interval, note: str) -> Step:
    """``desired`` when the interval is due (:func:`interval_due`), else ``current``."""
    if interval_due(now_s, last_s, stage):
        why = f"every {stage.every_s:g} s" + (f"; {note}" if note else "")
        return Step("interval", desired.prefill, desired.decode, Reason.ADJUSTED, why)
    if last_s is None:
        why = f"the interval starts now; first adjustment at {now_s + stage.every_s:g} s"
    else:
        why = f"last adjustment at {last_s:g} s; next in {stage.every_s - (now_s - last_s):g} s"
    return Step("interval", current.prefill, current.decode, Reason.ADJUSTMENT_INTERVAL, why)
