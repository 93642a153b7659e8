"""Kubernetes object semantics the API fake (:mod:`heteroscale.demo.kube_fake`) needs: label and field
selectors, list order, the scheduler's predicates (node affinity, taints and tolerations, free
``nvidia.com/gpu``), readiness and the ReplicaSet's order of deleting surplus pods. Plain dicts only.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from heteroscale.clock import WallClock

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def now_iso(clock: WallClock) -> str:
    return datetime.datetime.fromtimestamp(clock.now_s(), tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for the forms listed in the module doc."""
    for term in re.split(r",(?![^()]*\))", selector.strip()):
        term = term.strip()
        if not term:
            continue
        m = re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and key in labels and labels[key] in values:
                return False
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    paths = {
        "metadata.name": obj.get("metadata", {}).get("name"),
        "metadata.namespace": obj.get("metadata", {}).get("namespace"),
        "spec.nodeName": obj.get("spec", {}).get("nodeName", "") or "",
        "status.phase": obj.get("status", {}).get("phase"),
    }
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        negate = "!=" in term
        key, value = term.split("!=" if negate else "=", 1)
        actual = paths.get(key.strip())
        if (actual == value.strip()) == negate:
            return False
    return True


def list_key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace") or ""), str(meta.get("name")))


def unschedulable_condition(at: str) -> dict[str, str]:
    return {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "no node satisfies the pod's affinity, tolerations and nvidia.com/gpu request",
        "lastTransitionTime": at,
    }


def tolerated(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """Every NoSchedule / NoExecute taint of the node is tolerated by one of the pod's tolerations."""
    tolerations = pod.get("spec", {}).get("tolerations") or []
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return False
    return True


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    if toleration["key"] != taint.get("key"):
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value", "") == taint.get("value", "")


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def gpu_request(pod: dict[str, Any]) -> int:
    total = 0
    for container in pod.get("spec", {}).get("containers", []):
        limits = container.get("resources", {}).get("limits", {}) or {}
        total += int(limits.get("nvidia.com/gpu", 0))
    return total


def affinity_allows(pod: dict[str, Any], labels: dict[str, str]) -> bool:
    required = (
        pod.get("spec", {})
        .get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if not required:
        return True
    for term in required.get("nodeSelectorTerms", []):
        ok = True
        for expr in term.get("matchExpressions", []):
            key, op, values = expr["key"], expr["operator"], expr.get("values", [])
            if (op == "In" and labels.get(key) not in values) or (op == "Exists" and key not in labels):
                ok = False
        if ok:
            return True
    return False


def deletion_rank(pod: dict[str, Any]) -> tuple[int, int, int, int, float]:
    """The ReplicaSet controller's order of deleting surplus pods (first = deleted first)."""
    scheduled = 1 if pod.get("spec", {}).get("nodeName") else 0
    running = 1 if pod.get("status", {}).get("phase") == "Running" else 0
    cost = int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
    return (scheduled, running, 1 if is_ready(pod) else 0, cost, -parse_iso(pod["metadata"]["creationTimestamp"]))


def node_object(name: str, labels: dict[str, str], gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}, "resourceVersion": "1"},
        "spec": {},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "96", "memory": "1Ti"},
            "capacity": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def as_scale(deployment: dict[str, Any]) -> dict[str, Any]:
    meta = deployment.get("metadata", {})
    match = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid") if k in meta},
        "spec": {"replicas": deployment.get("spec", {}).get("replicas", 0)},
        "status": {"replicas": deployment.get("status", {}).get("replicas", 0), "selector": selector},
    }


def pods_by_owner(pods: list[dict[str, Any]], owner_label: str) -> dict[tuple[str | None, str], list[dict[str, Any]]]:
    """(namespace, owner) → the pods whose ``owner_label`` names that owner."""
    out: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
    for pod in pods:
        owner = pod["metadata"].get("labels", {}).get(owner_label)
        if owner is not None:
            out.setdefault((pod["metadata"].get("namespace"), owner), []).append(pod)
    return out


def first_fitting_node(nodes: list[dict[str, Any]], pod: dict[str, Any], used: dict[str, int]) -> str | None:
    """The first node by name that is not cordoned, whose taints the pod tolerates, that satisfies its
    required node affinity and has the pod's ``nvidia.com/gpu`` free; those GPUs count as used at once."""
    need = gpu_request(pod)
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        node_name = node["metadata"]["name"]
        if node.get("spec", {}).get("unschedulable") or not tolerated(pod, node):
            continue
        if not affinity_allows(pod, node.get("metadata", {}).get("labels") or {}):
            continue
        have = int(node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", "0"))
        if have - used.get(node_name, 0) >= need:
            used[node_name] = used.get(node_name, 0) + need
            return str(node_name)
    return None


def new_pod(
    name: str,
    namespace: str | None,
    labels: dict[str, str],
    spec: dict[str, Any],
    now: str,
    resource_version: str,
    *,
    annotations: dict[str, str] | None = None,
    owner: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Pending, unscheduled pod as a controller creates it (``owner``: its one owner reference)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels, "creationTimestamp": now,
                            "resourceVersion": resource_version, "uid": f"uid-pod-{name}"}  # fmt: skip
    if annotations is not None:
        meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Pending", "conditions": [unschedulable_condition(now)]},
    }
