"""The Controller with the real KubernetesCluster against the Kubernetes API fake: service names kept
verbatim in labels, stuck pods replaced, a drained big-pod re-placed, paginated namespace-scoped reads,
and one read per steady cycle.

Every cycle is driven by the test (``reconcile_once`` / ``LiveController.cycle``), so what the cluster
does between cycles is waited for with bounded waits, never by timing a window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from heteroscale.actuators.kube.owned import KubernetesCluster
from heteroscale.controller.http import ControllerMetrics
from heteroscale.domain.decision import DecisionRecord
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import Lifecycle
from tests.support.kube_controller_env import (
    CLOCK,
    IMAGE,
    POD_A,
    POD_B,
    binding,
    controller_for,
    make_cluster,
    ready_nodes,
    replicas_by_service,
)
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import NAMESPACE
from tests.support.prometheus_server import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def closing() -> Iterator[list[KubernetesCluster]]:
    made: list[KubernetesCluster] = []
    yield made
    for cluster in made:
        cluster.api.close()


def test_service_names_with_dots_underscores_and_capitals_stop_scaling_once_their_pods_exist(
    kube: KubeFakeServer, closing: list[KubernetesCluster]
) -> None:
    names = ("llama-3.1-70b", "Chat_EU", "chat-eu")  # the last two share a DNS form, not a workload
    cluster = make_cluster(kube, names)
    closing.append(cluster)
    controller = controller_for(cluster, *(binding(name, 1, 1) for name in names))
    for _ in range(3):
        controller.reconcile_once(CLOCK.now_s())
    assert replicas_by_service(kube) == dict.fromkeys(names, (1, 1))
    assert wait_until(lambda: all(len(ready_nodes(kube, n)) == 2 for n in names), 10.0)
    records = controller.reconcile_once(CLOCK.now_s())
    assert all(r.outcome == {"applied": "nothing to do"} for r in records)
    assert replicas_by_service(kube) == dict.fromkeys(names, (1, 1))
    state = cluster.snapshot(CLOCK.now_s())
    assert {(i.service, i.role, i.lifecycle) for i in state.instances} == {
        (n, r, Lifecycle.READY) for n in names for r in Role
    }
    deployments = {d["metadata"]["name"] for d in kube.deployments(NAMESPACE)}
    assert len(deployments) == 6  # Chat_EU and chat-eu never share an object name
    assert all(len(d) <= 52 and d == d.lower() and "." not in d and "_" not in d for d in deployments)


def stuck_entries(records: Sequence[DecisionRecord]) -> list[dict[str, Any]]:
    return [entry for r in records for entry in r.plan.get("stuck", [])]


def test_pods_never_ready_past_the_start_time_out_stop_counting_and_are_replaced(
    kube: KubeFakeServer, closing: list[KubernetesCluster]
) -> None:
    kube.call(lambda f: f.never_ready_images.add(IMAGE))
    cluster = make_cluster(kube, ["chat"], start_timeout_s=1.0)
    closing.append(cluster)
    controller = controller_for(cluster, binding("chat", 1, 1))
    controller.reconcile_once(CLOCK.now_s())
    first = {p["metadata"]["name"] for p in kube.pods(NAMESPACE)}
    assert len(first) == 2
    metrics = ControllerMetrics()
    found: list[DecisionRecord] = []

    def cycle_until_both_stuck() -> bool:
        records = controller.reconcile_once(CLOCK.now_s())
        for record in records:
            metrics.observe_record(record)
        found.extend(r for r in records if stuck_entries([r]))
        # both in one cycle unless their creation times straddle a second (timestamps have 1 s steps)
        return first <= {e["instance_id"] for e in stuck_entries(found)}

    assert wait_until(cycle_until_both_stuck, 15.0, 0.2)
    entries = stuck_entries(found)
    ours = [e for e in entries if e["instance_id"] in first]
    assert len(ours) == 2  # each reported once: once removed it is draining, not stuck again
    assert {(e["role"], e["reason"]) for e in ours} == {("prefill", "start-timeout"), ("decode", "start-timeout")}
    assert all("ImagePullBackOff" in e["detail"] for e in ours)
    assert all(not r.outcome["errors"] for r in found)
    removed = {i for r in found for i in r.outcome["removed"]}
    assert first <= removed
    for role in ("prefill", "decode"):
        sample = metrics.registry.get_sample_value(
            "heteroscale_instances_stuck_total", {"service": "chat", "role": role, "reason": "start-timeout"}
        )
        assert sample == sum(1 for e in entries if e["role"] == role and e["instance_id"] in removed) >= 1
    # the image becomes pullable: the replacements (launched in the same cycle) start, the stuck pods are gone
    kube.call(lambda f: f.never_ready_images.clear())
    assert wait_until(lambda: len(ready_nodes(kube, "chat")) == 2, 10.0)
    assert not first & {p["metadata"]["name"] for p in kube.pods(NAMESPACE)}
    assert replicas_by_service(kube) == {"chat": (1, 1)}
    records = controller.reconcile_once(CLOCK.now_s())
    assert not stuck_entries(records) and records[0].outcome == {"applied": "nothing to do"}


def test_a_drained_big_pod_is_re_placed_in_the_other_one(
    kube: KubeFakeServer, closing: list[KubernetesCluster]
) -> None:
    cluster = make_cluster(kube, ["chat"])
    closing.append(cluster)
    controller = controller_for(cluster, binding("chat", 2, 2))
    controller.reconcile_once(CLOCK.now_s())
    assert wait_until(lambda: len(ready_nodes(kube, "chat")) == 4, 10.0)
    assert set(ready_nodes(kube, "chat")) <= POD_A
    assert kube.drain(POD_A) == 4  # the ReplicaSets re-create them, Pending: pinned to a cordoned big-pod
    records: list[DecisionRecord] = []
    for _ in range(4):  # a few cycles, each waiting (bounded) for the pods it launched
        records += controller.reconcile_once(CLOCK.now_s())
        if wait_until(lambda: len(ready_nodes(kube, "chat")) == 4, 5.0):
            break
    assert len(ready_nodes(kube, "chat")) == 4 and set(ready_nodes(kube, "chat")) <= POD_B
    entries = stuck_entries(records)
    assert len(entries) == 4 and {e["reason"] for e in entries} == {"unschedulable"}
    assert all("no schedulable" in e["detail"] and "pod-a" in e["detail"] for e in entries)
    assert replicas_by_service(kube) == {"chat": (2, 2)}
    free = cluster.free_gpus()
    assert all(free[n] == 0 for n in POD_A)  # cordoned: no free capacity there


def test_pods_a_quota_refuses_are_stuck_after_the_start_time_out(
    kube: KubeFakeServer, closing: list[KubernetesCluster]
) -> None:
    kube.call(lambda f: f.pod_quota.update({NAMESPACE: 1}))
    patient = make_cluster(kube, ["chat"], start_timeout_s=60.0)
    closing.append(patient)
    controller_for(patient, binding("chat", 1, 1)).reconcile_once(CLOCK.now_s())
    state = patient.snapshot(CLOCK.now_s())
    assert [i.lifecycle for i in state.instances if "#pending-" in i.id] == [Lifecycle.PENDING]
    # the same cluster read with a short time-out: the replica the quota refuses is stuck, not capacity
    hasty = make_cluster(kube, ["chat"], start_timeout_s=0.5)
    closing.append(hasty)

    def placeholder_stuck() -> bool:
        found = [i for i in hasty.snapshot(CLOCK.now_s()).instances if "#pending-" in i.id]
        return [(i.lifecycle, i.lifecycle_reason) for i in found] == [(Lifecycle.STUCK, "failed-create")]

    assert wait_until(placeholder_stuck, 10.0, 0.2)
