"""Reading cluster state from plain Kubernetes objects (actuators/kube/state.py, pods.py, naming.py): pure
functions over dicts, no server."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from heteroscale.actuators.kube.api import LabelKeys, Toleration
from heteroscale.actuators.kube.naming import (
    A_DG_NAME,
    A_SERVICE_NAME,
    WorkloadKey,
    label_value,
    label_value_problem,
    object_name,
    workload_key,
)
from heteroscale.actuators.kube.pods import pod_lifecycle
from heteroscale.actuators.kube.state import Snapshot, build_snapshot, node_schedulable
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import Lifecycle
from tests.support.kube_objects import node_object

NOW_S = 1_700_000_000.0
TIMEOUT_S = 900.0
STUCK = "start-timeout"


def iso(t_s: float) -> str:
    return datetime.datetime.fromtimestamp(t_s, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str = "w-1",
    *,
    age_s: float = 60.0,
    phase: str = "Pending",
    node: str | None = None,
    ready: bool = False,
    unready_for_s: float | None = None,
    unschedulable: bool = False,
    annotations: dict[str, str] | None = None,
    terminating: bool = False,
    workload: str = "w",
) -> dict[str, Any]:
    conditions: list[dict[str, str]] = []
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4"})
    if ready:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": iso(NOW_S - 10)})
    elif unready_for_s is not None:
        conditions.append({"type": "Ready", "status": "False", "lastTransitionTime": iso(NOW_S - unready_for_s)})
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"heteroscale.io/workload": workload, "heteroscale.io/discovery": "on"},
        "annotations": annotations or {},
        "creationTimestamp": iso(NOW_S - age_s),
    }
    if terminating:
        meta["deletionTimestamp"] = iso(NOW_S)
    spec: dict[str, Any] = {"containers": [{"name": "engine", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": {"phase": phase, "conditions": conditions}}


@pytest.mark.parametrize(
    ("kwargs", "lifecycle", "reason"),
    [
        ({"age_s": 60.0}, Lifecycle.PENDING, ""),
        ({"age_s": 901.0}, Lifecycle.STUCK, "start-timeout"),
        ({"age_s": 901.0, "node": "n", "phase": "Running"}, Lifecycle.STUCK, "start-timeout"),
        ({"age_s": 899.0, "node": "n", "phase": "Running"}, Lifecycle.STARTING, ""),
        ({"age_s": 86_400.0, "node": "n", "phase": "Running", "ready": True}, Lifecycle.READY, ""),
        # Ready for a day, then not Ready for a minute: starting again, not stuck
        ({"age_s": 86_400.0, "node": "n", "phase": "Running", "unready_for_s": 60.0}, Lifecycle.STARTING, ""),
        ({"age_s": 86_400.0, "node": "n", "phase": "Running", "unready_for_s": 901.0}, Lifecycle.STUCK, STUCK),
        ({"age_s": 5_000.0, "terminating": True}, Lifecycle.DRAINING, ""),
        ({"age_s": 5_000.0, "annotations": {"heteroscale.io/drain-deadline-s": "1"}}, Lifecycle.DRAINING, ""),
    ],
)
def test_pod_lifecycle_and_the_start_time_out(kwargs: dict[str, Any], lifecycle: Lifecycle, reason: str) -> None:
    state = pod_lifecycle(pod(**kwargs), NOW_S, TIMEOUT_S)
    assert (state.lifecycle, state.reason) == (lifecycle, reason)


def gpu_nodes(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """Big-pods a and b, one H20 node each with 2 GPUs; ``changes``: node name → spec fields."""
    out = []
    for s2 in ("a", "b"):
        node = node_object(f"{s2}-n0", {"heteroscale.io/s2": s2, "heteroscale.io/gpu-sku": "h20"}, 2)
        node["spec"].update(changes.get(f"{s2}-n0", {}))
        out.append(node)
    return out


def deployment(name: str = "w", replicas: int = 1, domain: str = '[[3, "a"]]', **annotations: str) -> dict[str, Any]:
    labels = {
        "heteroscale.io/service": "llama-3.1-70b",
        "heteroscale.io/dg": "llama-3.1-70b-dg0",
        "heteroscale.io/role": "decode",
        "heteroscale.io/sku": "h20",
        "heteroscale.io/tp": "1",
    }
    return {
        "metadata": {"name": name, "resourceVersion": "7", "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": labels, "annotations": {"heteroscale.io/domain": domain}}},
        },
    }


def snapshot(
    nodes: list[dict[str, Any]], deployments: list[dict[str, Any]], pods: list[dict[str, Any]], **kw: Any
) -> Snapshot:
    used: dict[str, int] = {}
    for p in pods:
        if p["spec"].get("nodeName"):
            used[p["spec"]["nodeName"]] = used.get(p["spec"]["nodeName"], 0) + 1
    return build_snapshot(
        NOW_S, nodes, deployments, pods, used, LabelKeys(), lambda v: v, start_timeout_s=TIMEOUT_S, **kw
    )


def lifecycles(snap: Snapshot) -> dict[str, tuple[Lifecycle, str]]:
    return {i: (info.lifecycle, info.lifecycle_reason) for i, (info, _) in snap.instances.items()}


def test_an_unschedulable_pod_whose_domain_is_cordoned_is_stuck_at_once() -> None:
    cordoned = gpu_nodes(**{"a-n0": {"unschedulable": True}})
    snap = snapshot(cordoned, [deployment()], [pod(unschedulable=True)])
    assert lifecycles(snap) == {"w-1": (Lifecycle.STUCK, "unschedulable")}
    info, _ = snap.instances["w-1"]
    assert info.service == "llama-3.1-70b" and "no schedulable h20 node" in info.lifecycle_detail
    assert snap.free == {"a-n0": 0, "b-n0": 2}  # a cordoned node is no free capacity


def test_an_unschedulable_pod_with_room_in_its_domain_waits_for_the_grace() -> None:
    snap = snapshot(gpu_nodes(), [deployment()], [pod(age_s=30.0, unschedulable=True)])
    assert lifecycles(snap) == {"w-1": (Lifecycle.PENDING, "")}
    # the scheduler found no node there: its domain has no room for new h20 pods this cycle
    assert snap.free == {"a-n0": 0, "b-n0": 2}
    snap = snapshot(gpu_nodes(), [deployment()], [pod(age_s=61.0, unschedulable=True)])
    assert lifecycles(snap) == {"w-1": (Lifecycle.STUCK, "unschedulable")}
    assert "no node found for 61 s > unschedulable_grace_s 60" in snap.instances["w-1"][0].lifecycle_detail


def test_a_pending_pod_without_a_verdict_reserves_its_gpu() -> None:
    snap = snapshot(gpu_nodes(), [deployment(replicas=2)], [pod()])
    assert lifecycles(snap) == {"w-1": (Lifecycle.PENDING, ""), "w#pending-0": (Lifecycle.PENDING, "")}
    assert snap.free == {"a-n0": 0, "b-n0": 2}  # the unbound pod and the placeholder, both in big-pod a


def test_pods_without_the_schedulers_verdict_are_not_judged_by_our_view() -> None:
    cordoned = gpu_nodes(**{"a-n0": {"unschedulable": True}})
    snap = snapshot(cordoned, [deployment()], [pod(unschedulable=False)])
    assert lifecycles(snap) == {"w-1": (Lifecycle.PENDING, "")}


@pytest.mark.parametrize(
    ("taint", "tolerations", "schedulable"),
    [
        (None, (), True),
        ({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, (), False),
        ({"key": "maintenance", "effect": "NoExecute"}, (), False),
        ({"key": "busy", "effect": "PreferNoSchedule"}, (), True),
        (
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            (Toleration("nvidia.com/gpu", "Exists"),),
            True,
        ),
        (
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            (Toleration("nvidia.com/gpu", "Equal", "absent"),),
            False,
        ),
        ({"key": "maintenance", "effect": "NoExecute"}, (Toleration("maintenance", effect="NoSchedule"),), False),
        ({"key": "anything", "effect": "NoSchedule"}, (Toleration(None, "Exists"),), True),
    ],
)
def test_taints_we_do_not_tolerate_make_a_node_unschedulable(
    taint: dict[str, str] | None, tolerations: tuple[Toleration, ...], schedulable: bool
) -> None:
    node = node_object("n", {"heteroscale.io/gpu-sku": "h20"}, 8)
    if taint is not None:
        node["spec"]["taints"] = [taint]
    assert node_schedulable(node, tolerations) is schedulable


def test_a_tainted_domain_makes_its_unschedulable_pods_stuck_unless_tolerated() -> None:
    tainted = gpu_nodes(**{"a-n0": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}})
    snap = snapshot(tainted, [deployment()], [pod(unschedulable=True)])
    assert lifecycles(snap) == {"w-1": (Lifecycle.STUCK, "unschedulable")}
    snap = snapshot(tainted, [deployment()], [pod(unschedulable=True)], tolerations=(Toleration("gpu", "Exists"),))
    assert lifecycles(snap) == {"w-1": (Lifecycle.PENDING, "")}


def test_placeholders_of_a_workload_whose_pods_cannot_be_created_are_stuck_after_the_time_out() -> None:
    dep = deployment(replicas=2)
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}
    dep["status"] = {"conditions": [{**failure, "lastTransitionTime": iso(NOW_S - 60)}]}
    assert lifecycles(snapshot(gpu_nodes(), [dep], [])) == {
        "w#pending-0": (Lifecycle.PENDING, ""),
        "w#pending-1": (Lifecycle.PENDING, ""),
    }
    dep["status"] = {"conditions": [{**failure, "lastTransitionTime": iso(NOW_S - 901)}]}
    snap = snapshot(gpu_nodes(), [dep], [])
    assert set(lifecycles(snap).values()) == {(Lifecycle.STUCK, "failed-create")}
    assert "exceeded quota" in snap.instances["w#pending-0"][0].lifecycle_detail


def test_workloads_are_read_back_by_their_verbatim_names() -> None:
    snap = snapshot(gpu_nodes(), [deployment()], [pod(node="a-n0", phase="Running", ready=True)])
    info, name = snap.instances["w-1"]
    assert (info.service, info.dg, info.lifecycle, name) == ("llama-3.1-70b", "llama-3.1-70b-dg0", Lifecycle.READY, "w")
    # a workload of an older release: a DNS form in the label, the verbatim name in the annotation
    old = deployment(**{A_SERVICE_NAME: "llama-3.1-70b"})
    old["spec"]["template"]["metadata"]["labels"]["heteroscale.io/service"] = "llama-3-1-70b"
    info, _ = snapshot(gpu_nodes(), [old], []).instances["w#pending-0"]
    assert info.service == "llama-3.1-70b"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("llama-3.1-70b", True),
        ("Chat_EU", True),
        ("a", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("chat-", False),
        ("_chat", False),
        ("chat eu", False),
        ("chat/eu", False),
    ],
)
def test_label_values(text: str, valid: bool) -> None:
    assert (label_value_problem(text) is None) is valid


def test_object_names_are_dns_labels_that_never_collide() -> None:
    assert object_name("chat-dg0-decode-h20-tp1") == "chat-dg0-decode-h20-tp1"  # unchanged when already valid
    a, b = object_name("Llama_3-dg0"), object_name("llama-3-dg0")
    assert a != b and a.startswith("llama-3-dg0-") and b == "llama-3-dg0"
    long = object_name("x" * 80)
    assert len(long) <= 52 and long != object_name("x" * 81)
    key = WorkloadKey("llama-3.1-70b", "llama-3.1-70b-dg0", Role.DECODE, "h20", 1)
    assert key.name.startswith("llama-3-1-70b-dg0-decode-h20-tp1-") and len(key.name) <= 52
    assert label_value("s" * 70 + "-dg0") != "s" * 70 + "-dg0" and label_value_problem(label_value("s" * 70)) is None


def test_workload_key_prefers_the_verbatim_annotations() -> None:
    labels = {
        "heteroscale.io/service": "x",
        "heteroscale.io/dg": "short",
        "heteroscale.io/role": "prefill",
        "heteroscale.io/sku": "h800",
        "heteroscale.io/tp": "4",
    }
    key = workload_key(labels, {A_SERVICE_NAME: "Svc.Name", A_DG_NAME: "Svc.Name-dg12"})
    assert key == WorkloadKey("Svc.Name", "Svc.Name-dg12", Role.PREFILL, "h800", 4)
    assert workload_key({**labels, "heteroscale.io/tp": "four"}) is None
