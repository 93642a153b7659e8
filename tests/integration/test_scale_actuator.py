"""The scale-mode actuator against the API fake, cycle by cycle: victims chosen by deletion cost where the
kind honours it (and said plainly where it does not), conflicts left to the next cycle's read, the
role shim's ``test`` ops, and the fence before every write.

Every cycle is driven by the test (``reconcile_once``); what the fake does in between is waited for with
bounded waits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from heteroscale.actuators.advisory import AdvisoryActuator
from heteroscale.actuators.kube.api import FencedError, KubernetesSettings
from heteroscale.actuators.kube.kinds import kind_of
from heteroscale.actuators.kube.targets import ScaleTarget
from heteroscale.actuators.scale import ScaleTargetsCluster
from heteroscale.clock import WallClock
from heteroscale.controller.journal import Journal
from heteroscale.controller.readiness import ReadinessSettings
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.state import Lifecycle
from heteroscale.errors import MetricsUnavailable
from heteroscale.policy.context import Targets
from heteroscale.policy.registry import make_policy
from tests.support import builders
from tests.support.crds import crd_dir, crds, deployment, leader_worker_set, model_serving, problems, storm_service
from tests.support.kube_fake import PODS, Fault, KubeFakeServer
from tests.support.kube_objects import is_ready
from tests.support.kube_user_objects import create, objects, spec_replicas
from tests.support.live_env import NAMESPACE, gpu_nodes
from tests.support.prometheus_server import wait_until

pytestmark = pytest.mark.integration

CLOCK = WallClock()
PREFILL = InstanceShape(Role.PREFILL, "h100-sxm", 1)
DECODE = InstanceShape(Role.DECODE, "h20", 1)


class NoMetrics:
    """A MetricSource fake with nothing to say (the static policy needs no observation)."""

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        raise MetricsUnavailable(f"{service}: no metrics in this test")


@pytest.fixture
def kube() -> Iterator[KubeFakeServer]:
    if crd_dir() is None:
        pytest.skip("the upstream CRDs (shared/crds) are not next to the repository")
    kinds = ("LeaderWorkerSet", "StormService", "ModelServing")
    server = KubeFakeServer(gpu_nodes(), ready_after_s=0.2, crds=crds(*kinds), validator=problems).start()
    try:
        yield server
    finally:
        server.stop()


def scale_target(role: Role, api_version: str, kind: str, name: str, role_name: str | None = None) -> ScaleTarget:
    found = kind_of(api_version, kind)
    assert found is not None
    shape = PREFILL if role is Role.PREFILL else DECODE
    return ScaleTarget("chat", role, shape.sku, shape.tp, found, name, role_name=role_name)


def cluster_for(kube: KubeFakeServer, *targets: ScaleTarget) -> ScaleTargetsCluster:
    configuration = kubernetes.client.Configuration()
    configuration.host = kube.url
    configuration.retries = False
    settings = KubernetesSettings(namespace=NAMESPACE, request_timeout_s=2.0, backoff_s=0.05, retry_budget_s=5.0)
    return ScaleTargetsCluster(kubernetes.client.ApiClient(configuration), settings, list(targets), CLOCK)


def controller(cluster: ScaleTargetsCluster, prefill: int, decode: int, acting: Any = None) -> Controller:
    spec = builders.service(
        name="chat", prefill_shapes=(PREFILL,), decode_shapes=(DECODE,), affinity=AffinityLevel.S2, min_prefill=0
    )
    unused = Targets(((DECODE.key, 1.0),), ((PREFILL.key, 1.0),), *([1.0] * 10), source="unused")
    binding = ServiceBinding(spec, make_policy("static", {"prefill": prefill, "decode": decode}), unused)
    readiness = ReadinessSettings(gating=False)
    actuator = cluster if acting is None else acting
    return Controller([binding], NoMetrics(), cluster, actuator, Journal(None, keep=True), readiness=readiness)


def all_ready(cluster: ScaleTargetsCluster, count: int) -> bool:
    state = cluster.snapshot(CLOCK.now_s())
    return len(state.instances) == count and all(i.lifecycle is Lifecycle.READY for i in state.instances)


def test_scale_in_of_a_deployment_takes_exactly_the_pod_the_scheduler_chose(kube: KubeFakeServer) -> None:
    create(kube, deployment("chat-prefill", 1))
    create(kube, deployment("chat-decode", 3))
    cluster = cluster_for(
        kube,
        scale_target(Role.PREFILL, "apps/v1", "Deployment", "chat-prefill"),
        scale_target(Role.DECODE, "apps/v1", "Deployment", "chat-decode"),
    )
    assert wait_until(lambda: all_ready(cluster, 4), 10.0)
    now_s = CLOCK.now_s()
    # the plan first, without acting: which pod the scheduler takes
    [dry] = controller(cluster, 1, 2, acting=AdvisoryActuator(cluster)).reconcile_once(now_s)
    [removal] = dry.plan["removals"]
    victim = removal["instance_id"]

    def decode_pods() -> set[str]:
        return {p["metadata"]["name"] for p in kube.pods(NAMESPACE) if p["metadata"]["labels"]["app"] == "chat-decode"}

    # the user's own deletion cost makes another pod the ReplicaSet's first choice, unless we mark ours
    other = sorted(decode_pods() - {victim})[0]

    def prefer_other(f: Any) -> None:
        pod = f.objects[PODS, NAMESPACE, other].raw
        pod["metadata"].setdefault("annotations", {})["controller.kubernetes.io/pod-deletion-cost"] = "-100"

    kube.call(prefer_other)
    [record] = controller(cluster, 1, 2).reconcile_once(now_s)  # the same read, so the same plan
    assert record.outcome["removed"] == [victim]
    assert spec_replicas(kube, "Deployment") == {"chat-prefill": 1, "chat-decode": 2}
    assert wait_until(lambda: len(decode_pods()) == 2, 10.0)
    assert victim not in decode_pods() and other in decode_pods()
    assert not record.outcome["notes"]  # the deletion cost made the ReplicaSet take the victim: nothing to say
    assert kube.call(lambda f: f.schema_problems()) == []
    cluster.client.api.close()


def test_scale_in_of_a_leader_worker_set_says_which_replica_goes(kube: KubeFakeServer) -> None:
    lws = "leaderworkerset.x-k8s.io/v1"
    create(kube, leader_worker_set("chat-prefill", 1))
    create(kube, leader_worker_set("chat-decode", 3))
    cluster = cluster_for(
        kube,
        scale_target(Role.PREFILL, lws, "LeaderWorkerSet", "chat-prefill"),
        scale_target(Role.DECODE, lws, "LeaderWorkerSet", "chat-decode"),
    )
    assert wait_until(lambda: all_ready(cluster, 4), 10.0)  # 4 replicas of 2 pods: 4 instances, not 8
    [record] = controller(cluster, 1, 2).reconcile_once(CLOCK.now_s())
    assert spec_replicas(kube, "LeaderWorkerSet") == {"chat-prefill": 1, "chat-decode": 2}
    [note] = record.outcome["notes"]
    assert "LeaderWorkerSet/chat-decode: LeaderWorkerSet removes the highest group index" in note
    pods = [p for p in kube.pods(NAMESPACE) if p["metadata"]["labels"].get("app") == "chat-decode"]
    assert wait_until(
        lambda: (
            {p["metadata"]["name"] for p in kube.pods(NAMESPACE) if "chat-decode" in p["metadata"]["name"]}
            == {"chat-decode-0", "chat-decode-0-1", "chat-decode-1", "chat-decode-1-1"}
        ),
        10.0,
    ), pods
    assert kube.call(lambda f: f.schema_problems()) == []
    cluster.client.api.close()


def test_a_conflicting_scale_write_is_left_to_the_next_cycle(kube: KubeFakeServer) -> None:
    create(kube, deployment("chat-prefill", 1))
    create(kube, deployment("chat-decode", 1))
    cluster = cluster_for(
        kube,
        scale_target(Role.PREFILL, "apps/v1", "Deployment", "chat-prefill"),
        scale_target(Role.DECODE, "apps/v1", "Deployment", "chat-decode"),
    )
    fault = kube.inject(Fault("PATCH", r"/deployments/chat-decode/scale$", status=409))
    ctl = controller(cluster, 2, 2)
    [record] = ctl.reconcile_once(CLOCK.now_s())
    assert fault.hits == 1  # not retried within the cycle
    assert any("chat-decode" in e and "changed since it was read" in e for e in record.outcome["errors"])
    assert spec_replicas(kube, "Deployment") == {"chat-prefill": 2, "chat-decode": 1}
    ctl.reconcile_once(CLOCK.now_s())  # reads again and plans from what it finds
    assert spec_replicas(kube, "Deployment") == {"chat-prefill": 2, "chat-decode": 2}
    cluster.client.api.close()


def storm_role(kube: KubeFakeServer, role: str) -> int:
    roles = objects(kube, "StormService")["chat"]["spec"]["template"]["spec"]["roles"]
    return int(next(r["replicas"] for r in roles if r["name"] == role))


def test_a_storm_service_role_moved_by_someone_else_fails_the_patch_test(kube: KubeFakeServer) -> None:
    create(kube, storm_service("chat", {"prefill": 1, "decode": 1}))
    version = "orchestration.aibrix.ai/v1alpha1"
    cluster = cluster_for(
        kube,
        scale_target(Role.PREFILL, version, "StormService", "chat", "prefill"),
        scale_target(Role.DECODE, version, "StormService", "chat", "decode"),
    )
    assert wait_until(lambda: all_ready(cluster, 2), 10.0)
    ctl = controller(cluster, 1, 3)
    now_s = CLOCK.now_s()
    cluster.snapshot(now_s)  # the read the plan will be made on

    def someone_else(f: Any) -> None:
        obj = f.objects[next(k for k in f.objects if k[2] == "chat" and f.objects[k].raw.get("kind") == "StormService")]
        obj.raw["spec"]["template"]["spec"]["roles"][1]["replicas"] = 4

    kube.call(someone_else)
    [record] = ctl.reconcile_once(now_s)
    assert any("changed since it was read" in e for e in record.outcome["errors"]), record.outcome
    assert storm_role(kube, "decode") == 4  # the other writer's value stands (the plan said 1 → 2)
    ctl.reconcile_once(CLOCK.now_s() + 1)  # a new read: 4 → 3
    assert storm_role(kube, "decode") == 3
    cluster.client.api.close()


def test_a_fenced_scale_mode_writes_nothing(kube: KubeFakeServer) -> None:
    create(kube, deployment("chat-prefill", 1))
    create(kube, deployment("chat-decode", 1))
    cluster = cluster_for(
        kube,
        scale_target(Role.PREFILL, "apps/v1", "Deployment", "chat-prefill"),
        scale_target(Role.DECODE, "apps/v1", "Deployment", "chat-decode"),
    )

    def fence(what: str) -> None:
        raise FencedError(f"{what}: not the leader")

    cluster.client.fence = fence
    [record] = controller(cluster, 3, 3).reconcile_once(CLOCK.now_s())
    assert record.outcome["fenced"] and len(record.outcome["abandoned"]) == 2
    assert spec_replicas(kube, "Deployment") == {"chat-prefill": 1, "chat-decode": 1}
    cluster.client.api.close()


def test_ready_pods_follow_the_fake_operators(kube: KubeFakeServer) -> None:
    """The fake runs the stacks' pods with their operators' labels (what the grouping above relies on)."""
    create(kube, leader_worker_set("chat", 2, size=3))
    assert wait_until(lambda: sum(1 for p in kube.pods(NAMESPACE) if is_ready(p)) == 6, 10.0)
    labels = sorted(
        (p["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/group-index"],
         p["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"])
        for p in kube.pods(NAMESPACE)
    )  # fmt: skip
    assert labels == [(g, w) for g in ("0", "1") for w in ("0", "1", "2")]


def test_a_stuck_leader_worker_set_replica_is_not_scaled_away_with_a_healthy_one(kube: KubeFakeServer) -> None:
    lws = "leaderworkerset.x-k8s.io/v1"
    kube.call(lambda f: f.never_ready_images.add("never:ready"))  # an image that cannot be pulled
    create(kube, leader_worker_set("chat-prefill", 1))
    stuck = leader_worker_set("chat-decode", 2)
    stuck["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["image"] = "never:ready"
    create(kube, stuck)
    cluster = cluster_for(
        kube,
        scale_target(Role.PREFILL, lws, "LeaderWorkerSet", "chat-prefill"),
        scale_target(Role.DECODE, lws, "LeaderWorkerSet", "chat-decode"),
    )
    cluster.settings = dataclasses.replace(cluster.settings, start_timeout_s=0.5)

    def stuck_decode() -> bool:
        state = cluster.snapshot(CLOCK.now_s())
        return sum(1 for i in state.instances if i.lifecycle is Lifecycle.STUCK) == 2

    assert wait_until(stuck_decode, 10.0)
    [record] = controller(cluster, 1, 2).reconcile_once(CLOCK.now_s())
    notes = record.outcome["notes"]
    assert sum("is stuck" in n and "left to its operator" in n for n in notes) == 2, notes
    assert not record.outcome["removed"]  # scaling down would have taken a healthy group, not the stuck one
    assert spec_replicas(kube, "LeaderWorkerSet")["chat-decode"] >= 2
    cluster.client.api.close()


def test_a_model_serving_role_counts_once_per_serving_group(kube: KubeFakeServer) -> None:
    create(kube, model_serving("chat", groups=2, roles={"prefill": 1, "decode": 1}))
    version = "workload.serving.volcano.sh/v1alpha1"
    cluster = cluster_for(
        kube,
        scale_target(Role.PREFILL, version, "ModelServing", "chat", "prefill"),
        scale_target(Role.DECODE, version, "ModelServing", "chat", "decode"),
    )
    assert wait_until(lambda: all_ready(cluster, 4), 10.0)  # 2 serving groups × (1 prefill + 1 decode)
    [record] = controller(cluster, 2, 4).reconcile_once(CLOCK.now_s())
    assert len(record.outcome["launched"]) == 2
    roles = objects(kube, "ModelServing")["chat"]["spec"]["template"]["roles"]
    assert {r["name"]: r["replicas"] for r in roles} == {"prefill": 1, "decode": 2}  # 2 per group, 4 in all
    assert wait_until(lambda: all_ready(cluster, 6), 10.0)
    assert kube.call(lambda f: f.schema_problems()) == []
    cluster.client.api.close()
