"""deploy/ and every manifest the controller generates validate against the Kubernetes schemas (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
import yaml

from heteroscale.actuators.kube.api import KubernetesSettings, Toleration
from heteroscale.actuators.kube.manifests import WorkloadTemplate
from heteroscale.actuators.kube.naming import WorkloadKey
from heteroscale.actuators.kube.owned import KubernetesCluster
from heteroscale.cli.wiring import workload_template
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


OPT_IN = "rbac-cluster-gpu-accounting.yaml"


def test_deploy_has_what_the_controller_needs() -> None:
    kinds = sorted(doc["kind"] for name, doc in documents() if not name.startswith(OPT_IN))
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


def _rules(opt_in: bool = False) -> set[tuple[str, str, str, str]]:
    """(scope, resource, verb, resourceName or '*') for every granted permission (of the opt-in file)."""
    granted = set()
    for name, doc in documents():
        if doc["kind"] not in ("Role", "ClusterRole") or name.startswith(OPT_IN) is not opt_in:
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


def test_the_cluster_wide_pod_list_is_a_separate_opt_in() -> None:
    assert _rules(opt_in=True) == {("ClusterRole", "pods", "list", "*")}
    binding = next(doc for name, doc in documents() if name.startswith(OPT_IN) and doc["kind"] == "ClusterRoleBinding")
    account = next(doc for _, doc in documents() if doc["kind"] == "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]
    assert binding["roleRef"]["name"] == "heteroscale-controller-gpu-accounting"


def test_example_config_is_a_valid_controller_config(tmp_path: Path) -> None:
    configmap = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap")
    path = tmp_path / "controller.yaml"
    path.write_text(configmap["data"]["controller.yaml"], encoding="utf-8")
    config, _ = load_controller_config(path)
    assert config.kubernetes.in_cluster and config.http.address == "0.0.0.0"
    assert config.kubernetes.gpu_accounting == "namespace"  # what rbac.yaml alone allows
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
        pod = manifest["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        assert pod["containers"][0]["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"]},
        }


@pytest.mark.integration
def test_workload_manifests_from_the_example_config_are_valid(kube: KubeFakeServer, tmp_path: Path) -> None:
    """Secret / ConfigMap environment, envFrom, a non-root user, tolerations and a verbatim service name."""
    configmap = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap")
    data = yaml.safe_load(configmap["data"]["controller.yaml"])
    service = data["services"][0]
    service["name"] = "Llama-3.1_chat"
    service["workload"]["env"]["MODE"] = {"config_map": "engine-settings", "key": "mode", "optional": True}
    service["workload"]["env_from"] = [{"secret": "engine-secrets"}, {"config_map": "engine-settings", "prefix": "E_"}]
    service["workload"]["security"]["read_only_root_filesystem"] = True
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    config, _ = load_controller_config(path)
    k = config.kubernetes
    settings = KubernetesSettings(
        namespace=NAMESPACE, tolerations=tuple(Toleration(t.key, t.operator, t.value, t.effect) for t in k.tolerations)
    )
    configuration = kubernetes.client.Configuration()
    configuration.host = kube.url
    template = workload_template(config.services[0].workload)
    cluster = KubernetesCluster(kubernetes.client.ApiClient(configuration), settings, {"Llama-3.1_chat": template})
    cluster.snapshot(WallClock().now_s())
    key = WorkloadKey("Llama-3.1_chat", "Llama-3.1_chat-dg0", Role.DECODE, "h20", 4)
    manifest = cluster.deployment_manifest(key, "pod-a-n2", 1)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    token = {"secretKeyRef": {"name": "hf-token", "key": "token", "optional": False}}
    assert {"name": "HF_TOKEN", "valueFrom": token} in container["env"]
    assert container["envFrom"][0] == {"secretRef": {"name": "engine-secrets", "optional": False}}
    assert pod["securityContext"]["runAsUser"] == 1000 and container["securityContext"]["readOnlyRootFilesystem"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert manifest["spec"]["template"]["metadata"]["labels"]["heteroscale.io/service"] == "Llama-3.1_chat"
    cluster.api.close()
