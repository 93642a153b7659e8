"""`heteroscale controller` end to end: real Prometheus, the test exporter, the Kubernetes API fake.

The controller runs as a subprocess (``python -m heteroscale.cli.live controller``), reconciling every
second; every test waits with a bound and stops what it started by its handle.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from heteroscale.clock import WallClock
from tests.integration.conftest import wait_for_series
from tests.support.engine_exporter import EngineExporter
from tests.support.kube_fake import LEASES, Fault, KubeFakeServer
from tests.support.live_env import (
    NAMESPACE,
    controller_config,
    journal_records,
    role_replicas,
    run_controller,
    start_controller,
    stop_process,
)
from tests.support.prometheus_server import PrometheusServer, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLOCK = WallClock()
HOLDS = {"hold-stale-observation", "hold-missing-observation", "hold-partial-observation", "hold-missing-signal"}
GEN = 'rate({__name__="vllm:generation_tokens_total"}[5s])'


def counts(kube: KubeFakeServer) -> tuple[int, int]:
    deployments = kube.deployments(NAMESPACE)
    return role_replicas(deployments, "prefill"), role_replicas(deployments, "decode")


def bootstrap(kube: KubeFakeServer, prometheus: PrometheusServer, config: Path) -> None:
    """``--once`` on an empty cluster: holds (no engine metrics yet) but raises both roles to their minimum."""
    result = run_controller(config, "--once")
    assert result.returncode == 0, result.stderr[-3000:]
    assert counts(kube) == (1, 1)
    wait_for_series(prometheus, GEN)


def lease_holder(kube: KubeFakeServer) -> str | None:
    def read(f: Any) -> str | None:
        leases = f.live_objects(LEASES, NAMESPACE)
        return leases[0].get("spec", {}).get("holderIdentity") if leases else None

    return kube.call(read)  # type: ignore[no-any-return]


def lease_spec(kube: KubeFakeServer) -> dict[str, Any]:
    def read(f: Any) -> dict[str, Any]:
        return dict(f.live_objects(LEASES, NAMESPACE)[0]["spec"])

    return kube.call(read)  # type: ignore[no-any-return]


def _micro_time_s(text: str) -> float:
    """A Kubernetes MicroTime (``2026-12-04T22:20:00.123456Z``) as POSIX seconds."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_once_then_loop_scales_to_the_load_and_serves_metrics(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    port = free_port()
    config = controller_config(tmp_path, prometheus.url, kube.url, http_port=port, identity="ctl-a")
    bootstrap(kube, prometheus, config)
    log = tmp_path / "controller.log"
    process = start_controller(config, "--duration-s", "60", log_path=log)
    try:
        # 2800 generated tok/s at 1000 per decode instance → 3 D; P follows at ratio 1 → 3 P
        assert wait_until(lambda: counts(kube) == (3, 3), 40.0, 0.5), (counts(kube), log.read_text()[-3000:])
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
        assert 'heteroscale_desired_instances{role="decode",service="chat"} 3.0' in metrics
        assert "heteroscale_reconcile_duration_seconds_count" in metrics and "heteroscale_leader 1.0" in metrics
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0).status_code == 200
        assert lease_holder(kube) == "ctl-a"
    finally:
        code = stop_process(process)
    assert code == 0, log.read_text()[-3000:]
    assert "stopped after" in log.read_text()
    assert not lease_holder(kube)  # released on SIGTERM: a successor need not wait
    names = sorted(d["metadata"]["name"] for d in kube.deployments(NAMESPACE))
    assert names == ["chat-dg0-decode-h20-tp1", "chat-dg0-prefill-h100-sxm-tp1"]  # no duplicate workloads
    records = journal_records(tmp_path / "journal.jsonl")
    assert records and all(r["service"] == "chat" for r in records)
    assert [r["at_s"] for r in records] == sorted(r["at_s"] for r in records)


