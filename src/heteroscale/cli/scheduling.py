"""The scheduling commands as functions the command line wires in:

- ``heteroscale topology FILE [--json]`` → :func:`cmd_topology` (text) / :func:`topology_json`: GPUs per
  SKU per domain and the RDMA subgroups with their priority;
- ``heteroscale schedule --topology FILE --demands FILE [--json]`` → :func:`cmd_schedule` (plain data)
  and :func:`schedule_text`: one cycle of the federated scheduler, the plan and what could not be placed.

The demands file is read by :func:`heteroscale.config.demands.load_demands`.
"""

from __future__ import annotations

from typing import Any

from heteroscale.config.demands import load_demands
from heteroscale.config.loader import load_topology
from heteroscale.domain.topology import Level
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.groups import ROLES
from heteroscale.scheduling.subgroups import derive_subgroups, priority_counts, subgroup_of_s1

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
