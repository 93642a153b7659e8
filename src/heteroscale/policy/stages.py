"""The stages the policy wrapper runs, each a frozen dataclass of its parameters (:mod:`.wrapper`).

A policy's :class:`~heteroscale.policy.wrapper.Shaping` lists the stages it takes, in order, with its
own settings (HeteroScale its hysteresis, cooldowns and damping; each peer its upstream defaults). The
step functions behind the stages live in :mod:`.normalize` (shared ones) and here (the tolerance,
rate-limit, ratio-band and interval rules the peers use); every one returns a Step with a Reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.policy.normalize import PD, ROLES, Stability, ceil_count
from heteroscale.policy.safety import DEFAULT_TIERS, LatencyTier


@dataclass(frozen=True, slots=True)
class Stabilise:
    """Scale-down stabilisation: a role scaling in goes no lower than the highest recommendation that
    reached this stage within ``window_s`` (this one included; the stage records it)."""

    window_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Hysteresis:
    """R = desired/current of the driver (each role's own with ``driver=None``): move only outside
    [1 − θ_in, 1 + θ_out]."""

    theta_out: float = 0.1
    theta_in: float = 0.1
    driver: Role | None = Role.DECODE


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Per role, keep the current count while the metric's usage ratio (``Raw.usage``, metric ÷ target)
    is within [1 − down, 1 + up]. ``style`` only words the step (``"hpa"`` or ``"apa"``)."""

    up: float = 0.1
    down: float = 0.1
    style: str = "hpa"


@dataclass(frozen=True, slots=True)
class Coordinate:
    """Size the follower role from ``driver`` at the P/D ratio (``Raw.ratio``, else the service's)."""

    driver: Role = Role.DECODE


@dataclass(frozen=True, slots=True)
class LatencyFloor:
    """HeteroScale's latency safety net (:mod:`.safety`): scale-out-only floors from latency tiers."""

    tiers: tuple[LatencyTier, ...] = DEFAULT_TIERS


@dataclass(frozen=True, slots=True)
class Cooldown:
    """No scale-out within ``scale_out_s`` of the last scale-out, no scale-in within ``scale_in_s`` of any
    action; service-wide clocks, or one per role with ``per_role``."""

    scale_out_s: float = 180.0
    scale_in_s: float = 600.0
    per_role: bool = False


@dataclass(frozen=True, slots=True)
class Damping:
    """One step moves a role by at most +max_up / −max_down of its count, and by ``min_step`` at least."""

    max_up_fraction: float = 1.0
    max_down_fraction: float = 0.25
    min_step: int = 1


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Kubernetes HPA's scale-up rule: a role grows to at most max(factor × current, current + pods)."""

    factor: float = 2.0
    pods: int = 4


@dataclass(frozen=True, slots=True)
class ApaRateLimit:
    """AIBrix APA's rates: a step grows a role at most ×up_rate and shrinks it at most ×1/down_rate."""

    up_rate: float = 2.0
    down_rate: float = 2.0


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


@dataclass(frozen=True, slots=True)
class Bounds:
    """The service's [min, max] per role."""


Stage = (
    Stabilise
    | Hysteresis
    | Tolerance
    | Coordinate
    | LatencyFloor
    | Cooldown
    | Damping
    | RateLimit
    | ApaRateLimit
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


def limit_stages(stability: Stability, *, per_role: bool = False, damping: bool = True) -> tuple[Stage, ...]:
    """Cooldown, damping (optional) and bounds: the stages that restrain a move."""
    cool = Cooldown(stability.scale_out_cooldown_s, stability.scale_in_cooldown_s, per_role)
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
    if stage.style == "apa":
        notes = [
            f"{r.value} r={ratios[r]:.3g} within band"
            if within[r]
            else f"{r.value} r={ratios[r]:.3g} outside band → {desired.role(r)}"
            for r in ROLES
        ]
        moved = any(out.role(role) != current.role(role) for role in ROLES)
        reason = Reason.OUTSIDE_TOLERANCE if moved else Reason.WITHIN_TOLERANCE
    else:
        notes = [f"{r.value} util/target={ratios[r]:.3g} {'within' if within[r] else 'outside'}" for r in ROLES]
        reason = Reason.WITHIN_TOLERANCE if all(within.values()) else Reason.OUTSIDE_TOLERANCE
    return Step("tolerance", out.prefill, out.decode, reason, "; ".join(notes))


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


def apa_rate_limit(current: PD, desired: PD, up_rate: float = 2.0, down_rate: float = 2.0) -> Step:
    """A role that moves goes to at most ×up_rate and at least ×1/down_rate of its current count."""
    out: dict[Role, int] = {}
    notes: list[str] = []
    for role in ROLES:
        cur, want = current.role(role), desired.role(role)
        lo = ceil_count(cur / down_rate)
        hi = max(1, int(cur * up_rate + 1e-9))
        out[role] = min(max(want, lo), hi) if want != cur else cur
        if out[role] != want:
            notes.append(f"{role.value} {want} limited to {out[role]}")
    notes.append(f"per step ≤ ×{up_rate:g}, ≥ ×1/{down_rate:g}")
    reason = Reason.RATE_LIMITED if len(notes) > 1 else Reason.WITHIN_STEP_LIMIT
    return Step("rate-limit", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join(notes))


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


def interval_step(now_s: float, last_s: float | None, current: PD, desired: PD, every_s: float, note: str) -> Step:
    """``desired`` when ``every_s`` has passed since the last adjustment (or none yet), else ``current``."""
    if last_s is not None and now_s - last_s < every_s:
        why = f"last adjustment at {last_s:g} s; next in {every_s - (now_s - last_s):g} s"
        return Step("interval", current.prefill, current.decode, Reason.ADJUSTMENT_INTERVAL, why)
    why = f"every {every_s:g} s" + (f"; {note}" if note else "")
    return Step("interval", desired.prefill, desired.decode, Reason.ADJUSTED, why)
