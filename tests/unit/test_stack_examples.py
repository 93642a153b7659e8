"""The per-stack examples under deploy/examples/<stack>/ are valid controller configs whose scale targets
build (kinds we drive, shapes among the roles'), and the metrics-mode KEDA / HPA objects are valid
against KEDA's CRD and the core schema and name the series the controller publishes. Each example
names its stack's preset (``prometheus.mapping.preset``) and is loaded with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from heteroscale.cli.wiring import build_live
from heteroscale.config.actuation import build_targets
from heteroscale.config.catalog import load_catalog
from heteroscale.config.controller import build_service, load_controller_config
from heteroscale.config.presets import PRESETS
from tests.support.crds import K8S_VERSION, crd_dir

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
STACKS = ("dynamo", "llm-d", "lws", "aibrix", "kthena", "metrics-mode")
PRESET_OF = {
    "dynamo": "dynamo",
    "llm-d": "llm-d",
    "lws": "vllm",
    "aibrix": "aibrix",
    "kthena": "kthena",
    "metrics-mode": "llm-d",
}


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_example_is_a_valid_config_whose_targets_build(stack: str) -> None:
    config, doc = load_controller_config(EXAMPLES / stack / "controller.yaml")
    catalog = load_catalog()
    assert config.actuation == ("metrics" if stack == "metrics-mode" else "scale")
    for i, service in enumerate(config.services):
        assert service.workload is None and service.scale_targets
        spec, _ = build_service(service, doc, ("services", i), catalog)
        targets = build_targets(spec.name, service.scale_targets, spec, doc, ("services", i), catalog)
        assert {t.role.value for t in targets} == {"prefill", "decode"}


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_example_is_read_with_its_stacks_preset(stack: str) -> None:
    """The preset named is the stack's, and its selectors are the ones the loaded mapping queries with."""
    config, _ = load_controller_config(EXAMPLES / stack / "controller.yaml")
    mapping = config.prometheus.mapping
    assert mapping.preset == PRESET_OF[stack]
    preset = PRESETS[PRESET_OF[stack]]
    for field in ("engine", "service_selector", "prefill_selector", "decode_selector"):
        assert getattr(mapping, field) == preset[field], field
    assert mapping.gpu_join is not None and mapping.gpu_join.decode_selector == preset["gpu_join"]["decode_selector"]


def test_a_stack_example_wires_without_a_cluster(tmp_path: Path) -> None:
    """The scale mode's wiring (targets, actuator, gating off) builds from an example; nothing is called."""
    data = yaml.safe_load((EXAMPLES / "llm-d" / "controller.yaml").read_text(encoding="utf-8"))
    data["kubernetes"] = {"kubeconfig": str(tmp_path / "kubeconfig.yaml"), "namespace": "llm-d"}
    data["controller"]["journal"] = str(tmp_path / "journal.jsonl")
    data["prometheus"].pop("bearer_token_file")
    data["prometheus"].pop("tls")
    (tmp_path / "kubeconfig.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        ),
        encoding="utf-8",
    )
    path = tmp_path / "wired.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    config, doc = load_controller_config(path)
    live = build_live(config, doc, dry_run=False, once=True)
    try:
        assert type(live.cluster).__name__ == "ScaleTargetsCluster"
        assert not live.controller.readiness.gating
        assert sorted(live.cluster.targets) == [  # type: ignore[attr-defined]
            "Deployment/ms-llama-llm-d-modelservice-decode",
            "Deployment/ms-llama-llm-d-modelservice-prefill",
        ]
    finally:
        live.controller.journal.close()


def keda_schema() -> dict[str, Any]:
    folder = crd_dir()
    assert folder is not None
    crd = yaml.safe_load((folder / "keda" / "keda.sh_scaledobjects.yaml").read_text(encoding="utf-8"))
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def published_targets() -> set[str]:
    config = yaml.safe_load((EXAMPLES / "metrics-mode" / "controller.yaml").read_text(encoding="utf-8"))
    refs = [t["scaleTargetRef"] for t in config["services"][0]["scale_targets"]]
    return {f"{r['kind']}.{r['name']}" for r in refs}


@pytest.mark.skipif(crd_dir() is None, reason="the upstream CRDs (shared/crds) are not next to the repository")
def test_the_keda_scaled_objects_are_valid_and_query_what_the_controller_publishes() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "metrics-mode" / "keda-scaledobject.yaml").read_text(encoding="utf-8")))
    schema = keda_schema()
    queried = set()
    for doc in docs:
        jsonschema.validate(doc, schema)
        [trigger] = doc["spec"]["triggers"]
        query = trigger["metadata"]["query"]
        assert "heteroscale_target_desired_replicas" in query
        target = query.split('target="', 1)[1].split('"', 1)[0]
        assert target == f"Deployment.{doc['spec']['scaleTargetRef']['name']}"  # each scales what it reads
        queried.add(target)
    assert queried == published_targets()


def test_the_hpa_is_valid_and_selects_a_published_target() -> None:
    [hpa] = list(yaml.safe_load_all((EXAMPLES / "metrics-mode" / "hpa-external.yaml").read_text(encoding="utf-8")))
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
    [metric] = hpa["spec"]["metrics"]
    selector = metric["external"]["metric"]["selector"]["matchLabels"]
    assert selector["target"] in published_targets()
    assert selector["target"].split(".", 1)[1] == hpa["spec"]["scaleTargetRef"]["name"]
