"""``heteroscale controller --check --probe`` against the Kubernetes API fake and a real Prometheus: per
service and role, the targets, the pods and the series each metric query finds, as text and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import wait_for_series
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import NAMESPACE, controller_config, role_replicas, run_controller
from tests.support.prometheus_server import PrometheusServer, wait_until

pytestmark = pytest.mark.integration


def _owned_fleet(tmp_path: Path, kube: KubeFakeServer, prometheus: PrometheusServer) -> Path:
    """A config, one cycle run so the controller owns a Deployment per role, and their pods Ready and scraped."""
    config = controller_config(tmp_path, prometheus.url, kube.url, leader=False)
    result = run_controller(config, "--once")
    assert result.returncode == 0, result.stderr[-2000:]
    deployments = kube.deployments(NAMESPACE)
    assert role_replicas(deployments, "prefill") >= 1 and role_replicas(deployments, "decode") >= 1
    assert wait_until(lambda: all(n >= 1 for n in kube.ready_counts(NAMESPACE).get("chat", (0, 0))), 10.0)
    wait_for_series(prometheus, 'kube_pod_labels{label_heteroscale_io_role="decode"}')
    wait_for_series(prometheus, 'rate(vllm:generation_tokens_total{service="chat"}[5s])')
    return config


def test_probe_prints_targets_pods_and_series_per_role(
    tmp_path: Path, kube: KubeFakeServer, prometheus: PrometheusServer
) -> None:
    config = _owned_fleet(tmp_path, kube, prometheus)
    result = run_controller(config, "--check", "--probe")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    out = result.stdout
    assert out.startswith("service chat\n")
    assert "  prefill: targets (owned): 1: Deployment " in out and "  decode: targets (owned): 1: Deployment " in out
    assert out.count("    pods: ") == 2 and "pods: 0" not in out
    decode = out[out.index("  decode: targets") :]
    assert "DCGM GPU util, the role's GPUs (joined)" in decode
    assert "problem:" not in out


def test_probe_json_names_the_series_each_query_finds(
    tmp_path: Path, kube: KubeFakeServer, prometheus: PrometheusServer
) -> None:
    config = _owned_fleet(tmp_path, kube, prometheus)
    result = run_controller(config, "--check", "--probe", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["mode"] == "owned"
    (chat,) = report["services"]
    roles = {r["role"]: r for r in chat["roles"]}
    for role in ("prefill", "decode"):
        found = roles[role]
        assert [t["kind"] for t in found["targets"]] == ["Deployment"]
        assert len(found["pods"]) == found["targets"][0]["replicas"] >= 1
        series = {s["what"]: s["series"] for s in found["series"]}
        # the exporter serves one series per instance it was told of (the fake's Ready pods)
        assert series["running requests (gauge)"] == len(found["pods"])
        assert series["DCGM GPU util, the role's GPUs (joined)"] == len(found["pods"])
        assert series["pods in kube_pod_labels"] == len(found["pods"])
    assert chat["observation"]["decode"]["tps"] is not None and chat["problems"] == []


def test_probe_of_a_service_with_nothing_deployed_exits_1_and_says_what_is_missing(
    tmp_path: Path, kube: KubeFakeServer, prometheus: PrometheusServer
) -> None:
    config = controller_config(tmp_path, prometheus.url, kube.url, leader=False)
    data = yaml.safe_load(config.read_text())
    data["services"][0]["name"] = "nobody"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = run_controller(config, "--check", "--probe")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "  problem: prefill: no pod found" in result.stdout
    assert "  problem: decode: no series for " in result.stdout


def test_probe_of_an_unreachable_cluster_is_one_line(tmp_path: Path, prometheus: PrometheusServer) -> None:
    config = controller_config(tmp_path, prometheus.url, "http://127.0.0.1:9", leader=False)
    result = run_controller(config, "--check", "--probe")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]  # -v logs retries
    assert len(lines) == 1 and lines[0].startswith("heteroscale controller: error: list deployments in ")


def test_probe_without_check_is_refused(tmp_path: Path) -> None:
    config = controller_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", leader=False)
    result = run_controller(config, "--probe")
    assert result.returncode == 2
    assert result.stderr.strip() == "heteroscale controller: error: --probe and --json go with --check"
