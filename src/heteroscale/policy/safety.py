"""HeteroScale's latency safety net: a scale-out-only floor from the worst latency tier reached.

Multi-tier thresholds trigger fixed steps (HETEROSCALE.md §4): a TBT or TTFT p90 at or above 1.1× its
SLO grows both pools by +10 % of their ready count (ceil, at least +1), at or above 1.5× by +20 %.
Starting instances count: a pool whose capacity already covers the bump is not grown again — unless
that capacity cannot drain the pool's backlog in time. With targets and ``drain_s``, each pool's floor is
also the count whose target request rate serves the arrivals and clears its queue within ``drain_s``
(:func:`drain_floor`); a pool short of it is grown to it (``latency-backlog-not-drained``). A breach of
TTFT alone whose prefill queue is already shrinking (``draining``) is a lagging p90: where both pools'
backlogs can be estimated, that floor replaces the tier's fixed step, so the lag adds nothing. A queue
that grows keeps the step: bursts that recur need the headroom. While a tier
is reached, neither pool scales in, and the wrapper lets no cooldown hold what the floors add. The wrapper runs
it as its ``latency`` stage (:class:`heteroscale.policy.stages.LatencyFloor`).
"""

from __future__ import annotations

from dataclasses import dataclass

from heteroscale.domain.decision import Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.service import ServiceSpec
from heteroscale.policy.context import ServiceCounts, Targets
from heteroscale.policy.demand import queue_of, rate_per_instance
from heteroscale.policy.normalize import PD, ROLES, ceil_count, current_counts
from heteroscale.policy.sizing import grow


@dataclass(frozen=True, slots=True)
class LatencyTier:
    """A latency p90 at or above ``slo_factor`` × its SLO grows both pools by ``step_fraction``."""

    slo_factor: float
    step_fraction: float

    def __post_init__(self) -> None:
        if self.slo_factor <= 0 or self.step_fraction <= 0:
            raise ValueError(f"latency tier needs slo_factor > 0 and step_fraction > 0, got {self}")


DEFAULT_TIERS = (LatencyTier(1.1, 0.10), LatencyTier(1.5, 0.20))


def _ratio(value_s: float | None, slo_s: float) -> float:
    return 0.0 if value_s is None or slo_s <= 0 else value_s / slo_s


def latency_breach(observation: Observation, spec: ServiceSpec) -> tuple[float, str]:
    """The worst latency p90 / SLO ratio (0 when no latency is measured) and a description."""
    worst, parts = 0.0, []
    for label, value, slo in (
        ("TBT p90", observation.tbt_p90_s, spec.slo.tbt_s),
        ("TTFT p90", observation.ttft_p90_s, spec.slo.ttft_s),
    ):
        if value is None or slo <= 0:
            parts.append(f"{label} not measured")
            continue
        worst = max(worst, value / slo)
        parts.append(f"{label} {value:.4g} s = {value / slo:.2f}× SLO {slo:g} s")
    return worst, ", ".join(parts)


def drain_floor(
    observation: Observation, targets: Targets, role: Role, capacity: int, drain_s: float
) -> tuple[int | None, str]:
    """The instances of ``role`` whose target request rate μ serves the arrivals λ and clears the queue Q
    within ``drain_s``: ceil((λ + Q/drain_s)/μ), and a note on whether ``capacity`` (ready + starting)
    does (Q/(capacity·μ − λ) ≤ drain_s). None when λ, Q or μ is not known."""
    arrivals, queue = observation.requests_per_s, queue_of(observation, role)
    mu = rate_per_instance(observation, targets, role)
    if arrivals is None or queue is None or mu <= 0:
        return None, f"{role.value} backlog not estimated (arrivals, queue or rate target missing)"
    need = ceil_count((arrivals + queue / drain_s) / mu)
    spare = capacity * mu - arrivals
    drain = f"{queue / spare:.3g} s" if spare > 0 else "never"
    note = f"{role.value} queue {queue:.3g} at λ {arrivals:.3g} req/s drains in {drain} on {capacity}×{mu:.3g} req/s"
    return need, f"{note} (≤ {drain_s:g} s needs {need})"


def latency_safety_net(
    observation: Observation,
    spec: ServiceSpec,
    counts: ServiceCounts,
    desired: PD,
    tiers: tuple[LatencyTier, ...] = DEFAULT_TIERS,
    *,
    targets: Targets | None = None,
    drain_s: float | None = None,
    draining: bool = False,
) -> Step:
    """Scale-out-only floor from the worst latency tier reached (module doc).

    The floor of a role is its ready count grown by the tier's fraction (ceil, at least +1) and, with
    ``targets`` and ``drain_s``, at least the count that drains its backlog in time (:func:`drain_floor`);
    a role whose capacity (ready + starting) already reaches it is left alone. While a tier is reached
    no role scales in, so P and D never move apart and a breach never removes capacity.
    """
    worst, seen = latency_breach(observation, spec)
    reached = [tier for tier in tiers if worst >= tier.slo_factor - 1e-9]  # at or above, float noise aside
    if not reached:
        return Step("latency", desired.prefill, desired.decode, Reason.LATENCY_OK, seen)
    tier = max(reached, key=lambda t: t.slo_factor)
    current = current_counts(counts)
    out = {role: desired.role(role) for role in ROLES}
    notes = [seen, f"tier ≥{tier.slo_factor:g}× → +{tier.step_fraction:.0%} of ready"]
    drains: dict[Role, int | None] = dict.fromkeys(ROLES)
    if targets is not None and drain_s is not None:
        for role in ROLES:
            drains[role], note = drain_floor(observation, targets, role, current.role(role), drain_s)
            notes.append(note)
    ttft_only = _ratio(observation.tbt_p90_s, spec.slo.tbt_s) < min(t.slo_factor for t in tiers) - 1e-9
    by_drain = draining and ttft_only and all(drains[role] is not None for role in ROLES)
    if by_drain:
        notes.append("TTFT alone breaches, its queue shrinking: each pool's floor is what drains it in time")
    covered = 0
    backlog = False
    for role in ROLES:
        step_need = grow(counts.role(role).ready, tier.step_fraction)
        drained = drains[role]
        need = step_need if drained is None else (drained if by_drain else max(step_need, drained))
        if drained is not None and need == drained and drained > max(step_need, current.role(role)):
            backlog = True  # the tier's step or starting capacity would not clear it
        if current.role(role) >= need:
            covered += 1
            notes.append(f"{role.value} capacity {current.role(role)} already ≥ {need} (starting instances count)")
        elif need > out[role]:
            notes.append(f"{role.value} {out[role]}→{need}")
            out[role] = need
        else:
            notes.append(f"{role.value} {out[role]} already ≥ {need}")
    held = [role.value for role in ROLES if out[role] < current.role(role)]
    if held:
        notes.append(f"no scale-in of {', '.join(held)} while latency is at a tier")
    for role in ROLES:
        out[role] = max(out[role], current.role(role))
    if covered == len(ROLES):
        reason = Reason.LATENCY_COVERED
    elif backlog:
        reason = Reason.LATENCY_BACKLOG
    elif tier.slo_factor == min(t.slo_factor for t in tiers):
        reason = Reason.LATENCY_MODERATE
    else:
        reason = Reason.LATENCY_SEVERE
    return Step("latency", out[Role.PREFILL], out[Role.DECODE], reason, "; ".join(notes))
