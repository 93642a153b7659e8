"""The Controller with the real KubernetesCluster against the Kubernetes API fake: the clusters,
bindings and reads the integration tests share (test_kube_controller.py, test_kube_reads.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kubernetes

from heteroscale.actuators.kube.api import KubernetesSettings
from heteroscale.actuators.kube.manifests import WorkloadTemplate
from heteroscale.actuators.kube.owned import KubernetesCluster
from heteroscale.clock import WallClock
from heteroscale.controller.journal import Journal
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.service import AffinityLevel
from heteroscale.errors import MetricsUnavailable
from heteroscale.policy.context import Targets
from heteroscale.policy.registry import make_policy
from tests.support import builders
from tests.support.kube_fake import KubeFakeServer
from tests.support.kube_objects import is_ready
from tests.support.live_env import NAMESPACE

CLOCK = WallClock()
IMAGE = "vllm/vllm-openai:v0.8.5"
PREFILL = InstanceShape(Role.PREFILL, "h100-sxm", 1)
DECODE = InstanceShape(Role.DECODE, "h20", 1)
POD_A = {f"pod-a-n{i}" for i in range(4)}
POD_B = {f"pod-b-n{i}" for i in range(4)}


class NoMetrics:
    """A MetricSource fake with nothing to say (the static policy needs no observation)."""

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        raise MetricsUnavailable(f"{service}: no metrics in this test")


def binding(name: str, prefill: int, decode: int) -> ServiceBinding:
    spec = builders.service(
        name=name, prefill_shapes=(PREFILL,), decode_shapes=(DECODE,), affinity=AffinityLevel.S2, min_prefill=0
    )
    unused = Targets(((DECODE.key, 1.0),), ((PREFILL.key, 1.0),), *([1.0] * 10), source="unused")
    return ServiceBinding(spec, make_policy("static", {"prefill": prefill, "decode": decode}), unused)


def make_cluster(kube: KubeFakeServer, services: Sequence[str], **settings: Any) -> KubernetesCluster:
    configuration = kubernetes.client.Configuration()
    configuration.host = kube.url
    configuration.retries = False
    defaults: dict[str, Any] = {"request_timeout_s": 2.0, "backoff_s": 0.05, "retry_budget_s": 5.0}
    defaults.update(settings)
    return KubernetesCluster(
        kubernetes.client.ApiClient(configuration),
        KubernetesSettings(namespace=NAMESPACE, **defaults),
        {name: WorkloadTemplate(image=IMAGE) for name in services},
        CLOCK,
        resolve_sku=lambda v: v.lower(),
    )


def controller_for(cluster: KubernetesCluster, *bindings: ServiceBinding) -> Controller:
    return Controller(list(bindings), NoMetrics(), cluster, cluster, Journal(None, keep=True))


def replicas_by_service(kube: KubeFakeServer) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for dep in kube.deployments(NAMESPACE):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        counts = out.setdefault(labels["heteroscale.io/service"], [0, 0])
        counts[0 if labels["heteroscale.io/role"] == "prefill" else 1] += int(dep["spec"]["replicas"])
    return {k: (v[0], v[1]) for k, v in out.items()}


def ready_nodes(kube: KubeFakeServer, service: str) -> list[str]:
    return sorted(
        p["spec"]["nodeName"]
        for p in kube.pods(NAMESPACE)
        if p["metadata"]["labels"].get("heteroscale.io/service") == service and is_ready(p)
    )
