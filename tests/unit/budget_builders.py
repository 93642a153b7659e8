"""Builders shared by the budget tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import AffinityLevel, ServiceSpec
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.scheduling.groups import ServiceDemand
from tests.unit.scheduling_builders import spec as scheduling_spec

P, D = Role.PREFILL, Role.DECODE
PENDING, STARTING, READY = Lifecycle.PENDING, Lifecycle.STARTING, Lifecycle.READY
DRAINING, GONE = Lifecycle.DRAINING, Lifecycle.GONE

# --- builders -------------------------------------------------------------------------------


def spec(
    name: str = "svc",
    priority: int = 0,
    prefill: Sequence[tuple[str, int]] = (("h800", 4),),
    decode: Sequence[tuple[str, int]] = (("h800", 4),),
    **overrides: Any,
) -> ServiceSpec:
    """The scheduling tests' service with a priority and cluster-wide affinity."""
    overrides = {"priority": priority, "affinity": AffinityLevel.CLUSTER, **overrides}
    return scheduling_spec(name, prefill, decode, **overrides)


def fleet(
    service: str, prefill: int, decode: int, sku: str = "h800", tp: int = 4, lifecycle: Lifecycle = READY
) -> list[InstanceInfo]:
    """``prefill`` + ``decode`` instances of one shape and lifecycle (ids unique per service, shape, state)."""
    return [
        InstanceInfo(
            id=f"{service}-{role.value}-{sku}-tp{tp}-{lifecycle.value}-{i}",
            service=service,
            role=role,
            shape=InstanceShape(role, sku, tp),
            dg=f"{service}-dg0",
            node="n0",
            lifecycle=lifecycle,
            in_discovery=lifecycle is READY,
            launched_at_s=0.0,
        )
        for role, count in ((P, prefill), (D, decode))
        for i in range(count)
    ]


def counts(demands: Sequence[ServiceDemand]) -> dict[str, tuple[int, int]]:
    return {d.spec.name: (d.desired_prefill, d.desired_decode) for d in demands}


CHAT = spec("chat", priority=10)
BATCH = spec("batch", priority=1)
R3 = spec("r3", pd_ratio=3.0)
ON_H20 = spec("batch", priority=1, prefill=(("h20", 4),), decode=(("h20", 4),))
BIG = spec("big", priority=10, prefill=(("h800", 8),), decode=(("h800", 8),))
SMALL = spec("small", priority=1, prefill=(("h800", 2),), decode=(("h800", 2),))
MIN3 = spec("svc", min_prefill=3, min_decode=3)
