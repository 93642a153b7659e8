"""The live loop (controller/live.py) on a ManualClock with fakes: a journal that cannot be written, losing
the lead, the /healthz body, and a fenced write abandoning the rest of the cycle."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from pathlib import Path

import pytest

from heteroscale.clock import ManualClock
from heteroscale.controller.http import ControllerMetrics, HealthServer
from heteroscale.controller.journal import Journal
from heteroscale.controller.leader import LeaseElector, LeaseSettings
from heteroscale.controller.live import LiveController, LiveSettings
from heteroscale.controller.reconcile import Controller, ServiceBinding
from heteroscale.domain.hardware import Role
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from tests.support.controller_fakes import (
    CooldownPolicy,
    FakeCluster,
    FakeMetrics,
    FullDiskJournal,
    chat_spec,
    controller,
    cooldown_binding,
)
from tests.support.lease_fake import FakeLeaseStore, Turns
from tests.unit import policy_builders as pb

SETTINGS = LiveSettings(interval_s=30.0)


def metric(metrics: ControllerMetrics, name: str) -> list[str]:
    return [line for line in metrics.render().decode().splitlines() if line.startswith(name)]


def test_an_unwritable_journal_holds_every_cycle_keeps_running_and_shows_in_metrics(tmp_path: Path) -> None:
    """The defect: with the journal's disk full the controller acted, lost the record and crash-looped."""
    clock = ManualClock(1_000.0)
    cluster = FakeCluster()
    journal = FullDiskJournal(tmp_path / "journal.jsonl")
    journal.full = True
    live = LiveController(
        controller(cooldown_binding(lambda now_s: (3, 3)), cluster, journal), cluster, SETTINGS, clock=clock
    )
    for _ in range(3):
        outcome = live.cycle()  # never raises
        assert outcome.error is None and outcome.records[0].decision.steps[-1].reason.value == "journal-unwritable"
        clock.advance(30.0)
    assert cluster.applies == 0 and cluster.instances == {}
    assert cluster.drains_finished == 1  # only before the journal was known to be unwritable
    assert metric(live.metrics, "heteroscale_journal_writable ") == ["heteroscale_journal_writable 0.0"]
    assert metric(live.metrics, "heteroscale_journal_errors_total") == ["heteroscale_journal_errors_total 6.0"]
    health = live.health()
    assert health["journal_writable"] is False and health["healthy"] and health["role"] == "leader"
    journal.full = False
    live.cycle()
    assert cluster.count(Role.DECODE) == 3 and cluster.drains_finished == 1  # acted; drains wait a cycle
    assert metric(live.metrics, "heteroscale_journal_writable ") == ["heteroscale_journal_writable 1.0"]
    live.cycle()
    assert cluster.drains_finished == 2
    journal.close()


def test_losing_the_lead_stops_acting_and_clears_the_desired_series() -> None:
    clock, store = ManualClock(1_000.0), FakeLeaseStore()
    lease = LeaseSettings(namespace="llm", identity="ctl-a", lease_duration_s=15.0, renew_deadline_s=10.0)
    elector = LeaseElector(store, lease, clock)
    turns = Turns(clock)
    elector.start(wait=turns.wait)
    try:
        turns.parked()
        cluster = FakeCluster()
        wants = {"now": (2, 2)}
        ctl = controller(cooldown_binding(lambda now_s: wants["now"], cooldown_s=0.0), cluster, Journal())
        live = LiveController(ctl, cluster, SETTINGS, clock=clock, elector=elector)
        assert live.cycle().leader and cluster.count(Role.DECODE) == 2
        assert len(metric(live.metrics, "heteroscale_desired_instances{")) == 2
        assert live.health()["role"] == "leader"
        store.failing = True  # renewals fail from here
        for _ in range(5):
            turns.release(2.0)
            turns.parked()
        wants["now"] = (5, 5)
        outcome = live.cycle()
        assert not outcome.leader and outcome.records == [] and cluster.count(Role.DECODE) == 2
        assert metric(live.metrics, "heteroscale_desired_instances{") == []
        assert metric(live.metrics, "heteroscale_leader ") == ["heteroscale_leader 0.0"]
        assert live.health()["role"] == "standby" and live.healthy()
    finally:
        turns.stop()
        assert elector.stop(timeout_s=10.0)


