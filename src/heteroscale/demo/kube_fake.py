"""KubeFake: a Kubernetes API *fake* for the integration tests and ``heteroscale demo``, built on kmock's
KubernetesEmulator (the ``demo`` extra). It is not a cluster: nothing runs in its pods.

kmock (PyPI) serves an in-memory Kubernetes API over HTTP: discovery, create / get / list / patch /
delete of any resource, with JSON-merge patches and 409 on creating an existing object. It does not
model what HeteroScale relies on, so this module adds, for the tests and the demo only:

* **resourceVersion**: every create and patch stamps a new ``metadata.resourceVersion``; a patch that
  carries a different ``metadata.resourceVersion`` is refused with 409 Conflict (the API server's
  optimistic-concurrency precondition, which the Lease and the scale updates rely on);
* **label and field selectors** on list (``a=b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``,
  ``!a``; fields ``metadata.name``, ``spec.nodeName``, ``status.phase``), which kmock ignores;
* **pagination** of lists: ``limit`` answers at most that many objects, in (namespace, name) order,
  with ``metadata.continue`` set while more remain; ``continue`` resumes after the object the token
  names (a real server's token is opaque and pins a resourceVersion; this one resumes on the live
  objects, and never expires unless a :class:`Fault` answers 410);
* **a request log** (:attr:`KubeFake.log`: method, path, query), for tests and figures;
* **the ``scale`` subresource** of Deployments (GET and PATCH answer a ``Scale`` object, with
  ``status.selector``) and of the custom resources whose CRDs the server is given
  (:class:`.kube_server.KubeFakeServer` ``crds``), at the paths their CRDs declare (:mod:`.kube_custom`), with a
  stand-in for their operators that runs their pods with the operators' labels;
* **JSON patches** (``application/json-patch+json``) with ``test`` ops: a failed test is refused with
  422, as the API server does, and nothing is changed;
* **schema checks**: :meth:`KubeFake.schema_problems` runs a ``validator`` (given by the tests: the
  core schemas and the CRDs' ``openAPIV3Schema``) over every stored object;
* **a stand-in for the ReplicaSet controller, the scheduler and the kubelet**: before each request
  the fake brings every Deployment's pods in line with ``spec.replicas`` — new pods are bound to the
  first node that is not cordoned, whose ``NoSchedule`` / ``NoExecute`` taints the pod tolerates, that
  satisfies the required node affinity and has free ``nvidia.com/gpu`` (else they stay Pending with
  ``PodScheduled=False``, reason ``Unschedulable``), and turn Running and Ready ``ready_after_s``
  later — except pods whose image is in ``never_ready_images``, which stay Pending with their container
  waiting in ``ImagePullBackOff``; surplus pods are deleted in the ReplicaSet's order (unscheduled,
  pending, not ready, lower ``controller.kubernetes.io/pod-deletion-cost``, newer first); deleted pods
  go at once (no termination grace); with ``pod_quota`` (namespace → most pods) pods beyond it are not
  created and the Deployment gets a ``ReplicaFailure`` condition (reason ``FailedCreate``), as a
  ResourceQuota does; :meth:`.kube_server.KubeFakeServer.drain` cordons nodes and evicts their pods (``kubectl
  drain``);
* **fault injection**: :class:`Fault` answers matching requests (method, path and optionally query
  regexes) with an error status (with an optional ``Retry-After``) without applying them, or delays
  them (the client times out, the change still lands);
  a fault may be limited to one client by its ``User-Agent`` (``agent``, a regex);
* **write accounting**: every write (POST, PATCH, PUT, DELETE) to anything but a Lease that the fake
  applied is kept as a :class:`WriteSeen` with the writer and the Lease's ``holderIdentity`` at that
  moment, so a test can count writes by a replica that did not hold the Lease. The writer is read from
  the ``User-Agent`` header: the controller sends ``heteroscale/<identity>`` (``cli/wiring.py``); any
  other client is named by its whole User-Agent.

Leases need nothing more than the resourceVersion precondition. Run it with :class:`.kube_server.KubeFakeServer`,
which serves it on 127.0.0.1 from a thread and stops it by its handle with bounded waits.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock

from heteroscale.clock import WallClock
from heteroscale.demo.kube_custom import OWNER as CUSTOM_OWNER
from heteroscale.demo.kube_custom import (
    CustomKind,
    as_custom_scale,
    custom_status,
    desired_pods,
    owner_of,
    set_path,
)
from heteroscale.demo.kube_objects import (
    as_scale,
    deletion_rank,
    field_selector_matches,
    first_fitting_node,
    gpu_request,
    is_ready,
    label_selector_matches,
    list_key,
    new_pod,
    now_iso,
    parse_iso,
    pods_by_owner,
)

PODS = kmock.resource(group="", version="v1", plural="pods")
NODES = kmock.resource(group="", version="v1", plural="nodes")
DEPLOYMENTS = kmock.resource(group="apps", version="v1", plural="deployments")
LEASES = kmock.resource(group="coordination.k8s.io", version="v1", plural="leases")
OWNER_LABEL = "kube-fake/deployment"  # the fake's own ownership mark on pods it creates


@dataclass
class Fault:
    """Answer up to ``count`` requests matching ``method`` and ``path`` (a regex) with ``status``.

    ``status=0`` with ``delay_s`` > 0 delays the request, then serves it normally.
    """

    method: str
    path: str
    status: int = 500
    count: int = 1
    delay_s: float = 0.0
    retry_after_s: float | None = None
    query: str | None = None  # a regex the query string must match too
    agent: str | None = None  # only requests whose User-Agent matches this regex
    hits: int = 0

    def matches(self, method: str, path: str, query: str = "", agent: str = "") -> bool:
        return (
            self.hits < self.count
            and method.upper() == self.method.upper()
            and re.search(self.path, path) is not None
            and (self.query is None or re.search(self.query, query) is not None)
            and (self.agent is None or re.search(self.agent, agent) is not None)
        )


WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
AGENT_PREFIX = "heteroscale/"


@dataclass(frozen=True)
class WriteSeen:
    """One write the fake applied: when, what, by whom, and who held the Lease then."""

    at_s: float
    method: str
    path: str
    writer: str
    holder: str | None
    status: int

    @property
    def by_holder(self) -> bool:
        return self.holder is not None and self.writer == self.holder


def writer_of(user_agent: str) -> str:
    """The controller identity in ``heteroscale/<identity>``, else the whole User-Agent."""
    return user_agent[len(AGENT_PREFIX) :] if user_agent.startswith(AGENT_PREFIX) else user_agent


@attrs.define(kw_only=True)
class KubeFake(kmock.KubernetesEmulator):
    """kmock's emulator plus the behaviour listed in the module doc (a test fake, not a cluster)."""

    ready_after_s: float = 0.5
    clock: WallClock = attrs.field(factory=WallClock)
    faults: list[Fault] = attrs.field(factory=list)
    faults_lock: threading.Lock = attrs.field(factory=threading.Lock)
    rv: Any = attrs.field(factory=lambda: itertools.count(1))
    pod_seq: Any = attrs.field(factory=lambda: itertools.count(1))
    controllers_enabled: bool = True
    writes: list[WriteSeen] = attrs.field(factory=list)
    never_ready_images: set[str] = attrs.field(factory=set)
    pod_quota: dict[str, int] = attrs.field(factory=dict)  # namespace → most pods (a ResourceQuota)
    log: collections.deque[tuple[str, str, str]] = attrs.field(factory=lambda: collections.deque(maxlen=100_000))
    custom: dict[Any, CustomKind] = attrs.field(factory=dict)  # kmock resource → its kind (from a CRD)
    validator: Callable[[dict[str, Any]], list[str]] | None = None  # an object's schema problems

    def schema_problems(self) -> list[str]:
        """Every stored object's schema problems, as ``Kind ns/name: problem`` (none without a validator)."""
        if self.validator is None:
            return []
        out: list[str] = []
        for (_, ns, name), obj in list(self.objects.items()):
            if not obj.deleted:
                out.extend(f"{obj.raw.get('kind')} {ns}/{name}: {p}" for p in self.validator(obj.raw))
        return out

    # --- request pipeline ----------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self.log.append((str(request.method.value).upper(), request.url.path, request.url.query_string))
        fault = self._take_fault(request)
        if fault is not None:
            if fault.status:
                headers = {} if fault.retry_after_s is None else {"Retry-After": f"{fault.retry_after_s:g}"}
                return _status(fault.status, f"injected fault {fault.status}", headers)
            await asyncio.sleep(fault.delay_s)
        if request.resource is not None:
            refused = self._prepare(request)
            if refused is not None:
                return refused
            if self.controllers_enabled:
                self.run_controllers()
        holder = self.lease_holder()
        method = str(request.method.value).upper()
        if request.action == kmock.action.UPDATE and isinstance(request.data, list):
            response = self._json_patch(request)
        else:
            response = await super()._handle(request)
        if method in WRITE_METHODS and "/leases" not in request.url.path and response.status < 400:
            agent = request.headers.get("User-Agent", "")
            self.writes.append(
                WriteSeen(self.clock.now_s(), method, request.url.path, writer_of(agent), holder, response.status)
            )
        return response

    def _json_patch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """Apply an RFC 6902 patch (its ``test`` ops included) to the stored object, or refuse it whole."""
        key: Any = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return _status(404, f"{request.name} not found")
        current = copy.deepcopy(self.objects[key].raw)
        try:
            patched = jsonpatch.apply_patch(current, request.data)
        except jsonpatch.JsonPatchTestFailed as exc:
            return _status(422, f"the server rejected our request due to an error in our request: {exc}")
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            return _status(422, f"invalid JSON patch: {exc}")
        patched.setdefault("metadata", {})["resourceVersion"] = str(next(self.rv))
        self.objects[key] = patched
        return aiohttp.web.json_response(patched)

    def lease_holder(self) -> str | None:
        """The ``holderIdentity`` of the (first) live Lease, None when there is none or it is released."""
        for lease in self.live_objects(LEASES):
            holder = (lease.get("spec") or {}).get("holderIdentity")
            if holder:
                return str(holder)
        return None

    def _take_fault(self, request: kmock.Request) -> Fault | None:
        agent = request.headers.get("User-Agent", "")
        with self.faults_lock:
            for fault in self.faults:
                if fault.matches(str(request.method.value), request.url.path, request.url.query_string, agent):
                    fault.hits += 1
                    return fault
        return None

    def _prepare(self, request: kmock.Request) -> aiohttp.web.StreamResponse | None:
        """Stamp resourceVersions, check their preconditions, turn Scale writes into Deployment patches."""
        data = request.data
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if request.namespace and "namespace" not in meta:
                meta["namespace"] = request.namespace
            meta["resourceVersion"] = str(next(self.rv))
            meta.setdefault("uid", f"uid-{meta['resourceVersion']}")
            meta.setdefault("creationTimestamp", now_iso(self.clock))
            meta["generation"] = 1
        elif request.action == kmock.action.UPDATE and isinstance(data, dict):
            key: Any = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                return None  # kmock answers 404
            current = self.objects[key].raw.get("metadata", {}).get("resourceVersion")
            wanted = data.get("metadata", {}).get("resourceVersion")
            if wanted is not None and wanted != current:
                return _status(409, f"the object has been modified (resourceVersion {wanted} != {current})")
            if request.subresource == "scale":
                replicas = data.get("spec", {}).get("replicas")
                data.clear()
                kind = self.custom.get(request.resource)
                set_path(data, (kind.spec_replicas if kind else None) or ".spec.replicas", replicas)
            data.setdefault("metadata", {})["resourceVersion"] = str(next(self.rv))
        return None

    async def _serve_list(self, request: kmock.Request) -> Any:
        answer: Any = await super()._serve_list(request)
        labels = request.params.get("labelSelector")
        fields = request.params.get("fieldSelector")
        items = answer["items"]
        if labels:
            items = [o for o in items if label_selector_matches(labels, o.get("metadata", {}).get("labels") or {})]
        if fields:
            items = [o for o in items if field_selector_matches(fields, o)]
        answer["metadata"] = {"resourceVersion": str(next(self.rv))}
        limit = int(request.params.get("limit") or 0)
        token = request.params.get("continue")
        if limit > 0 or token:
            items.sort(key=list_key)
            if token:
                after = tuple(token.split("/", 1))
                items = [o for o in items if list_key(o) > after]
            if 0 < limit < len(items):
                answer["metadata"]["continue"] = "/".join(list_key(items[limit - 1]))
                answer["metadata"]["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        answer["items"] = items
        return answer

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj: Any = await super()._serve_fetch(request)
        return self._scale_of(request, obj) if request.subresource == "scale" else obj

    async def _serve_update(self, request: kmock.Request) -> Any:
        obj: Any = await super()._serve_update(request)
        return self._scale_of(request, obj) if request.subresource == "scale" else obj

    def _scale_of(self, request: kmock.Request, obj: dict[str, Any]) -> dict[str, Any]:
        kind = self.custom.get(request.resource)
        return as_scale(obj) if kind is None else as_custom_scale(kind, obj)

    # --- controllers stand-in ------------------------------------------------------------------

    def live_objects(self, resource: Any, namespace: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (res, ns, _), obj in list(self.objects.items()):
            if res == resource and not obj.deleted and (namespace is None or ns == namespace):
                out.append(obj.raw)
        return out

    def run_controllers(self) -> None:
        """ReplicaSet + scheduler + kubelet, one pass (see the module doc); two reads of all pods."""
        now_s = self.clock.now_s()
        pods = self.live_objects(PODS)
        owned = pods_by_owner(pods, OWNER_LABEL)
        pods_in = collections.Counter(p["metadata"].get("namespace") for p in pods)
        used: dict[str, int] = {}  # GPUs held per node, kept up to date through this pass
        for pod in pods:
            if pod.get("spec", {}).get("nodeName"):
                used[pod["spec"]["nodeName"]] = used.get(pod["spec"]["nodeName"], 0) + gpu_request(pod)
        refused: set[tuple[str | None, str]] = set()
        deployments = self.live_objects(DEPLOYMENTS)
        for deployment in deployments:
            meta = deployment["metadata"]
            ns, name = meta.get("namespace"), meta["name"]
            want = int(deployment.get("spec", {}).get("replicas", 1) or 0)
            active = [p for p in owned.get((ns, name), []) if not p["metadata"].get("deletionTimestamp")]
            for _ in range(want - len(active)):
                if ns in self.pod_quota and pods_in[ns] >= self.pod_quota[ns]:
                    refused.add((ns, name))
                    continue
                self._create_pod(deployment, used)
                pods_in[ns] += 1
            if len(active) > want:
                for pod in sorted(active, key=deletion_rank)[: len(active) - want]:
                    self.objects[PODS, ns, pod["metadata"]["name"]].delete()
                    pods_in[ns] -= 1
                    if pod.get("spec", {}).get("nodeName"):
                        used[pod["spec"]["nodeName"]] -= gpu_request(pod)
        pods = self.live_objects(PODS)
        for pod in pods:
            if not is_ready(pod):
                self._kubelet(pod, now_s, used)
        owned = pods_by_owner(pods, OWNER_LABEL)
        for deployment in deployments:
            meta = deployment["metadata"]
            ns, name = meta.get("namespace"), meta["name"]
            mine = owned.get((ns, name), [])
            ready = sum(1 for p in mine if is_ready(p))
            status: dict[str, Any] = {
                "replicas": len(mine),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": len(mine),
            }
            old = deployment.get("status") or {}
            failure = next((c for c in old.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
            if (ns, name) in refused and failure is None:  # the condition keeps the time it first appeared
                failure = {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": f"pods exceeded quota: {self.pod_quota[ns]} pods in namespace {ns}",
                    "lastTransitionTime": now_iso(self.clock),
                }
            status["conditions"] = [failure] if (ns, name) in refused and failure is not None else []
            if old != status:
                self.objects[DEPLOYMENTS, ns, name].patch({"status": status})
        self._run_operators(now_s, used)

    def _run_operators(self, now_s: float, used: dict[str, int]) -> None:
        """The custom objects' operators: their pods as :func:`.kube_custom.desired_pods` says, and their
        status (replicas and selector at the CRD's paths)."""
        pods = {(p["metadata"].get("namespace"), p["metadata"]["name"]): p for p in self.live_objects(PODS)}
        for resource, kind in self.custom.items():
            for obj in self.live_objects(resource):
                ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
                wanted, selector = desired_pods(kind, obj)
                names = {pod_name for pod_name, _, _ in wanted}
                owner = owner_of(kind, name)
                for (pns, pname), pod in pods.items():
                    mine = (pod["metadata"].get("labels") or {}).get(CUSTOM_OWNER)
                    if pns == ns and mine == owner and pname not in names:
                        self.objects[PODS, ns, pname].delete()
                        if pod.get("spec", {}).get("nodeName"):
                            used[pod["spec"]["nodeName"]] -= gpu_request(pod)
                for pod_name, labels, spec in wanted:
                    if (ns, pod_name) not in pods:
                        self._create_custom_pod(ns, pod_name, labels, spec, used)
                ready = sum(1 for n in names if (ns, n) in pods and is_ready(pods[ns, n]))
                status = custom_status(kind, obj, selector, ready)
                if (obj.get("status") or {}) != status:
                    self.objects[resource, ns, name].patch({"status": status})

    def _create_custom_pod(
        self, ns: str | None, name: str, labels: dict[str, str], spec: dict[str, Any], used: dict[str, int]
    ) -> None:
        pod = new_pod(name, ns, dict(labels), copy.deepcopy(spec), now_iso(self.clock), str(next(self.rv)))
        self._place(pod, used)

    def _create_pod(self, deployment: dict[str, Any], used: dict[str, int]) -> None:
        meta = deployment["metadata"]
        template = deployment.get("spec", {}).get("template", {})
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels[OWNER_LABEL] = meta["name"]
        pod = new_pod(
            f"{meta['name']}-{next(self.pod_seq):05d}",
            meta.get("namespace"),
            labels,
            dict(template.get("spec") or {}),
            now_iso(self.clock),
            str(next(self.rv)),
            annotations=dict(template.get("metadata", {}).get("annotations") or {}),
            owner={
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": meta["name"],
                "uid": f"uid-rs-{meta['name']}",
            },
        )
        self._place(pod, used)

    def _place(self, pod: dict[str, Any], used: dict[str, int]) -> None:
        """Store a new pod, bound to the first node that can take it (else Pending, Unschedulable)."""
        node = first_fitting_node(self.live_objects(NODES), pod, used)
        if node is not None:
            pod["spec"]["nodeName"] = node
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        self.objects[PODS, pod["metadata"].get("namespace"), pod["metadata"]["name"]] = pod

    def _kubelet(self, pod: dict[str, Any], now_s: float, used: dict[str, int]) -> None:
        meta = pod["metadata"]
        key = (PODS, meta.get("namespace"), meta["name"])
        if not pod.get("spec", {}).get("nodeName"):
            node = first_fitting_node(self.live_objects(NODES), pod, used)
            if node is not None:
                conditions = [{"type": "PodScheduled", "status": "True"}]
                self.objects[key].patch({"spec": {"nodeName": node}, "status": {"conditions": conditions}})
            return
        if is_ready(pod):
            return
        images = {c.get("image") for c in pod.get("spec", {}).get("containers", [])}
        if images & self.never_ready_images:
            if not pod.get("status", {}).get("containerStatuses"):
                waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
                statuses = [
                    {"name": c.get("name"), "ready": False, "state": waiting} for c in pod["spec"]["containers"]
                ]
                self.objects[key].patch({"status": {"containerStatuses": statuses}})
            return
        if now_s - parse_iso(meta["creationTimestamp"]) >= self.ready_after_s:
            self.objects[key].patch(
                {
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "PodScheduled", "status": "True"},
                            {"type": "Ready", "status": "True", "lastTransitionTime": now_iso(self.clock)},
                        ],
                    }
                }
            )


def _status(code: int, message: str, headers: dict[str, str] | None = None) -> aiohttp.web.StreamResponse:
    reasons = {
        409: "Conflict",
        410: "Expired",
        500: "InternalError",
        503: "ServiceUnavailable",
        429: "TooManyRequests",
        403: "Forbidden",
    }
    body = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "message": message}
    body["reason"] = reasons.get(code, "Unknown")
    return aiohttp.web.json_response(body, status=code, headers=headers)
