"""How the KubernetesCluster reads: one paginated, namespace-scoped, label-selected read per steady
cycle of the live loop; other namespaces' pods listed only for the cluster-wide GPU accounting opt-in;
an expired ``continue`` token lists again. Requests are counted at the Kubernetes API fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from heteroscale.actuators.kube.owned import KubernetesCluster
from heteroscale.controller.live import LiveController, LiveSettings
from tests.support.kube_controller_env import CLOCK, binding, controller_for, make_cluster, ready_nodes
from tests.support.kube_fake import PODS, Fault, KubeFakeServer
from tests.support.prometheus_server import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(kube: KubeFakeServer) -> Iterator[KubernetesCluster]:
    c = make_cluster(kube, ["chat"])
    yield c
    c.api.close()


def foreign_pod(name: str, namespace: str, node: str, gpus: int) -> dict[str, Any]:
    """Another team's pod, bound and running (the fake's controllers leave pods they do not own alone)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "other"}, "resourceVersion": "1"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "x", "image": "x", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def add_foreign_pods(kube: KubeFakeServer, pods: list[dict[str, Any]]) -> None:
    def run(f: Any) -> None:
        for pod in pods:
            f.objects[PODS, pod["metadata"]["namespace"], pod["metadata"]["name"]] = pod

    kube.call(run)


def converge(kube: KubeFakeServer, live: LiveController) -> None:
    live.cycle()
    assert wait_for_ready(kube, 4)
    live.cycle()  # sees them Ready: nothing left to do


def wait_for_ready(kube: KubeFakeServer, n: int) -> bool:
    return wait_until(lambda: len(ready_nodes(kube, "chat")) == n, 10.0)


def test_a_steady_live_cycle_reads_once_namespace_scoped_and_never_lists_other_namespaces(
    kube: KubeFakeServer, cluster: KubernetesCluster
) -> None:
    add_foreign_pods(kube, [foreign_pod(f"other-{i}", "team-x", "pod-a-n0", 1) for i in range(5)])
    live = LiveController(controller_for(cluster, binding("chat", 2, 2)), cluster, LiveSettings(), clock=CLOCK)
    converge(kube, live)
    kube.clear_log()
    outcome = live.cycle()  # finish drains, reconcile, observe the state: one read serves all three
    assert outcome.error is None and all(r.outcome == {"applied": "nothing to do"} for r in outcome.records)
    requests = kube.requests()
    paths = sorted(path for _, path, _ in requests)
    assert paths == ["/api/v1/namespaces/llm/pods", "/api/v1/nodes", "/apis/apps/v1/namespaces/llm/deployments"]
    assert all(method == "GET" and "limit=500" in query for method, _, query in requests)
    assert all("labelSelector=" in query for _, _, query in requests)
    # the GPU accounting is namespace-scoped by default: another team's pods are not subtracted
    assert cluster.free_gpus()["pod-a-n0"] == 8 - sum(1 for n in ready_nodes(kube, "chat") if n == "pod-a-n0")


def test_cluster_wide_gpu_accounting_is_an_opt_in_paginated_list_of_bound_pods(kube: KubeFakeServer) -> None:
    add_foreign_pods(kube, [foreign_pod(f"other-{i}", "team-x", "pod-a-n0", 1) for i in range(5)])
    add_foreign_pods(kube, [foreign_pod("big", "team-y", "pod-b-n1", 8)])
    cluster = make_cluster(kube, ["chat"], gpu_accounting="cluster", list_page_size=2)
    try:
        kube.clear_log()
        cluster.snapshot(CLOCK.now_s())
        free = cluster.free_gpus()
        assert free["pod-a-n0"] == 3 and free["pod-b-n1"] == 0 and free["pod-a-n1"] == 8
        cluster_wide = [(path, query) for _, path, query in kube.requests() if path == "/api/v1/pods"]
        assert len(cluster_wide) == 3  # 6 bound pods, 2 a page
        assert all("fieldSelector=spec.nodeName" in query and "limit=2" in query for _, query in cluster_wide)
        assert sum("continue=" in query for _, query in cluster_wide) == 2
    finally:
        cluster.api.close()


def test_small_pages_read_the_same_state_as_one_page(kube: KubeFakeServer, cluster: KubernetesCluster) -> None:
    live = LiveController(controller_for(cluster, binding("chat", 2, 2)), cluster, LiveSettings(), clock=CLOCK)
    converge(kube, live)
    paged = make_cluster(kube, ["chat"], list_page_size=1)
    try:
        now_s = CLOCK.now_s()
        whole, pages = cluster.snapshot(now_s), paged.snapshot(now_s)
        assert sorted(whole.instances, key=lambda i: i.id) == sorted(pages.instances, key=lambda i: i.id)
        assert len(pages.instances) == 4 and paged.free_gpus() == cluster.free_gpus()
        assert paged.topology() == cluster.topology()
    finally:
        paged.api.close()


def test_an_expired_continue_token_lists_again_from_the_start(kube: KubeFakeServer) -> None:
    cluster = make_cluster(kube, ["chat"], list_page_size=3)
    try:
        gone = kube.inject(Fault("GET", r"^/api/v1/nodes$", status=410, count=1, query=r"continue="))
        kube.clear_log()
        topology = cluster.topology()
        assert gone.hits == 1 and len(topology.nodes) == 8
        node_lists = [q for _, path, q in kube.requests() if path == "/api/v1/nodes"]
        # pages 1, 2 (410), then 1, 2, 3 again: 8 GPU nodes, 3 a page
        assert len(node_lists) == 5 and sum("continue=" not in q for q in node_lists) == 2
    finally:
        cluster.api.close()


def test_only_gpu_nodes_are_listed(kube: KubeFakeServer, cluster: KubernetesCluster) -> None:
    kube.clear_log()
    cluster.topology()
    queries = [parse_qs(q) for _, path, q in kube.requests() if path == "/api/v1/nodes"]
    assert queries == [{"labelSelector": ["heteroscale.io/gpu-sku"], "limit": ["500"]}]
