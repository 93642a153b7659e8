"""The live loop's bounds and what it says about the Kubernetes API (controller/live.py), on a ManualClock
with fakes; the one-line form of a decision (reports/decisions.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from heteroscale.clock import ManualClock
from heteroscale.controller.journal import Journal, to_plain
from heteroscale.controller.leader import LeaseElector, LeaseSettings
from heteroscale.controller.live import LiveController, LiveSettings
from heteroscale.domain.decision import DecisionRecord
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import ClusterState
from heteroscale.errors import TransientActuationError
from heteroscale.reports.decisions import binding_steps, decision_text
from tests.support.controller_fakes import FakeCluster, controller, cooldown_binding
from tests.support.lease_fake import FakeLeaseStore, Turns


@dataclasses.dataclass
class UnreachableCluster(FakeCluster):
    """A fake cluster whose reads fail as an API server that cannot be reached (while ``down``)."""

    down: bool = True

    def snapshot(self, now_s: float) -> ClusterState:
        if self.down:
            raise TransientActuationError("list nodes: NewConnectionError: connection refused (fake)")
        return super().snapshot(now_s)


@pytest.mark.parametrize(("duration_s", "interval_s", "cycles"), [(45.0, 30.0, 2), (10.0, 30.0, 1), (90.0, 30.0, 3)])
def test_duration_is_honoured_within_one_tick(duration_s: float, interval_s: float, cycles: int) -> None:
    """The defect: a run bounded by --duration-s slept on to the next tick (45 s ran for 60)."""
    clock = ManualClock(1_000.0)
    cluster = FakeCluster()
    live = LiveController(
        controller(cooldown_binding(lambda now_s: (1, 1)), cluster, Journal()),
        cluster,
        LiveSettings(interval_s=interval_s, max_duration_s=duration_s),
        clock=clock,
    )
    start = clock.monotonic_s()
    assert live.run() == cycles
    assert clock.monotonic_s() - start == pytest.approx(duration_s)


def test_an_unreachable_lease_is_said_and_the_api_counts_as_never_reached() -> None:
    """The defect: with leader election on and the API unreachable, a cycle did nothing and said nothing."""
    clock, store = ManualClock(1_000.0), FakeLeaseStore()
    store.failing = True
    elector = LeaseElector(store, LeaseSettings(namespace="llm", identity="ctl-a"), clock)
    turns = Turns(clock)
    elector.start(wait=turns.wait)
    try:
        turns.parked()
        cluster = FakeCluster()
        live = LiveController(
            controller(cooldown_binding(lambda now_s: (1, 1)), cluster, Journal()),
            cluster,
            LiveSettings(interval_s=30.0),
            clock=clock,
            elector=elector,
        )
        outcome = live.cycle()
        assert not outcome.leader and outcome.records == []
        assert outcome.error is not None and "leader election" in outcome.error and "unreachable" in outcome.error
        health = live.health()
        assert health["api_reached"] is False and "unreachable (injected)" in str(health["api_error"])
        store.failing = False  # the API comes back: the next attempt takes the lease
        turns.release(2.0)
        turns.parked()
        outcome = live.cycle()
        assert outcome.leader and outcome.error is None and cluster.count(Role.DECODE) == 1
        assert live.api_reached and live.health()["api_error"] is None
    finally:
        turns.stop()
        assert elector.stop(timeout_s=10.0)


def test_a_cluster_that_cannot_be_read_leaves_the_api_unreached_until_it_answers() -> None:
    clock = ManualClock(1_000.0)
    cluster = UnreachableCluster()
    live = LiveController(
        controller(cooldown_binding(lambda now_s: (2, 2)), cluster, Journal()),
        cluster,
        LiveSettings(interval_s=30.0),
        clock=clock,
    )
    assert live.cycle().error is not None and not live.api_reached
    assert "connection refused" in str(live.health()["api_error"])
    cluster.down = False
    clock.advance(30.0)
    assert live.cycle().error is None and live.api_reached and live.health()["api_error"] is None


def test_a_dry_run_sees_every_decision_as_it_is_made() -> None:
    clock = ManualClock(1_000.0)
    cluster = FakeCluster()
    seen: list[DecisionRecord] = []
    live = LiveController(
        controller(cooldown_binding(lambda now_s: (2, 3)), cluster, Journal()),
        cluster,
        LiveSettings(interval_s=30.0),
        clock=clock,
        on_record=seen.append,
    )
    outcome = live.cycle()
    assert seen == outcome.records and len(seen) == 1


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "at_s": 1_800_000_000.0,
        "service": "chat",
        "recommendation": {"prefill": 4, "decode": 4, "reason": "proportional", "detail": "M=5000 tok/s"},
        "decision": {
            "current_prefill": 2,
            "current_decode": 2,
            "desired_prefill": 4,
            "desired_decode": 4,
            "steps": [
                {"name": "observation", "prefill": 2, "decode": 2, "reason": "observation-ok"},
                {"name": "stabilisation", "prefill": 4, "decode": 4, "reason": "not-stabilised"},
                {"name": "bounds", "prefill": 4, "decode": 4, "reason": "within-bounds"},
            ],
        },
        "outcome": {"launched": ["a", "b", "c", "d"], "errors": []},
    }
    return {**base, **changes}


def test_a_decision_line_names_the_service_the_counts_and_the_reason() -> None:
    line = decision_text(record())
    assert line == "08:00:00Z chat  P 2→4  D 2→4  proportional: M=5000 tok/s"  # 1.8e9 s is 08:00 UTC
    assert decision_text(record(), at="t+01m00s").startswith("t+01m00s chat  P 2→4")


def test_a_decision_line_names_the_steps_that_changed_the_recommendation() -> None:
    steps = [
        {"name": "observation", "prefill": 2, "decode": 2, "reason": "observation-ok"},
        {"name": "stabilisation", "prefill": 8, "decode": 8, "reason": "not-stabilised"},
        {"name": "latency", "prefill": 9, "decode": 9, "reason": "latency-severe-breach"},
        {"name": "damping", "prefill": 4, "decode": 4, "reason": "damped"},
    ]
    rec = record(recommendation={"prefill": 8, "decode": 8, "reason": "proportional", "detail": ""})
    rec["decision"] = {**rec["decision"], "steps": steps}
    assert binding_steps(rec) == ["latency-severe-breach", "damped"]
    assert "proportional → latency-severe-breach, damped" in decision_text(rec)


def test_a_dry_run_line_says_it_applied_nothing() -> None:
    dry = record(outcome={"errors": ["dry run: 4 launch(es) not applied"]})
    assert decision_text(dry).endswith("(dry run, not applied)")
    held = record(decision={**record()["decision"], "desired_prefill": 2, "desired_decode": 2}, outcome=dry["outcome"])
    assert "not applied" not in decision_text(held)  # nothing to apply


def test_to_plain_of_a_record_reads_like_a_journal_line() -> None:
    clock = ManualClock(1_000.0)
    cluster = FakeCluster()
    journal = Journal()
    ctl = controller(cooldown_binding(lambda now_s: (2, 3)), cluster, journal)
    [made] = ctl.reconcile_once(clock.now_s())
    line = decision_text(to_plain(made))
    assert " chat  P 0→2  D 0→3  fixed-count" in line
