"""KubernetesCluster: the live ClusterStateSource and Actuator, over the official ``kubernetes`` client.

**Reading.** Nodes become the domain :class:`Topology`: their labels name the S2 / S1 / S0 domains
(and optionally VDC, physical and logical cluster) and the GPU SKU (:class:`LabelKeys`, defaults
``heteroscale.io/s2`` …), allocatable ``nvidia.com/gpu`` is their size. Pods labelled as ours become
instances (:class:`~heteroscale.domain.state.InstanceInfo`): Pending → pending, Running but not Ready →
starting, Ready → ready, marked for drain or terminating → draining. Replicas a Deployment asks for
but whose pods do not exist yet count as pending placeholders, so a restarted controller sees the
capacity it already asked for and does not ask again.

**Workloads.** One Deployment per (service, deployment group, role, instance shape) — a DG's role
normally has one shape, so that is one per (service, DG, role). Its pods carry labels for service, DG,
role, SKU and TP; required node affinity pins them to the DG's domain (every domain label from the top
down to the service's affinity level) and to the SKU. Replica counts change only through the
``scale`` subresource, as absolute values computed from the state the plan was made on, with the
Deployment's resourceVersion as precondition: applying the same plan twice, or retrying after a
time-out that did land, never adds a second instance.

**Scale-in.** The scheduler names the victims; we make the ReplicaSet take exactly those. A victim is
annotated with the lowest ``controller.kubernetes.io/pod-deletion-cost`` and taken out of service
discovery at once: discovery is the label ``heteroscale.io/discovery=on``, which is outside the
Deployment's selector, so flipping it neither orphans the pod nor makes the ReplicaSet replace it.
After the drain grace (at once for a pod that serves nothing yet, or in kill mode) the Deployment is
scaled down by the number of due victims — only while every other pod of it is Ready, because the
ReplicaSet deletes unready pods before it looks at the deletion cost. The live loop calls
:meth:`KubernetesCluster.finish_drains` every cycle for drains that fall due between plans.

**Errors.** Every API failure is translated with ``raise … from``: 409 → :class:`ConflictError` (the
caller re-reads and retries with backoff), 429 and 5xx → :class:`TransientActuationError` honouring
``Retry-After``, time-outs and connection errors → transient, other 4xx → :class:`PermanentActuationError`.
Retries are bounded in count (``max_attempts``) and time (``retry_budget_s``, on the injected clock).
``apply`` reports per-workload failures in ``ActuationResult.errors`` and carries on with the rest.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from heteroscale.clock import Clock, WallClock
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle, ScaleInMode
from heteroscale.domain.topology import Level, NodeSpec, Topology
from heteroscale.errors import PermanentActuationError, TransientActuationError

log = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "heteroscale"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
DELETION_COST_VICTIM = -2147483648  # int32 minimum: deleted first
PREFIX = "heteroscale.io"
L_WORKLOAD = f"{PREFIX}/workload"
L_SERVICE = f"{PREFIX}/service"
L_DG = f"{PREFIX}/dg"
L_ROLE = f"{PREFIX}/role"
L_SKU = f"{PREFIX}/sku"
L_TP = f"{PREFIX}/tp"
L_DISCOVERY = f"{PREFIX}/discovery"
A_DRAIN_DEADLINE = f"{PREFIX}/drain-deadline-s"
A_SCALED_DOWN = f"{PREFIX}/scaled-down"
A_DOMAIN = f"{PREFIX}/domain"
DISCOVERY_ON = "on"
DISCOVERY_OFF = "off"


# --- errors ---------------------------------------------------------------------------------------


class ConflictError(TransientActuationError):
    """409: the object changed (or exists) since we read it; re-read and try again."""


class NotFoundError(PermanentActuationError):
    """404: the object does not exist."""


def translate(exc: Exception, what: str, backoff_s: float = 1.0) -> TransientActuationError | PermanentActuationError:
    """An API or transport exception as a HeteroScale actuation error (to be raised ``from exc``)."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = _api_message(exc)
        if status == 409:
            return ConflictError(f"{what}: 409 conflict: {message}", backoff_s)
        if status == 429 or status >= 500:
            retry_after = _retry_after_s(exc)
            return TransientActuationError(
                f"{what}: HTTP {status}: {message}", backoff_s if retry_after is None else retry_after
            )
        if status == 404:
            return NotFoundError(f"{what}: 404 not found: {message}")
        if status == 0:
            return TransientActuationError(f"{what}: no answer: {message}", backoff_s)
        return PermanentActuationError(f"{what}: HTTP {status}: {message}")
    return TransientActuationError(f"{what}: {type(exc).__name__}: {exc}", backoff_s)


