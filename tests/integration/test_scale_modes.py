"""``actuation: scale`` and ``actuation: metrics`` end to end against workloads the user already runs.

The Kubernetes API fake is given the upstream CRDs (``tests/support/crds.py``): it serves their ``scale``
subresource at the paths the CRDs declare, runs their pods with the operators' labels, and every object
it holds at the end is checked against the CRD schema (custom kinds) or the core schema (pods,
Deployments). The controller runs as a subprocess against a real Prometheus scraping the test exporter,
whose instance counts follow the stack's Ready replicas; every wait is bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import yaml

from heteroscale.actuators.kube.api import KubeApi, KubernetesSettings
from heteroscale.actuators.kube.kinds import kind_of
from heteroscale.actuators.kube.targets import ScaleTarget, role_replicas
from heteroscale.cli.probe import ScaleTargets
from heteroscale.clock import WallClock
from heteroscale.domain.hardware import Role
from tests.integration.conftest import chat_load, wait_for_series
from tests.support.crds import crd_dir, crds, deployment, leader_worker_set, problems, scaling_adapter, storm_service
from tests.support.engine_exporter import EngineExporter
from tests.support.kube_fake import KubeFakeServer
from tests.support.kube_objects import is_ready
from tests.support.kube_user_objects import api, create, objects, spec_replicas
from tests.support.live_env import (
    NAMESPACE,
    controller_config,
    gpu_nodes,
    journal_records,
    run_controller,
    start_controller,
    stop_process,
)
from tests.support.prometheus_server import PrometheusServer, free_port, prometheus_binary, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GEN = 'rate({__name__="vllm:generation_tokens_total"}[5s])'
KINDS = ("LeaderWorkerSet", "DynamoGraphDeploymentScalingAdapter", "StormService")
RoleOf = Callable[[dict[str, Any]], str | None]


def ready_replicas(kube: KubeFakeServer, role_of: RoleOf) -> dict[str, tuple[int, int]]:
    """chat → (Ready prefill, Ready decode) replicas, each counted once by ``role_of`` (None: not a head)."""
    counts = [0, 0]
    for pod in kube.pods(NAMESPACE):
        role = role_of(pod)
        if role is not None and is_ready(pod):
            counts[0 if role == "prefill" else 1] += 1
    return {"chat": (counts[0], counts[1])}


@pytest.fixture
def stack_kube() -> Iterator[KubeFakeServer]:
    if crd_dir() is None:
        pytest.skip("the upstream CRDs (shared/crds) are not next to the repository")
    server = KubeFakeServer(gpu_nodes(), ready_after_s=0.3, crds=crds(*KINDS), validator=problems).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def role_of() -> dict[str, RoleOf]:
    """The test sets ``role_of["now"]`` to say which pods are replicas of which role."""
    return {}


@pytest.fixture
def stack_exporter(stack_kube: KubeFakeServer, role_of: dict[str, RoleOf]) -> Iterator[EngineExporter]:
    def source() -> dict[str, tuple[int, int]]:
        fn = role_of.get("now")
        return {"chat": (0, 0)} if fn is None else ready_replicas(stack_kube, fn)

    ex = EngineExporter([chat_load()], instances_source=source).start()
    try:
        yield ex
    finally:
        ex.stop()


def prometheus_for(tmp_path: Path, *targets: str) -> PrometheusServer:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH: `make test` installs Debian's package (make system-deps)")
    return PrometheusServer(tmp_path / "prometheus", list(targets)).start()


def scale_config(
    tmp_path: Path, prometheus_url: str, kube_url: str, targets: list[dict[str, Any]], mode: str = "scale", **kw: Any
) -> Path:
    """The live test config with the chat service driving ``targets`` instead of owning Deployments."""
    path = controller_config(tmp_path, prometheus_url, kube_url, identity="ctl-a", **kw)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    service = config["services"][0]
    del service["workload"]
    service["actuation"] = mode
    service["scale_targets"] = targets
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def target(role: str, kind: str, name: str, api_version: str, **extra: Any) -> dict[str, Any]:
    sku = "h100-sxm" if role == "prefill" else "h20"
    ref = {"apiVersion": api_version, "kind": kind, "name": name}
    return {"role": role, "sku": sku, "tp": 1, "scaleTargetRef": ref, **extra}


def run_until(config: Path, tmp_path: Path, done: Callable[[], bool], timeout_s: float = 45.0) -> str:
    """Run the controller until ``done()`` (bounded), stop it; returns its log."""
    log = tmp_path / "controller.log"
    process = start_controller(config, "--duration-s", str(timeout_s + 10), log_path=log)
    try:
        reached = wait_until(done, timeout_s, 0.5)
    finally:
        code = stop_process(process)
    text = log.read_text()
    assert reached, text[-3000:]
    assert code == 0, text[-3000:]
    return text


def controller_writes(kube: KubeFakeServer) -> list[tuple[str, str]]:
    """(method, path) of the controller's writes (to anything but a Lease; the test's own creates left out)."""
    return [(w.method, w.path) for w in kube.writes() if w.writer == "ctl-a"]


def no_creates_or_deletes(kube: KubeFakeServer) -> list[str]:
    """The controller's writes other than PATCH: scale mode creates and deletes nothing."""
    return [f"{method} {path}" for method, path in controller_writes(kube) if method != "PATCH"]


