"""Discovery gating on the Ready P:D ratio and soft scale-in (pure functions of instances + book)."""

from __future__ import annotations

import pytest

from heteroscale.controller.readiness import (
    ReadinessSettings,
    ServiceBook,
    gate_discovery,
    restore_for_scale_out,
    slo_degraded,
    soft_scale_in_step,
    ungate_all,
)
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.domain.state import InstanceInfo, Lifecycle, ScaleInMode
from tests.support import builders as b


def inst(i: str, role: Role, ready_at: float = 0.0, in_disc: bool = True, lc: Lifecycle = Lifecycle.READY):
    shape = InstanceShape(role, "h100-sxm", 4)
    return InstanceInfo(i, "svc", role, shape, "dg0", "n0", lc, in_disc, 0.0, ready_at)


def fleet(p: int, d: int, **kw) -> dict[str, InstanceInfo]:
    out = {f"p{k}": inst(f"p{k}", Role.PREFILL, ready_at=float(k), **kw) for k in range(p)}
    out |= {f"d{k}": inst(f"d{k}", Role.DECODE, ready_at=float(k), **kw) for k in range(d)}
    return out


@pytest.mark.parametrize(
    ("p", "d", "ratio", "held"),
    [
        (4, 4, 1.0, set()),  # on ratio
        (5, 4, 1.0, set()),  # 25 % off: within tolerance
        (8, 4, 1.0, {"p5", "p6", "p7"}),  # P surplus: the newest beyond 4·1.25 held
        (2, 6, 1.0, {"d2", "d3", "d4", "d5"}),  # D surplus
        (6, 2, 2.0, {"p5"}),  # ratio 2: up to floor(2·2·1.25) = 5 P
        (0, 3, 1.0, set()),  # one role absent: nothing to balance against
    ],
)
def test_gating_holds_the_newest_surplus(p, d, ratio, held) -> None:
    book = ServiceBook()
    changes = gate_discovery(b.service(pd_ratio=ratio), book, fleet(p, d), ReadinessSettings())
    assert {c.instance_id for c in changes if not c.in_discovery} == held
    assert book.gated == held
    assert all(c.reason for c in changes)


def test_gated_instances_come_back_when_the_other_role_catches_up() -> None:
    book = ServiceBook()
    spec = b.service()
    instances = fleet(8, 4)
    gate_discovery(spec, book, instances, ReadinessSettings())
    # the gated ones are now out of discovery; four more decode instances become ready
    instances = {k: (v if k not in book.gated else inst(k, v.role, v.ready_at_s or 0.0, in_disc=False))
                 for k, v in instances.items()}  # fmt: skip
    instances |= {f"d{k}": inst(f"d{k}", Role.DECODE, ready_at=10.0 + k) for k in range(4, 8)}
    changes = gate_discovery(spec, book, instances, ReadinessSettings())
    assert {c.instance_id for c in changes if c.in_discovery} == {"p5", "p6", "p7"}
    assert book.gated == set()


def _obs(ttft: float | None, tbt: float | None) -> Observation:
    sig = RoleSignals(instances_ready=1, tps=1.0)
    return Observation("svc", 0.0, 60.0, sig, sig, ttft_p90_s=ttft, tbt_p90_s=tbt)


@pytest.mark.parametrize(
    ("ttft", "tbt", "degraded"), [(1.0, 0.05, False), (2.5, 0.05, True), (1.0, 0.2, True), (None, None, False)]
)
def test_slo_degradation(ttft, tbt, degraded) -> None:
    assert (slo_degraded(b.service(), _obs(ttft, tbt)) is not None) is degraded


def test_soft_scale_in_removes_after_the_window_and_restores_on_degradation() -> None:
    st = ReadinessSettings(soft_scale_in_s=120.0, drain_grace_s=300.0)
    instances = fleet(2, 2, in_disc=False)
    book = ServiceBook(soft_removed={"p1": 0.0, "d1": 50.0})
    restores, removals = soft_scale_in_step(book, instances, 130.0, None, st)
    assert restores == []
    assert [(r.instance_id, r.mode, r.grace_s) for r in removals] == [("p1", ScaleInMode.DRAIN, 300.0)]
    assert book.soft_removed == {"d1": 50.0}
    restores, removals = soft_scale_in_step(book, instances, 140.0, "TTFT p90 3 s > SLO 2 s", st)
    assert [(c.instance_id, c.in_discovery) for c in restores] == [("d1", True)]
    assert "TTFT" in restores[0].reason
    assert removals == [] and book.soft_removed == {}


def test_scale_out_restores_soft_removed_instances_first_newest_first() -> None:
    instances = fleet(3, 0, in_disc=False)
    book = ServiceBook(soft_removed={"p0": 10.0, "p1": 30.0, "p2": 20.0})
    assert restore_for_scale_out(book, Role.PREFILL, 2, instances) == ["p1", "p2"]
    assert book.soft_removed == {"p0": 10.0}


def test_soft_scale_in_in_the_simulator_keeps_the_instance_out_of_discovery_then_removes_it() -> None:
    import dataclasses

    from heteroscale.config.catalog import calibration_for
    from heteroscale.controller.journal import Journal
    from heteroscale.sim.runner import SimulationRun

    sc = b.scenario(prefill=4, decode=4, soft_scale_in_s=120.0)
    sc = dataclasses.replace(sc, services=(dataclasses.replace(sc.services[0], policy=dataclasses.replace(
        sc.services[0].policy, name="heteroscale")),))  # fmt: skip
    tr = b.trace(n=600, rate_rps=1.0, output_tokens=100)  # far below 4P/4D: the policy scales in
    run = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr))
    run.journal = Journal(keep=True)
    run.controller.journal = run.journal
    run.run()
    soft = [(r.at_s, c["instance_id"]) for r in run.journal.records for c in r.plan["discovery"]
            if not c["in_discovery"] and c["reason"].startswith("soft scale-in")]  # fmt: skip
    removed = {rm["instance_id"]: r.at_s for r in run.journal.records for rm in r.plan["removals"]}
    assert soft, "the policy scaled in through soft scale-in"
    for at_s, inst_id in soft:
        assert inst_id in removed and removed[inst_id] - at_s >= 120.0
    assert sum(s.failed for s in run.engine.stats) == 0


def test_fixed_counts_are_never_gated_and_a_held_instance_comes_back() -> None:
    """After a restart a Ready instance out of discovery counts as gated; a fixed-count service puts it
    back (its split is the user's), but leaves a soft-removed one alone."""
    book = ServiceBook(soft_removed={"d2": 0.0}, gated={"d1"})
    instances = fleet(1, 1) | {
        "d1": inst("d1", Role.DECODE, ready_at=1.0, in_disc=False),
        "d2": inst("d2", Role.DECODE, ready_at=2.0, in_disc=False),
        "d3": inst("d3", Role.DECODE, ready_at=3.0, in_disc=False),
    }
    changes = ungate_all(book, instances)
    assert [(c.instance_id, c.in_discovery) for c in changes] == [("d1", True), ("d3", True)]
    assert book.gated == set()
    assert ungate_all(book, fleet(1, 3)) == []  # nothing held: nothing to do
