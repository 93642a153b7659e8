"""A minimal affinity-respecting first-fit placer and victim chooser.

It keeps each service's instances inside the domain of its affinity level that already holds its
deployment group (or the first domain with room), takes SKUs in the service's preference order,
and removes the newest instances first. The topology-aware federated scheduler (RDMA subgroups,
priority tiers, Algorithm 4) replaces it; until then this is the simulator's placer.
"""

from __future__ import annotations

from heteroscale.domain.hardware import Role
from heteroscale.domain.plan import Launch, PlacementPlan, Remove, Unplaced
from heteroscale.domain.service import AffinityLevel, ServiceSpec
from heteroscale.domain.state import ClusterState, Lifecycle, ScaleInMode
from heteroscale.domain.topology import Level, Topology

_LEVEL = {
    AffinityLevel.S1: Level.S1,
    AffinityLevel.S2: Level.S2,
    AffinityLevel.CLUSTER: Level.LOGICAL_CLUSTER,
}


def place_first_fit(
    spec: ServiceSpec,
    deltas: dict[Role, int],
    state: ClusterState,
    topology: Topology,
    free_gpus: dict[str, int],
    mode: ScaleInMode = ScaleInMode.DRAIN,
    grace_s: float = 600.0,
) -> PlacementPlan:
    """Launch ``deltas[role] > 0`` instances and remove ``-deltas[role]`` for one service."""
    free = dict(free_gpus)
    level = _LEVEL[spec.affinity]
    mine = [i for i in state.instances if i.service == spec.name and i.lifecycle is not Lifecycle.GONE]
    node_by_name = {n.name: n for n in topology.nodes}
    home: tuple[str, ...] | None = None
    dg = f"{spec.name}-dg0"
    if mine:
        first = node_by_name.get(mine[0].node)
        if first is not None:
            home = first.domain(level)
            dg = mine[0].dg
    launches: list[Launch] = []
    removals: list[Remove] = []
    unplaced: list[Unplaced] = []
    for role in (Role.PREFILL, Role.DECODE):
        delta = deltas.get(role, 0)
        if delta > 0:
            for _ in range(delta):
                placed = False
                for shape in spec.shapes(role):
                    for node in topology.nodes:
                        if not node.schedulable or node.sku != shape.sku or free[node.name] < shape.gpus:
                            continue
                        if home is not None and node.domain(level) != home:
                            continue
                        free[node.name] -= shape.gpus
                        home = node.domain(level)
                        launches.append(Launch(spec.name, role, shape, dg, node.name))
                        placed = True
                        break
                    if placed:
                        break
                if not placed:
                    unplaced.append(
                        Unplaced(
                            spec.name,
                            role,
                            1,
                            f"no node with free GPUs of {[s.sku for s in spec.shapes(role)]} "
                            f"in the service's {level.label} domain",
                        )
                    )
        elif delta < 0:
            candidates = [
                i
                for i in mine
                if i.role is role and i.lifecycle in (Lifecycle.STARTING, Lifecycle.PENDING, Lifecycle.READY)
            ]
            # starting instances first (they serve nothing yet), then the newest ready ones
            candidates.sort(key=lambda i: (i.lifecycle is Lifecycle.READY, -i.launched_at_s, i.id))
            for inst in candidates[:-delta]:
                removals.append(Remove(inst.id, mode, grace_s))
    merged: dict[tuple[str, Role], int] = {}
    for u in unplaced:
        merged[(u.service, u.role)] = merged.get((u.service, u.role), 0) + u.count
    reasons = {(u.service, u.role): u.reason for u in unplaced}
    return PlacementPlan(
        launches=tuple(launches),
        removals=tuple(removals),
        unplaced=tuple(Unplaced(s, r, c, reasons[(s, r)]) for (s, r), c in merged.items()),
    )
