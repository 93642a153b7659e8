"""The federated pre-scheduler (HETEROSCALE.md §5, Algorithm 4): all services' demands + the cluster
state + the topology → one PlacementPlan.

Each call rebuilds the topological view (free GPUs per node, affinity domain, RDMA-subgroup priority
and SKU) from ``topology`` and ``free_gpus``, then serves the services by priority (highest first,
then by name). For each: ΔP, ΔD against its capacity instances (pending / starting / ready;
draining ones excluded); scale-in chooses victims (:mod:`.scalein`), scale-out places pods
(:mod:`.scaleout`) with virtual allocation, so a later service sees what an earlier one took. GPUs
freed by scale-in come back only when the next cycle rebuilds the view. What cannot be placed comes
back in ``PlacementPlan.unplaced`` with a reason per service and role — never silently dropped.

A demand with a GPU mix (``ServiceDemand.shape_counts``, e.g. from :func:`.mix.solve_mix`) is compared
shape by shape: scale-in takes its victims among the shapes with a surplus, scale-out launches the
deficits of the shapes short of their count (no fallback to another shape), both under the same
topology rules.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence

from heteroscale.domain.hardware import Role
from heteroscale.domain.plan import Launch, PlacementPlan, Remove, Unplaced
from heteroscale.domain.state import ClusterState, InstanceInfo
from heteroscale.domain.topology import Topology
from heteroscale.scheduling.groups import ROLES, Group, ServiceDemand, existing_groups, next_dg_number
from heteroscale.scheduling.scalein import choose_victims
from heteroscale.scheduling.scaleout import ScaleOut
from heteroscale.scheduling.view import LEVEL_OF, TopologyView


def place(
    demands: Sequence[ServiceDemand],
    state: ClusterState,
    topology: Topology,
    free_gpus: Mapping[str, int],
) -> PlacementPlan:
    """One scheduling cycle for every service in ``demands`` (pure; deterministic)."""
    ordered = sorted(demands, key=lambda d: (-d.spec.priority, d.spec.name))
    for earlier, later in itertools.pairwise(ordered):
        if earlier.spec.name == later.spec.name:
            raise ValueError(f"service {earlier.spec.name!r} has two demands in one cycle")
    tps = {shape.tp for d in ordered for role in ROLES for shape in d.spec.shapes(role)}
    view = TopologyView(topology, free_gpus, tps)
    instances: dict[str, list[InstanceInfo]] = {}
    for inst in state.instances:
        instances.setdefault(inst.service, []).append(inst)
    launches: list[Launch] = []
    removals: list[Remove] = []
    unplaced: list[Unplaced] = []
    for demand in ordered:
        out = _serve(demand, instances.get(demand.spec.name, []), view)
        launches.extend(out[0])
        removals.extend(out[1])
        unplaced.extend(out[2])
    return PlacementPlan(launches=tuple(launches), removals=tuple(removals), unplaced=tuple(unplaced))


def _serve(
    demand: ServiceDemand, instances: list[InstanceInfo], view: TopologyView
) -> tuple[list[Launch], list[Remove], list[Unplaced]]:
    spec = demand.spec
    level = LEVEL_OF[spec.affinity]
    groups = existing_groups(instances, level, view)
    ratio = demand.dg_ratio
    remove, need, surplus, shape_need = _deltas(demand, groups)
    removals: list[Remove] = []
    if remove[Role.PREFILL] > 0 or remove[Role.DECODE] > 0:
        for victim in choose_victims(groups, remove, ratio, surplus):
            removals.append(Remove(victim.id, demand.scale_in_mode, demand.drain_grace_s))
    if not (need[Role.PREFILL] or need[Role.DECODE]):
        return [], removals, []
    if any(not spec.shapes(role) for role in ROLES):
        missing = [role for role in ROLES if need[role] > 0]
        why = "the service lists no instance shape for this role"
        return [], removals, [Unplaced(spec.name, role, need[role], why) for role in missing]
    scale_out = ScaleOut(
        spec=spec,
        view=view,
        level=level,
        groups=groups,
        ratio=ratio,
        next_dg=next_dg_number(spec.name, instances),
        need=need,
        shape_need=shape_need,
    )
    unplaced = scale_out.run()
    return scale_out.launches, removals, unplaced


def _deltas(
    demand: ServiceDemand, groups: Sequence[Group]
) -> tuple[dict[Role, int], dict[Role, int], dict[str, int] | None, dict[str, int] | None]:
    """Pods to remove and to add per role; with a mix also per shape (surplus and deficit), else None.

    Without a mix only the role totals count (ΔP, ΔD). With one, every shape is compared with its own
    desired count, so a role may lose pods of one shape and gain pods of another in the same cycle."""
    if not demand.has_mix:
        delta = {role: demand.desired(role) - sum(g.count(role) for g in groups) for role in ROLES}
        return {role: max(0, -delta[role]) for role in ROLES}, {role: max(0, delta[role]) for role in ROLES}, None, None
    current: Counter[str] = Counter(m.instance.shape.key for g in groups for role in ROLES for m in g.members[role])
    wanted = demand.desired_by_shape()
    for key in current:  # a capacity instance of a shape the spec no longer lists: wanted 0 times
        wanted.setdefault(key, 0)
    surplus = {key: current[key] - want for key, want in wanted.items() if current[key] > want}
    shape_need = {key: want - current[key] for key, want in wanted.items() if want > current[key]}
    role_of = {m.instance.shape.key: role for g in groups for role in ROLES for m in g.members[role]}
    role_of.update((shape.key, role) for role in ROLES for shape in demand.spec.shapes(role))
    remove = {role: sum(n for key, n in surplus.items() if role_of[key] is role) for role in ROLES}
    need = {role: sum(n for key, n in shape_need.items() if role_of[key] is role) for role in ROLES}
    return remove, need, surplus, shape_need
