"""Builders shared by the budget tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import AffinityLevel, ServiceSpec, Slo
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.scheduling.groups import ServiceDemand

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
    base: dict[str, Any] = {
        "name": name,
        "model": "llama-3.1-70b",
        "prefill_shapes": tuple(InstanceShape(P, sku, tp) for sku, tp in prefill),
        "decode_shapes": tuple(InstanceShape(D, sku, tp) for sku, tp in decode),
        "pd_ratio": 1.0,
        "slo": Slo(ttft_s=2.0, tbt_s=0.1),
        "priority": priority,
        "affinity": AffinityLevel.CLUSTER,
    }
    base.update(overrides)
    return ServiceSpec(**base)


def demand(s: ServiceSpec, prefill: int, decode: int, **kw: Any) -> ServiceDemand:
    return ServiceDemand(spec=s, desired_prefill=prefill, desired_decode=decode, **kw)


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