def schema_problems(kube: KubeFakeServer) -> list[str]:
    return kube.call(lambda f: f.schema_problems())  # type: ignore[no-any-return]


# --- scale mode -------------------------------------------------------------------------------------------


def test_scale_mode_drives_deployments_it_did_not_create(
    tmp_path: Path, stack_kube: KubeFakeServer, stack_exporter: EngineExporter, role_of: dict[str, RoleOf]
) -> None:
    # the owned actuator lists only managed-by=heteroscale Deployments: these (helm's) were invisible to it
    for name in ("chat-prefill", "chat-decode"):
        create(stack_kube, deployment(name, 1))
    role_of["now"] = lambda p: {"chat-prefill": "prefill", "chat-decode": "decode"}.get(p["metadata"]["labels"]["app"])
    prometheus = prometheus_for(tmp_path, f"127.0.0.1:{stack_exporter.port}")
    try:
        wait_for_series(prometheus, GEN)
        targets = [
            target("prefill", "Deployment", "chat-prefill", "apps/v1"),
            target("decode", "Deployment", "chat-decode", "apps/v1"),
        ]
        config = scale_config(tmp_path, prometheus.url, stack_kube.url, targets)
        want = {"chat-prefill": 3, "chat-decode": 3}  # 2800 tok/s ÷ 1000 per decode → 3 D; ratio 1 → 3 P
        run_until(config, tmp_path, lambda: spec_replicas(stack_kube, "Deployment") == want)
    finally:
        prometheus.stop()
    assert sorted(objects(stack_kube, "Deployment")) == ["chat-decode", "chat-prefill"]
    assert no_creates_or_deletes(stack_kube) == []
    assert schema_problems(stack_kube) == []
    records = journal_records(tmp_path / "journal.jsonl")
    assert any(r["outcome"].get("launched") for r in records)


def test_scale_mode_counts_a_leader_worker_set_replica_as_one_instance(
    tmp_path: Path, stack_kube: KubeFakeServer, stack_exporter: EngineExporter, role_of: dict[str, RoleOf]
) -> None:
    for name in ("chat-prefill", "chat-decode"):
        create(stack_kube, leader_worker_set(name, 1, size=2))

    def leaders(pod: dict[str, Any]) -> str | None:
        labels = pod["metadata"]["labels"]
        if labels.get("leaderworkerset.sigs.k8s.io/worker-index") != "0":
            return None
        return labels["leaderworkerset.sigs.k8s.io/name"].removeprefix("chat-")

    role_of["now"] = leaders
    prometheus = prometheus_for(tmp_path, f"127.0.0.1:{stack_exporter.port}")
    try:
        wait_for_series(prometheus, GEN)
        lws = "leaderworkerset.x-k8s.io/v1"
        targets = [
            target("prefill", "LeaderWorkerSet", "chat-prefill", lws),
            target("decode", "LeaderWorkerSet", "chat-decode", lws),
        ]
        config = scale_config(tmp_path, prometheus.url, stack_kube.url, targets)
        want = {"chat-prefill": 3, "chat-decode": 3}
        run_until(config, tmp_path, lambda: spec_replicas(stack_kube, "LeaderWorkerSet") == want)
        # three replicas of two pods each per role: had pods been instances, 2800 tok/s would ask no more
        assert wait_until(lambda: ready_replicas(stack_kube, leaders) == {"chat": (3, 3)}, 10.0)
        assert len(stack_kube.pods(NAMESPACE)) == 12
        result = run_controller(config, "--once")
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        prometheus.stop()
    last = journal_records(tmp_path / "journal.jsonl")[-1]
    assert (last["decision"]["current_prefill"], last["decision"]["current_decode"]) == (3, 3)
    assert last["outcome"] == {"applied": "nothing to do"}
    assert no_creates_or_deletes(stack_kube) == []
    assert schema_problems(stack_kube) == []