def _api_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return body[:200]
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            return str(parsed["message"])[:200]
    return str(exc.reason or "")


def _retry_after_s(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelKeys:
    """Node label keys for the topology. A level whose key is None (or absent on a node) is "default"."""

    vdc: str | None = f"{PREFIX}/vdc"
    physical_cluster: str | None = f"{PREFIX}/physical-cluster"
    logical_cluster: str | None = f"{PREFIX}/logical-cluster"
    s2: str | None = f"{PREFIX}/s2"
    s1: str | None = f"{PREFIX}/s1"
    s0: str | None = f"{PREFIX}/s0"
    sku: str = f"{PREFIX}/gpu-sku"
    gpu_resource: str = "nvidia.com/gpu"

    def level_keys(self) -> tuple[tuple[Level, str | None], ...]:
        return (
            (Level.VDC, self.vdc),
            (Level.PHYSICAL_CLUSTER, self.physical_cluster),
            (Level.LOGICAL_CLUSTER, self.logical_cluster),
            (Level.S2, self.s2),
            (Level.S1, self.s1),
            (Level.S0, self.s0),
        )


@dataclass(frozen=True, slots=True)
class WorkloadTemplate:
    """What one service's pods run: image, per-role arguments, port, environment."""

    image: str
    prefill_args: tuple[str, ...] = ()
    decode_args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    port: int = 8000
    readiness_path: str = "/health"
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # extra pod labels (e.g. for a PodMonitor)
    termination_grace_s: int = 30

    def args(self, role: Role) -> tuple[str, ...]:
        return self.prefill_args if role is Role.PREFILL else self.decode_args


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    namespace: str = "default"
    labels: LabelKeys = field(default_factory=LabelKeys)
    request_timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_s: float = 0.2  # first conflict / error backoff, doubled per attempt
    max_backoff_s: float = 5.0
    retry_budget_s: float = 30.0  # one call with its retries never waits longer than this
    field_manager: str = "heteroscale"
    gpu_accounting: str = "cluster"  # "cluster": every pod on a node counts; "namespace": ours only

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be ≥ 1")
        if self.request_timeout_s <= 0 or self.retry_budget_s <= 0:
            raise ValueError("request_timeout_s and retry_budget_s must be > 0")
        if self.gpu_accounting not in ("cluster", "namespace"):
            raise ValueError("gpu_accounting must be 'cluster' or 'namespace'")


def new_api_client(kubeconfig: Path | None = None, context: str | None = None, in_cluster: bool = False) -> Any:
    """An ApiClient from a kubeconfig file (or the default one) or from the in-cluster service account."""
    try:
        if in_cluster:
            configuration = kubernetes.client.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            configuration.retries = False
            return kubernetes.client.ApiClient(configuration)
        api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=None if kubeconfig is None else str(kubeconfig), context=context
        )
        api.configuration.retries = False
        api.rest_client = kubernetes.client.rest.RESTClientObject(api.configuration)
        return api
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '(default)'}"
        raise PermanentActuationError(f"cannot configure the Kubernetes client from the {where}: {exc}") from exc


