"""Ratio maintenance at Ready time: discovery gating and soft scale-in (HETEROSCALE.md §3, §4).

*Discovery gating*: instances become Ready out of order, so when the Ready P:D ratio of a service
deviates from its target beyond a tolerance, the surplus role's newest instances are held out of
service discovery until the other role catches up, then restored.

A policy that holds fixed counts (``fixed``, ``static``) is never gated: the split is the user's, so
a static 1P/2D cluster serves with both decode instances (:func:`ungate_all` restores any instance
held before, e.g. by a controller restart).

*Soft scale-in*: an instance chosen for removal first leaves discovery and keeps running for an
observation window; if the SLO degrades meanwhile it comes back at once (no cold start), otherwise it
is drained and removed.

Both are pure functions of the service's instances and the controller's bookkeeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.plan import DiscoveryChange, Remove
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import InstanceInfo, Lifecycle, ScaleInMode


@dataclass(frozen=True, slots=True)
class ReadinessSettings:
    ratio_tolerance: float = 0.25  # |Ready P − r·Ready D| ÷ (r·Ready D) beyond this → gate the surplus
    soft_scale_in_s: float = 0.0  # observation window of a soft scale-in; 0 = remove at once
    drain_grace_s: float = 600.0
    gating: bool = True  # off where the router ignores our discovery label (the scale and metrics modes)


@dataclass(slots=True)
class ServiceBook:
    """What the controller remembers per service: soft-removed instances (since when) and gated ones."""

    soft_removed: dict[str, float] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)


def slo_degraded(spec: ServiceSpec, observation: Observation | None) -> str | None:
    """Why the service's latency is above its SLO (p90 over the window), or None."""
    if observation is None:
        return None
    if observation.ttft_p90_s is not None and observation.ttft_p90_s > spec.slo.ttft_s:
        return f"TTFT p90 {observation.ttft_p90_s:.3f} s > SLO {spec.slo.ttft_s} s"
    if observation.tbt_p90_s is not None and observation.tbt_p90_s > spec.slo.tbt_s:
        return f"TBT p90 {observation.tbt_p90_s:.4f} s > SLO {spec.slo.tbt_s} s"
    return None


def soft_scale_in_step(
    book: ServiceBook, instances: dict[str, InstanceInfo], now_s: float, degraded: str | None, st: ReadinessSettings
) -> tuple[list[DiscoveryChange], list[Remove]]:
    """Restore every soft-removed instance on SLO degradation, else remove those whose window ended."""
    restores: list[DiscoveryChange] = []
    removals: list[Remove] = []
    for inst_id, since in sorted(book.soft_removed.items()):
        inst = instances.get(inst_id)
        if inst is None or inst.lifecycle is not Lifecycle.READY:
            del book.soft_removed[inst_id]
            continue
        if degraded is not None:
            restores.append(DiscoveryChange(inst_id, True, f"soft scale-in reverted: {degraded}"))
            del book.soft_removed[inst_id]
        elif now_s - since >= st.soft_scale_in_s:
            removals.append(Remove(inst_id, ScaleInMode.DRAIN, st.drain_grace_s))
            del book.soft_removed[inst_id]
    return restores, removals


def restore_for_scale_out(book: ServiceBook, role: Role, wanted: int, instances: dict[str, InstanceInfo]) -> list[str]:
    """Soft-removed instances of ``role`` to bring back instead of launching (newest removal first)."""
    ids = [i for i, _ in sorted(book.soft_removed.items(), key=lambda kv: -kv[1]) if instances[i].role is role]
    chosen = ids[: max(0, wanted)]
    for inst_id in chosen:
        del book.soft_removed[inst_id]
    return chosen


def gate_discovery(
    spec: ServiceSpec,
    book: ServiceBook,
    instances: dict[str, InstanceInfo],
    st: ReadinessSettings,
    ratio: float | None = None,
) -> list[DiscoveryChange]:
    """Hold the surplus role's newest Ready instances out of discovery while the Ready ratio is off.

    ``ratio``: the split the decision asked for (the controller passes it), else the service's ratio.

    Counts Ready instances that are not soft-removed; gated instances count as Ready (they are the
    ones that may come back). Returns the discovery changes to make.
    """
    ready = {
        role: sorted(
            (i for i in instances.values() if i.role is role and i.lifecycle is Lifecycle.READY
             and i.id not in book.soft_removed),
            key=lambda i: (i.ready_at_s or 0.0, i.id),
        )
        for role in Role
    }  # fmt: skip
    r = spec.pd_ratio if ratio is None else ratio
    n_p, n_d = len(ready[Role.PREFILL]), len(ready[Role.DECODE])
    allowed = {Role.PREFILL: n_p, Role.DECODE: n_d}
    if n_p and n_d:
        # the most of each role the other supports within the tolerance (at least one of each)
        allowed[Role.PREFILL] = min(n_p, max(1, math.floor(r * n_d * (1 + st.ratio_tolerance) + 1e-9)))
        allowed[Role.DECODE] = min(n_d, max(1, math.floor(n_p / r * (1 + st.ratio_tolerance) + 1e-9)))
    changes: list[DiscoveryChange] = []
    for role in Role:
        keep = ready[role][: allowed[role]]
        hold = ready[role][allowed[role] :]
        for inst in keep:
            if inst.id in book.gated or not inst.in_discovery:
                book.gated.discard(inst.id)
                changes.append(DiscoveryChange(inst.id, True, "ready P:D ratio within tolerance"))
        for inst in hold:
            if inst.id not in book.gated or inst.in_discovery:
                book.gated.add(inst.id)
                changes.append(
                    DiscoveryChange(
                        inst.id,
                        False,
                        f"gated: ready {n_p}P/{n_d}D deviates from ratio {r} beyond {st.ratio_tolerance:.0%}",
                    )
                )
    return changes


def ungate_all(book: ServiceBook, instances: dict[str, InstanceInfo]) -> list[DiscoveryChange]:
    """Put every gated Ready instance back into discovery (a service whose counts are not gated)."""
    changes: list[DiscoveryChange] = []
    for inst in sorted(instances.values(), key=lambda i: i.id):
        if inst.lifecycle is not Lifecycle.READY or inst.id in book.soft_removed:
            continue
        if inst.id in book.gated or not inst.in_discovery:
            changes.append(DiscoveryChange(inst.id, True, "fixed counts: not gated on the ready P:D ratio"))
    book.gated.clear()
    return changes