def test_scale_mode_drives_dynamo_scaling_adapters(
    tmp_path: Path, stack_kube: KubeFakeServer, stack_exporter: EngineExporter, role_of: dict[str, RoleOf]
) -> None:
    create(stack_kube, scaling_adapter("chat-prefillworker", "chat", "PrefillWorker", 1))
    create(stack_kube, scaling_adapter("chat-decodeworker", "chat", "DecodeWorker", 1))
    component = {"PrefillWorker": "prefill", "DecodeWorker": "decode"}
    role_of["now"] = lambda p: component.get(p["metadata"]["labels"].get("nvidia.com/dynamo-component", ""))
    prometheus = prometheus_for(tmp_path, f"127.0.0.1:{stack_exporter.port}")
    try:
        wait_for_series(prometheus, GEN)
        kind, version = "DynamoGraphDeploymentScalingAdapter", "nvidia.com/v1beta1"
        targets = [
            target("prefill", kind, "chat-prefillworker", version),
            target("decode", kind, "chat-decodeworker", version),
        ]
        config = scale_config(tmp_path, prometheus.url, stack_kube.url, targets)
        want = {"chat-prefillworker": 3, "chat-decodeworker": 3}
        run_until(config, tmp_path, lambda: spec_replicas(stack_kube, kind) == want)
    finally:
        prometheus.stop()
    scale_writes = [path for _, path in controller_writes(stack_kube) if path.endswith("/scale")]
    assert scale_writes and all("/apis/nvidia.com/v1beta1/" in p for p in scale_writes)
    assert no_creates_or_deletes(stack_kube) == []
    assert schema_problems(stack_kube) == []


def storm_roles(kube: KubeFakeServer) -> dict[str, int]:
    obj = objects(kube, "StormService")["chat"]
    kind = kind_of("orchestration.aibrix.ai/v1alpha1", "StormService")
    assert kind is not None
    return {role: found[1] for role in ("prefill", "decode") if (found := role_replicas(obj, kind, role))}


def test_scale_mode_drives_storm_service_roles_with_a_guarded_json_patch(
    tmp_path: Path, stack_kube: KubeFakeServer, stack_exporter: EngineExporter, role_of: dict[str, RoleOf]
) -> None:
    create(stack_kube, storm_service("chat", {"prefill": 1, "decode": 1}))
    role_of["now"] = lambda p: p["metadata"]["labels"].get("role-name")
    prometheus = prometheus_for(tmp_path, f"127.0.0.1:{stack_exporter.port}")
    try:
        wait_for_series(prometheus, GEN)
        version = "orchestration.aibrix.ai/v1alpha1"
        targets = [
            target("prefill", "StormService", "chat", version, roleName="prefill"),
            target("decode", "StormService", "chat", version, roleName="decode"),
        ]
        config = scale_config(tmp_path, prometheus.url, stack_kube.url, targets)
        run_until(config, tmp_path, lambda: storm_roles(stack_kube) == {"prefill": 3, "decode": 3})
    finally:
        prometheus.stop()
    patches = [path for method, path in controller_writes(stack_kube) if method == "PATCH"]
    assert patches and all(p.endswith("/stormservices/chat") for p in patches)  # the object, no /scale
    assert no_creates_or_deletes(stack_kube) == []
    assert schema_problems(stack_kube) == []


