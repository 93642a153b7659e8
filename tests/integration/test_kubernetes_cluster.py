"""KubernetesCluster against the Kubernetes API fake (kmock + the documented fake in tests/support)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from heteroscale.actuators.advisory import AdvisoryActuator
from heteroscale.actuators.kube.api import FencedError, KubernetesSettings, translate
from heteroscale.actuators.kube.manifests import WorkloadTemplate
from heteroscale.actuators.kube.naming import DELETION_COST, WorkloadKey
from heteroscale.actuators.kube.owned import KubernetesCluster
from heteroscale.clock import WallClock
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.plan import DiscoveryChange, Launch, PlacementPlan, Remove
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.domain.topology import Level
from heteroscale.errors import PermanentActuationError, TransientActuationError
from tests.support.kube_fake import Fault, KubeFakeServer
from tests.support.live_env import NAMESPACE
from tests.support.prometheus_server import wait_until

pytestmark = pytest.mark.integration

CLOCK = WallClock()
PREFILL = InstanceShape(Role.PREFILL, "h100-sxm", 1)
DECODE = InstanceShape(Role.DECODE, "h20", 1)


def make_cluster(kube: KubeFakeServer, **settings: Any) -> KubernetesCluster:
    configuration = kubernetes.client.Configuration()
    configuration.host = kube.url
    configuration.retries = False
    api = kubernetes.client.ApiClient(configuration)
    defaults: dict[str, Any] = {"request_timeout_s": 1.0, "backoff_s": 0.05, "retry_budget_s": 5.0}
    defaults.update(settings)
    return KubernetesCluster(
        api,
        KubernetesSettings(namespace=NAMESPACE, **defaults),
        {"chat": WorkloadTemplate(image="vllm/vllm-openai:v0.8.5", prefill_args=("--kv-role", "producer"))},
        CLOCK,
        resolve_sku=lambda v: v.lower(),
    )


@pytest.fixture
def cluster(kube: KubeFakeServer) -> Iterator[KubernetesCluster]:
    c = make_cluster(kube)
    yield c
    c.api.close()


def launches(node: str, shape: InstanceShape, n: int) -> tuple[Launch, ...]:
    return tuple(Launch("chat", shape.role, shape, "chat-dg0", node) for _ in range(n))


def scale_up(cluster: KubernetesCluster, n_prefill: int, n_decode: int) -> None:
    now_s = CLOCK.now_s()
    cluster.snapshot(now_s)
    plan = PlacementPlan(launches=launches("pod-a-n0", PREFILL, n_prefill) + launches("pod-a-n2", DECODE, n_decode))
    result = cluster.apply(plan, now_s)
    assert not result.errors, result.errors


def ready(cluster: KubernetesCluster, n: int) -> bool:
    state = cluster.snapshot(CLOCK.now_s())
    return sum(1 for i in state.instances if i.lifecycle is Lifecycle.READY) == n


def test_nodes_become_the_domain_topology(cluster: KubernetesCluster) -> None:
    topo = cluster.topology()
    assert len(topo.nodes) == 8  # the CPU node has no GPUs and is left out
    node = next(n for n in topo.nodes if n.name == "pod-b-n3")
    assert node.sku == "h20" and node.gpus_total == 8 and node.gpus_free == 8
    assert node.path == ("default", "default", "lc1", "pod-b", "pod-b-s1-1", "pod-b-s0-3", "pod-b-n3")
    assert set(topo.domains(Level.S2)) == {
        ("default", "default", "lc1", "pod-a"),
        ("default", "default", "lc1", "pod-b"),
    }


def test_launches_create_one_pinned_workload_per_dg_role_and_shape(
    cluster: KubernetesCluster, kube: KubeFakeServer
) -> None:
    scale_up(cluster, 2, 3)
    deployments = {d["metadata"]["name"]: d for d in kube.deployments(NAMESPACE)}
    assert sorted(deployments) == ["chat-dg0-decode-h20-tp1", "chat-dg0-prefill-h100-sxm-tp1"]
    decode = deployments["chat-dg0-decode-h20-tp1"]
    assert decode["spec"]["replicas"] == 3
    template = decode["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert labels["heteroscale.io/service"] == "chat" and labels["heteroscale.io/role"] == "decode"
    assert labels["heteroscale.io/dg"] == "chat-dg0" and labels["heteroscale.io/discovery"] == "on"
    assert "heteroscale.io/discovery" not in decode["spec"]["selector"]["matchLabels"]
    terms = template["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expressions = {e["key"]: e["values"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}
    assert expressions == {
        "heteroscale.io/logical-cluster": ["lc1"],
        "heteroscale.io/s2": ["pod-a"],
        "heteroscale.io/gpu-sku": ["H20"],  # the node label's own spelling of the SKU
    }
    assert template["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    # the fake's scheduler honoured the affinity: every pod on an H20 node of pod-a
    assert wait_until(lambda: ready(cluster, 5), 10.0)
    nodes = {p["spec"]["nodeName"] for p in kube.pods(NAMESPACE) if "decode" in p["metadata"]["name"]}
    assert nodes <= {"pod-a-n2", "pod-a-n3"}
    state = cluster.snapshot(CLOCK.now_s())
    assert state.count("chat", Role.DECODE) == 3 and state.count("chat", Role.PREFILL) == 2
    assert all(i.in_discovery for i in state.instances)


def test_replicas_without_pods_count_as_pending_and_hold_their_gpus(kube: KubeFakeServer) -> None:
    cluster = make_cluster(kube)
    kube.call(lambda f: setattr(f, "controllers_enabled", False))  # no ReplicaSet: no pods appear
    scale_up(cluster, 0, 3)
    state = cluster.snapshot(CLOCK.now_s())
    pending = [i for i in state.instances if i.lifecycle is Lifecycle.PENDING]
    assert len(pending) == 3 and all("#pending-" in i.id for i in pending)
    free = cluster.free_gpus()
    assert free["pod-a-n2"] == 5  # three 1-GPU replicas reserved in pod-a's first H20 node
    # a restarted controller asks for nothing more: apply of an empty plan changes nothing
    again = make_cluster(kube)
    assert again.snapshot(CLOCK.now_s()).count("chat", Role.DECODE) == 3


def test_the_same_scale_plan_twice_is_idempotent(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    scale_up(cluster, 1, 1)
    now_s = CLOCK.now_s()
    cluster.snapshot(now_s)
    plan = PlacementPlan(launches=launches("pod-a-n2", DECODE, 2))
    made_on = cluster._last
    assert not cluster.apply(plan, now_s).errors
    # re-applying against the state the plan was made on (a retried reconcile) adds nothing
    cluster._last = made_on
    assert not cluster.apply(plan, now_s).errors
    snap_replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in kube.deployments(NAMESPACE)}
    assert snap_replicas["chat-dg0-decode-h20-tp1"] == 3


def test_conflicts_are_retried_with_backoff(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    scale_up(cluster, 1, 1)
    fault = kube.inject(Fault("PATCH", r"/deployments/chat-dg0-decode-h20-tp1/scale$", status=409, count=2))
    now_s = CLOCK.now_s()
    cluster.snapshot(now_s)
    result = cluster.apply(PlacementPlan(launches=launches("pod-a-n2", DECODE, 1)), now_s)
    assert not result.errors and fault.hits == 2
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in kube.deployments(NAMESPACE)}[
        "chat-dg0-decode-h20-tp1"
    ] == 2


def test_server_errors_honour_retry_after(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    fault = kube.inject(Fault("POST", r"/deployments$", status=503, count=1, retry_after_s=0.3))
    t0 = CLOCK.monotonic_s()
    scale_up(cluster, 0, 1)
    assert fault.hits == 1 and CLOCK.monotonic_s() - t0 >= 0.3
    assert len(kube.deployments(NAMESPACE)) == 1


def test_time_out_that_landed_creates_no_duplicate(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    # the create is applied after the client gave up (1 s time-out); the retry sees 409 and reads it back
    fault = kube.inject(Fault("POST", r"/deployments$", status=0, delay_s=1.5))
    scale_up(cluster, 0, 2)
    assert fault.hits == 1
    deployments = kube.deployments(NAMESPACE)
    assert len(deployments) == 1 and deployments[0]["spec"]["replicas"] == 2


def test_scale_time_out_that_landed_is_not_applied_twice(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    scale_up(cluster, 0, 1)
    kube.inject(Fault("PATCH", r"/deployments/chat-dg0-decode-h20-tp1/scale$", status=0, delay_s=1.5))
    now_s = CLOCK.now_s()
    cluster.snapshot(now_s)
    result = cluster.apply(PlacementPlan(launches=launches("pod-a-n2", DECODE, 1)), now_s)
    assert not result.errors, result.errors
    assert kube.deployments(NAMESPACE)[0]["spec"]["replicas"] == 2


def test_forbidden_is_permanent_and_reported(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    kube.inject(Fault("POST", r"/deployments$", status=403, count=5))
    now_s = CLOCK.now_s()
    cluster.snapshot(now_s)
    result = cluster.apply(PlacementPlan(launches=launches("pod-a-n2", DECODE, 1)), now_s)
    assert len(result.errors) == 1 and "permanent: create deployment" in result.errors[0] and "403" in result.errors[0]
    assert kube.deployments(NAMESPACE) == []


def test_api_down_is_transient_after_bounded_retries(kube: KubeFakeServer) -> None:
    cluster = make_cluster(kube, max_attempts=3)
    kube.inject(Fault("GET", r"/api/v1/nodes$", status=500, count=10))
    with pytest.raises(TransientActuationError, match="gave up after 3 attempt"):
        cluster.snapshot(CLOCK.now_s())


def test_drain_takes_the_chosen_victim_out_of_discovery_then_scales_down(
    cluster: KubernetesCluster, kube: KubeFakeServer
) -> None:
    scale_up(cluster, 0, 3)
    assert wait_until(lambda: ready(cluster, 3), 10.0)
    now_s = CLOCK.now_s()
    state = cluster.snapshot(now_s)
    victim = sorted(i.id for i in state.instances)[0]  # the oldest: not what the ReplicaSet would pick itself
    result = cluster.apply(PlacementPlan(removals=(Remove(victim, ScaleInMode.DRAIN, 0.5),)), now_s)
    assert result.removed == (victim,) and not result.errors
    pod = next(p for p in kube.pods(NAMESPACE) if p["metadata"]["name"] == victim)
    assert pod["metadata"]["labels"]["heteroscale.io/discovery"] == "off"
    assert pod["metadata"]["annotations"][DELETION_COST] == "-2147483648"
    state = cluster.snapshot(CLOCK.now_s())
    assert state.count("chat", Role.DECODE) == 2  # the draining pod no longer counts as capacity
    assert kube.deployments(NAMESPACE)[0]["spec"]["replicas"] == 3  # still running its in-flight work
    CLOCK.sleep_s(0.6)
    finished = cluster.finish_drains(CLOCK.now_s())
    assert finished.removed == (victim,)
    assert kube.deployments(NAMESPACE)[0]["spec"]["replicas"] == 2
    names = {p["metadata"]["name"] for p in kube.pods(NAMESPACE)}
    assert victim not in names and len(names) == 2  # the ReplicaSet took exactly our victim
    assert cluster.finish_drains(CLOCK.now_s()).removed == ()  # nothing is finished twice


def test_discovery_changes_flip_the_label_only(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    scale_up(cluster, 0, 2)
    assert wait_until(lambda: ready(cluster, 2), 10.0)
    now_s = CLOCK.now_s()
    pod = sorted(i.id for i in cluster.snapshot(now_s).instances)[1]
    result = cluster.apply(PlacementPlan(discovery=(DiscoveryChange(pod, False, "gated"),)), now_s)
    assert result.discovery_changed == (pod,)
    state = cluster.snapshot(CLOCK.now_s())
    gated = next(i for i in state.instances if i.id == pod)
    assert gated.lifecycle is Lifecycle.READY and not gated.in_discovery
    assert len(kube.pods(NAMESPACE)) == 2  # outside the selector: nothing replaced


def test_a_write_refused_by_the_fence_abandons_every_write_left(
    cluster: KubernetesCluster, kube: KubeFakeServer
) -> None:
    """The defect: a controller that no longer held the Lease kept writing. Refused once, it asks no more."""
    scale_up(cluster, 0, 3)
    assert wait_until(lambda: ready(cluster, 3), 10.0)
    now_s = CLOCK.now_s()
    pods = sorted(i.id for i in cluster.snapshot(now_s).instances)
    asked: list[str] = []

    def fence(what: str) -> None:  # lets the first write through, then the lease has lapsed
        asked.append(what)
        if len(asked) > 1:
            raise FencedError(f"{what}: refused: the last lease renewal began 11.0 s ago (renew deadline 10 s)")

    cluster.client.fence = fence
    writes_before = len(kube.writes())
    plan = PlacementPlan(
        launches=launches("pod-a-n0", PREFILL, 2),
        removals=(Remove(pods[0], ScaleInMode.DRAIN, 0.0),),
        discovery=(DiscoveryChange(pods[1], False, "gated"), DiscoveryChange(pods[2], False, "gated")),
    )
    result = cluster.apply(plan, now_s)
    assert len(asked) == 2  # one write went through; the refused one was the last asked for
    assert len(kube.writes()) == writes_before + 1
    assert result.removed == (pods[0],) and result.launched == () and result.discovery_changed == ()
    assert result.fenced is not None and "renew deadline" in result.fenced
    assert result.abandoned == (
        "scale chat-dg0-prefill-h100-sxm-tp1 by +2",
        f"discovery {pods[1]} → off",
        f"discovery {pods[2]} → off",
    )
    assert any(e.startswith("fenced:") and "3 write(s) abandoned" in e for e in result.errors)
    # finishing drains is refused at its first write too: the victim's drain is due at once
    finished = cluster.finish_drains(CLOCK.now_s())
    assert finished.fenced is not None and finished.removed == () and len(asked) == 3
    assert len(kube.writes()) == writes_before + 1


def test_advisory_applies_nothing(cluster: KubernetesCluster, kube: KubeFakeServer) -> None:
    advisory = AdvisoryActuator(cluster)
    now_s = CLOCK.now_s()
    advisory.snapshot(now_s)
    result = advisory.apply(PlacementPlan(launches=launches("pod-a-n2", DECODE, 2)), now_s)
    assert result.launched == () and "dry run" in result.errors[0]
    assert kube.deployments(NAMESPACE) == [] and len(advisory.plans) == 1


def test_translation_of_api_errors() -> None:
    exc = kubernetes.client.ApiException(status=429, reason="Too Many Requests")
    exc.headers = {"Retry-After": "7"}
    error = translate(exc, "list pods")
    assert isinstance(error, TransientActuationError) and error.retry_after_s == 7.0
    assert isinstance(
        translate(kubernetes.client.ApiException(status=422, reason="Invalid"), "x"), PermanentActuationError
    )
    assert WorkloadKey("a" * 60, "a" * 60 + "-dg0", Role.DECODE, "h20", 8).name.__len__() <= 52
