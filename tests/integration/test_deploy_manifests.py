"""deploy/ and every manifest the controller generates validate against the Kubernetes schemas (offline)."""

from __future__ import annotations

import shutil
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
from heteroscale.config.controller import load_controller_config, prometheus_credentials
from heteroscale.domain.hardware import Role
from heteroscale.errors import ConfigError
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import NAMESPACE
from tests.support.tls import make_pki, openssl_binary

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


def test_example_prometheus_credentials_come_from_the_mounted_secret(tmp_path: Path) -> None:
    """The example config's token and CA files lie under the read-only Secret mount of deployment.yaml,
    and they are read once there (here: a copy of the config pointing at stand-in files)."""
    configmap = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap")
    text = configmap["data"]["controller.yaml"]
    path = tmp_path / "controller.yaml"
    path.write_text(text, encoding="utf-8")
    config, doc = load_controller_config(path)
    p = config.prometheus
    assert p.url.startswith("https://") and p.bearer_token_file and p.tls.ca_file and not p.tls.insecure_skip_verify
    pod = next(doc for _, doc in documents() if doc["kind"] == "Deployment")["spec"]["template"]["spec"]
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