def test_losing_the_lead_clears_the_published_target_replicas_and_forgets_them() -> None:
    """actuation: metrics: only the leader says what each target should have (KEDA acts on it)."""
    clock, store = ManualClock(1_000.0), FakeLeaseStore()
    lease = LeaseSettings(namespace="llm", identity="ctl-a", lease_duration_s=15.0, renew_deadline_s=10.0)
    elector = LeaseElector(store, lease, clock)
    turns = Turns(clock)
    elector.start(wait=turns.wait)
    forgotten: list[bool] = []
    try:
        turns.parked()
        cluster = FakeCluster()
        ctl = controller(cooldown_binding(lambda now_s: (2, 2), cooldown_s=0.0), cluster, Journal())
        live = LiveController(
            ctl, cluster, SETTINGS, clock=clock, elector=elector, on_lost_lead=lambda: forgotten.append(True)
        )
        assert live.cycle().leader
        live.metrics.publish_target("chat", "decode", "Deployment.chat-decode", 2)  # as the metrics mode does
        assert metric(live.metrics, "heteroscale_target_desired_replicas{") == [
            'heteroscale_target_desired_replicas{role="decode",service="chat",target="Deployment.chat-decode"} 2.0'
        ]
        store.failing = True
        for _ in range(5):
            turns.release(2.0)
            turns.parked()
        assert not live.cycle().leader
        assert metric(live.metrics, "heteroscale_target_desired_replicas{") == [] and forgotten == [True]
    finally:
        turns.stop()
        assert elector.stop(timeout_s=10.0)


def test_healthz_answers_json_naming_the_role(tmp_path: Path) -> None:
    clock = ManualClock(1_000.0)
    cluster = FakeCluster()
    live = LiveController(
        controller(cooldown_binding(lambda now_s: (1, 1)), cluster, Journal()), cluster, SETTINGS, clock=clock
    )
    live.cycle()
    server = HealthServer(live.metrics, "127.0.0.1", 0, live.healthy, describe=live.health).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5.0) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
            body = json.loads(answer.read())
        assert body["role"] == "leader" and body["healthy"] is True and body["cycles"] == 1
        clock.advance(5 * 30.0)  # no cycle for five intervals: stale
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5.0)
        assert info.value.code == 503 and json.loads(info.value.read())["healthy"] is False
    finally:
        server.stop()


@dataclasses.dataclass
class FencedCluster(FakeCluster):
    """A fake whose first apply is refused by the fence part-way (as owned.py reports it)."""

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        self.applies += 1
        return ActuationResult(errors=("fenced: …",), abandoned=("scale chat-dg0 by +1",), fenced="lease lapsed")


def test_a_fenced_write_abandons_the_rest_of_the_cycle() -> None:
    cluster = FencedCluster()
    batch = dataclasses.replace(chat_spec(), name="batch")
    bindings = [
        cooldown_binding(lambda now_s: (2, 2), cooldown_s=0.0),
        ServiceBinding(batch, CooldownPolicy(lambda now_s: (2, 2), 0.0), pb.targets()),
    ]
    journal = Journal(keep=True)
    ctl = Controller(bindings, FakeMetrics(), cluster, cluster, journal, tick_s=30.0)
    first, second = ctl.reconcile_once(30.0)
    assert cluster.applies == 1  # the second service's plan is never sent
    assert first.outcome["fenced"] == "lease lapsed"
    assert second.outcome["abandoned"].startswith("not applied: an earlier write this cycle was fenced")
    assert [b.spec.name for b in ctl.services] == [first.service, second.service] == ["batch", "chat"]
    assert ctl.services[1].memory.last_scale_out_s is None  # no action remembered for what was not done
    ctl.reconcile_once(60.0)
    assert cluster.applies == 2  # a new cycle tries again (and is fenced again, by this fake)
