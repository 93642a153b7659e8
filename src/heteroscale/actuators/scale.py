"""The scale mode (``actuation: scale``): drive the workloads users already run through their replicas.

**Reading.** Each target (:mod:`.kube.targets`) is read through its ``scale`` subresource
(``spec.replicas``, ``status.selector``), or for a role shim (AIBrix StormService, Kthena ModelServing)
from the object itself (the role's ``replicas``, the object's ``spec.replicas`` serving groups); its pods
are listed by that selector. Nothing else is read and nothing is listed by our own labels: the
workloads are not ours and carry none. One instance is one replica of its target; the scheduler sees
every target as a virtual node of its SKU in its domain and so still decides which target grows or
shrinks.

**Writing.** Replicas only, as absolute values computed from the read the plan was made on: through the
``scale`` subresource with that read's resourceVersion, or for a role shim a JSON patch whose ``test``
ops carry the resourceVersion and the role's replicas as read. A conflict (409, or a failed ``test``)
is not retried in the cycle: the next one reads again and plans from what it finds. Every write first
passes the fence (``KubeApi.fence``). This mode creates and deletes nothing.

**Scale-in.** Where the target honours ``controller.kubernetes.io/pod-deletion-cost`` (a Deployment's
ReplicaSet) the scheduler's victims get the lowest cost before the replicas drop, so exactly they go.
Every other kind removes a replica of its own choosing (:attr:`.kube.kinds.Kind.removes`): the
ActuationResult's ``notes`` (and the log) say so for each such removal. A *stuck* replica of such a kind
is not scaled away (that would take a healthy one): it stops counting as capacity, the note says so, and
its operator (or a person) has to deal with it. There is no drain window: the
replica leaves at once and the engine's own termination grace applies. Discovery gating and soft
scale-in rely on our pod label, which the stacks' routers ignore, so they are off in this mode
(``cli/wiring.py``); a discovery change that still reaches this actuator is noted and skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from heteroscale.actuators.kube.api import ConflictError, KubeApi, KubernetesSettings, NotFoundError
from heteroscale.actuators.kube.naming import DELETION_COST, DELETION_COST_VICTIM
from heteroscale.actuators.kube.pods import gpu_use
from heteroscale.actuators.kube.targets import (
    ScaleTarget,
    TargetRead,
    role_patch,
    role_replicas,
    target_instances,
    target_topology,
)
from heteroscale.actuators.kube.writes import Write, run_writes
from heteroscale.clock import Clock, WallClock
from heteroscale.domain.plan import ActuationResult, Launch, PlacementPlan
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle
from heteroscale.domain.topology import Topology
from heteroscale.errors import PermanentActuationError, TransientActuationError

log = logging.getLogger(__name__)
JSON_PATCH = "application/json-patch+json"


@dataclass(slots=True)
class TargetsRead:
    at_s: float
    targets: dict[str, TargetRead]  # target id → read
    instances: dict[str, tuple[InstanceInfo, str]]  # instance id → (info, target id)
    topology: Topology
    free: dict[str, int]


@dataclass(slots=True)
class _Change:
    """What a plan asks of one target."""

    delta: int = 0
    victims: tuple[str, ...] = ()  # pods to mark with the lowest deletion cost first
    launched: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class ScaleTargetsCluster:
    """ClusterStateSource and Actuator over targets users run (module doc)."""

    def __init__(
        self,
        api_client: Any,
        settings: KubernetesSettings,
        targets: Sequence[ScaleTarget],
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.targets = {t.id: t for t in targets}
        self.clock: Clock = clock if clock is not None else WallClock()
        self.client = KubeApi(api_client, settings, self.clock)
        self.core = self.client.core
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self._last: TargetsRead | None = None
        self._writes_at_read = 0

    @property
    def calls(self) -> int:
        return self.client.calls

    # --- reading ---------------------------------------------------------------------------------

    def read_target(self, t: ScaleTarget) -> TargetRead:
        ns = self.settings.namespace
        k = t.kind
        where = f"{t.kind.kind} {ns}/{t.name}"
        try:
            if k.shim:
                obj = self.client.call(
                    f"read {where}", self.custom.get_namespaced_custom_object, k.group, k.version, ns, k.plural, t.name
                )
                found = role_replicas(obj, k, t.role_name or "")
                if found is None:
                    raise PermanentActuationError(f"{where} has no role {t.role_name!r}")
                index, replicas = found
                name_label, role_label = k.role_selector
                return TargetRead(
                    t,
                    replicas,
                    str((obj.get("metadata") or {}).get("resourceVersion", "")),
                    f"{name_label}={t.name},{role_label}={t.role_name}",
                    groups=int((obj.get("spec") or {}).get("replicas", 1) or 0),
                    role_index=index,
                )
            scale = self.client.call(
                f"read scale of {where}",
                self.custom.get_namespaced_custom_object_scale,
                k.group,
                k.version,
                ns,
                k.plural,
                t.name,
            )
        except NotFoundError as exc:
            raise PermanentActuationError(f"scaleTargetRef {t.id} (service {t.service}): {exc}") from exc
        return TargetRead(
            t,
            int((scale.get("spec") or {}).get("replicas") or 0),
            str((scale.get("metadata") or {}).get("resourceVersion", "")),
            str((scale.get("status") or {}).get("selector") or ""),
        )

    def _read(self, now_s: float) -> TargetsRead:
        ns = self.settings.namespace
        reads: dict[str, TargetRead] = {}
        instances: dict[str, tuple[InstanceInfo, str]] = {}
        used: dict[str, int] = {}
        for tid, t in sorted(self.targets.items()):
            read = self.read_target(t)
            if read.selector:
                pods = self.client.list_all(
                    f"list pods of {tid}", self.core.list_namespaced_pod, ns, label_selector=read.selector, keep=_whole
                )
                read = dataclasses.replace(read, pods=tuple(pods))
            else:  # not reconciled by its operator yet: its replicas are placeholders until it says
                log.info("%s: no pod selector in its status yet", tid)
            reads[tid] = read
            for info in target_instances(read, now_s, self.settings.start_timeout_s):
                instances[info.id] = (info, tid)
            used[tid] = sum(u[1] for p in read.pods if (u := gpu_use(p, self.settings.labels.gpu_resource)))
        topology = target_topology(list(self.targets.values()), used)
        free = {n.name: n.gpus_free for n in topology.nodes}
        self._last = TargetsRead(now_s, reads, instances, topology, free)
        self._writes_at_read = self.client.writes
        self.after_read(self._last)
        return self._last

    def after_read(self, read: TargetsRead) -> None:
        """A hook for the metrics mode (publishes what it has not been told otherwise)."""

    def _current(self, now_s: float) -> TargetsRead:
        unchanged = self.client.writes == self._writes_at_read
        if self._last is not None and self._last.at_s == now_s and unchanged:
            return self._last
        return self._read(now_s)

    # --- ClusterStateSource ----------------------------------------------------------------------

    def snapshot(self, now_s: float) -> ClusterState:
        snap = self._current(now_s)
        return ClusterState(at_s=now_s, instances=tuple(info for info, _ in snap.instances.values()))

    def free_gpus(self) -> dict[str, int]:
        return dict((self._last or self._read(self.clock.now_s())).free)

    def topology(self) -> Topology:
        return (self._last or self._read(self.clock.now_s())).topology

    # --- Actuator --------------------------------------------------------------------------------

    def plan_changes(self, plan: PlacementPlan, snap: TargetsRead) -> tuple[dict[str, _Change], list[str], list[str]]:
        """Per target what ``plan`` asks (launches, victims), with errors and notes."""
        changes: dict[str, _Change] = {}
        errors = [f"unplaced {u.service}/{u.role.value} ×{u.count}: {u.reason}" for u in plan.unplaced]
        notes: list[str] = []
        for launch in plan.launches:
            t = self.target_for(launch)
            if t is None:
                errors.append(
                    f"launch {launch.service}/{launch.role.value} {launch.shape.key}: no scale target of that shape"
                )
                continue
            c = changes.setdefault(t.id, _Change())
            c.delta += 1
            c.launched = (*c.launched, f"{t.id}+{len(c.launched) + 1}")
        for removal in plan.removals:
            found = snap.instances.get(removal.instance_id)
            if found is None:
                errors.append(f"remove {removal.instance_id}: no such instance")
                continue
            info, tid = found
            t = self.targets[tid]
            placeholder = "#pending-" in info.id
            if info.lifecycle is Lifecycle.STUCK and not placeholder and not t.kind.deletion_cost:
                # scaling down would take a healthy replica, not this one: its operator has to deal with it
                notes.append(f"{tid}: {info.id} is stuck ({info.lifecycle_reason}); {t.kind.kind} removes "
                             f"{t.kind.removes}, so it is left to its operator and no longer counts")  # fmt: skip
                continue
            c = changes.setdefault(tid, _Change())
            c.delta -= 1
            c.removed = (*c.removed, info.id)
            if placeholder:
                continue
            if t.kind.deletion_cost and "#" not in info.id:
                c.victims = (*c.victims, info.id)
            else:
                notes.append(f"{tid}: {t.kind.kind} removes {t.kind.removes}, not necessarily {info.id}")
        for flip in plan.discovery:
            notes.append(f"discovery {flip.instance_id}: skipped, the stack's router does not read our label")
        for note in notes:
            log.info("%s", note)
        return changes, errors, notes

    def target_for(self, launch: Launch) -> ScaleTarget | None:
        """The service's target of the launch's shape: the one the scheduler chose (its virtual node),
        else one in the same domain, else the first of that shape (another service's target of the same
        SKU may have been chosen: the placement is per shape, the target per service)."""
        shaped = [
            t
            for t in self.targets.values()
            if t.service == launch.service and t.role is launch.role and t.shape.key == launch.shape.key
        ]
        chosen = self.targets.get(launch.node)
        domain = None if chosen is None else chosen.domain
        for t in shaped:
            if t.id == launch.node:
                return t
        for t in shaped:
            if t.domain == domain:
                return t
        return shaped[0] if shaped else None

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        snap = self._last if self._last is not None else self._read(now_s)
        changes, errors, notes = self.plan_changes(plan, snap)
        launched: list[str] = []
        removed: list[str] = []
        writes: list[Write] = []
        for tid, c in sorted(changes.items()):
            if c.delta == 0 and not c.victims:
                launched.extend(c.launched)
                removed.extend(c.removed)
                continue
            read = snap.targets[tid]
            base = read.replicas * max(1, read.groups)
            writes.append(
                Write(
                    f"scale {tid} {base}→{max(0, base + c.delta)}",
                    functools.partial(self.write_replicas, read, base + c.delta, c.victims, notes),
                    functools.partial(_done, launched, removed, c),
                )
            )
        fenced, abandoned = run_writes(writes, errors)
        return ActuationResult(
            launched=tuple(launched),
            removed=tuple(removed),
            errors=tuple(errors),
            abandoned=tuple(abandoned),
            fenced=fenced,
            notes=tuple(notes),
        )

    def finish_drains(self, now_s: float) -> ActuationResult:
        return ActuationResult()  # nothing drains in this mode (module doc)

    # --- writes ----------------------------------------------------------------------------------

    def write_replicas(self, read: TargetRead, total: int, victims: Sequence[str], notes: list[str]) -> None:
        """Set the target to ``total`` instances, guarded by the read it was planned on (module doc)."""
        t, k, ns = read.target, read.target.kind, self.settings.namespace
        for pod in victims:
            mark = {"metadata": {"annotations": {DELETION_COST: str(DELETION_COST_VICTIM)}}}
            self.client.call(f"mark {ns}/{pod} for removal", self.core.patch_namespaced_pod, pod, ns, mark, write=True)
        what = f"scale {t.id} to {max(0, total)}"
        try:
            if k.shim:
                groups = max(1, read.groups)
                per_group = max(0, math.ceil(total / groups))
                if per_group * groups != total:
                    notes.append(f"{t.id}: {groups} groups of role replicas: {per_group} each ({per_group * groups})")
                patch = role_patch(k, read.role_index, read.replicas, per_group, read.resource_version)
                self.client.call(
                    what,
                    self.custom.patch_namespaced_custom_object,
                    k.group,
                    k.version,
                    ns,
                    k.plural,
                    t.name,
                    patch,
                    write=True,
                    _content_type=JSON_PATCH,
                )
            else:
                body: dict[str, Any] = {
                    "metadata": {"resourceVersion": read.resource_version},
                    "spec": {"replicas": max(0, total)},
                }
                self.client.call(
                    what,
                    self.custom.patch_namespaced_custom_object_scale,
                    k.group,
                    k.version,
                    ns,
                    k.plural,
                    t.name,
                    body,
                    write=True,
                )
        except ConflictError as exc:
            raise TransientActuationError(f"{what}: changed since it was read; read again next cycle") from exc
        except PermanentActuationError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 422 and k.shim:
                # a failed JSON patch test: the role's replicas or the object moved since the read
                raise TransientActuationError(f"{what}: changed since it was read; read again next cycle") from exc
            raise


def _done(launched: list[str], removed: list[str], change: _Change) -> None:
    launched.extend(change.launched)
    removed.extend(change.removed)


def _whole(item: dict[str, Any]) -> dict[str, Any]:
    return item
