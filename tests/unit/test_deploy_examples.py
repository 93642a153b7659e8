"""The example controller configs: the ConfigMap carries the in-cluster one verbatim, both are valid, and
the workstation one reaches nothing beyond 127.0.0.1 and writes next to itself, with the same services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from heteroscale.config.controller import load_controller_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLES = DEPLOY / "examples"


def test_the_configmap_carries_the_in_cluster_example_verbatim() -> None:
    configmap = yaml.safe_load((DEPLOY / "kustomize" / "base" / "configmap.yaml").read_text(encoding="utf-8"))
    example = (EXAMPLES / "controller.yaml").read_text(encoding="utf-8")
    assert configmap["data"]["controller.yaml"] == example, (
        "deploy/kustomize/base/configmap.yaml's controller.yaml and deploy/examples/controller.yaml differ: edit both"
    )


def test_both_examples_are_valid_and_say_where_they_run() -> None:
    cluster, _ = load_controller_config(EXAMPLES / "controller.yaml")
    local, doc = load_controller_config(EXAMPLES / "controller-local.yaml")
    assert cluster.kubernetes.in_cluster and cluster.http.address == "0.0.0.0"  # probes reach the pod's IP
    assert not local.kubernetes.in_cluster and local.kubernetes.kubeconfig is None  # $KUBECONFIG or ~/.kube/config
    assert local.http.address == "127.0.0.1" and local.prometheus.url.startswith("http://127.0.0.1:")
    assert not Path(local.controller.journal).is_absolute()  # next to the file, not /var/lib
    assert doc.base_dir == EXAMPLES


def plain(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_the_workstation_example_manages_the_same_services_the_same_way() -> None:
    cluster, local = plain(EXAMPLES / "controller.yaml"), plain(EXAMPLES / "controller-local.yaml")
    assert local["services"] == cluster["services"]
    assert local["prometheus"]["mapping"] == cluster["prometheus"]["mapping"]
    access = ("in_cluster", "kubeconfig", "context")  # how the cluster is reached: the one difference
    assert {k: v for k, v in local["kubernetes"].items() if k not in access} == {
        k: v for k, v in cluster["kubernetes"].items() if k not in access
    }
    assert local["leader_election"]["lease_name"] == cluster["leader_election"]["lease_name"]  # one leader of both


def _version(image: str) -> tuple[int, ...]:
    tag = image.rsplit(":", 1)[1].lstrip("v")
    return tuple(int(part) for part in tag.split(".")[:3])


def test_the_example_image_has_the_kv_connector_its_args_name() -> None:
    """vLLM's NixlConnector first shipped in v0.9.0; the examples once ran v0.8.5 with it."""
    for path in (EXAMPLES / "controller.yaml", EXAMPLES / "controller-local.yaml"):
        config, _ = load_controller_config(path)
        for service in config.services:
            w = service.workload
            if "vllm/vllm-openai" in w.image and any("NixlConnector" in a for a in (*w.prefill_args, *w.decode_args)):
                assert _version(w.image) >= (0, 9, 0), f"{path.name}: {w.image} predates NixlConnector"


def test_the_example_dcgm_queries_join_pods_instead_of_expecting_a_role_label() -> None:
    """dcgm-exporter's series carry pod and namespace, never the engines' role label."""
    from heteroscale.domain.hardware import Role
    from heteroscale.metrics.promql import Queries

    config, _ = load_controller_config(EXAMPLES / "controller.yaml")
    query = Queries(config.prometheus.mapping.to_mapping(), "chat", 60.0).gpu_util(Role.DECODE)
    dcgm = query[query.index('{__name__="DCGM_FI_DEV_GPU_UTIL"') :].split("}")[0]
    assert "role" not in dcgm and "service" not in dcgm
    assert 'label_heteroscale_io_role="decode"' in query and "on(namespace, pod)" in query
