"""Discovery gating is never silent: a run counts the Ready instances it held out of service and the
table says so; a policy that holds fixed counts is never gated (the split is the user's)."""

from __future__ import annotations

import re

import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.controller.readiness import ServiceBook
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import Lifecycle
from heteroscale.perf import build_instance_perf
from heteroscale.reports.table import summary_table
from heteroscale.sim.cluster import SimInstance
from heteroscale.sim.gating import GatingTally
from heteroscale.sim.runner import SimulationRun
from tests.support import builders as b


def _run(policies: dict[str, tuple[str, dict[str, object]]] | None = None) -> tuple[SimulationRun, dict]:
    sc = b.scenario(prefill=1, decode=2, duration_s=600.0)
    loads = b.loads_for(sc, b.trace(n=1200, rate_rps=2.0))
    run = SimulationRun(sc, calibration_for(sc), loads=loads, policies=policies)
    return run, run.run()


def test_a_static_one_prefill_two_decode_cluster_serves_with_both_decode_instances() -> None:
    run, summary = _run()  # the builders' policy is ``fixed`` 1P/2D at P/D ratio 1.0
    decode = [i for i in run.cluster.instances.values() if i.role is Role.DECODE]
    assert len(decode) == 2
    assert all(i.in_discovery for i in decode)
    tokens = sorted(i.acc_tokens for i in decode)
    # both serve: the second carries a fair share, not nothing after the first reconcile
    assert tokens[0] > 0.3 * tokens[1]
    assert summary["instances_gated"] == 0
    assert summary["services"]["svc"]["instances_gated"] == 0
    assert re.search(r"held out by discovery gating\s+none", summary_table(summary))


def test_gating_by_a_metrics_policy_is_counted_in_the_summary_and_table() -> None:
    _, summary = _run({"svc": ("hpa", {})})
    # the first reconcile sees ready 1P/2D at ratio 1.0 (beyond 25 %) and holds the newer decode out
    assert summary["instances_gated"] >= 1
    assert summary["instances_gated_s"] > 0
    assert summary["gpu_hours_gated"] == pytest.approx(4 * summary["instances_gated_s"] / 3600.0, rel=1e-3)
    assert summary["services"]["svc"]["instances_gated"] == summary["instances_gated"]
    assert "held out by discovery gating" in summary_table(summary)
    assert "ready P:D off ratio" in summary_table(summary)


def _inst(inst_id: str, in_discovery: bool) -> SimInstance:
    sc = b.scenario()
    shape = InstanceShape(Role.DECODE, "h100-sxm", 4)
    perf = build_instance_perf(sc.models["llama-3.1-70b"], sc.skus["h100-sxm"], 4, calibration_for(sc), 0.1)
    inst = SimInstance(inst_id, 0, shape, "dg0", "n0", ("n0",), perf, 1.0, 0.0)
    inst.lifecycle = Lifecycle.READY
    inst.in_discovery = in_discovery
    return inst


def test_the_tally_charges_gated_instances_from_one_sample_to_the_next() -> None:
    tally = GatingTally()
    assert tally.figures()["instances_gated"] is None  # never sampled: unknown, not zero
    held = {"d1": _inst("d1", in_discovery=False), "d0": _inst("d0", in_discovery=True)}
    tally.observe(30.0, {"svc": ServiceBook(gated={"d1", "d0"})}, held)  # d0 is back in discovery: not held
    tally.observe(90.0, {"svc": ServiceBook(gated={"d1"})}, held)  # still the same gating: no new event
    held["d1"].in_discovery = True
    tally.observe(120.0, {"svc": ServiceBook()}, held)
    tally.close(600.0)
    assert tally.figures() == {"instances_gated": 1, "instances_gated_s": 90.0, "gpu_hours_gated": 0.1}
    assert tally.figures("svc") == tally.figures()


def test_a_coordinated_policy_is_not_gated_against_the_split_it_decided() -> None:
    # at r = 1.5 one decode instance wants round(1.5) = 2 prefill instances: 2P/1D is the decided split,
    # 33 % off r, and gating it against r held one of the two prefill instances out for the whole run
    sc = b.scenario(b.service(pd_ratio=1.5), prefill=2, decode=1, duration_s=600.0)
    loads = b.loads_for(sc, b.trace(n=1200, rate_rps=2.0))
    run = SimulationRun(sc, calibration_for(sc), loads=loads, policies={"svc": ("heteroscale", {})})
    run.journal.keep = True
    summary = run.run()
    decided = {(r.decision.desired_prefill, r.decision.desired_decode) for r in run.journal.records}
    assert decided == {(2, 1)}
    prefill = [i for i in run.cluster.instances.values() if i.role is Role.PREFILL]
    assert len(prefill) == 2
    assert all(i.in_discovery for i in prefill)
    assert summary["instances_gated"] == 0