def test_prometheus_stopped_mid_run_holds_with_a_reason_and_recovers(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a")
    bootstrap(kube, prometheus, config)
    log = tmp_path / "controller.log"
    process = start_controller(config, "--duration-s", "90", log_path=log)
    try:
        assert wait_until(lambda: counts(kube) == (3, 3), 40.0, 0.5), counts(kube)
        prometheus.stop()  # before the load drops: no cycle can see the low load before the outage
        exporter.set_load("chat", decode_tps=800.0, prefill_tps=2000.0)  # would scale in, were it observed
        CLOCK.sleep_s(4.0)
        assert counts(kube) == (3, 3)  # never scales in on missing metrics
        prometheus.start()
        assert wait_until(lambda: counts(kube)[1] < 3, 30.0, 0.5)  # observed again: the scale-in goes ahead
    finally:
        stop_process(process)
    records = journal_records(tmp_path / "journal.jsonl")
    # records are chosen by what they observed, not by when they were made: a cycle that began before
    # the stop may end after it, and a loaded machine stretches every interval
    outage = [i for i, r in enumerate(records) if "cannot reach the server" in r["observation"].get("error", "")]
    assert len(outage) >= 2, [r["observation"].get("error") for r in records]
    for i in outage:
        r = records[i]
        assert r["recommendation"]["reason"] == "hold-missing-observation"
        d = r["decision"]
        assert (d["desired_prefill"], d["desired_decode"]) == (d["current_prefill"], d["current_decode"])
        assert not r["outcome"].get("launched") and not r["outcome"].get("removed")
    after = records[outage[-1] + 1 :]
    assert any("error" not in r["observation"] for r in after)  # observed again after the outage
    scaled_in = [r for r in after if r["decision"]["desired_decode"] < r["decision"]["current_decode"]]
    assert scaled_in and all("error" not in r["observation"] for r in scaled_in)


@pytest.mark.parametrize("fault", ["nan", "frozen"])
def test_nan_or_stale_metrics_hold_and_never_scale_in(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer, fault: str
) -> None:
    exporter.explicit_timestamps = True  # frozen samples then grow old in Prometheus instead of vanishing
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a", staleness_s=3.0)
    bootstrap(kube, prometheus, config)
    log = tmp_path / "controller.log"
    process = start_controller(config, "--duration-s", "90", log_path=log)
    try:
        assert wait_until(lambda: counts(kube) == (3, 3), 40.0, 0.5), counts(kube)
        if fault == "nan":
            exporter.nan = True
        else:
            exporter.freeze()
        exporter.set_load("chat", decode_tps=800.0, prefill_tps=2000.0)  # would scale in, were it observed
        CLOCK.sleep_s(7.0)
        assert counts(kube) == (3, 3)
        exporter.nan = False
        exporter.thaw()
        assert wait_until(lambda: counts(kube)[1] < 3, 30.0, 0.5)
    finally:
        stop_process(process)
    records = journal_records(tmp_path / "journal.jsonl")
    # records are chosen by what they observed (the fault's own words), not by when they were made
    marker = "not a finite number" if fault == "nan" else "old (staleness limit 3 s)"
    held = [r for r in records if marker in " ".join(r["observation"].get("missing", []))]
    assert held, "no record observed the fault"
    for r in held:
        assert r["recommendation"]["reason"] in HOLDS, r["recommendation"]
        d = r["decision"]
        assert (d["desired_prefill"], d["desired_decode"]) == (d["current_prefill"], d["current_decode"])
        assert not r["outcome"].get("launched") and not r["outcome"].get("removed")
    last_held = max(i for i, r in enumerate(records) if r in held)
    scaled_in = [
        r for r in records[last_held + 1 :] if r["decision"]["desired_decode"] < r["decision"]["current_decode"]
    ]
    assert scaled_in and all(not r["observation"].get("missing") for r in scaled_in)


def test_api_conflicts_errors_and_time_outs_are_retried_without_duplicates(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a")
    kube.inject(Fault("POST", r"/deployments$", status=500, count=1, retry_after_s=0.2))
    kube.inject(Fault("POST", r"/deployments$", status=0, count=1, delay_s=1.5))  # lands after the time-out
    bootstrap(kube, prometheus, config)
    assert len(kube.deployments(NAMESPACE)) == 2
    conflict = kube.inject(Fault("PATCH", r"/scale$", status=409, count=2))
    error = kube.inject(Fault("GET", r"/scale$", status=503, count=1, retry_after_s=0.1))
    slow = kube.inject(Fault("PATCH", r"/scale$", status=0, count=1, delay_s=1.5))
    assert wait_until(lambda: bool(exporter.scrapes) and counts(kube) == (1, 1), 5.0)
    CLOCK.sleep_s(6.0)  # a full rate window with the Ready pods' metrics
    result = run_controller(config, "--once")
    assert result.returncode == 0, result.stderr[-3000:]
    assert conflict.hits == 2 and error.hits == 1 and slow.hits == 1
    assert counts(kube) == (2, 2)  # one step of +100 %, applied exactly once
    assert len(kube.deployments(NAMESPACE)) == 2
    last = journal_records(tmp_path / "journal.jsonl")[-1]
    assert last["outcome"]["errors"] == [] and len(last["outcome"]["launched"]) == 2


def test_killed_controller_restarts_from_the_cluster_without_repeating_itself(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a")
    bootstrap(kube, prometheus, config)
    log = tmp_path / "controller.log"
    process = start_controller(config, "--duration-s", "60", log_path=log)
    try:
        assert wait_until(lambda: counts(kube) == (3, 3), 40.0, 0.5), counts(kube)
        CLOCK.sleep_s(1.5)
    finally:
        stop_process(process, kill=True)
    journal = tmp_path / "journal.jsonl"
    before = journal.read_text(encoding="utf-8")
    lines_before = [json.loads(line) for line in before.splitlines()]  # every line whole after SIGKILL
    records_before = [r for r in lines_before if r["phase"] == "outcome"]
    launched_before = sum(len(r["outcome"].get("launched", [])) for r in records_before)
    assert launched_before == 6  # 0→1→2→3 for each role
    intents = {r["decision_id"] for r in lines_before if r["phase"] == "intent"}
    assert all(r["decision_id"] in intents for r in records_before if r["applied"])  # intent before acting
    result = run_controller(config, "--cycles", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    after = journal.read_text(encoding="utf-8")
    assert after.startswith(before)  # the journal is intact: appended to, never rewritten
    lines = [json.loads(line) for line in after[len(before) :].splitlines()]
    assert lines[0]["phase"] == "checkpoint"  # start-up checkpoints what it read
    new = [r for r in lines if r["phase"] == "outcome"]
    assert len(new) == 3
    for r in new:
        d = r["decision"]
        assert (d["current_prefill"], d["current_decode"]) == (3, 3)  # state rebuilt from the cluster
        assert r["outcome"] == {"applied": "nothing to do"}  # no action repeated
    assert counts(kube) == (3, 3) and len(kube.deployments(NAMESPACE)) == 2


def test_two_controllers_only_the_leader_acts(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    config_a = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a", journal="a.jsonl", name="a.yaml")
    config_b = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-b", journal="b.jsonl", name="b.yaml")
    a = start_controller(config_a, "--duration-s", "60", log_path=tmp_path / "a.log")
    try:
        assert wait_until(lambda: lease_holder(kube) == "ctl-a", 15.0, 0.2)
        b = start_controller(config_b, "--duration-s", "60", log_path=tmp_path / "b.log")
        try:
            assert wait_until(lambda: counts(kube) == (3, 3), 45.0, 0.5), counts(kube)
            CLOCK.sleep_s(2.0)
            assert lease_holder(kube) == "ctl-a"
            assert journal_records(tmp_path / "a.jsonl")
            assert journal_records(tmp_path / "b.jsonl") == []  # the standby decided nothing
            stop_process(a, kill=True)  # the leader dies without releasing its lease
            last = lease_spec(kube)
            assert wait_until(lambda: lease_holder(kube) == "ctl-b", 15.0, 0.2)
            taken = lease_spec(kube)
            # the standby waits out the whole lease from the leader's last renewal (the lease's own
            # timestamps, so a loaded machine that delays any step cannot make this pass or fail)
            waited_s = _micro_time_s(taken["acquireTime"]) - _micro_time_s(last["renewTime"])
            assert waited_s >= last["leaseDurationSeconds"] - 0.01, (last, taken)
            assert wait_until(lambda: bool(journal_records(tmp_path / "b.jsonl")), 5.0, 0.2)
        finally:
            stop_process(b)
    finally:
        stop_process(a)
    assert len(kube.deployments(NAMESPACE)) == 2 and counts(kube) == (3, 3)


def test_dry_run_records_the_plan_and_applies_nothing(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a")
    result = run_controller(config, "--once", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert kube.deployments(NAMESPACE) == []
    record = journal_records(tmp_path / "journal.jsonl")[0]
    assert len(record["plan"]["launches"]) == 2 and "dry run" in record["outcome"]["errors"][0]


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    config = controller_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", identity="x")
    text = config.read_text().replace("interval_s: 1.0", "interval_s: -1")
    config.write_text(text)
    result = run_controller(config, "--check")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "controller.interval_s" in lines[0] and "greater than 0" in lines[0]
    text = text.replace("interval_s: -1", "interval_s: 1").replace(
        "  policy:", "  load: {kind: trace, trace: x}\n  policy:"
    )
    config.write_text(text)
    result = run_controller(config, "--check")
    assert result.returncode == 2 and "observes the real load" in result.stderr
