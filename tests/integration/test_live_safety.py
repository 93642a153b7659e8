"""The live controller's safety under faults, end to end (real Prometheus, the Kubernetes API fake):

* split-brain by a slow cycle: two replicas, every cluster read slower than the lease allows a cycle;
  no write ever reaches the API server from a replica that does not hold the Lease;
* a journal that cannot grow (a file-size limit, the same EFBIG a full disk gives): the controller holds,
  acts on nothing, says why in its log and ``/metrics``, keeps running; given room, it acts with an
  intent record before every action;
* an acting controller started on a dry run's journal is not held back by the dry run's plans;
* ``/healthz`` names the role on leader and standby; a replica that loses the lead stops writing and
  drops its ``desired`` series.

Waits are bounded; records are chosen by what they say, not by when they were made.
"""

from __future__ import annotations

import itertools
import json
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
    journal_lines,
    journal_records,
    role_replicas,
    run_controller,
    start_controller,
    stop_process,
)
from tests.support.prometheus_server import PrometheusServer, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLOCK = WallClock()
GEN = 'rate({__name__="vllm:generation_tokens_total"}[5s])'
# every list of nodes, pods or deployments (the reads of each cycle), not the Lease or /scale
SLOW_READS = r"/(nodes|pods|deployments|scale)$"


def counts(kube: KubeFakeServer) -> tuple[int, int]:
    deployments = kube.deployments(NAMESPACE)
    return role_replicas(deployments, "prefill"), role_replicas(deployments, "decode")


def lease_holder(kube: KubeFakeServer) -> str | None:
    def read(f: Any) -> str | None:
        leases = f.live_objects(LEASES, NAMESPACE)
        return leases[0].get("spec", {}).get("holderIdentity") if leases else None

    return kube.call(read)  # type: ignore[no-any-return]


