"""deploy/ (the owned overlay as kustomize renders it) and every manifest the controller generates
validate against the Kubernetes schemas (offline); tests/integration/test_kustomize.py covers every overlay."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
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
from heteroscale.config.controller import load_controller_config, prometheus_credentials
from heteroscale.domain.hardware import Role
from heteroscale.errors import ConfigError
from tests.support.kube_fake import KubeFakeServer
from tests.support.kustomize import KUSTOMIZE, kubectl_binary, render
from tests.support.live_env import NAMESPACE
from tests.support.tls import make_pki, openssl_binary

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.37"
CORE = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap"}
CORE |= {"StatefulSet", "Service", "PodDisruptionBudget"}
OPT_IN = "gpu-accounting"


@functools.cache
def _rendered() -> tuple[tuple[str, dict[str, Any]], ...]:
    if kubectl_binary() is None:
        return ()
    out = [(f"owned:{d['kind']}/{d['metadata']['name']}", d) for d in render(KUSTOMIZE / "overlays" / "owned")]
    seen = {name for name, _ in out}
    with tempfile.TemporaryDirectory() as tmp:  # the owned overlay with the opt-in component, as a user adds it
        where = Path(tmp)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(KUSTOMIZE / "overlays" / "owned", where)],
            "components": [os.path.relpath(KUSTOMIZE / "components" / OPT_IN, where)],
        }
        (where / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
        for doc in render(where):
            if f"owned:{doc['kind']}/{doc['metadata']['name']}" not in seen:
                out.append((f"{OPT_IN}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return tuple(out)


def documents() -> list[tuple[str, dict[str, Any]]]:
    """The owned overlay's core objects (the custom resources are checked in test_kustomize.py) and the
    opt-in component's."""
    return [(name, doc) for name, doc in _rendered() if doc["kind"] in CORE]


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_deploy_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def config_map() -> dict[str, Any]:
    """The controller's configuration (the other ConfigMap holds the Grafana dashboard)."""
    return next(
        d for _, d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "heteroscale-controller"
    )


def test_deploy_has_what_the_controller_needs() -> None:
    kinds = sorted(doc["kind"] for name, doc in documents() if not name.startswith(OPT_IN))
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "ConfigMap",
            "StatefulSet",
            "Service",
            "PodDisruptionBudget",
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
    configmap = config_map()
    path = tmp_path / "controller.yaml"
    path.write_text(configmap["data"]["controller.yaml"], encoding="utf-8")
    config, _ = load_controller_config(path)
    assert config.kubernetes.in_cluster and config.http.address == "0.0.0.0"
    assert config.kubernetes.gpu_accounting == "namespace"  # what rbac.yaml alone allows
    deployment = next(doc for _, doc in documents() if doc["kind"] == "StatefulSet")
    lease = config.leader_election.lease_name
    roles = [doc for _, doc in documents() if doc["kind"] == "Role"]
    assert any(lease in rule.get("resourceNames", []) for role in roles for rule in role["rules"])
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
    configmap = config_map()
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


def test_example_prometheus_credentials_come_from_the_mounted_secret(tmp_path: Path) -> None:
    """The example config's token and CA files lie under the read-only Secret mount of the StatefulSet,
    and they are read once there (here: a copy of the config pointing at stand-in files)."""
    configmap = config_map()
    text = configmap["data"]["controller.yaml"]
    path = tmp_path / "controller.yaml"
    path.write_text(text, encoding="utf-8")
    config, doc = load_controller_config(path)
    p = config.prometheus
    assert p.url.startswith("https://") and p.bearer_token_file and p.tls.ca_file and not p.tls.insecure_skip_verify
    pod = next(doc for _, doc in documents() if doc["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "heteroscale-prometheus")
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] and volume["secret"]["defaultMode"] == 0o440
    for ref in (p.bearer_token_file, p.tls.ca_file):
        assert ref is not None and Path(ref).parent == Path(mount["mountPath"])
    with pytest.raises(ConfigError, match=r"prometheus\.bearer_token_file: .*no such file"):
        prometheus_credentials(p, doc)  # the Secret is not mounted here: one clear line
    if openssl_binary() is None:
        pytest.skip("openssl not on PATH: no CA to stand in for ca.crt")
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "token").write_text("stand-in-token\n")
    shutil.copy(make_pki(tmp_path / "pki").ca, secret_dir / "ca.crt")
    path.write_text(text.replace(mount["mountPath"], str(secret_dir)), encoding="utf-8")
    config, doc = load_controller_config(path)
    creds = prometheus_credentials(config.prometheus, doc)
    assert creds.bearer_token_file == secret_dir / "token" and creds.tls.ca_file == secret_dir / "ca.crt"
