"""Leader election and the write fence (controller/leader.py), on a ManualClock and an in-memory Lease.

No sleeps: time moves only when a test moves it, and the renewal thread waits on a test-driven turn
(bounded time-outs), so every assertion sees a known number of renewals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from heteroscale.actuators.kube.api import FencedError
from heteroscale.clock import ManualClock
from heteroscale.config.controller import (
    KubernetesConfig,
    LeaderElectionConfig,
    PrometheusConfig,
    load_controller_config,
)
from heteroscale.controller.leader import LeaseElector, LeaseSettings
from heteroscale.errors import ConfigError
from tests.support.lease_fake import FakeLeaseStore, Turns
from tests.support.live_env import controller_config


def elector(store: FakeLeaseStore, clock: ManualClock, identity: str = "ctl-a") -> LeaseElector:
    settings = LeaseSettings(
        namespace="llm", identity=identity, lease_duration_s=15.0, renew_deadline_s=10.0, retry_period_s=2.0
    )
    return LeaseElector(store, settings, clock)


def test_the_fence_opens_only_within_the_renew_deadline_of_a_successful_renewal() -> None:
    clock, store = ManualClock(1_000.0), FakeLeaseStore()
    e = elector(store, clock)
    with pytest.raises(FencedError, match="does not hold the leader lease"):
        e.fence("patch pod llm/p-1")
    assert e.try_acquire_or_renew() and store.holder == "ctl-a"
    e.fence("patch pod llm/p-1")  # just renewed
    store.failing = True  # the API server cannot be reached: renewals fail from now on
    clock.advance(9.9)
    assert not e.try_acquire_or_renew() or e.is_leader()  # still within the deadline
    e.fence("patch pod llm/p-1")
    clock.advance(0.1)  # 10 s since the last renewal began: the deadline
    assert not e.is_leader()
    with pytest.raises(FencedError, match=r"renewal began 10\.0 s ago \(renew deadline 10 s\)"):
        e.fence("scale deployment llm/chat 3→6")


def test_the_fence_measures_on_the_monotonic_clock_not_the_wall_clock() -> None:
    clock, store = ManualClock(1_000.0), FakeLeaseStore()
    e = elector(store, clock)
    assert e.try_acquire_or_renew()
    clock.set_wall_s(1_000.0 + 3_600.0)  # an NTP step of an hour: no time has passed
    e.fence("patch pod llm/p-1")
    clock.set_wall_s(1_000.0 - 3_600.0)
    e.fence("patch pod llm/p-1")


def test_a_candidate_waits_a_full_lease_on_its_own_clock_then_takes_over() -> None:
    store = FakeLeaseStore()
    clock_a, clock_b = ManualClock(1_000.0), ManualClock(5_000.0, monotonic_start_s=77.0)
    a, b = elector(store, clock_a), elector(store, clock_b, identity="ctl-b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # a holds it
    with pytest.raises(FencedError):
        b.fence("patch pod llm/p-1")
    clock_b.advance(14.9)
    assert not b.try_acquire_or_renew()  # the record has not changed for 14.9 s < 15 s
    clock_a.advance(14.9)
    assert not a.is_leader()  # a stopped acting long before: its deadline is 10 s
    clock_b.advance(0.1)
    assert b.try_acquire_or_renew() and store.holder == "ctl-b"
    assert not a.try_acquire_or_renew()  # a sees b hold a fresh lease
    with pytest.raises(FencedError):
        a.fence("patch pod llm/p-1")


def test_a_conflicting_write_ends_the_lead_at_once() -> None:
    clock, store = ManualClock(), FakeLeaseStore()
    e = elector(store, clock)
    assert e.try_acquire_or_renew()
    assert store.lease is not None
    store.lease["spec"]["holderIdentity"] = "ctl-b"  # someone else wrote the lease meanwhile
    store.lease["metadata"]["resourceVersion"] = "999"
    store.version = 999
    assert not e.try_acquire_or_renew()
    with pytest.raises(FencedError):
        e.fence("patch pod llm/p-1")


def test_the_renewal_thread_keeps_the_lease_through_a_cycle_longer_than_the_lease() -> None:
    """The defect: renewing only at the start of a cycle let a slow cycle outlive the lease."""
    clock, store = ManualClock(1_000.0), FakeLeaseStore()
    e = elector(store, clock)
    turns = Turns(clock)
    e.start(wait=turns.wait)  # one attempt now, then the thread
    try:
        assert turns.parked() == 2.0 and e.is_leader() and store.updates == 0  # created the lease
        # one reconcile cycle takes 30 s (twice the lease): the thread renews every 2 s meanwhile
        for k in range(15):
            turns.release(2.0)
            turns.parked()
            e.fence(f"write {k}")  # a write made at any point of the slow cycle passes the fence
        assert store.updates == 15 and store.holder == "ctl-a" and e.transitions == 1
        # renewals start failing: the fence closes 10 s after the last successful one began
        store.failing = True
        for _ in range(4):
            turns.release(2.0)
            turns.parked()
        e.fence("write at 8 s")
        turns.release(2.0)
        turns.parked()
        with pytest.raises(FencedError):
            e.fence("write at 10 s")
        store.failing = False  # the API answers again: the lease (still ours, not taken) is renewed
        turns.release(2.0)
        turns.parked()
        e.fence("write after the outage")
    finally:
        turns.stop()
        assert e.stop(timeout_s=10.0)


def test_stop_then_release_hands_the_lease_back() -> None:
    clock, store = ManualClock(), FakeLeaseStore()
    e = elector(store, clock)
    turns = Turns(clock)
    e.start(wait=turns.wait)
    turns.parked()
    turns.stop()
    assert e.stop(timeout_s=10.0)
    e.release()
    assert store.holder is None and not e.is_leader()


@pytest.mark.parametrize(
    ("section", "fields", "where"),
    [
        ("prometheus", {"budget_s": 4.5}, "prometheus.budget_s"),  # > renew deadline 4 s
        ("prometheus", {"budget_s": None, "timeout_s": 1.5}, "prometheus.timeout_s"),  # 4 × 1.5 s = 6 s
        ("kubernetes", {"retry_budget_s": 5.0}, "kubernetes.retry_budget_s"),
        ("kubernetes", {"request_timeout_s": 2.5}, "kubernetes.request_timeout_s"),  # > lease 6 − deadline 4
        ("leader_election", {"retry_period_s": 2.0}, "leader_election"),  # not below half the deadline
    ],
)
def test_time_outs_that_do_not_fit_the_lease_are_refused_in_one_line(
    tmp_path: Path, section: str, fields: dict[str, float | None], where: str
) -> None:
    url = "http://127.0.0.1:9"
    path = controller_config(tmp_path, url, url, identity="x", extra={section: fields})
    with pytest.raises(ConfigError) as info:
        load_controller_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {where}") and "\n" not in message, message


def test_without_leader_election_the_time_outs_are_free(tmp_path: Path) -> None:
    extra = {"leader_election": {"enabled": False}, "kubernetes": {"retry_budget_s": 30.0, "request_timeout_s": 10.0}}
    path = controller_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", extra=extra)
    config, _ = load_controller_config(path)
    assert config.kubernetes.retry_budget_s == 30.0


def test_the_defaults_fit_the_lease() -> None:
    le = LeaderElectionConfig()
    k, p = KubernetesConfig(), PrometheusConfig(url="http://x")
    assert (le.lease_duration_s, le.renew_deadline_s, le.retry_period_s) == (15.0, 10.0, 2.0)
    assert p.observation_budget_s <= le.renew_deadline_s and k.retry_budget_s <= le.renew_deadline_s
    assert k.request_timeout_s <= le.lease_duration_s - le.renew_deadline_s
