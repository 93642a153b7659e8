"""Cluster state from plain API objects (dicts as the API server returns them); no I/O here.

Nodes become the domain :class:`Topology`: their labels name the S2 / S1 / S0 domains (and optionally
VDC, physical and logical cluster) and the GPU SKU (:class:`~.api.LabelKeys`), allocatable
``nvidia.com/gpu`` is their size. A node that is not Ready, is cordoned (``spec.unschedulable``) or has
a ``NoSchedule`` / ``NoExecute`` taint our pods do not tolerate is not schedulable: none of its GPUs
are free capacity.

Pods of our workloads become instances (:class:`~heteroscale.domain.state.InstanceInfo`), grouped by
the workload that owns them; their lifecycle is :func:`.pods.pod_lifecycle`'s. Replicas a workload
asks for but whose pods do not exist yet count as pending placeholders, so a restarted controller sees
the capacity it already asked for and does not ask again. Placeholders and pods not yet bound to a node
reserve GPUs on a schedulable node of their SKU in their workload's domain (so the scheduler does not
hand those GPUs out twice); a pod the scheduler found no node for (``Unschedulable``) is **stuck**
(``unschedulable``) — at once when its domain has no such room left, else after a grace — and its
deployment group is re-placed elsewhere rather than left pending on a cordoned or full domain
(:func:`reserve_pending`). Placeholders of a workload whose pods cannot even be
created (the Deployment's ``ReplicaFailure`` condition, e.g. a quota) are stuck after the start
time-out (``failed-create``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heteroscale.actuators.kube.api import LabelKeys, Toleration
from heteroscale.actuators.kube.naming import A_DOMAIN, DISCOVERY_ON, L_DISCOVERY, L_WORKLOAD, WorkloadKey, workload_key
from heteroscale.actuators.kube.pods import (
    STUCK_FAILED_CREATE,
    STUCK_UNSCHEDULABLE,
    PodLifecycle,
    is_finished,
    parse_time,
    pod_lifecycle,
    quantity,
    ready_since,
    status_detail,
    unschedulable_since,
)
from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.domain.topology import Level, NodeSpec, Topology

log = logging.getLogger(__name__)

ResolveSku = Callable[[str], str | None]
Domain = tuple[tuple[Level, str], ...]
BLOCKING_TAINT_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(slots=True)
class Workload:
    """One workload we own: its key, replicas asked for, resourceVersion, domain and its live pods."""

    key: WorkloadKey
    name: str
    replicas: int
    resource_version: str
    pods: list[dict[str, Any]] = field(default_factory=list)
    domain: Domain = ()  # the (level, domain name) pairs its pods are pinned to
    replica_failure: tuple[float, str] | None = None  # (since, message): its pods cannot be created

    def alive(self) -> int:
        return sum(1 for p in self.pods if not p["metadata"].get("deletionTimestamp"))


@dataclass(slots=True)
class Snapshot:
    """Everything one cycle reads, and what it means."""

    at_s: float
    nodes: list[dict[str, Any]]
    workloads: dict[str, Workload]
    node_used_gpus: dict[str, int]
    topology: Topology
    raw_sku_values: dict[str, set[str]]  # canonical SKU → node label values meaning it
    instances: dict[str, tuple[InstanceInfo, str]]  # instance id → (info, workload name)
    free: dict[str, int]


def build_snapshot(
    now_s: float,
    nodes: Sequence[dict[str, Any]],
    deployments: Sequence[dict[str, Any]],
    pods: Sequence[dict[str, Any]],
    used: Mapping[str, int],
    labels: LabelKeys,
    resolve_sku: ResolveSku,
    *,
    start_timeout_s: float = 900.0,
    unschedulable_grace_s: float = 60.0,
    tolerations: Sequence[Toleration] = (),
) -> Snapshot:
    """The snapshot of our ``deployments`` and their ``pods`` on ``nodes``; ``used``: GPUs already held
    on each node (by every pod on it, or only by ours — the caller's accounting)."""
    workloads = group_workloads(deployments, pods)
    topology, raw_values = node_topology(nodes, used, labels, resolve_sku, tolerations)
    free, refused = reserve_pending(topology, workloads, now_s, start_timeout_s, unschedulable_grace_s)
    instances = workload_instances(workloads, now_s, start_timeout_s, refused)
    return Snapshot(now_s, list(nodes), workloads, dict(used), topology, raw_values, instances, free)


def with_changes(snap: Snapshot, replicas: Mapping[str, int], pods: Mapping[str, dict[str, Any]]) -> Snapshot:
    """``snap`` as it is after our own writes: workloads scaled to ``replicas``, pods replaced by the
    objects the API answered our patches with (instance lifecycles are not recomputed)."""
    workloads = {
        name: Workload(
            wl.key,
            wl.name,
            replicas.get(name, wl.replicas),
            wl.resource_version,
            [pods.get(p["metadata"]["name"], p) for p in wl.pods],
            wl.domain,
            wl.replica_failure,
        )
        for name, wl in snap.workloads.items()
    }
    return Snapshot(
        snap.at_s,
        snap.nodes,
        workloads,
        snap.node_used_gpus,
        snap.topology,
        snap.raw_sku_values,
        snap.instances,
        snap.free,
    )


def group_workloads(deployments: Sequence[dict[str, Any]], pods: Sequence[dict[str, Any]]) -> dict[str, Workload]:
    """Our workloads (Deployments whose pod template carries a workload key) with their pods."""
    workloads: dict[str, Workload] = {}
    for dep in deployments:
        meta = dep["metadata"]
        template = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
        key = workload_key(template.get("labels") or {}, meta.get("annotations") or {})
        if key is None:
            continue
        workloads[meta["name"]] = Workload(
            key,
            meta["name"],
            int((dep.get("spec") or {}).get("replicas") or 0),
            str(meta.get("resourceVersion", "")),
            domain=parse_domain((template.get("annotations") or {}).get(A_DOMAIN)),
            replica_failure=_replica_failure(dep),
        )
    for pod in pods:
        pod_labels = pod["metadata"].get("labels") or {}
        owner = workloads.get(pod_labels.get(L_WORKLOAD, ""))
        if owner is not None:
            owner.pods.append(pod)
    for wl in workloads.values():
        wl.pods.sort(key=lambda p: p["metadata"]["name"])
        if not wl.domain:  # a workload of an older release: its pods carry the domain
            wl.domain = next(
                (d for p in wl.pods if (d := parse_domain((p["metadata"].get("annotations") or {}).get(A_DOMAIN)))),
                (),
            )
    return workloads


def _replica_failure(dep: Mapping[str, Any]) -> tuple[float, str] | None:
    for cond in (dep.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            since = parse_time(cond.get("lastTransitionTime")) or parse_time(cond.get("lastUpdateTime"))
            if since is not None:
                return since, str(cond.get("message") or cond.get("reason") or "ReplicaFailure")
    return None


def node_topology(
    nodes: Sequence[dict[str, Any]],
    used: Mapping[str, int],
    keys: LabelKeys,
    resolve_sku: ResolveSku,
    tolerations: Sequence[Toleration] = (),
) -> tuple[Topology, dict[str, set[str]]]:
    specs: list[NodeSpec] = []
    raw_values: dict[str, set[str]] = {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        meta = node["metadata"]
        node_labels = meta.get("labels") or {}
        raw_sku = node_labels.get(keys.sku)
        gpus = quantity(((node.get("status") or {}).get("allocatable") or {}).get(keys.gpu_resource, "0"))
        if raw_sku is None or gpus <= 0:
            continue  # not a GPU node we can place on
        sku = resolve_sku(raw_sku)
        if sku is None:
            log.warning("node %s: unknown GPU SKU label value %r; skipped", meta["name"], raw_sku)
            continue
        raw_values.setdefault(sku, set()).add(raw_sku)
        path = [node_labels.get(key, "default") if key else "default" for _, key in keys.level_keys()]
        specs.append(
            NodeSpec(
                path=(path[0], path[1], path[2], path[3], path[4], path[5], meta["name"]),
                sku=sku,
                gpus_total=gpus,
                gpus_free=max(0, gpus - used.get(meta["name"], 0)),
                schedulable=node_schedulable(node, tolerations),
                labels=tuple(sorted((str(k), str(v)) for k, v in node_labels.items())),
            )
        )
    return Topology(name="kubernetes", nodes=tuple(specs)), raw_values


def node_schedulable(node: Mapping[str, Any], tolerations: Sequence[Toleration] = ()) -> bool:
    """Ready, not cordoned, and every NoSchedule / NoExecute taint tolerated by our pods."""
    status = node.get("status") or {}
    spec = node.get("spec") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    if not ready or spec.get("unschedulable", False):
        return False
    return all(
        any(t.tolerates(taint) for t in tolerations)
        for taint in spec.get("taints") or []
        if taint.get("effect") in BLOCKING_TAINT_EFFECTS
    )


def reserve_pending(
    topology: Topology,
    workloads: Mapping[str, Workload],
    now_s: float,
    start_timeout_s: float,
    unschedulable_grace_s: float = 60.0,
) -> tuple[dict[str, int], dict[str, str]]:
    """Free GPUs per node less what placeholders and pending pods not yet bound will take in their
    workload's domain; and the unbound pods that are stuck unschedulable, with why.

    A pod the scheduler found no node for (``Unschedulable``) is stuck at once when our view agrees its
    domain has no room, else once it has waited ``unschedulable_grace_s`` (our view misses what the
    scheduler sees: other namespaces' pods, CPU or memory). Either way its domain has no free GPUs of
    its SKU for new placements this cycle: the scheduler's word beats our arithmetic."""
    free = {n.name: n.gpus_free if n.schedulable else 0 for n in topology.nodes}
    refused: dict[str, str] = {}
    blocked: set[tuple[str, Domain]] = set()
    for wl in sorted(workloads.values(), key=lambda w: w.name):
        unbound = [
            p
            for p in wl.pods
            if not (p.get("spec") or {}).get("nodeName")
            and not is_finished(p)
            and pod_lifecycle(p, now_s, start_timeout_s).lifecycle is Lifecycle.PENDING
        ]
        for pod in unbound:
            node = _room(topology, free, wl)
            since = unschedulable_since(pod)
            if since is None:
                if node is not None:
                    free[node] -= wl.key.tp
                continue
            blocked.add((wl.key.sku, wl.domain))
            name = pod["metadata"]["name"]
            if node is None:
                refused[name] = _domain_text(wl)
            elif now_s - since > unschedulable_grace_s:
                waited = now_s - since
                refused[name] = f"no node found for {waited:.0f} s > unschedulable_grace_s {unschedulable_grace_s:g}"
        for _ in range(max(0, wl.replicas - wl.alive())):
            node = _room(topology, free, wl)
            if node is not None:
                free[node] -= wl.key.tp
    for node_spec in topology.nodes:
        if any(node_spec.sku == sku and _in_domain(node_spec, domain) for sku, domain in blocked):
            free[node_spec.name] = 0
    return free, refused


def _room(topology: Topology, free: Mapping[str, int], wl: Workload) -> str | None:
    for node in topology.nodes:
        if node.sku == wl.key.sku and free[node.name] >= wl.key.tp and _in_domain(node, wl.domain):
            return node.name
    return None


def _in_domain(node: NodeSpec, domain: Domain) -> bool:
    return all(node.path[int(lv)] == v for lv, v in domain)


def workload_instances(
    workloads: Mapping[str, Workload],
    now_s: float,
    start_timeout_s: float,
    refused: Mapping[str, str] | None = None,
) -> dict[str, tuple[InstanceInfo, str]]:
    """Instances of our pods and placeholders; ``refused``: unbound pods stuck unschedulable → why."""
    out: dict[str, tuple[InstanceInfo, str]] = {}
    for wl in workloads.values():
        key = wl.key
        shape = InstanceShape(key.role, key.sku, key.tp)
        for pod in wl.pods:
            if is_finished(pod):
                continue
            meta = pod["metadata"]
            state = pod_lifecycle(pod, now_s, start_timeout_s)
            why = (refused or {}).get(meta["name"])
            if state.lifecycle is Lifecycle.PENDING and why is not None:
                # its domain cannot host it (cordoned, drained, tainted or full): re-placed elsewhere
                state = PodLifecycle(Lifecycle.STUCK, STUCK_UNSCHEDULABLE, f"{why}: {status_detail(pod)}")
            info = InstanceInfo(
                id=meta["name"],
                service=key.service,
                role=key.role,
                shape=shape,
                dg=key.dg,
                node=(pod.get("spec") or {}).get("nodeName") or "",
                lifecycle=state.lifecycle,
                in_discovery=(meta.get("labels") or {}).get(L_DISCOVERY) == DISCOVERY_ON
                and state.lifecycle is Lifecycle.READY,
                launched_at_s=parse_time(meta.get("creationTimestamp")) or now_s,
                ready_at_s=ready_since(pod),
                lifecycle_reason=state.reason,
                lifecycle_detail=state.detail,
            )
            out[info.id] = (info, wl.name)
        failed = wl.replica_failure
        stuck = failed is not None and now_s - failed[0] > start_timeout_s
        for i in range(max(0, wl.replicas - wl.alive())):
            info = InstanceInfo(
                id=f"{wl.name}#pending-{i}",
                service=key.service,
                role=key.role,
                shape=shape,
                dg=key.dg,
                node="",
                lifecycle=Lifecycle.STUCK if stuck else Lifecycle.PENDING,
                in_discovery=False,
                launched_at_s=now_s,
                lifecycle_reason=STUCK_FAILED_CREATE if stuck else "",
                lifecycle_detail=f"pods cannot be created: {failed[1]}" if stuck and failed is not None else "",
            )
            out[info.id] = (info, wl.name)
    return out


def _domain_text(wl: Workload) -> str:
    where = "/".join(v for _, v in wl.domain) or "any domain"
    return f"no schedulable {wl.key.sku} node with {wl.key.tp} free GPU(s) in {where}"


def parse_domain(raw: object) -> Domain:
    """The (level, domain name) pairs of a domain annotation (``[[level, name], …]``); () if unreadable."""
    if not isinstance(raw, str) or not raw:
        return ()
    try:
        return tuple((Level(int(lv)), str(v)) for lv, v in json.loads(raw))
    except (ValueError, TypeError):
        return ()