# --- the cluster ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkloadKey:
    service: str
    dg: str
    role: Role
    sku: str
    tp: int

    @property
    def name(self) -> str:
        return workload_name(self)


def dns_label(text: str) -> str:
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return out or "x"


def workload_name(key: WorkloadKey) -> str:
    """``<dg>-<role>-<sku>-tp<N>`` as a DNS label of at most 52 characters (hash-shortened if longer)."""
    full = dns_label(f"{key.dg}-{key.role.value}-{key.sku}-tp{key.tp}")
    if len(full) <= 52:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:43].rstrip('-')}-{digest}"


@dataclass(slots=True)
class _Workload:
    key: WorkloadKey
    name: str
    replicas: int
    resource_version: str
    pods: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Snapshot:
    at_s: float
    nodes: list[dict[str, Any]]
    workloads: dict[str, _Workload]
    node_used_gpus: dict[str, int]
    topology: Topology
    raw_sku_values: dict[str, set[str]]  # canonical SKU → node label values meaning it
    instances: dict[str, tuple[InstanceInfo, str]]  # instance id → (info, workload name)
    free: dict[str, int]


class KubernetesCluster:
    """ClusterStateSource and Actuator over a live Kubernetes API (see the module doc)."""

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
        self.api = api_client
        self.settings = settings
        self.templates = dict(templates)
        self.affinity = dict(affinity or {})
        self.clock: Clock = clock if clock is not None else WallClock()
        self._resolve_sku = resolve_sku or (lambda value: value.lower())
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self._last: _Snapshot | None = None
        self.calls = 0  # API calls made (for tests and figures)

    # --- API calls with translation and bounded retries ------------------------------------------

    def call(self, what: str, fn: Callable[..., Any], *args: Any, retry_conflicts: bool = False, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` as parsed JSON, retrying transient failures (and 409 if asked)."""
        deadline_s = self.clock.now_s() + self.settings.retry_budget_s
        backoff_s = self.settings.backoff_s
        last: TransientActuationError | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                self.calls += 1
                response = fn(*args, _preload_content=False, _request_timeout=self.settings.request_timeout_s, **kwargs)
                return _json(response, what)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                error = translate(exc, what, backoff_s)
                if isinstance(error, PermanentActuationError):
                    raise error from exc
                if isinstance(error, ConflictError) and not retry_conflicts:
                    raise error from exc
                last = error
                wait_s = min(error.retry_after_s, self.settings.max_backoff_s * 6)
                left_s = deadline_s - self.clock.now_s()
                if attempt == self.settings.max_attempts or wait_s >= left_s:
                    raise TransientActuationError(
                        f"{error} (gave up after {attempt} attempt(s))", error.retry_after_s
                    ) from exc
                log.info("%s: attempt %d failed (%s); retrying in %.2f s", what, attempt, error, wait_s)
                self.clock.sleep_s(wait_s)
                backoff_s = min(backoff_s * 2, self.settings.max_backoff_s)
        raise last or TransientActuationError(f"{what}: no attempt made")  # max_attempts ≥ 1: unreachable

    # --- reading ---------------------------------------------------------------------------------

    def _read(self, now_s: float) -> _Snapshot:
        ns = self.settings.namespace
        selector = f"{MANAGED_BY}={MANAGER}"
        nodes = self.call("list nodes", self.core.list_node)["items"]
        deployments = self.call(
            f"list deployments in {ns}", self.apps.list_namespaced_deployment, ns, label_selector=selector
        )["items"]
        pods = self.call(f"list pods in {ns}", self.core.list_namespaced_pod, ns, label_selector=selector)["items"]
        if self.settings.gpu_accounting == "cluster":
            all_pods = self.call(
                "list pods on all nodes",
                self.core.list_pod_for_all_namespaces,
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
            )["items"]
        else:
            all_pods = pods
        used: dict[str, int] = {}
        for pod in all_pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                used[node] = used.get(node, 0) + _gpu_request(pod, self.settings.labels.gpu_resource)
        workloads: dict[str, _Workload] = {}
        for dep in deployments:
            key = _workload_key((dep.get("spec") or {}).get("template", {}).get("metadata", {}).get("labels") or {})
            if key is None:
                continue
            meta = dep["metadata"]
            workloads[meta["name"]] = _Workload(
                key,
                meta["name"],
                int((dep.get("spec") or {}).get("replicas") or 0),
                str(meta.get("resourceVersion", "")),
            )
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            owner = workloads.get(labels.get(L_WORKLOAD, ""))
            if owner is not None:
                owner.pods.append(pod)
        topology, raw_values = self._topology(nodes, used)
        instances = self._instances(workloads, now_s)
        free = self._free_gpus(topology, workloads)
        return _Snapshot(now_s, nodes, workloads, used, topology, raw_values, instances, free)

    def _topology(self, nodes: list[dict[str, Any]], used: dict[str, int]) -> tuple[Topology, dict[str, set[str]]]:
        keys = self.settings.labels
        specs: list[NodeSpec] = []
        raw_values: dict[str, set[str]] = {}
        for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            meta = node["metadata"]
            labels = meta.get("labels") or {}
            raw_sku = labels.get(keys.sku)
            gpus = _quantity(((node.get("status") or {}).get("allocatable") or {}).get(keys.gpu_resource, "0"))
            if raw_sku is None or gpus <= 0:
                continue  # not a GPU node we can place on
            sku = self._resolve_sku(raw_sku)
            if sku is None:
                log.warning("node %s: unknown GPU SKU label value %r; skipped", meta["name"], raw_sku)
                continue
            raw_values.setdefault(sku, set()).add(raw_sku)
            path = [labels.get(key, "default") if key else "default" for _, key in keys.level_keys()]
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
                    labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                )
            )
        return Topology(name="kubernetes", nodes=tuple(specs)), raw_values

    def _instances(self, workloads: dict[str, _Workload], now_s: float) -> dict[str, tuple[InstanceInfo, str]]:
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
                labels = meta.get("labels") or {}
                terminating = bool(meta.get("deletionTimestamp"))
                if not terminating:
                    alive += 1
                ready_at = _ready_since(pod)
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
                    in_discovery=labels.get(L_DISCOVERY) == DISCOVERY_ON and lifecycle is Lifecycle.READY,
                    launched_at_s=_parse_time(meta.get("creationTimestamp")) or now_s,
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

    def _free_gpus(self, topology: Topology, workloads: dict[str, _Workload]) -> dict[str, int]:
        """Free GPUs per node, less the GPUs that replicas without a pod yet will take in their domain."""
        free = {n.name: n.gpus_free if n.schedulable else 0 for n in topology.nodes}
        by_name = {n.name: n for n in topology.nodes}
        for wl in workloads.values():
            alive = sum(1 for p in wl.pods if not p["metadata"].get("deletionTimestamp"))
            missing = max(0, wl.replicas - alive)
            if not missing:
                continue
            domain = self._domain_of(wl)
            for _ in range(missing):
                for node in topology.nodes:
                    if node.sku != wl.key.sku or free[node.name] < wl.key.tp:
                        continue
                    if domain and any(by_name[node.name].path[int(lv)] != v for lv, v in domain):
                        continue
                    free[node.name] -= wl.key.tp
                    break
        return free

    def _domain_of(self, wl: _Workload) -> tuple[tuple[Level, str], ...]:
        """The (level, domain name) pairs a workload is pinned to, from its pods' first bound node."""
        for pod in wl.pods:
            raw = (pod["metadata"].get("annotations") or {}).get(A_DOMAIN)
            if raw:
                try:
                    pairs = json.loads(raw)
                    return tuple((Level(int(lv)), str(v)) for lv, v in pairs)
                except (ValueError, TypeError):
                    return ()
        return ()

    def _fresh(self, now_s: float) -> _Snapshot:
        if self._last is None or self._last.at_s != now_s:
            self._last = self._read(now_s)
        return self._last

    # --- ClusterStateSource ----------------------------------------------------------------------

    def snapshot(self, now_s: float) -> ClusterState:
        self._last = self._read(now_s)
        return ClusterState(at_s=now_s, instances=tuple(info for info, _ in self._last.instances.values()))

    def free_gpus(self) -> dict[str, int]:
        return dict(self._fresh(self._last.at_s if self._last else self.clock.now_s()).free)

    def topology(self) -> Topology:
        return self._fresh(self._last.at_s if self._last else self.clock.now_s()).topology

    # --- Actuator --------------------------------------------------------------------------------

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        """Apply ``plan`` against the state it was made on (the last snapshot); see the module doc."""
        snap = self._fresh(now_s) if self._last is None else self._last
        launched: list[str] = []
        removed: list[str] = []
        errors: list[str] = [f"unplaced {u.service}/{u.role.value} ×{u.count}: {u.reason}" for u in plan.unplaced]
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
            try:
                self._mark_victim(info.id, now_s + grace_s)
                removed.append(info.id)
            except (TransientActuationError, PermanentActuationError) as exc:
                errors.append(f"remove {info.id}: {_kind(exc)}: {exc}")
        for name, change in sorted(delta.items()):
            try:
                if name in created:
                    key, node = created[name]
                    self._ensure_workload(key, node, change, snap)
                else:
                    wl = snap.workloads[name]
                    self._scale_to(wl.name, wl.replicas, wl.replicas + change)
                if change > 0:
                    launched.extend(f"{name}+{i + 1}" for i in range(change))
            except (TransientActuationError, PermanentActuationError) as exc:
                errors.append(f"scale {name} by {change:+d}: {_kind(exc)}: {exc}")
        changed: list[str] = []
        for flip in plan.discovery:
            found = snap.instances.get(flip.instance_id)
            if found is None or "#pending-" in flip.instance_id:
                errors.append(f"discovery {flip.instance_id}: no such pod")
                continue
            value = DISCOVERY_ON if flip.in_discovery else DISCOVERY_OFF
            try:
                self._patch_pod(flip.instance_id, {"metadata": {"labels": {L_DISCOVERY: value}}})
                changed.append(flip.instance_id)
            except (TransientActuationError, PermanentActuationError) as exc:
                errors.append(f"discovery {flip.instance_id} → {value}: {_kind(exc)}: {exc}")
        self._last = None  # the world changed: the next read is fresh
        finished = self.finish_drains(now_s)
        return ActuationResult(
            launched=tuple(launched),
            removed=tuple(removed),
            discovery_changed=tuple(changed),
            errors=tuple(errors) + finished.errors,
        )

    def finish_drains(self, now_s: float) -> ActuationResult:
        """Scale workloads down by their victims whose drain deadline has passed (module doc)."""
        snap = self._read(now_s)
        self._last = snap
        removed: list[str] = []
        errors: list[str] = []
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
                elif A_SCALED_DOWN not in annotations and _float(deadline) <= now_s:
                    due.append(pod)
            if not due:
                continue
            # the ReplicaSet deletes by (unscheduled, pending, not ready) before the deletion cost: scale
            # down only when no other pod ranks before a victim there, or it would take that pod instead
            worst_victim = max(_replicaset_rank(p) for p in due)
            if others and min(_replicaset_rank(p) for p in others) < worst_victim:
                log.info("%s: %d drained pod(s) wait until the other pods are as far along", wl.name, len(due))
                continue
            try:
                for pod in due:
                    self._patch_pod(
                        pod["metadata"]["name"], {"metadata": {"annotations": {A_SCALED_DOWN: f"{now_s:.3f}"}}}
                    )
                self._scale_to(wl.name, wl.replicas, wl.replicas - len(due))
                removed.extend(p["metadata"]["name"] for p in due)
            except (TransientActuationError, PermanentActuationError) as exc:
                errors.append(f"finish drain of {wl.name}: {_kind(exc)}: {exc}")
        if removed:
            self._last = None
        return ActuationResult(removed=tuple(removed), errors=tuple(errors))

    # --- writes ----------------------------------------------------------------------------------

    def _patch_pod(self, name: str, body: dict[str, Any]) -> Any:
        ns = self.settings.namespace
        return self.call(f"patch pod {ns}/{name}", self.core.patch_namespaced_pod, name, ns, body)

    def _mark_victim(self, pod: str, deadline_s: float) -> None:
        body = {
            "metadata": {
                "labels": {L_DISCOVERY: DISCOVERY_OFF},
                "annotations": {DELETION_COST: str(DELETION_COST_VICTIM), A_DRAIN_DEADLINE: f"{deadline_s:.3f}"},
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
                return
            if current != base:
                raise TransientActuationError(f"{what}: replicas are {current}, changed by someone else", backoff_s)
            body = {
                "metadata": {"resourceVersion": scale["metadata"].get("resourceVersion")},
                "spec": {"replicas": target},
            }
            try:
                self.call(what, self.apps.patch_namespaced_deployment_scale, name, ns, body)
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

    def _ensure_workload(self, key: WorkloadKey, node: str, change: int, snap: _Snapshot) -> None:
        """Create the workload with ``change`` replicas, or if it exists (409), scale it by ``change``."""
        ns = self.settings.namespace
        manifest = self.deployment_manifest(key, node, max(0, change), snap)
        try:
            self.call(f"create deployment {ns}/{key.name}", self.apps.create_namespaced_deployment, ns, manifest)
            return
        except ConflictError:
            pass  # it exists: created by an earlier attempt whose answer was lost, or by a twin
        except TransientActuationError:
            pass  # maybe it landed: read it before trying again
        try:
            existing = self.call(f"read deployment {ns}/{key.name}", self.apps.read_namespaced_deployment, key.name, ns)
        except NotFoundError:
            self.call(f"create deployment {ns}/{key.name}", self.apps.create_namespaced_deployment, ns, manifest)
            return
        created_by_us = (
            existing["metadata"].get("annotations", {}).get(f"{PREFIX}/created-at")
            == manifest["metadata"]["annotations"][f"{PREFIX}/created-at"]
        )
        if created_by_us:
            return  # our create landed; its replicas are already ``change``
        replicas = int((existing.get("spec") or {}).get("replicas") or 0)
        self._scale_to(key.name, replicas, replicas + change)

    def deployment_manifest(
        self, key: WorkloadKey, node: str, replicas: int, snap: _Snapshot | None = None
    ) -> dict[str, Any]:
        """The Deployment of one workload, pinned to the domain of ``node`` and to the shape's SKU."""
        snap = snap or self._fresh(self.clock.now_s())
        template = self.templates.get(key.service)
        if template is None:
            raise PermanentActuationError(f"no workload template for service {key.service!r}")
        level = _affinity_level(self.affinity.get(key.service, AffinityLevel.S2))
        by_name = {n.name: n for n in snap.topology.nodes}
        spec_node = by_name.get(node)
        expressions: list[dict[str, Any]] = []
        domain: list[tuple[int, str]] = []
        raw_node = next((n for n in snap.nodes if n["metadata"]["name"] == node), None)
        node_labels = (raw_node or {}).get("metadata", {}).get("labels") or {}
        for lv, label_key in self.settings.labels.level_keys():
            if lv > level or label_key is None or label_key not in node_labels:
                continue
            expressions.append({"key": label_key, "operator": "In", "values": [node_labels[label_key]]})
            if spec_node is not None:
                domain.append((int(lv), spec_node.path[int(lv)]))
        sku_values = sorted(snap.raw_sku_values.get(key.sku, {key.sku}))
        expressions.append({"key": self.settings.labels.sku, "operator": "In", "values": sku_values})
        selector = {MANAGED_BY: MANAGER, L_WORKLOAD: key.name}
        pod_labels = {
            **dict(template.labels),
            **selector,
            L_SERVICE: dns_label(key.service),
            L_DG: dns_label(key.dg),
            L_ROLE: key.role.value,
            L_SKU: dns_label(key.sku),
            L_TP: str(key.tp),
            L_DISCOVERY: DISCOVERY_ON,
        }
        gpus = {self.settings.labels.gpu_resource: str(key.tp)}
        container: dict[str, Any] = {
            "name": "engine",
            "image": template.image,
            "ports": [{"name": "http", "containerPort": template.port}],
            "resources": {"limits": dict(gpus), "requests": dict(gpus)},
            "readinessProbe": {"httpGet": {"path": template.readiness_path, "port": "http"}, "periodSeconds": 5},
        }
        if template.command:
            container["command"] = list(template.command)
        if template.args(key.role):
            container["args"] = list(template.args(key.role))
        if template.env:
            container["env"] = [{"name": k, "value": v} for k, v in template.env]
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": key.name,
                "namespace": self.settings.namespace,
                "labels": {
                    MANAGED_BY: MANAGER,
                    L_SERVICE: dns_label(key.service),
                    L_DG: dns_label(key.dg),
                    L_ROLE: key.role.value,
                },
                "annotations": {
                    f"{PREFIX}/created-at": f"{self.clock.now_s():.6f}",
                    f"{PREFIX}/service-name": key.service,
                },
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": pod_labels, "annotations": {A_DOMAIN: json.dumps(domain)}},
                    "spec": {
                        "terminationGracePeriodSeconds": template.termination_grace_s,
                        "affinity": {
                            "nodeAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": {
                                    "nodeSelectorTerms": [{"matchExpressions": expressions}]
                                }
                            }
                        },
                        "containers": [container],
                    },
                },
            },
        }


# --- helpers --------------------------------------------------------------------------------------


def _kind(exc: Exception) -> str:
    return "permanent" if isinstance(exc, PermanentActuationError) else "transient"


def _json(response: Any, what: str) -> Any:
    data = getattr(response, "data", response)
    try:
        return json.loads(data)
    except (TypeError, ValueError) as exc:
        raise TransientActuationError(f"{what}: malformed answer from the API server") from exc


def _workload_key(labels: Mapping[str, str]) -> WorkloadKey | None:
    try:
        return WorkloadKey(
            service=labels[L_SERVICE],
            dg=labels[L_DG],
            role=Role(labels[L_ROLE]),
            sku=labels[L_SKU],
            tp=int(labels[L_TP]),
        )
    except (KeyError, ValueError):
        return None


def _affinity_level(affinity: AffinityLevel) -> Level:
    return {AffinityLevel.S1: Level.S1, AffinityLevel.S2: Level.S2, AffinityLevel.CLUSTER: Level.LOGICAL_CLUSTER}[
        affinity
    ]


def _gpu_request(pod: Mapping[str, Any], resource: str) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(resource) or (resources.get("requests") or {}).get(resource)
        if value is not None:
            total += _quantity(value)
    return total


def _quantity(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _float(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _replicaset_rank(pod: Mapping[str, Any]) -> tuple[int, int, int]:
    """(scheduled, running, ready): the ReplicaSet deletes lower ranks first, before any deletion cost."""
    scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
    running = 1 if (pod.get("status") or {}).get("phase") == "Running" else 0
    return (scheduled, running, 1 if _ready_since(pod) is not None else 0)


def _ready_since(pod: Mapping[str, Any]) -> float | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return _parse_time(cond.get("lastTransitionTime")) or 0.0
    return None
