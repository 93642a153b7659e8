"""Builders shared by the scheduling tests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.plan import PlacementPlan
from heteroscale.domain.service import AffinityLevel, ServiceSpec
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle
from heteroscale.domain.topology import NodeSpec, SubgroupPriority, Topology
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.groups import ServiceDemand
from heteroscale.scheduling.subgroups import derive_subgroups, subgroup_of_s1
from tests.support import builders

LOW, MEDIUM, HIGH = SubgroupPriority.LOW, SubgroupPriority.MEDIUM, SubgroupPriority.HIGH
P, D = Role.PREFILL, Role.DECODE
AFFINITY_DEPTH = {AffinityLevel.S1: 5, AffinityLevel.S2: 4, AffinityLevel.CLUSTER: 3}

# --- builders -------------------------------------------------------------------------------


def pod(
    s2: str, s1: str, skus: str | Sequence[str], count: int = 1, free: int | None = None, lc: str = "lc"
) -> list[NodeSpec]:
    """``count`` 8-GPU nodes in mini-pod ``s1`` of big-pod ``s2``; a list of SKUs alternates them."""
    kinds = [skus] if isinstance(skus, str) else list(skus)
    return [
        NodeSpec(
            path=("vdc", "pc", lc, s2, s1, f"{s1}-s0", f"{s1}-n{i}"),
            sku=kinds[i % len(kinds)],
            gpus_total=8,
            gpus_free=8 if free is None else free,
        )
        for i in range(count)
    ]


def topo(*groups: list[NodeSpec], overrides: Iterable[tuple[tuple[str, ...], SubgroupPriority]] = ()) -> Topology:
    return Topology(name="t", nodes=tuple(n for g in groups for n in g), subgroup_priority=tuple(overrides))


def spec(
    name: str = "svc",
    prefill: Sequence[tuple[str, int]] = (("h800", 4),),
    decode: Sequence[tuple[str, int]] = (("h800", 4),),
    **overrides: Any,
) -> ServiceSpec:
    """A llama-3.1-70b service on these (sku, tp) shapes, S2 affinity (``builders.service`` otherwise)."""
    shapes = {
        "prefill_shapes": tuple(InstanceShape(P, s, tp) for s, tp in prefill),
        "decode_shapes": tuple(InstanceShape(D, s, tp) for s, tp in decode),
    }
    return builders.service(**{"name": name, "affinity": AffinityLevel.S2, **shapes, **overrides})


def demand(s: ServiceSpec, prefill: int, decode: int, **kw: Any) -> ServiceDemand:
    return ServiceDemand(spec=s, desired_prefill=prefill, desired_decode=decode, **kw)


def inst(
    iid: str,
    role: Role,
    node: str,
    dg: str = "svc-dg0",
    service: str = "svc",
    sku: str = "h800",
    tp: int = 4,
    lifecycle: Lifecycle = Lifecycle.READY,
    launched_at_s: float = 0.0,
) -> InstanceInfo:
    return InstanceInfo(
        id=iid,
        service=service,
        role=role,
        shape=InstanceShape(role, sku, tp),
        dg=dg,
        node=node,
        lifecycle=lifecycle,
        in_discovery=lifecycle is Lifecycle.READY,
        launched_at_s=launched_at_s,
    )


def run(demands: Sequence[ServiceDemand], topology: Topology, instances: Sequence[InstanceInfo] = ()) -> PlacementPlan:
    """Place with free GPUs = each node's ``gpus_free`` minus what the given instances use."""
    free = {n.name: n.gpus_free for n in topology.nodes}
    for i in instances:
        if i.lifecycle is not Lifecycle.GONE:
            free[i.node] -= i.shape.gpus
    return place(demands, ClusterState(at_s=100.0, instances=tuple(instances)), topology, free)


def tier_of(topology: Topology) -> dict[str, SubgroupPriority]:
    sg_of = subgroup_of_s1(derive_subgroups(topology))
    return {n.name: sg_of[n.path[:5]].priority for n in topology.nodes}


def dg_counts(plan: PlacementPlan, instances: Sequence[InstanceInfo] = ()) -> dict[str, list[int]]:
    """DG → [prefill, decode] after the plan (kept capacity instances + launches)."""
    removed = {r.instance_id for r in plan.removals}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in instances:
        if i.counts_as_capacity and i.id not in removed:
            out[i.dg][i.role is D] += 1
    for launch in plan.launches:
        out[launch.dg][launch.role is D] += 1
    return dict(out)
