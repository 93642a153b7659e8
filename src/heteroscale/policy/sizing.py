"""Sizing a role from a throughput signal, counting capacity per GPU type rather than instances.

With several shapes in a role, each has its own per-instance target ``m(shape)`` (tokens/s one
instance should carry, from the pressure test). The current fleet's target capacity is

    C = Σ count(shape) · m(shape)         over ready + starting instances (``RoleCounts.by_shape``)

and new instances are assumed to be of the role's preferred (first) shape, with target ``m_pref``.
For an observed throughput M the desired count is

    M ≥ C:  N_new = N + ceil((M − C) / m_pref)      keep every instance, add preferred ones
    M < C:  N_new = ceil(N · M / C)                  shrink the fleet, its shape mix unchanged

Both branches reduce to ``ceil(M / m)`` for a single shape (the paper's formula), and the result is
continuous at M = C. Which instances leave on a scale-in is the scheduler's choice, not the policy's.
Instances not covered by ``by_shape`` (or all of them, when it is empty) count as the preferred shape;
a shape missing from the targets counts at ``m_pref`` and the detail says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.errors import ConfigError
from heteroscale.policy.context import RoleCounts, ServiceCounts, Targets
from heteroscale.policy.normalize import ceil_count


@dataclass(frozen=True, slots=True)
class CapacitySizing:
    """The desired count of one role, with the capacity arithmetic that produced it."""

    count: int
    current: int
    capacity_tps: float  # target capacity of the current fleet (ready + starting), tokens/s
    preferred_tps: float  # target of one new (preferred-shape) instance, tokens/s
    detail: str


def fleet_capacity(
    counts: RoleCounts, shapes: Sequence[InstanceShape], per_instance: Sequence[tuple[str, float]]
) -> tuple[float, float, list[str]]:
    """(target capacity of the fleet, target of one preferred instance, notes) for one role."""
    if not shapes:
        raise ConfigError("a role without instance shapes cannot be sized")
    targets = dict(per_instance)
    preferred = shapes[0].key
    if preferred not in targets:
        raise ConfigError(f"no per-instance TPS target for preferred shape {preferred!r} (targets: {sorted(targets)})")
    m_pref = targets[preferred]
    if m_pref <= 0:
        raise ConfigError(f"per-instance TPS target for {preferred!r} must be > 0, got {m_pref}")
    notes: list[str] = []
    capacity = 0.0
    counted = 0
    for key, n in counts.by_shape:
        if n <= 0:
            continue
        m = targets.get(key)
        if m is None:
            notes.append(f"no target for {key}: counted at {m_pref:g} tok/s")
            m = m_pref
        capacity += n * m
        counted += n
    rest = max(0, counts.capacity - counted)
    capacity += rest * m_pref
    return capacity, m_pref, notes


def size_by_capacity(
    observed_tps: float,
    counts: RoleCounts,
    shapes: Sequence[InstanceShape],
    per_instance: Sequence[tuple[str, float]],
) -> CapacitySizing:
    """Desired instance count of one role for observed throughput ``observed_tps`` (see module doc)."""
    capacity, m_pref, notes = fleet_capacity(counts, shapes, per_instance)
    n = counts.capacity
    m_obs = max(0.0, observed_tps)
    if n == 0 or capacity <= 0:
        count = ceil_count(m_obs / m_pref)
        how = f"ceil({m_obs:.4g}/{m_pref:.4g})"
    elif m_obs >= capacity:
        count = n + ceil_count((m_obs - capacity) / m_pref)
        how = f"{n} + ceil(({m_obs:.4g} − {capacity:.4g})/{m_pref:.4g})"
    else:
        count = ceil_count(n * m_obs / capacity)
        how = f"ceil({n}·{m_obs:.4g}/{capacity:.4g})"
    detail = "; ".join([f"{how} = {count}", *notes])
    return CapacitySizing(count, n, capacity, m_pref, detail)


def size_role_by_tps(
    observed_tps: float, role: Role, counts: ServiceCounts, shapes: Sequence[InstanceShape], targets: Targets
) -> CapacitySizing:
    """``size_by_capacity`` for a role, with that role's per-instance TPS targets."""
    per_instance = targets.tps_per_instance(role)
    return size_by_capacity(observed_tps, counts.role(role), shapes, per_instance)


def proportional(base_count: int, value: float, target: float) -> int:
    """HPA-style proportional control: ceil(base · value / target)."""
    if target <= 0:
        raise ConfigError(f"a proportional target must be > 0, got {target}")
    return ceil_count(base_count * value / target)


def grow(current: int, fraction: float, min_step: int = 1) -> int:
    """current + ceil(current·fraction), at least ``min_step`` more."""
    return current + max(min_step, ceil_count(current * fraction))


def shrink(current: int, fraction: float, min_step: int = 1) -> int:
    """current − floor(current·fraction), at least ``min_step`` less, never below 0."""
    step = max(min_step, int(current * fraction + 1e-9))
    return max(0, current - step)
