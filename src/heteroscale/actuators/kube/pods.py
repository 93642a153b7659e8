"""What one pod (a plain dict as the API server returns it) says about its instance; no I/O here.

Lifecycle: terminating or marked for drain → draining; Ready → ready; Running but not Ready → starting;
otherwise pending. A pod that has not been Ready for longer than the start time-out (counted from its
creation, or from when it last stopped being Ready) is **stuck** (``start-timeout``): an engine that
cannot pull its image, is refused by a quota or finds no GPU must not be held as capacity forever.
Whether a pending pod can be placed at all depends on the nodes, so that verdict is :mod:`.state`'s.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from heteroscale.actuators.kube.naming import A_DRAIN_DEADLINE
from heteroscale.domain.state import Lifecycle

STUCK_START_TIMEOUT = "start-timeout"
STUCK_UNSCHEDULABLE = "unschedulable"
STUCK_FAILED_CREATE = "failed-create"


@dataclass(frozen=True, slots=True)
class PodLifecycle:
    lifecycle: Lifecycle
    reason: str = ""  # for a stuck pod: one of the STUCK_* codes
    detail: str = ""  # what the pod's status says (waiting reasons, the scheduler's message)


def pod_lifecycle(pod: Mapping[str, Any], now_s: float, start_timeout_s: float) -> PodLifecycle:
    """The lifecycle of a pod that is not finished (see the module doc)."""
    if is_leaving(pod):
        return PodLifecycle(Lifecycle.DRAINING)
    if ready_since(pod) is not None:
        return PodLifecycle(Lifecycle.READY)
    lifecycle = Lifecycle.STARTING if (pod.get("status") or {}).get("phase") == "Running" else Lifecycle.PENDING
    since_s = unready_since(pod)
    if since_s is not None and now_s - since_s > start_timeout_s:
        waited = f"not Ready for {now_s - since_s:.0f} s > start_timeout_s {start_timeout_s:g}"
        return PodLifecycle(Lifecycle.STUCK, STUCK_START_TIMEOUT, f"{waited}: {status_detail(pod)}")
    return PodLifecycle(lifecycle)


def is_leaving(pod: Mapping[str, Any]) -> bool:
    """Terminating, or marked by us for drain."""
    meta = pod.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) or A_DRAIN_DEADLINE in (meta.get("annotations") or {})


def is_finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def unready_since(pod: Mapping[str, Any]) -> float | None:
    """When the pod last was not Ready: its creation, or its Ready condition's last change to not Ready."""
    meta = pod.get("metadata") or {}
    since = parse_time(meta.get("creationTimestamp"))
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") != "True":
            changed = parse_time(cond.get("lastTransitionTime"))
            if changed is not None and (since is None or changed > since):
                since = changed
    return since


def unschedulable_verdict(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it found no node for the pod (PodScheduled=False, Unschedulable)."""
    if (pod.get("spec") or {}).get("nodeName"):
        return None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return str(cond.get("message") or "Unschedulable")
    return None


def unschedulable_since(pod: Mapping[str, Any]) -> float | None:
    """Since when the scheduler has found no node for the pod (its creation if the condition has no time)."""
    if unschedulable_verdict(pod) is None:
        return None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            since = parse_time(cond.get("lastTransitionTime"))
            if since is not None:
                return since
    return parse_time((pod.get("metadata") or {}).get("creationTimestamp"))


def status_detail(pod: Mapping[str, Any]) -> str:
    """One short line of why a pod is not Ready: phase, waiting containers, the scheduler's message."""
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "no phase")]
    verdict = unschedulable_verdict(pod)
    if verdict is not None:
        parts.append(f"unschedulable: {verdict}")
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            parts.append(f"{container.get('name', '?')}: {waiting['reason']}")
    return "; ".join(parts)[:300]


def gpu_request(pod: Mapping[str, Any], resource: str) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(resource) or (resources.get("requests") or {}).get(resource)
        if value is not None:
            total += quantity(value)
    return total


def gpu_use(pod: Mapping[str, Any], resource: str) -> tuple[str, int] | None:
    """(node, GPUs) a pod holds: bound to a node, not finished, requesting some; else None."""
    node = (pod.get("spec") or {}).get("nodeName")
    if not node or is_finished(pod):
        return None
    gpus = gpu_request(pod, resource)
    return (str(node), gpus) if gpus > 0 else None


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
