"""deploy/ and every manifest the controller generates validate against the Kubernetes schemas (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
import yaml

from heteroscale.actuators.kube.api import KubernetesSettings
from heteroscale.actuators.kube.manifests import WorkloadTemplate
from heteroscale.actuators.kube.naming import WorkloadKey
from heteroscale.actuators.kube.owned import KubernetesCluster
from heteroscale.clock import WallClock
from heteroscale.config.controller import load_controller_config
from heteroscale.domain.hardware import Role
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import NAMESPACE

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.37"


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_deploy_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deploy_has_what_the_controller_needs() -> None:
    kinds = sorted(doc["kind"] for _, doc in documents())
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
        ]
    )


def _rules() -> set[tuple[str, str, str, str]]:
    """(scope, resource, verb, resourceName or '*') for every granted permission."""
    granted = set()
    for _, doc in documents():
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames", ["*"]):
                        granted.add((doc["kind"], resource, verb, name))
    return granted


def test_rbac_is_exactly_the_calls_the_controller_makes() -> None:
    assert _rules() == {
        ("ClusterRole", "nodes", "list", "*"),
        ("ClusterRole", "pods", "list", "*"),
        ("Role", "pods", "list", "*"),
        ("Role", "pods", "patch", "*"),
        ("Role", "deployments", "get", "*"),
        ("Role", "deployments", "list", "*"),
        ("Role", "deployments", "create", "*"),
        ("Role", "deployments/scale", "get", "*"),
        ("Role", "deployments/scale", "patch", "*"),
        ("Role", "leases", "create", "*"),
        ("Role", "leases", "get", "heteroscale-controller"),
        ("Role", "leases", "patch", "heteroscale-controller"),
    }
    assert not any(verb in ("delete", "deletecollection", "*", "update", "watch") for _, _, verb, _ in _rules())


def test_example_config_is_a_valid_controller_config(tmp_path: Path) -> None:
    configmap = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap")
    path = tmp_path / "controller.yaml"
    path.write_text(configmap["data"]["controller.yaml"], encoding="utf-8")
    config, _ = load_controller_config(path)
    assert config.kubernetes.in_cluster and config.http.address == "0.0.0.0"
    deployment = next(doc for _, doc in documents() if doc["kind"] == "Deployment")
    lease = config.leader_election.lease_name
    role = next(doc for _, doc in documents() if doc["kind"] == "Role")
    assert any(lease in rule.get("resourceNames", []) for rule in role["rules"])
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "heteroscale-controller"


@pytest.mark.integration
def test_generated_workload_manifest_is_valid(kube: KubeFakeServer) -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = kube.url
    cluster = KubernetesCluster(
        kubernetes.client.ApiClient(configuration),
        KubernetesSettings(namespace=NAMESPACE),
        {"chat": WorkloadTemplate(image="vllm/vllm-openai:v0.8.5", env=(("HF_HOME", "/cache"),), command=("vllm",))},
        WallClock(),
    )
    cluster.snapshot(WallClock().now_s())
    for role, sku in ((Role.PREFILL, "h100-sxm"), (Role.DECODE, "h20")):
        manifest = cluster.deployment_manifest(WorkloadKey("chat", "chat-dg0", role, sku, 4), "pod-a-n0", 2)
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