def metric_value(port: int, name: str) -> float | None:
    """The value of one series on the controller's /metrics (None: absent, or the server not up yet)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0)
    return answer.status_code, json.loads(answer.text)


def test_a_slow_cycle_never_lets_a_replica_without_the_lease_write(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    """The defect: a cycle longer than the lease (renewed only at its start) let the old leader write
    after a standby had taken over; leadership changed hands again and again."""
    lease = {"lease_duration_s": 3.0, "renew_deadline_s": 2.0, "retry_period_s": 0.5, "prometheus_timeout_s": 0.5}
    config_a = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a", journal="a.jsonl", **lease)
    config_b = controller_config(
        tmp_path, prometheus.url, kube.url, identity="ctl-b", journal="b.jsonl", name="b.yaml", **lease
    )
    result = run_controller(config_a, "--once")  # 1P/1D, before the reads slow down
    assert result.returncode == 0, result.stderr[-3000:]
    wait_for_series(prometheus, GEN)
    # a cycle reads the cluster once (3 lists) plus the scale of each workload it changes: at 0.9 s a read
    # (under the 1 s request time-out) an acting cycle outlasts the 3 s lease
    slow = kube.inject(Fault("GET", SLOW_READS, status=0, delay_s=0.9, count=100_000))
    a = start_controller(config_a, "--duration-s", "120", log_path=tmp_path / "a.log")
    try:
        assert wait_until(lambda: lease_holder(kube) == "ctl-a", 15.0, 0.2)
        b = start_controller(config_b, "--duration-s", "120", log_path=tmp_path / "b.log")
        try:
            # 2800 generated tok/s: 3P/3D, reached through slow cycles
            reached = wait_until(lambda: counts(kube) == (3, 3), 90.0, 0.5)
            assert reached, (counts(kube), (tmp_path / "a.log").read_text()[-3000:])
            CLOCK.sleep_s(3.0)  # a few more slow cycles at the target
        finally:
            stop_process(b)
    finally:
        stop_process(a)
    assert slow.hits >= 10
    # the premise: some cycle of ctl-a outlasted the lease (its decisions came more than 3 s apart)
    times = sorted({r["at_s"] for r in journal_records(tmp_path / "a.jsonl")})
    assert max(b - a for a, b in itertools.pairwise(times)) > lease["lease_duration_s"], times
    writes = kube.writes()
    assert writes and {w.writer for w in writes} <= {"ctl-a", "ctl-b"}
    assert kube.non_holder_writes() == [], [(w.writer, w.holder, w.method, w.path) for w in kube.non_holder_writes()]


def test_a_journal_that_cannot_grow_holds_the_controller_without_acting_until_it_can(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    """The defect: with the journal's disk full the controller scaled 1→2, lost the record and
    crash-looped (each restart applying again). The disk is made full portably: RLIMIT_FSIZE."""
    port = free_port()
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a", http_port=port)
    result = run_controller(config, "--once")
    assert result.returncode == 0, result.stderr[-3000:]
    assert counts(kube) == (1, 1)
    wait_for_series(prometheus, GEN)
    assert wait_until(lambda: kube.ready_counts(NAMESPACE).get("chat") == (1, 1), 10.0, 0.2)
    CLOCK.sleep_s(6.0)  # a full rate window of the Ready pods' metrics: the load says 3P/3D
    journal = tmp_path / "journal.jsonl"
    before = journal.read_bytes()
    writes_before = len(kube.writes())
    log = tmp_path / "full.log"
    process = start_controller(
        config, "--duration-s", "120", log_path=log, file_size_limit_bytes=len(before)
    )  # the journal may not grow by a byte
    try:
        grown = wait_until(lambda: (metric_value(port, "heteroscale_journal_errors_total") or 0) >= 6, 40.0, 0.5)
        assert grown, log.read_text()[-3000:]
        assert process.poll() is None  # still running
        assert metric_value(port, "heteroscale_journal_writable") == 0.0
        code, body = healthz(port)
        assert code == 200 and body["role"] == "leader" and body["journal_writable"] is False
    finally:
        exit_code = stop_process(process)
    assert exit_code == 0, log.read_text()[-3000:]
    assert counts(kube) == (1, 1) and len(kube.writes()) == writes_before  # nothing acted on
    assert journal.read_bytes() == before  # and no torn line left behind
    text = log.read_text()
    assert "holding, nothing applied: the intent cannot be journaled" in text and "File too large" in text
    # room again: it acts, and every action has its intent on disk first
    process = start_controller(config, "--duration-s", "60", log_path=tmp_path / "after.log")
    try:
        assert wait_until(lambda: counts(kube) == (3, 3), 40.0, 0.5), counts(kube)
    finally:
        stop_process(process)
    lines = journal_lines(journal)
    intents = [r["decision_id"] for r in lines if r.get("phase") == "intent"]
    applied = [r for r in lines if r.get("phase") == "outcome" and r["applied"]]
    assert applied and all(r["decision_id"] in intents for r in applied)
    for r in applied:  # the intent line comes first
        assert lines.index(next(x for x in lines if x.get("decision_id") == r["decision_id"])) < lines.index(r)


def test_an_acting_controller_is_not_held_back_by_a_dry_runs_plans(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    """The defect: started on a journal written by ``--dry-run``, it stayed at 1P/1D ("cooldown")."""
    options = {"scale_out_cooldown_s": 600, "scale_in_cooldown_s": 0, "scale_in_window_s": 0, "drain_grace_s": 1}
    policy = {"name": "heteroscale", "prefill": 1, "decode": 1, "options": options}
    boot = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a", journal="boot.jsonl")
    config = controller_config(tmp_path, prometheus.url, kube.url, identity="ctl-a", policy=policy, name="c.yaml")
    assert run_controller(boot, "--once").returncode == 0  # 1P/1D, recorded in another journal
    wait_for_series(prometheus, GEN)
    assert wait_until(lambda: kube.ready_counts(NAMESPACE).get("chat") == (1, 1), 10.0, 0.2)
    CLOCK.sleep_s(6.0)  # a full rate window of the Ready pods' metrics
    dry = run_controller(config, "--once", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    (planned,) = journal_records(tmp_path / "journal.jsonl")
    assert planned["decision"]["desired_decode"] > 1 and planned["applied"] is False
    assert counts(kube) == (1, 1)
    acting = run_controller(config, "--once")
    assert acting.returncode == 0, acting.stderr[-3000:]
    last = journal_records(tmp_path / "journal.jsonl")[-1]
    assert counts(kube)[1] > 1, last["decision"]["steps"]  # scaled out: the dry run stamped no cooldown
    assert last["applied"] is True


def test_healthz_names_the_role_and_a_replica_that_loses_the_lease_stops_writing(
    tmp_path: Path, kube: KubeFakeServer, exporter: EngineExporter, prometheus: PrometheusServer
) -> None:
    port_a, port_b = free_port(), free_port()
    config_a = controller_config(
        tmp_path, prometheus.url, kube.url, identity="ctl-a", journal="a.jsonl", http_port=port_a
    )
    config_b = controller_config(
        tmp_path, prometheus.url, kube.url, identity="ctl-b", journal="b.jsonl", name="b.yaml", http_port=port_b
    )
    a = start_controller(config_a, "--duration-s", "120", log_path=tmp_path / "a.log")
    try:
        assert wait_until(lambda: lease_holder(kube) == "ctl-a", 15.0, 0.2)
        b = start_controller(config_b, "--duration-s", "120", log_path=tmp_path / "b.log")
        try:
            assert wait_until(lambda: counts(kube) == (3, 3), 45.0, 0.5), counts(kube)
            assert wait_until(lambda: _up(port_b), 15.0, 0.2)
            code, body = healthz(port_a)
            assert code == 200 and body["role"] == "leader" and body["healthy"] is True
            code, body = healthz(port_b)
            assert code == 200 and body["role"] == "standby" and body["healthy"] is True
            assert metric_value(port_a, 'heteroscale_desired_instances{role="decode",service="chat"}') == 3.0
            assert metric_value(port_b, 'heteroscale_desired_instances{role="decode",service="chat"}') is None
            # a can no longer reach the Lease (its renewals fail) while the load asks for more
            kube.inject(Fault("GET", r"/leases/", status=503, count=100_000, agent="ctl-a"))
            kube.inject(Fault("PATCH", r"/leases/", status=503, count=100_000, agent="ctl-a"))
            exporter.set_load("chat", decode_tps=5600.0, prefill_tps=16000.0)
            assert wait_until(lambda: healthz(port_a)[1]["role"] == "standby", 15.0, 0.2)
            assert metric_value(port_a, 'heteroscale_desired_instances{role="decode",service="chat"}') is None
            assert wait_until(lambda: lease_holder(kube) == "ctl-b", 20.0, 0.2)
            assert wait_until(lambda: counts(kube)[1] > 3, 30.0, 0.5)  # b acts on the new load
            assert healthz(port_a)[0] == 200  # a standby is healthy while its cycles complete
        finally:
            stop_process(b)
    finally:
        stop_process(a)
    assert kube.non_holder_writes() == []


def _up(port: int) -> bool:
    try:
        return healthz(port)[0] == 200
    except httpx.HTTPError:
        return False
