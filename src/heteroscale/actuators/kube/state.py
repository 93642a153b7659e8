"""Cluster state from plain API objects (dicts as the API server returns them); no I/O here.

Nodes become the domain :class:`Topology`: their labels name the S2 / S1 / S0 domains (and optionally
VDC, physical and logical cluster) and the GPU SKU (:class:`~.api.LabelKeys`), allocatable
``nvidia.com/gpu`` is their size. Pods of our workloads become instances
(:class:`~heteroscale.domain.state.InstanceInfo`): Pending → pending, Running but not Ready → starting,
Ready → ready, marked for drain or terminating → draining. Replicas a workload asks for but whose pods
do not exist yet count as pending placeholders, so a restarted controller sees the capacity it already
asked for and does not ask again.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heteroscale.actuators.kube.api import LabelKeys
from heteroscale.actuators.kube.naming import (
    A_DOMAIN,
    A_DRAIN_DEADLINE,
    DISCOVERY_ON,
    L_DISCOVERY,
    L_WORKLOAD,
    WorkloadKey,
    workload_key,
)
from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.domain.topology import Level, NodeSpec, Topology

log = logging.getLogger(__name__)

ResolveSku = Callable[[str], str | None]


@dataclass(slots=True)
class Workload:
    """One workload we own: its key, replicas asked for, resourceVersion and its live pods."""

    key: WorkloadKey
    name: str
    replicas: int
    resource_version: str
    pods: list[dict[str, Any]] = field(default_factory=list)


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
    gpu_pods: Sequence[dict[str, Any]],
    labels: LabelKeys,
    resolve_sku: ResolveSku,
) -> Snapshot:
    """The snapshot of our ``deployments`` and their ``pods`` on ``nodes``; ``gpu_pods`` are the pods
    whose GPU requests count as used (every pod on the nodes, or only ours)."""
    used: dict[str, int] = {}
    for pod in gpu_pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            used[node] = used.get(node, 0) + gpu_request(pod, labels.gpu_resource)
    workloads: dict[str, Workload] = {}
    for dep in deployments:
        key = workload_key((dep.get("spec") or {}).get("template", {}).get("metadata", {}).get("labels") or {})
        if key is None:
            continue
        meta = dep["metadata"]
        workloads[meta["name"]] = Workload(
            key,
            meta["name"],
            int((dep.get("spec") or {}).get("replicas") or 0),
            str(meta.get("resourceVersion", "")),
        )
    for pod in pods:
        pod_labels = pod["metadata"].get("labels") or {}
        owner = workloads.get(pod_labels.get(L_WORKLOAD, ""))
        if owner is not None:
            owner.pods.append(pod)
    topology, raw_values = node_topology(nodes, used, labels, resolve_sku)
    instances = workload_instances(workloads, now_s)
    free = free_gpus(topology, workloads)
    return Snapshot(now_s, list(nodes), workloads, used, topology, raw_values, instances, free)


def node_topology(
    nodes: Sequence[dict[str, Any]], used: Mapping[str, int], keys: LabelKeys, resolve_sku: ResolveSku
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
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )
        schedulable = ready and not (node.get("spec") or {}).get("unschedulable", False)
        specs.append(
            NodeSpec(
                path=(path[0], path[1], path[2], path[3], path[4], path[5], meta["name"]),
                sku=sku,
                gpus_total=gpus,
                gpus_free=max(0, gpus - used.get(meta["name"], 0)),
                schedulable=schedulable,
                labels=tuple(sorted((str(k), str(v)) for k, v in node_labels.items())),
            )
        )
    return Topology(name="kubernetes", nodes=tuple(specs)), raw_values


def workload_instances(workloads: Mapping[str, Workload], now_s: float) -> dict[str, tuple[InstanceInfo, str]]:
    out: dict[str, tuple[InstanceInfo, str]] = {}
    for wl in workloads.values():
        key = wl.key
        shape = InstanceShape(key.role, key.sku, key.tp)
        alive = 0
        for pod in sorted(wl.pods, key=lambda p: p["metadata"]["name"]):
            meta = pod["metadata"]
            status = pod.get("status") or {}
            phase = status.get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            annotations = meta.get("annotations") or {}
            pod_labels = meta.get("labels") or {}
            terminating = bool(meta.get("deletionTimestamp"))
            if not terminating:
                alive += 1
            ready_at = ready_since(pod)
            if terminating or A_DRAIN_DEADLINE in annotations:
                lifecycle = Lifecycle.DRAINING
            elif ready_at is not None:
                lifecycle = Lifecycle.READY
            elif phase == "Running":
                lifecycle = Lifecycle.STARTING
            else:
                lifecycle = Lifecycle.PENDING
            info = InstanceInfo(
                id=meta["name"],
                service=key.service,
                role=key.role,
                shape=shape,
                dg=key.dg,
                node=(pod.get("spec") or {}).get("nodeName") or "",
                lifecycle=lifecycle,
                in_discovery=pod_labels.get(L_DISCOVERY) == DISCOVERY_ON and lifecycle is Lifecycle.READY,
                launched_at_s=parse_time(meta.get("creationTimestamp")) or now_s,
                ready_at_s=ready_at,
            )
            out[info.id] = (info, wl.name)
        for i in range(max(0, wl.replicas - alive)):
            info = InstanceInfo(
                id=f"{wl.name}#pending-{i}",
                service=key.service,
                role=key.role,
                shape=shape,
                dg=key.dg,
                node="",
                lifecycle=Lifecycle.PENDING,
                in_discovery=False,
                launched_at_s=now_s,
            )
            out[info.id] = (info, wl.name)
    return out


def free_gpus(topology: Topology, workloads: Mapping[str, Workload]) -> dict[str, int]:
    """Free GPUs per node, less the GPUs that replicas without a pod yet will take in their domain."""
    free = {n.name: n.gpus_free if n.schedulable else 0 for n in topology.nodes}
    by_name = {n.name: n for n in topology.nodes}
    for wl in workloads.values():
        alive = sum(1 for p in wl.pods if not p["metadata"].get("deletionTimestamp"))
        missing = max(0, wl.replicas - alive)
        if not missing:
            continue
        domain = workload_domain(wl)
        for _ in range(missing):
            for node in topology.nodes:
                if node.sku != wl.key.sku or free[node.name] < wl.key.tp:
                    continue
                if domain and any(by_name[node.name].path[int(lv)] != v for lv, v in domain):
                    continue
                free[node.name] -= wl.key.tp
                break
    return free


def workload_domain(wl: Workload) -> tuple[tuple[Level, str], ...]:
    """The (level, domain name) pairs a workload is pinned to, from its pods' domain annotation."""
    for pod in wl.pods:
        raw = (pod["metadata"].get("annotations") or {}).get(A_DOMAIN)
        if raw:
            try:
                pairs = json.loads(raw)
                return tuple((Level(int(lv)), str(v)) for lv, v in pairs)
            except (ValueError, TypeError):
                return ()
    return ()


def gpu_request(pod: Mapping[str, Any], resource: str) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(resource) or (resources.get("requests") or {}).get(resource)
        if value is not None:
            total += quantity(value)
    return total


def quantity(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def to_float(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def replicaset_rank(pod: Mapping[str, Any]) -> tuple[int, int, int]:
    """(scheduled, running, ready): the ReplicaSet deletes lower ranks first, before any deletion cost."""
    scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
    running = 1 if (pod.get("status") or {}).get("phase") == "Running" else 0
    return (scheduled, running, 1 if ready_since(pod) is not None else 0)


def ready_since(pod: Mapping[str, Any]) -> float | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime")) or 0.0
    return None
