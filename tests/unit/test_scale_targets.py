"""Scale targets without a server: the config (``actuation``, ``scale_targets``), the kinds table against the
upstream CRDs, and how a target's replicas and pods become instances (one per replica, never per pod)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from heteroscale.actuators.kube.kinds import KINDS, kind_of
from heteroscale.actuators.kube.targets import ScaleTarget, TargetRead, role_patch, target_instances, target_topology
from heteroscale.config.actuation import build_targets
from heteroscale.config.catalog import load_catalog
from heteroscale.config.controller import build_service, load_controller_config
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import Lifecycle
from heteroscale.errors import ConfigError
from tests.support.crds import CRD_FILES, crd_dir, load_crd
from tests.support.live_env import controller_config

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat-decode"}
LWS_REF = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": "chat-decode"}
STORM = {"apiVersion": "orchestration.aibrix.ai/v1alpha1", "kind": "StormService", "name": "chat"}


def scaled(mode: str = "scale", targets: list[dict[str, Any]] | None = None, keep_workload: bool = False) -> Any:
    def edit(data: dict[str, Any]) -> None:
        service = data["services"][0]
        if not keep_workload:
            del service["workload"]
        service["actuation"] = mode
        if targets is not None:
            service["scale_targets"] = targets

    return edit


def write(tmp_path: Path, edit: Any) -> Path:
    path = controller_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", identity="x")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def decode_target(ref: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"role": "decode", "sku": "h20", "tp": 1, "scaleTargetRef": ref, **extra}


def test_a_scale_service_needs_no_workload_and_builds_its_targets(tmp_path: Path) -> None:
    targets = [decode_target(DEPLOYMENT, domain="rack-1"), decode_target(LWS_REF, dg="dg-a")]
    config, doc = load_controller_config(write(tmp_path, scaled(targets=targets)))
    service = config.services[0]
    spec, _ = build_service(service, doc, ("services", 0), load_catalog())
    built = build_targets(
        "chat", service.scale_targets or [], spec, doc, ("services", 0, "scale_targets"), load_catalog()
    )
    assert [(t.id, t.dg_name, t.domain) for t in built] == [
        ("Deployment/chat-decode", "dg-rack-1", "rack-1"),
        ("LeaderWorkerSet/chat-decode", "dg-a", None),
    ]


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (scaled(targets=None), "services[0]", "actuation: scale needs scale_targets"),
        (
            scaled(targets=[decode_target(DEPLOYMENT)], keep_workload=True),
            "services[0]",
            "workload is for actuation: owned",
        ),
        (
            scaled("owned", targets=[decode_target(DEPLOYMENT)], keep_workload=True),
            "services[0]",
            "scale_targets are for",
        ),
        (scaled("owned"), "services[0]", "workload is required for actuation: owned"),
        (scaled(targets=[decode_target(STORM)]), "services[0].scale_targets[0]", "name the role with roleName"),
        (scaled(targets=[decode_target(DEPLOYMENT, roleName="x")]), "scale_targets[0]", "roleName is only for"),
        (
            scaled(targets=[decode_target({**DEPLOYMENT, "kind": "CronJob"})]),
            "scaleTargetRef",
            "not a kind we can scale",
        ),
        (scaled("keda", targets=[decode_target(DEPLOYMENT)]), "actuation", "'owned', 'scale' or 'metrics'"),
    ],
)
def test_bad_actuation_is_one_line_naming_the_field(tmp_path: Path, edit: Any, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_controller_config(write(tmp_path, edit))
    message = str(info.value)
    assert "\n" not in message and field in message and problem in message


def test_scale_targets_written_as_targets_say_where_they_go(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        scaled(targets=None)(data)
        data["services"][0]["targets"] = [decode_target(DEPLOYMENT)]

    with pytest.raises(ConfigError, match="list the workloads to scale as scale_targets"):
        load_controller_config(write(tmp_path, edit))


def test_one_controller_runs_one_actuation_mode(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        other = yaml.safe_load(yaml.safe_dump(data["services"][0]))
        other["name"] = "other"
        scaled(targets=[decode_target(DEPLOYMENT)])(data)
        data["services"].append(other)

    with pytest.raises(ConfigError, match=r"several actuation modes \(owned, scale\)"):
        load_controller_config(write(tmp_path, edit))


def test_a_target_shape_outside_the_role_shapes_is_refused(tmp_path: Path) -> None:
    targets = [{**decode_target(DEPLOYMENT), "sku": "h100-sxm"}]
    config, doc = load_controller_config(write(tmp_path, scaled(targets=targets)))
    service = config.services[0]
    spec, _ = build_service(service, doc, ("services", 0), load_catalog())
    with pytest.raises(ConfigError) as info:
        build_targets("chat", service.scale_targets or [], spec, doc, ("services", 0, "scale_targets"), load_catalog())
    assert "services[0].scale_targets[0]" in str(info.value) and "not among roles.decode.shapes" in str(info.value)


# --- the kinds table against the CRDs ---------------------------------------------------------------------


@pytest.mark.skipif(crd_dir() is None, reason="the upstream CRDs (shared/crds) are not next to the repository")
@pytest.mark.parametrize("kind", [k for k in KINDS.values() if k.kind in CRD_FILES], ids=lambda k: k.api_version)
def test_every_kind_is_where_its_crd_serves_it_with_its_replicas_where_we_read_them(kind: Any) -> None:
    crd = load_crd(kind.kind)["spec"]
    assert (crd["group"], crd["names"]["plural"], crd["names"]["kind"]) == (kind.group, kind.plural, kind.kind)
    [version] = [v for v in crd["versions"] if v["name"] == kind.version and v["served"]]
    schema = version["schema"]["openAPIV3Schema"]
    if kind.shim:
        node = schema
        for key in kind.roles_path:
            node = node["properties"][key]
        role = node["items"]["properties"]
        assert role["name"]["type"] == "string" and role["replicas"]["type"] == "integer"
    else:
        assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
        assert version["subresources"]["scale"]["labelSelectorPath"]


# --- instances from a read --------------------------------------------------------------------------------


def pod(name: str, labels: dict[str, str], ready: bool = True) -> dict[str, Any]:
    conditions = [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]
    return {
        "metadata": {"name": name, "labels": labels, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "conditions": conditions},
    }


def lws_pods(groups: int, size: int, *, unready: tuple[str, ...] = ()) -> tuple[dict[str, Any], ...]:
    out = []
    for g in range(groups):
        for w in range(size):
            name = f"d-{g}" if w == 0 else f"d-{g}-{w}"
            labels = {
                "leaderworkerset.sigs.k8s.io/group-index": str(g),
                "leaderworkerset.sigs.k8s.io/worker-index": str(w),
            }
            out.append(pod(name, labels, ready=name not in unready))
    return tuple(out)


def lws_target() -> ScaleTarget:
    kind = kind_of("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    assert kind is not None
    return ScaleTarget("chat", Role.DECODE, "h20", 8, kind, "d")


NOW_S = 1_767_225_660.0  # 2026-01-01T00:01:00Z: a minute after the pods were created


@pytest.mark.parametrize(
    ("replicas", "pods", "expected"),
    [
        # two groups of four pods: two instances, not eight
        (2, lws_pods(2, 4), [("LeaderWorkerSet/d#0", Lifecycle.READY), ("LeaderWorkerSet/d#1", Lifecycle.READY)]),
        # one worker not Ready: its whole replica is starting
        (2, lws_pods(2, 2, unready=("d-1-1",)), [("LeaderWorkerSet/d#0", Lifecycle.READY),
                                                ("LeaderWorkerSet/d#1", Lifecycle.STARTING)]),
        # asked for three, one group exists: two pending placeholders
        (3, lws_pods(1, 2), [("LeaderWorkerSet/d#0", Lifecycle.READY),
                             ("LeaderWorkerSet/d#pending-0", Lifecycle.PENDING),
                             ("LeaderWorkerSet/d#pending-1", Lifecycle.PENDING)]),
        # scaled to one, two groups still there: the highest index is on its way out
        (1, lws_pods(2, 2), [("LeaderWorkerSet/d#0", Lifecycle.READY), ("LeaderWorkerSet/d#1", Lifecycle.DRAINING)]),
    ],
)  # fmt: skip
def test_a_replica_is_one_instance_whatever_its_pods(
    replicas: int, pods: tuple[dict[str, Any], ...], expected: list[tuple[str, Lifecycle]]
) -> None:
    read = TargetRead(lws_target(), replicas, "7", "sel", pods)
    instances = target_instances(read, NOW_S, 900.0)
    assert [(i.id, i.lifecycle) for i in instances] == expected
    assert {(i.node, i.dg, i.shape.key) for i in instances} == {("LeaderWorkerSet/d", "dg-default", "decode:h20:tp8")}


def test_a_deployment_pod_is_its_own_instance_named_by_the_pod() -> None:
    kind = kind_of("apps/v1", "Deployment")
    assert kind is not None
    target = ScaleTarget("chat", Role.PREFILL, "h100-sxm", 4, kind, "p", domain="rack-1")
    read = TargetRead(target, 2, "3", "app=p", (pod("p-abc", {"app": "p"}), pod("p-def", {"app": "p"})))
    assert [i.id for i in target_instances(read, NOW_S, 900.0)] == ["p-abc", "p-def"]
    [node] = target_topology([target], {"Deployment/p": 8}).nodes
    assert (node.name, node.sku, node.path[3], node.path[4]) == ("Deployment/p", "h100-sxm", "rack-1", "rack-1")


def test_a_role_shim_patch_tests_what_it_read_before_it_replaces() -> None:
    kind = kind_of("workload.serving.volcano.sh/v1alpha1", "ModelServing")
    assert kind is not None
    assert role_patch(kind, 1, 2, 4, "42") == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "test", "path": "/spec/template/roles/1/replicas", "value": 2},
        {"op": "replace", "path": "/spec/template/roles/1/replicas", "value": 4},
    ]
