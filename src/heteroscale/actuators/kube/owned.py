"""The owned mode: the live ClusterStateSource and Actuator for workloads HeteroScale creates itself.

**Workloads.** One Deployment per (service, deployment group, role, instance shape) — see
:mod:`.manifests`. Replica counts change only through the ``scale`` subresource, as absolute values
computed from the state the plan was made on, with the Deployment's resourceVersion as precondition:
applying the same plan twice, or retrying after a time-out that did land, never adds a second instance.

**Scale-in.** The scheduler names the victims; we make the ReplicaSet take exactly those. A victim is
annotated with the lowest ``controller.kubernetes.io/pod-deletion-cost`` and taken out of service
discovery at once: discovery is the label ``heteroscale.io/discovery=on``, which is outside the
Deployment's selector, so flipping it neither orphans the pod nor makes the ReplicaSet replace it.
After the drain grace (at once for a pod that serves nothing yet, or in kill mode) the Deployment is
scaled down by the number of due victims — only while every other pod of it is Ready, because the
ReplicaSet deletes unready pods before it looks at the deletion cost. The live loop calls
:meth:`KubernetesCluster.finish_drains` every cycle for drains that fall due between plans. A stuck pod
(:mod:`.pods`, :mod:`.state`) is removed the same way, at once.

**Reading.** Only what is ours and what the topology needs, namespace-scoped and label-selected, in
pages: GPU nodes (those with the SKU label), our Deployments and our pods. With ``gpu_accounting:
cluster`` (opt-in; it needs the cluster-wide pod list of deploy/kustomize/components/gpu-accounting) the
pods bound to a node are listed too, page by page, each cut down to its node and GPUs at once. One read
serves a whole cycle: ``finish_drains``, ``snapshot``, ``free_gpus``, ``topology`` and ``apply`` at
the same ``now_s`` share it until something is written; ``apply`` then finishes due drains on that
read updated with the API's answers to our own writes, and the next ``snapshot`` reads again.

``apply`` reports per-workload failures in ``ActuationResult.errors`` and carries on with the rest —
except a write refused by the fence (the controller can no longer prove it holds the leader Lease):
that abandons every write left in the plan (and the drains to finish), listed in
``ActuationResult.abandoned`` with ``fenced`` saying why.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from heteroscale.actuators.kube.api import (
    ConflictError,
    FencedError,
    KubeApi,
    KubernetesSettings,
    NotFoundError,
    error_kind,
)
from heteroscale.actuators.kube.manifests import WorkloadTemplate, deployment_manifest
from heteroscale.actuators.kube.naming import (
    A_CREATED_AT,
    A_DRAIN_DEADLINE,
    A_SCALED_DOWN,
    DELETION_COST,
    DELETION_COST_VICTIM,
    DISCOVERY_OFF,
    DISCOVERY_ON,
    L_DISCOVERY,
    MANAGED_BY,
    MANAGER,
    WorkloadKey,
)
from heteroscale.actuators.kube.pods import gpu_use, replicaset_rank, to_float
from heteroscale.actuators.kube.state import Snapshot, build_snapshot, with_changes
from heteroscale.clock import Clock, WallClock
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.state import ClusterState, Lifecycle, ScaleInMode
from heteroscale.domain.topology import Topology
from heteroscale.errors import PermanentActuationError, TransientActuationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Write:
    """One write of a plan: ``do`` it, then ``done`` (bookkeeping) if it went through."""

    what: str
    do: Callable[[], object]
    done: Callable[[], object]


def _run_writes(writes: list[_Write], errors: list[str]) -> tuple[str | None, list[str]]:
    """Make the writes in order; a failure is recorded in ``errors`` and the rest go on, except a
    refusal by the fence, which abandons every write left. Returns (why fenced or None, abandoned)."""
    for i, write in enumerate(writes):
        try:
            write.do()
        except FencedError as exc:
            abandoned = [w.what for w in writes[i:]]
            errors.append(f"fenced: {exc}; {len(abandoned)} write(s) abandoned")
            log.warning("fenced: %s; abandoning %d write(s): %s", exc, len(abandoned), "; ".join(abandoned))
            return str(exc), abandoned
        except (TransientActuationError, PermanentActuationError) as exc:
            errors.append(f"{write.what}: {error_kind(exc)}: {exc}")
            continue
        write.done()
    return None, []


class KubernetesCluster:
    """ClusterStateSource and Actuator over a live Kubernetes API, for workloads we own (module doc)."""

    def __init__(
        self,
        api_client: Any,
        settings: KubernetesSettings,
        templates: Mapping[str, WorkloadTemplate],
        clock: Clock | None = None,
        *,
        affinity: Mapping[str, AffinityLevel] | None = None,
        resolve_sku: Callable[[str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.templates = dict(templates)
        self.affinity = dict(affinity or {})
        self.clock: Clock = clock if clock is not None else WallClock()
        self._resolve_sku = resolve_sku or (lambda value: value.lower())
        self.client = KubeApi(api_client, settings, self.clock)
        self.core = self.client.core
        self.apps = self.client.apps
        self._last: Snapshot | None = None  # the read plans are made on
        self._view: Snapshot | None = None  # that read with our writes since (None: nothing written)
        self._replicas: dict[str, int] = {}  # workload → replicas we set since the read
        self._patched: dict[str, dict[str, Any]] = {}  # pod → the API's answer to our last patch of it
        self._writes_at_read = 0  # the client's write count when the read was made

    @property
    def api(self) -> Any:
        return self.client.api

    @property
    def calls(self) -> int:
        return self.client.calls

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.client.call(what, fn, *args, **kwargs)

    # --- reading ---------------------------------------------------------------------------------

    def _read(self, now_s: float) -> Snapshot:
        s = self.settings
        ns = s.namespace
        ours = f"{MANAGED_BY}={MANAGER}"
        nodes = self.client.list_all("list GPU nodes", self.core.list_node, label_selector=s.labels.sku, keep=_whole)
        deployments = self.client.list_all(
            f"list deployments in {ns}", self.apps.list_namespaced_deployment, ns, label_selector=ours, keep=_whole
        )
        pods = self.client.list_all(
            f"list pods in {ns}", self.core.list_namespaced_pod, ns, label_selector=ours, keep=_whole
        )
        if s.gpu_accounting == "cluster":
            uses = self.client.list_all(
                "list pods bound to nodes",
                self.core.list_pod_for_all_namespaces,
                field_selector="spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
                keep=lambda pod: gpu_use(pod, s.labels.gpu_resource),
            )
        else:
            uses = [use for pod in pods if (use := gpu_use(pod, s.labels.gpu_resource)) is not None]
        used: dict[str, int] = {}
        for node, gpus in uses:
            used[node] = used.get(node, 0) + gpus
        snap = build_snapshot(
            now_s,
            nodes,
            deployments,
            pods,
            used,
            s.labels,
            self._resolve_sku,
            start_timeout_s=s.start_timeout_s,
            unschedulable_grace_s=s.unschedulable_grace_s,
            tolerations=s.tolerations,
        )
        self._last, self._view = snap, None
        self._replicas, self._patched = {}, {}
        self._writes_at_read = self.client.writes
        return snap

    def _current(self, now_s: float) -> Snapshot:
        """The cycle's read at ``now_s`` as updated by our writes since (a new read if there is none)."""
        if self._last is None or self._last.at_s != now_s:
            return self._read(now_s)
        return self._last if self._view is None else self._view

    def _wrote(self) -> None:
        """Keep the API's answers to our writes in the view of the cycle's read."""
        if self._last is not None and (self._replicas or self._patched):
            self._view = with_changes(self._last, self._replicas, self._patched)

    # --- ClusterStateSource ----------------------------------------------------------------------

    def snapshot(self, now_s: float) -> ClusterState:
        """The cluster at ``now_s``: the cycle's read when nothing was written since, else a new read."""
        unchanged = self.client.writes == self._writes_at_read  # no write attempt through this client since
        snap = self._last if self._last is not None and self._last.at_s == now_s and unchanged else None
        snap = snap or self._read(now_s)
        return ClusterState(at_s=now_s, instances=tuple(info for info, _ in snap.instances.values()))

    def free_gpus(self) -> dict[str, int]:
        return dict((self._last or self._read(self.clock.now_s())).free)

    def topology(self) -> Topology:
        return (self._last or self._read(self.clock.now_s())).topology

    # --- Actuator --------------------------------------------------------------------------------

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        """Apply ``plan`` against the state it was made on (the last snapshot); see the module doc."""
        snap = self._last if self._last is not None else self._read(now_s)
        launched: list[str] = []
        removed: list[str] = []
        changed: list[str] = []
        errors: list[str] = [f"unplaced {u.service}/{u.role.value} ×{u.count}: {u.reason}" for u in plan.unplaced]
        writes: list[_Write] = []
        # replicas to add (launches) or take away at once (placeholders) per workload
        delta: dict[str, int] = {}
        created: dict[str, tuple[WorkloadKey, str]] = {}  # workload name → (key, node to pin the domain by)
        for launch in plan.launches:
            key = WorkloadKey(launch.service, launch.dg, launch.role, launch.shape.sku, launch.shape.tp)
            name = key.name
            delta[name] = delta.get(name, 0) + 1
            if name not in snap.workloads:
                created.setdefault(name, (key, launch.node))
        for removal in plan.removals:
            found = snap.instances.get(removal.instance_id)
            if found is None:
                errors.append(f"remove {removal.instance_id}: no such instance")
                continue
            info, wl_name = found
            if "#pending-" in info.id:
                delta[wl_name] = delta.get(wl_name, 0) - 1
                removed.append(info.id)
                continue
            grace_s = (
                removal.grace_s if removal.mode is ScaleInMode.DRAIN and info.lifecycle is Lifecycle.READY else 0.0
            )
            writes.append(
                _Write(
                    f"remove {info.id}",
                    functools.partial(self._mark_victim, info.id, now_s + grace_s),
                    functools.partial(removed.append, info.id),
                )
            )
        for name, change in sorted(delta.items()):
            if name in created:
                key, node = created[name]
                do = functools.partial(self._ensure_workload, key, node, change, snap)
            else:
                wl = snap.workloads[name]
                do = functools.partial(self._scale_to, wl.name, wl.replicas, wl.replicas + change)
            new = [f"{name}+{i + 1}" for i in range(change)]
            writes.append(_Write(f"scale {name} by {change:+d}", do, functools.partial(launched.extend, new)))
        for flip in plan.discovery:
            found = snap.instances.get(flip.instance_id)
            if found is None or "#pending-" in flip.instance_id:
                errors.append(f"discovery {flip.instance_id}: no such pod")
                continue
            value = DISCOVERY_ON if flip.in_discovery else DISCOVERY_OFF
            body = {"metadata": {"labels": {L_DISCOVERY: value}}}
            writes.append(
                _Write(
                    f"discovery {flip.instance_id} → {value}",
                    functools.partial(self._patch_pod, flip.instance_id, body),
                    functools.partial(changed.append, flip.instance_id),
                )
            )
        fenced, abandoned = _run_writes(writes, errors)
        self._wrote()
        finished = ActuationResult() if fenced is not None else self._finish(self._view or snap, now_s)
        return ActuationResult(
            launched=tuple(launched),
            removed=tuple(removed),
            discovery_changed=tuple(changed),
            errors=tuple(errors) + finished.errors,
            abandoned=tuple(abandoned) + finished.abandoned,
            fenced=fenced if fenced is not None else finished.fenced,
        )

    def finish_drains(self, now_s: float) -> ActuationResult:
        """Scale workloads down by their victims whose drain deadline has passed (module doc)."""
        return self._finish(self._current(now_s), now_s)

    def _finish(self, snap: Snapshot, now_s: float) -> ActuationResult:
        removed: list[str] = []
        errors: list[str] = []
        writes: list[_Write] = []
        for wl in snap.workloads.values():
            due: list[dict[str, Any]] = []
            others: list[dict[str, Any]] = []
            for pod in wl.pods:
                meta = pod["metadata"]
                annotations = meta.get("annotations") or {}
                if meta.get("deletionTimestamp"):
                    continue
                deadline = annotations.get(A_DRAIN_DEADLINE)
                if deadline is None:
                    others.append(pod)
                elif A_SCALED_DOWN not in annotations and to_float(deadline) <= now_s:
                    due.append(pod)
            if not due:
                continue
            # the ReplicaSet deletes by (unscheduled, pending, not ready) before the deletion cost: scale
            # down only when no other pod ranks before a victim there, or it would take that pod instead
            worst_victim = max(replicaset_rank(p) for p in due)
            if others and min(replicaset_rank(p) for p in others) < worst_victim:
                log.info("%s: %d drained pod(s) wait until the other pods are as far along", wl.name, len(due))
                continue
            names = [p["metadata"]["name"] for p in due]
            writes.append(
                _Write(
                    f"finish drain of {wl.name}",
                    functools.partial(self._scale_down_drained, wl.name, wl.replicas, names, now_s),
                    functools.partial(removed.extend, names),
                )
            )
        fenced, abandoned = _run_writes(writes, errors)
        self._wrote()
        return ActuationResult(removed=tuple(removed), errors=tuple(errors), abandoned=tuple(abandoned), fenced=fenced)

    def _scale_down_drained(self, name: str, replicas: int, pods: list[str], now_s: float) -> None:
        for pod in pods:
            self._patch_pod(pod, {"metadata": {"annotations": {A_SCALED_DOWN: f"{now_s:.3f}"}}})
        self._scale_to(name, replicas, replicas - len(pods))

    # --- writes ----------------------------------------------------------------------------------

    def _patch_pod(self, name: str, body: dict[str, Any]) -> Any:
        ns = self.settings.namespace
        answer = self.call(f"patch pod {ns}/{name}", self.core.patch_namespaced_pod, name, ns, body, write=True)
        if isinstance(answer, dict) and (answer.get("metadata") or {}).get("name") == name:
            self._patched[name] = answer
        return answer

    def _mark_victim(self, pod: str, deadline_s: float) -> None:
        body = {
            "metadata": {
                "labels": {L_DISCOVERY: DISCOVERY_OFF},
                # rounded down: a victim due now must read as due now, not a fraction of a millisecond later
                "annotations": {
                    DELETION_COST: str(DELETION_COST_VICTIM),
                    A_DRAIN_DEADLINE: f"{math.floor(deadline_s * 1000) / 1000:.3f}",
                },
            }
        }
        self._patch_pod(pod, body)

    def _scale_to(self, name: str, base: int, target: int) -> None:
        """Set replicas to ``target`` (absolute), given they were ``base`` when the plan was made.

        409 → re-read: already ``target`` (an earlier attempt landed) is success; still ``base`` is
        retried with the new resourceVersion; anything else means someone else moved it: give up for
        this reconcile (transient), the next one plans from the new state.
        """
        ns = self.settings.namespace
        target = max(0, target)
        what = f"scale deployment {ns}/{name} {base}→{target}"
        backoff_s = self.settings.backoff_s
        for attempt in range(1, self.settings.max_attempts + 1):
            scale = self.call(f"read scale of {ns}/{name}", self.apps.read_namespaced_deployment_scale, name, ns)
            current = int((scale.get("spec") or {}).get("replicas") or 0)
            if current == target:
                self._replicas[name] = target
                return
            if current != base:
                raise TransientActuationError(f"{what}: replicas are {current}, changed by someone else", backoff_s)
            body = {
                "metadata": {"resourceVersion": scale["metadata"].get("resourceVersion")},
                "spec": {"replicas": target},
            }
            try:
                self.call(what, self.apps.patch_namespaced_deployment_scale, name, ns, body, write=True)
                self._replicas[name] = target
                return
            except ConflictError as exc:
                if attempt == self.settings.max_attempts:
                    raise TransientActuationError(
                        f"{what}: still conflicting after {attempt} attempts", backoff_s
                    ) from exc
                log.info("%s: conflict, re-reading (attempt %d)", what, attempt)
                self.clock.sleep_s(backoff_s)
                backoff_s = min(backoff_s * 2, self.settings.max_backoff_s)
            except TransientActuationError:
                # the patch may have landed before the answer was lost: the next read tells
                continue
        raise TransientActuationError(f"{what}: not confirmed after {self.settings.max_attempts} attempts", backoff_s)

    def _ensure_workload(self, key: WorkloadKey, node: str, change: int, snap: Snapshot) -> None:
        """Create the workload with ``change`` replicas, or if it exists (409), scale it by ``change``."""
        ns = self.settings.namespace
        manifest = self.deployment_manifest(key, node, max(0, change), snap)
        try:
            self.call(
                f"create deployment {ns}/{key.name}", self.apps.create_namespaced_deployment, ns, manifest, write=True
            )
            return
        except ConflictError:
            pass  # it exists: created by an earlier attempt whose answer was lost, or by a twin
        except TransientActuationError:
            pass  # maybe it landed: read it before trying again
        try:
            existing = self.call(f"read deployment {ns}/{key.name}", self.apps.read_namespaced_deployment, key.name, ns)
        except NotFoundError:
            self.call(
                f"create deployment {ns}/{key.name}", self.apps.create_namespaced_deployment, ns, manifest, write=True
            )
            return
        created_by_us = (
            existing["metadata"].get("annotations", {}).get(A_CREATED_AT)
            == manifest["metadata"]["annotations"][A_CREATED_AT]
        )
        if created_by_us:
            return  # our create landed; its replicas are already ``change``
        replicas = int((existing.get("spec") or {}).get("replicas") or 0)
        self._scale_to(key.name, replicas, replicas + change)

    def deployment_manifest(
        self, key: WorkloadKey, node: str, replicas: int, snap: Snapshot | None = None
    ) -> dict[str, Any]:
        """The Deployment of one workload, pinned to the domain of ``node`` and to the shape's SKU."""
        snap = snap or self._last or self._read(self.clock.now_s())
        template = self.templates.get(key.service)
        if template is None:
            raise PermanentActuationError(f"no workload template for service {key.service!r}")
        affinity = self.affinity.get(key.service, AffinityLevel.S2)
        return deployment_manifest(
            key, node, replicas, snap, template, self.settings, affinity, created_at_s=self.clock.now_s()
        )


def _whole(item: dict[str, Any]) -> dict[str, Any]:
    return item