def test_dry_run_in_scale_mode_plans_replica_changes_and_launches_nothing(
    tmp_path: Path, stack_kube: KubeFakeServer
) -> None:
    for name in ("chat-prefill", "chat-decode"):
        create(stack_kube, deployment(name, 1))
    targets = [
        target("prefill", "Deployment", "chat-prefill", "apps/v1"),
        target("decode", "Deployment", "chat-decode", "apps/v1"),
    ]
    static = {"name": "static", "prefill": 4, "decode": 4}
    config = scale_config(tmp_path, "http://127.0.0.1:9", stack_kube.url, targets, policy=static, leader=False)
    result = run_controller(config, "--once", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    record = journal_records(tmp_path / "journal.jsonl")[0]
    nodes = sorted({launch["node"] for launch in record["plan"]["launches"]})
    assert len(record["plan"]["launches"]) == 6 and nodes == ["Deployment/chat-decode", "Deployment/chat-prefill"]
    assert "dry run" in record["outcome"]["errors"][0]
    assert spec_replicas(stack_kube, "Deployment") == {"chat-prefill": 1, "chat-decode": 1}
    assert controller_writes(stack_kube) == []


# --- metrics mode -----------------------------------------------------------------------------------------


def desired_replicas(prometheus: PrometheusServer) -> dict[str, int]:
    """Deployment name → the desired replicas the controller publishes, as Prometheus scraped them."""
    query = 'heteroscale_target_desired_replicas{service="chat"}'
    try:
        body = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return {}
    out = {}
    for series in body.get("data", {}).get("result", []):
        out[series["metric"]["target"].removeprefix("Deployment.")] = int(float(series["value"][1]))
    return out


def scale_deployment(kube: KubeFakeServer, name: str, replicas: int) -> None:
    client = api(kube)
    try:
        body = {"spec": {"replicas": replicas}}
        kubernetes.client.AppsV1Api(client).patch_namespaced_deployment_scale(name, NAMESPACE, body)
    finally:
        client.close()


def test_metrics_mode_publishes_desired_replicas_that_prometheus_scrapes_and_writes_nothing(
    tmp_path: Path, stack_kube: KubeFakeServer, stack_exporter: EngineExporter, role_of: dict[str, RoleOf]
) -> None:
    for name in ("chat-prefill", "chat-decode"):
        create(stack_kube, deployment(name, 1))
    role_of["now"] = lambda p: {"chat-prefill": "prefill", "chat-decode": "decode"}.get(p["metadata"]["labels"]["app"])
    port = free_port()
    prometheus = prometheus_for(tmp_path, f"127.0.0.1:{stack_exporter.port}", f"127.0.0.1:{port}")
    try:
        wait_for_series(prometheus, GEN)
        targets = [
            target("prefill", "Deployment", "chat-prefill", "apps/v1"),
            target("decode", "Deployment", "chat-decode", "apps/v1"),
        ]
        config = scale_config(tmp_path, prometheus.url, stack_kube.url, targets, mode="metrics", http_port=port)
        seen: list[dict[str, int]] = []

        def external_scaler() -> bool:
            """What KEDA's Prometheus trigger does: set each Deployment to the published desired replicas."""
            wanted = desired_replicas(prometheus)
            if wanted and (not seen or seen[-1] != wanted):
                seen.append(wanted)
            for name, replicas in wanted.items():
                if spec_replicas(stack_kube, "Deployment").get(name) != replicas:
                    scale_deployment(stack_kube, name, replicas)
            return wanted == {"chat-prefill": 3, "chat-decode": 3}

        run_until(config, tmp_path, external_scaler)
    finally:
        prometheus.stop()
    # one damped step (+100 %) from 1 to 2, then 3 once the scaler acted: the series led, the cluster followed
    assert {"chat-prefill": 2, "chat-decode": 2} in seen, seen
    assert spec_replicas(stack_kube, "Deployment") == {"chat-prefill": 3, "chat-decode": 3}
    assert controller_writes(stack_kube) == []  # its Lease aside, the controller wrote nothing
    assert schema_problems(stack_kube) == []


# --- the probe ----------------------------------------------------------------------------------------------


def test_probe_in_scale_mode_prints_each_targets_scale_its_pods_and_the_series(
    tmp_path: Path, stack_kube: KubeFakeServer, stack_exporter: EngineExporter, role_of: dict[str, RoleOf]
) -> None:
    """``--check --probe`` reads each scale target as the controller does: its /scale replicas and selector,
    the pods that selector finds (Deployments helm made: the owned mode's label lookup found none of them)."""
    create(stack_kube, deployment("chat-prefill", 1))
    create(stack_kube, deployment("chat-decode", 2))
    role_of["now"] = lambda p: {"chat-prefill": "prefill", "chat-decode": "decode"}.get(p["metadata"]["labels"]["app"])
    assert wait_until(lambda: ready_replicas(stack_kube, role_of["now"]) == {"chat": (1, 2)}, 10.0)
    prometheus = prometheus_for(tmp_path, f"127.0.0.1:{stack_exporter.port}")
    try:
        wait_for_series(prometheus, 'count(vllm:num_requests_running{service="chat", role="decode"}) == 2')
        targets = [
            target("prefill", "Deployment", "chat-prefill", "apps/v1"),
            target("decode", "Deployment", "chat-decode", "apps/v1"),
        ]
        config = scale_config(tmp_path, prometheus.url, stack_kube.url, targets, leader=False)
        text = run_controller(config, "--check", "--probe")
        report = run_controller(config, "--check", "--probe", "--json")
        targets.append(target("decode", "Deployment", "chat-decode-gone", "apps/v1"))
        missing = run_controller(scale_config(tmp_path, prometheus.url, stack_kube.url, targets, leader=False),
                                 "--check", "--probe")  # fmt: skip
    finally:
        prometheus.stop()
    assert text.returncode == 0, text.stdout + text.stderr[-2000:]
    assert (
        "  prefill: targets (scale): 1: Deployment chat-prefill (1/1 ready, selector app=chat-prefill)\n" in text.stdout
    )
    assert "  decode: targets (scale): 1: Deployment chat-decode (2/2 ready, selector app=chat-decode)\n" in text.stdout
    assert "problem:" not in text.stdout
    assert report.returncode == 0, report.stderr[-2000:]
    (chat,) = json.loads(report.stdout)["services"]
    assert json.loads(report.stdout)["mode"] == "scale"
    roles = {r["role"]: r for r in chat["roles"]}
    for role, name, n in (("prefill", "chat-prefill", 1), ("decode", "chat-decode", 2)):
        (found,) = roles[role]["targets"]
        assert (found["kind"], found["name"], found["replicas"], found["selector"]) == (
            "Deployment",
            name,
            n,
            f"app={name}",
        )
        assert len(roles[role]["pods"]) == n and all(p["name"].startswith(name + "-") for p in roles[role]["pods"])
        series = {s["what"]: s["series"] for s in roles[role]["series"]}
        assert series["running requests (gauge)"] == n  # one series per Ready replica the exporter was told of
    assert missing.returncode == 1, missing.stdout + missing.stderr[-2000:]
    assert "  problem: decode: scaleTargetRef Deployment/chat-decode-gone (service chat): " in missing.stdout


def test_probe_reads_a_role_shims_role_from_the_object_and_names_a_missing_role(stack_kube: KubeFakeServer) -> None:
    """A StormService keeps its roles inside one object: the probe's target row is the role's replicas and
    the pods of that role (the operator's labels); a role the object lacks is that role's problem."""
    create(stack_kube, storm_service("chat", {"prefill": 1, "decode": 2}))
    assert wait_until(lambda: ready_replicas(stack_kube, lambda p: p["metadata"]["labels"].get("role-name"))
                      == {"chat": (1, 2)}, 10.0)  # fmt: skip
    kind = kind_of("orchestration.aibrix.ai/v1alpha1", "StormService")
    assert kind is not None
    targets = [
        ScaleTarget("chat", Role.PREFILL, "h100-sxm", 1, kind, "chat", role_name="prefill"),
        ScaleTarget("chat", Role.DECODE, "h20", 1, kind, "chat", role_name="decode"),
        ScaleTarget("other", Role.DECODE, "h20", 1, kind, "chat", role_name="generate"),
    ]
    client = api(stack_kube)
    try:
        finder = ScaleTargets(KubeApi(client, KubernetesSettings(namespace=NAMESPACE), WallClock()), targets, 0.0)
    finally:
        client.close()
    for role, n in ((Role.PREFILL, 1), (Role.DECODE, 2)):
        (row,) = finder.targets("chat", role)
        assert (row["kind"], row["name"], row["role_name"], row["replicas"]) == ("StormService", "chat", role.value, n)
        assert row["selector"] == f"storm-service-name=chat,role-name={role.value}" and "problem" not in row
        pods = finder.pods("chat", role)
        assert len(pods) == n and all(p["ready"] for p in pods)
    (missing,) = finder.targets("other", Role.DECODE)
    assert "has no role 'generate'" in missing["problem"] and finder.pods("other", Role.DECODE) == []
