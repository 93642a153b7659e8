"""The scheduling commands as functions the command line wires in:

- ``heteroscale topology FILE [--json]`` → :func:`cmd_topology` (text) / :func:`topology_json`: GPUs per
  SKU per domain and the RDMA subgroups with their priority;
- ``heteroscale schedule --topology FILE --demands FILE [--json]`` → :func:`cmd_schedule` (plain data)
  and :func:`schedule_text`: one cycle of the federated scheduler, the plan and what could not be placed.

A demands file (``kind: demands``) lists services with the same fields as a scenario's service, minus
``load`` / ``policy`` / ``targets``, plus the desired counts (optionally per shape, ``desired.by_shape``:
a GPU mix) and, optionally, the current instances::

    kind: demands
    services:
      - name: chat
        model: llama-3.1-70b
        roles: {prefill: {shapes: [{sku: h800, tp: 4}]}, decode: {shapes: [{sku: h20, tp: 4}]}}
        pd_ratio: 1.0
        slo: {ttft_s: 2.0, tbt_s: 0.1}
        affinity: s2
        desired: {prefill: 4, decode: 4}
        scale_in: {mode: drain, grace_s: 600}            # optional
        instances:                                       # optional: what runs now
          - {id: chat-p0, role: prefill, sku: h800, tp: 4, dg: chat-dg0, node: a1n1, lifecycle: ready}

The topology's ``gpus_free`` is the inventory's word on free GPUs, so it already excludes the listed
instances; a node whose instances use more GPUs than the topology says are in use is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from heteroscale.config.build import resolve_spec
from heteroscale.config.catalog import Catalog, load_catalog
from heteroscale.config.loader import load_topology
from heteroscale.config.schema import RoleConfig, ServiceFieldsConfig
from heteroscale.config.source import Document, Loc, StrictModel, format_loc, read_document
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle, ScaleInMode
from heteroscale.domain.topology import Level, Topology
from heteroscale.errors import ConfigError
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.groups import ROLES, ServiceDemand
from heteroscale.scheduling.subgroups import derive_subgroups, priority_counts, subgroup_of_s1

# --- the demands file -----------------------------------------------------------------------


class ShapeCountConfig(StrictModel):
    """How many instances of one shape the service wants (a GPU mix); the counts of a role sum to its total."""

    role: Literal["prefill", "decode"]
    sku: str = Field(min_length=1)
    tp: int = Field(ge=1, le=64)
    count: int = Field(ge=0)


class DesiredConfig(StrictModel):
    prefill: int = Field(ge=0)
    decode: int = Field(ge=0)
    by_shape: list[ShapeCountConfig] = Field(default_factory=list)  # optional: the mix, per shape


class ScaleInConfig(StrictModel):
    mode: Literal["drain", "kill"] = "drain"
    grace_s: float = Field(default=600.0, ge=0)


class InstanceConfig(StrictModel):
    """One running instance: its role and shape, its DG and node, and where it is in its life."""

    id: str = Field(min_length=1)
    role: Literal["prefill", "decode"]
    sku: str = Field(min_length=1)
    tp: int = Field(ge=1, le=64)
    dg: str = Field(min_length=1)
    node: str = Field(min_length=1)
    lifecycle: Literal["pending", "starting", "ready", "draining"] = "ready"
    launched_at_s: float = Field(default=0.0, ge=0)


class DemandServiceConfig(ServiceFieldsConfig):
    """A service's fields plus the counts it wants this cycle and its current instances."""

    desired: DesiredConfig
    scale_in: ScaleInConfig = Field(default_factory=ScaleInConfig)
    instances: list[InstanceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _desired_within_bounds(self) -> DemandServiceConfig:
        for role in ("prefill", "decode"):
            count = getattr(self.desired, role)
            bounds: RoleConfig = getattr(self.roles, role)
            if not bounds.min <= count <= bounds.max:
                raise ValueError(
                    f"desired.{role} ({count}) is outside roles.{role} bounds [{bounds.min}, {bounds.max}]"
                )
        return self


class DemandsConfig(StrictModel):
    """A ``kind: demands`` file."""

    kind: Literal["demands"]
    description: str = ""
    services: list[DemandServiceConfig] = Field(min_length=1)


def load_demands(
    path: str | Path, topology: Topology, catalog: Catalog | None = None
) -> tuple[tuple[ServiceDemand, ...], ClusterState]:
    """The demands and the current instances of a demands file, checked against ``topology``."""
    doc = read_document(Path(path))
    if "kind" not in doc.data:
        raise ConfigError(f"{doc.display}: kind: missing (expected 'demands')")
    if doc.data["kind"] != "demands":
        raise doc.error(("kind",), f"expected 'demands', got {doc.data['kind']!r}")
    config = doc.validate(DemandsConfig)
    catalog = catalog or load_catalog()
    demands: list[ServiceDemand] = []
    instances: list[InstanceInfo] = []
    seen: dict[str, Loc] = {}
    for i, service in enumerate(config.services):
        loc: Loc = ("services", i)
        if service.name in {d.spec.name for d in demands}:
            raise doc.error((*loc, "name"), f"duplicate service name {service.name!r}")
        _, spec = resolve_spec(service, doc, loc, catalog, topology)
        demands.append(_demand(service, spec, doc, loc, catalog))
        for j, inst in enumerate(service.instances):
            instances.append(_instance(inst, service.name, doc, (*loc, "instances", j), catalog, seen))
    _check_gpus_in_use(instances, topology, doc, seen)
    at_s = max((inst.launched_at_s for inst in instances), default=0.0)
    return tuple(demands), ClusterState(at_s=at_s, instances=tuple(instances))


def _demand(
    service: DemandServiceConfig, spec: ServiceSpec, doc: Document, loc: Loc, catalog: Catalog
) -> ServiceDemand:
    """The service's demand; ``desired.by_shape`` (a GPU mix) becomes per-shape counts for the scheduler."""
    shape_counts: list[tuple[str, int]] = []
    for j, item in enumerate(service.desired.by_shape):
        at: Loc = (*loc, "desired", "by_shape", j)
        try:
            sku = catalog.resolve_sku(item.sku)
        except ConfigError as exc:
            raise doc.error((*at, "sku"), str(exc)) from exc
        shape_counts.append((InstanceShape(Role(item.role), sku, item.tp).key, item.count))
    try:
        return ServiceDemand(
            spec=spec,
            desired_prefill=service.desired.prefill,
            desired_decode=service.desired.decode,
            scale_in_mode=ScaleInMode(service.scale_in.mode),
            drain_grace_s=service.scale_in.grace_s,
            shape_counts=tuple(shape_counts),
        )
    except ValueError as exc:
        raise doc.error((*loc, "desired"), str(exc)) from exc


def _instance(
    inst: InstanceConfig, service: str, doc: Document, loc: Loc, catalog: Catalog, seen: dict[str, Loc]
) -> InstanceInfo:
    if inst.id in seen:
        raise doc.error((*loc, "id"), f"duplicate instance id {inst.id!r} (first at {format_loc(seen[inst.id])})")
    seen[inst.id] = loc
    try:
        sku = catalog.resolve_sku(inst.sku)
    except ConfigError as exc:
        raise doc.error((*loc, "sku"), str(exc)) from exc
    lifecycle = Lifecycle(inst.lifecycle)
    return InstanceInfo(
        id=inst.id,
        service=service,
        role=Role(inst.role),
        shape=InstanceShape(Role(inst.role), sku, inst.tp),
        dg=inst.dg,
        node=inst.node,
        lifecycle=lifecycle,
        in_discovery=lifecycle is Lifecycle.READY,
        launched_at_s=inst.launched_at_s,
    )


def _check_gpus_in_use(instances: list[InstanceInfo], topology: Topology, doc: Document, seen: dict[str, Loc]) -> None:
    nodes = {n.name: n for n in topology.nodes}
    used: dict[str, int] = {}
    for inst in instances:
        node = nodes.get(inst.node)
        if node is None:
            raise doc.error((*seen[inst.id], "node"), f"no node {inst.node!r} in topology '{topology.name}'")
        if node.sku != inst.shape.sku:
            raise doc.error((*seen[inst.id], "sku"), f"node {inst.node!r} has {node.sku} GPUs, not {inst.shape.sku}")
        used[inst.node] = used.get(inst.node, 0) + inst.shape.gpus
        in_use = node.gpus_total - node.gpus_free
        if used[inst.node] > in_use:
            raise doc.error(
                (*seen[inst.id], "node"),
                f"instances on node {inst.node!r} use {used[inst.node]} GPUs but topology '{topology.name}' "
                f"reports {in_use} in use (gpus {node.gpus_total}, gpus_free {node.gpus_free})",
            )


# --- commands -------------------------------------------------------------------------------


def topology_json(path: str) -> dict[str, Any]:
    """GPUs (total and free) per SKU per big-pod and mini-pod, and the RDMA subgroups with their priority."""
    topology = load_topology(path)
    subgroups = derive_subgroups(topology)
    sg_of = subgroup_of_s1(subgroups)
    s2s: dict[tuple[str, ...], dict[str, Any]] = {}
    s1s: dict[tuple[str, ...], dict[str, Any]] = {}
    for node in topology.nodes:
        s2, s1 = node.domain(Level.S2), node.domain(Level.S1)
        if s2 not in s2s:
            s2s[s2] = {"big_pod": s2[-1], "path": "/".join(s2), "gpus": {}, "gpus_free": {}, "mini_pods": []}
        if s1 not in s1s:
            s1s[s1] = {"mini_pod": s1[-1], "subgroup": sg_of[s1].name, "gpus": {}, "gpus_free": {}}
            s2s[s2]["mini_pods"].append(s1s[s1])
        free = node.gpus_free if node.schedulable else 0
        for entry in (s2s[s2], s1s[s1]):
            entry["gpus"][node.sku] = entry["gpus"].get(node.sku, 0) + node.gpus_total
            entry["gpus_free"][node.sku] = entry["gpus_free"].get(node.sku, 0) + free
    groups = []
    for sg in subgroups:
        gpus: dict[str, int] = {}
        for s1 in sg.s1s:
            for sku, n in s1s[s1]["gpus"].items():
                gpus[sku] = gpus.get(sku, 0) + n
        groups.append(
            {
                "name": sg.name,
                "domain": "/".join(sg.domain),
                "priority": sg.priority.label,
                "skus": list(sg.skus),
                "mini_pods": [s1[-1] for s1 in sg.s1s],
                "gpus": gpus,
                "reason": sg.reason,
                "overridden": sg.overridden,
            }
        )
    free_total = sum(n.gpus_free for n in topology.nodes if n.schedulable)
    return {
        "name": topology.name,
        "nodes": len(topology.nodes),
        "gpus": dict(sorted(topology.gpus_by_sku().items())),
        "gpus_free": free_total,
        "big_pods": list(s2s.values()),
        "subgroups": groups,
        "priority_counts": {p.label: n for p, n in priority_counts(subgroups).items()},
    }


def cmd_topology(path: str) -> str:
    """The text of ``heteroscale topology FILE``."""
    data = topology_json(path)
    total = sum(data["gpus"].values())
    skus = ", ".join(f"{n} {sku}" for sku, n in data["gpus"].items())
    lines = [f"topology {data['name']}: {data['nodes']} nodes, {total} GPUs ({skus}), {data['gpus_free']} free"]
    lines.append("GPUs per SKU per domain (free/total):")
    for s2 in data["big_pods"]:
        lines.append(f"  {s2['path']:<40} {_per_sku(s2)}")
        for s1 in s2["mini_pods"]:
            lines.append(f"    {s1['mini_pod']:<38} {_per_sku(s1)}  [{s1['subgroup']}]")
    counts = ", ".join(f"{n} {p}" for p, n in data["priority_counts"].items())
    lines.append(f"RDMA subgroups ({counts}; the scheduler spends LOW first, HIGH last):")
    for sg in data["subgroups"]:
        gpus = "+".join(f"{n} {sku}" for sku, n in sorted(sg["gpus"].items()))
        lines.append(f"  {sg['name']:<24} {sg['priority'].upper():<6} {gpus:<22} {sg['reason']}")
    return "\n".join(lines)


def _per_sku(entry: dict[str, Any]) -> str:
    return "  ".join(f"{sku} {entry['gpus_free'][sku]}/{n}" for sku, n in sorted(entry["gpus"].items()))


def cmd_schedule(topology_path: str, demands_path: str) -> dict[str, Any]:
    """One scheduling cycle for the demands file on the topology: the plan and what could not be placed."""
    topology = load_topology(topology_path)
    demands, state = load_demands(demands_path, topology)
    free = {n.name: n.gpus_free for n in topology.nodes}
    plan = place(demands, state, topology, free)
    sg_of = subgroup_of_s1(derive_subgroups(topology))
    nodes = {n.name: n for n in topology.nodes}
    by_id = {i.id: i for i in state.instances}
    services = []
    for d in sorted(demands, key=lambda d: (-d.spec.priority, d.spec.name)):
        name = d.spec.name
        row: dict[str, Any] = {"name": name, "priority": d.spec.priority, "affinity": d.spec.affinity.value}
        for role in ROLES:
            row[role.value] = {
                "current": sum(
                    1 for i in state.instances if i.service == name and i.role is role and i.counts_as_capacity
                ),
                "desired": d.desired(role),
                "launch": sum(1 for x in plan.launches if x.service == name and x.role is role),
                "remove": sum(
                    1
                    for r in plan.removals
                    if by_id[r.instance_id].service == name and by_id[r.instance_id].role is role
                ),
                "unplaced": sum(u.count for u in plan.unplaced if u.service == name and u.role is role),
            }
        services.append(row)
    launches = []
    for x in plan.launches:
        sg = sg_of[nodes[x.node].domain(Level.S1)]
        launches.append(
            {
                "service": x.service,
                "role": x.role.value,
                "dg": x.dg,
                "node": x.node,
                "sku": x.shape.sku,
                "tp": x.shape.tp,
                "subgroup": sg.name,
                "priority": sg.priority.label,
            }
        )
    removals = [
        {
            "instance_id": r.instance_id,
            "service": by_id[r.instance_id].service,
            "role": by_id[r.instance_id].role.value,
            "dg": by_id[r.instance_id].dg,
            "node": by_id[r.instance_id].node,
            "mode": r.mode.value,
            "grace_s": r.grace_s,
        }
        for r in plan.removals
    ]
    unplaced = [
        {"service": u.service, "role": u.role.value, "count": u.count, "reason": u.reason} for u in plan.unplaced
    ]
    return {
        "topology": topology.name,
        "demands": str(demands_path),
        "services": services,
        "launches": launches,
        "removals": removals,
        "unplaced": unplaced,
        "totals": {
            "launches": len(launches),
            "launch_gpus": sum(x.shape.gpus for x in plan.launches),
            "removals": len(removals),
            "unplaced_pods": sum(u.count for u in plan.unplaced),
        },
    }


def schedule_text(result: dict[str, Any]) -> str:
    """A short human reading of :func:`cmd_schedule`'s result."""
    t = result["totals"]
    lines = [
        f"schedule on {result['topology']}: {t['launches']} launch(es) ({t['launch_gpus']} GPUs), "
        f"{t['removals']} removal(s), {t['unplaced_pods']} pod(s) not placed"
    ]
    for s in result["services"]:
        p, d = s["prefill"], s["decode"]
        lines.append(
            f"  {s['name']} (priority {s['priority']}, affinity {s['affinity']}): "
            f"P {p['current']}→{p['desired']} (+{p['launch']} −{p['remove']}), "
            f"D {d['current']}→{d['desired']} (+{d['launch']} −{d['remove']})"
        )
    if result["launches"]:
        lines.append("launches:")
        for x in result["launches"]:
            lines.append(
                f"  {x['service']:<16} {x['role']:<8} {x['dg']:<18} {x['node']:<14} {x['sku']} tp{x['tp']}  "
                f"[{x['subgroup']} {x['priority']}]"
            )
    if result["removals"]:
        lines.append("removals:")
        for r in result["removals"]:
            lines.append(
                f"  {r['service']:<16} {r['role']:<8} {r['instance_id']:<18} ({r['dg']} on {r['node']}, {r['mode']})"
            )
    if result["unplaced"]:
        lines.append("not placed:")
        for u in result["unplaced"]:
            lines.append(f"  {u['service']} {u['role']} ×{u['count']}: {u['reason']}")
    return "\n".join(lines)
