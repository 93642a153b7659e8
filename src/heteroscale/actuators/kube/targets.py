"""Scale targets as plain data, and what one read of them means; no I/O here.

A :class:`ScaleTarget` is one workload a user already runs (its ``scaleTargetRef``) with the role, GPU
shape, deployment group and domain it serves. The scheduler chooses among targets as it chooses among
nodes: each target is a *virtual node* (:func:`target_topology`) of its SKU, in its domain (S2 and S1
both named by ``domain``; targets without one share the domain ``default``, so affinity never keeps
them apart), with room for as many instances as the scheduler asks. The stack's own scheduler puts the
pods on real nodes.

:func:`target_instances` turns a target's replica count and pods into instances: one per replica (pods
grouped by the kind's replica labels, see :mod:`.kinds`), pending placeholders for replicas without
pods yet, and the surplus above the replica count (a scale-in under way) as draining.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heteroscale.actuators.kube.kinds import Kind
from heteroscale.actuators.kube.pods import is_finished, parse_time, pod_lifecycle, ready_since
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.domain.topology import NodeSpec, Topology

DEFAULT_DOMAIN = "default"
VIRTUAL_NODE_GPUS = 1_000_000  # a target's room: the stack's scheduler, not ours, finds real nodes
_WORST_FIRST = (Lifecycle.STUCK, Lifecycle.PENDING, Lifecycle.STARTING, Lifecycle.READY)


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    service: str
    role: Role
    sku: str
    tp: int
    kind: Kind
    name: str
    dg: str | None = None
    domain: str | None = None
    role_name: str | None = None  # a role shim's role inside the object

    @property
    def id(self) -> str:
        """``Kind/name`` (``Kind/name/role`` for a role shim): the target's virtual node and metric label."""
        base = f"{self.kind.kind}/{self.name}"
        return base if self.role_name is None else f"{base}/{self.role_name}"

    @property
    def metric_label(self) -> str:
        """``Kind.name`` (``Kind.name.role``): the ``target`` label of the desired-replicas series, a valid
        Kubernetes label value so an HPA's External metric selector can name it."""
        return self.id.replace("/", ".")

    @property
    def shape(self) -> InstanceShape:
        return InstanceShape(self.role, self.sku, self.tp)

    @property
    def dg_name(self) -> str:
        return self.dg if self.dg is not None else f"dg-{self.domain or DEFAULT_DOMAIN}"


@dataclass(frozen=True, slots=True)
class TargetRead:
    """One target as read: replicas asked for, the precondition to write them, the pods it selects."""

    target: ScaleTarget
    replicas: int
    resource_version: str
    selector: str
    pods: tuple[dict[str, Any], ...] = ()
    groups: int = 1  # a role shim: role replicas count once per object replica (serving group / role set)
    role_index: int = -1  # a role shim: the role's index in the roles list


def target_topology(targets: Sequence[ScaleTarget], used: Mapping[str, int]) -> Topology:
    """Every target as a virtual node (module doc); ``used``: GPUs its instances hold, per target id."""
    nodes = []
    for t in sorted(targets, key=lambda t: t.id):
        domain = t.domain or DEFAULT_DOMAIN
        nodes.append(
            NodeSpec(
                path=("default", "default", "default", domain, domain, t.id, t.id),
                sku=t.sku,
                gpus_total=VIRTUAL_NODE_GPUS,
                gpus_free=max(0, VIRTUAL_NODE_GPUS - used.get(t.id, 0)),
            )
        )
    return Topology(name="scale-targets", nodes=tuple(nodes))


def replica_key(pod: Mapping[str, Any], kind: Kind) -> str:
    """The replica a pod belongs to: its replica labels' values, or its own name where it has none."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    values = [labels.get(key) for key in kind.replica_labels]
    if kind.replica_labels and all(v is not None for v in values):
        return "/".join(str(v) for v in values)
    return str(pod["metadata"]["name"])


def _index_order(key: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in key.split("/"))


def target_instances(read: TargetRead, now_s: float, start_timeout_s: float) -> list[InstanceInfo]:
    """The instances of one target (module doc): ids are pod names for one-pod replicas, else
    ``<target id>#<replica key>``; placeholders are ``<target id>#pending-<i>``."""
    t = read.target
    replicas: dict[str, list[dict[str, Any]]] = {}
    for pod in read.pods:
        if is_finished(pod) or pod["metadata"].get("deletionTimestamp"):
            continue
        replicas.setdefault(replica_key(pod, t.kind), []).append(pod)
    wanted = read.replicas * max(1, read.groups)
    keys = sorted(replicas, key=_index_order)
    out: list[InstanceInfo] = []
    for n, key in enumerate(keys):
        pods = sorted(replicas[key], key=lambda p: p["metadata"]["name"])
        states = [pod_lifecycle(p, now_s, start_timeout_s) for p in pods]
        worst = min(states, key=lambda s: _WORST_FIRST.index(s.lifecycle) if s.lifecycle in _WORST_FIRST else 0)
        lifecycle = Lifecycle.DRAINING if n >= wanted else worst.lifecycle
        one_pod = len(pods) == 1 and key == pods[0]["metadata"]["name"]
        readies = [r for p in pods if (r := ready_since(p)) is not None]
        out.append(
            InstanceInfo(
                id=key if one_pod else f"{t.id}#{key}",
                service=t.service,
                role=t.role,
                shape=t.shape,
                dg=t.dg_name,
                node=t.id,
                lifecycle=lifecycle,
                # our discovery label means nothing to the stack's router: a Ready replica serves
                in_discovery=lifecycle is Lifecycle.READY,
                launched_at_s=min((parse_time(p["metadata"].get("creationTimestamp")) or now_s) for p in pods),
                ready_at_s=max(readies) if lifecycle is Lifecycle.READY and readies else None,
                lifecycle_reason=worst.reason if lifecycle is worst.lifecycle else "",
                lifecycle_detail=worst.detail if lifecycle is worst.lifecycle else "",
            )
        )
    for i in range(max(0, wanted - len(keys))):
        out.append(
            InstanceInfo(
                id=f"{t.id}#pending-{i}",
                service=t.service,
                role=t.role,
                shape=t.shape,
                dg=t.dg_name,
                node=t.id,
                lifecycle=Lifecycle.PENDING,
                in_discovery=False,
                launched_at_s=now_s,
            )
        )
    return out


def role_replicas(obj: Mapping[str, Any], kind: Kind, role_name: str) -> tuple[int, int] | None:
    """A role shim's (role index, role replicas) in ``obj``, or None when it has no such role."""
    node: Any = obj
    for key in kind.roles_path:
        node = (node or {}).get(key) if isinstance(node, dict) else None
    for i, role in enumerate(node if isinstance(node, list) else []):
        if isinstance(role, dict) and role.get("name") == role_name:
            return i, int(role.get("replicas", 1) or 0)
    return None


def role_patch(kind: Kind, index: int, current: int, target: int, resource_version: str) -> list[dict[str, Any]]:
    """The JSON patch that sets a role's replicas, failing unless the object is still as read."""
    path = "/" + "/".join((*kind.roles_path, str(index), "replicas"))
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "test", "path": path, "value": current},
        {"op": "replace", "path": path, "value": target},
    ]
