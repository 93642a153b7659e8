"""A partial scrape against the live controller: real Prometheus, the test exporter, the Kubernetes API fake.

Three decode pods serve; the exporter serves the series of only some of them (their targets down), so
the decode TPS in Prometheus reads low. With 1 of 3 reporting the controller holds and never scales in
(before the coverage check it went 3D → 2D on a third of the load); with 2 of 3 reporting a rising
load it scales out on the TPS extrapolated × 3/2. Records are selected by what they observed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import wait_for_series
from tests.support.engine_exporter import EngineExporter
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import (
    DECODE_TPS_PER_INSTANCE,
    NAMESPACE,
    controller_config,
    journal_records,
    role_replicas,
    run_controller,
    start_controller,
    stop_process,
)
from tests.support.prometheus_server import PrometheusServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GEN = 'rate({__name__="vllm:generation_tokens_total"}[5s])'


def counts(kube: KubeFakeServer) -> tuple[int, int]:
    deployments = kube.deployments(NAMESPACE)
    return role_replicas(deployments, "prefill"), role_replicas(deployments, "decode")


def decode_reporting(record: dict[str, Any]) -> int | None:
    decode = record["observation"].get("decode")
    return None if decode is None else int(decode["instances_ready"])


def one_of_three(journal: Path) -> list[dict[str, Any]]:
    """The records that saw 1 decode pod reporting while 3 served."""
    return [r for r in journal_records(journal) if decode_reporting(r) == 1 and r["decision"]["current_decode"] == 3]


def coverage_step(record: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = record["decision"]["steps"][0]
    assert step["name"] == "coverage", record["decision"]["steps"]
    return step


def test_partial_scrape_holds_never_scales_in_and_extrapolates_a_scale_out(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a")
    journal = tmp_path / "journal.jsonl"
    assert run_controller(config, "--once").returncode == 0
    wait_for_series(prometheus, GEN)
    log = tmp_path / "controller.log"
    process = start_controller(config, "--duration-s", "150", log_path=log)
    try:
        # 2800 generated tok/s at 1000 per decode instance → 3 D (and 3 P at ratio 1)
        at_three = lambda: [r for r in journal_records(journal) if r["decision"]["current_decode"] == 3]  # noqa: E731
        assert wait_until(lambda: counts(kube) == (3, 3) and bool(at_three()), 40.0, 0.5), log.read_text()[-3000:]
        # 1 of 3 decode pods scraped: ≈ 933 tok/s read, which alone would say 1 D
        before = len(journal_records(journal))
        exporter.serve_only("chat", "decode", 1)
        saw_one = lambda: [r for r in journal_records(journal)[before:] if decode_reporting(r) == 1]  # noqa: E731
        assert wait_until(lambda: len(saw_one()) >= 5, 30.0, 0.5), log.read_text()[-3000:]
        assert counts(kube) == (3, 3)
        assert [r["decision"]["current_decode"] for r in saw_one()] == [3] * len(saw_one())
        # 2 of 3 scraped while the load rises to 4200: 2800 read (3 D: no move), × 3/2 = 4200 → 5 D
        exporter.serve_only("chat", "decode", 2)
        exporter.set_load("chat", decode_tps=4200.0)
        assert wait_until(lambda: counts(kube)[1] >= 5, 40.0, 0.5), (counts(kube), log.read_text()[-3000:])
    finally:
        stop_process(process)
    records = journal_records(journal)
    held = one_of_three(journal)
    assert len(held) >= 5
    for r in held:
        step = coverage_step(r)
        assert step["reason"] == "coverage-hold" and "decode 1 of 3 serving instance(s) report" in step["detail"]
        assert r["recommendation"]["reason"] == "hold-missing-observation"
        d = r["decision"]
        assert d["desired_decode"] >= d["current_decode"] and d["desired_prefill"] >= d["current_prefill"]
    grew = [r for r in records if r["decision"]["desired_decode"] > r["decision"]["current_decode"] == 3]
    extrapolated = [r for r in grew if coverage_step(r)["reason"] == "coverage-extrapolated"]
    assert extrapolated, [coverage_step(r) for r in grew]
    assert "sums × 3/2" in coverage_step(extrapolated[0])["detail"]
    for r in extrapolated:
        raw_tps = r["observation"]["decode"]["tps"]
        # as read, the TPS asks for no more than the 3 D there are; × 3/2 it asks for more
        assert raw_tps <= 3 * DECODE_TPS_PER_INSTANCE, r["observation"]["decode"]
        assert r["decision"]["desired_decode"] == math.ceil(raw_tps * 1.5 / DECODE_TPS_PER_INSTANCE - 1e-9)
    # no record ever scaled decode in while fewer decode pods reported than served
    for r in records:
        d = r["decision"]
        reporting = decode_reporting(r)
        if reporting is not None and reporting < d["current_decode"]:
            assert d["desired_decode"] >= d["current_decode"], r
