"""Pure pieces of the experiments: oracle sizing, ratio deviation, confidence intervals, unimodality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from heteroscale.domain.decision import Reason
from heteroscale.experiments.compare import pd_ratio_deviation
from heteroscale.experiments.figures import aggregate, means
from heteroscale.experiments.oracle import counts_for_demand, oracle_plan
from heteroscale.experiments.study import direction_reversals
from heteroscale.experiments.sweep import is_unimodal
from heteroscale.policy.context import Targets
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.request_trace import RequestTrace
from heteroscale.sim.telemetry import RoleWindow, WindowRow
from tests.support import builders as b


def targets(decode_tps: float = 1000.0, prefill_tps: float = 5000.0) -> Targets:
    return Targets(
        decode_tps_per_instance=(("decode:h100-sxm:tp4", decode_tps),),
        prefill_tps_per_instance=(("prefill:h100-sxm:tp4", prefill_tps),),
        prefill_gpu_util=0.7,
        decode_gpu_util=0.7,
        prefill_sm_activity=0.6,
        decode_sm_activity=0.5,
        ttft_s=1.0,
        tbt_s=0.05,
        requests_per_s_per_prefill=5.0,
        requests_per_s_per_decode=5.0,
        mean_input_tokens=1000.0,
        mean_output_tokens=200.0,
    )


@pytest.mark.parametrize(
    ("ratio", "decode_tps", "prefill_tps", "expect"),
    [
        (1.0, 9_500.0, 10_000.0, (10, 10)),  # decode-bound: ceil(9.5) = 10 D, P at the ratio
        (1.0, 2_000.0, 40_000.0, (8, 8)),  # prefill-bound: 8 P needed, D raised to keep the ratio
        (0.5, 10_000.0, 10_000.0, (5, 10)),  # P = round(10 · 0.5)
        (2.0, 1_000.0, 1_000.0, (2, 1)),
        (1.0, 0.0, 0.0, (1, 1)),  # never below one of each
    ],
)
def test_oracle_counts_cover_both_demands_at_the_ratio(ratio, decode_tps, prefill_tps, expect) -> None:
    spec = b.service(pd_ratio=ratio)
    assert counts_for_demand(spec, targets(), decode_tps, prefill_tps) == expect


def test_oracle_plan_per_window_and_gpu_hours() -> None:
    spec = b.service()
    # 600 requests of 100 output tokens in the first 10-minute window, none in the second
    tr = b.trace(n=600, rate_rps=1.2, input_tokens=1000, output_tokens=100)
    load = ServiceLoad(spec, tr, np.zeros(len(tr), dtype=np.int64), 120.0)
    plan = oracle_plan(load, targets(decode_tps=50.0), horizon_s=1200.0)
    assert len(plan.windows) == 2
    first, second = plan.windows
    assert first.decode == int(np.ceil(first.decode_demand_tps / 50.0))
    assert second.decode == 1 and second.prefill == 1
    assert plan.gpu_hours == pytest.approx((first.prefill + first.decode + 2) * 4 * 600 / 3600)
    assert plan.peak == (first.prefill, first.decode)


def _opening_load(first_minute: int, rest: int) -> ServiceLoad:
    """``first_minute`` requests in [0, 60) s, then ``rest`` spread evenly over [60, 600) s."""
    arrival = np.concatenate([np.linspace(0.0, 59.0, first_minute), np.linspace(60.0, 599.0, rest)])
    n = len(arrival)
    tokens = np.full(n, 100, dtype=np.int64)
    tr = RequestTrace("opening", arrival, np.full(n, 1000, dtype=np.int64), tokens, None)
    return ServiceLoad(b.service(), tr, np.zeros(n, dtype=np.int64), 120.0)


def test_the_warm_start_is_raised_to_a_busy_first_minute_and_never_below_the_first_window() -> None:
    # a burst: 1,000 decode tok/s in the first minute needs 20 instances at 50 tok/s; the window (110) 3
    busy = oracle_plan(_opening_load(600, 60), targets(decode_tps=50.0), horizon_s=600.0)
    assert busy.windows[0].decode == 3 and busy.opening[1] == 20
    assert busy.warm_start == (max(busy.windows[0].prefill, busy.opening[0]), 20)
    # a quiet opening (10 tok/s) keeps the first window's counts
    quiet = oracle_plan(_opening_load(6, 594), targets(decode_tps=50.0), horizon_s=600.0)
    assert quiet.opening[1] == 1 and quiet.warm_start == (quiet.windows[0].prefill, quiet.windows[0].decode) != (1, 1)


def _row(t: float, p: int, d: int) -> WindowRow:
    def role(n: int) -> RoleWindow:
        return RoleWindow(n, 0, 0, 0.0, None, None, None, 0.0, 0.0, None)

    return WindowRow(t, 30.0, "svc", role(p), role(d), 0.0, 0, None, None, None, None, None, None, None, None)


@pytest.mark.parametrize(
    ("counts", "ratio", "expect"),
    [
        ([(4, 4), (4, 4)], 1.0, 0.0),
        ([(5, 4), (3, 4)], 1.0, 0.25),  # |5-4|/4 and |3-4|/4
        ([(3, 0), (2, 4)], 0.5, 0.0),  # windows without decode are not counted
        ([(0, 0)], 1.0, None),
    ],
)
def test_pd_ratio_deviation(counts, ratio, expect) -> None:
    rows = [_row(30.0 * i, p, d) for i, (p, d) in enumerate(counts)]
    assert pd_ratio_deviation(rows, ratio) == expect


def test_aggregate_gives_means_and_confidence_intervals() -> None:
    out = aggregate([{"x": 1.0, "n": {"y": 2}, "s": "a"}, {"x": 3.0, "n": {"y": 4}, "s": "a"}])
    assert out["x"]["mean"] == 2.0
    assert out["x"]["ci95"] == pytest.approx(12.706 * np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert out["n"]["y"]["mean"] == 3.0
    assert out["s"] == "a"


def test_one_run_has_the_same_schema_and_no_interval() -> None:
    run = {"seed": 7, "gpu_hours": 2.5, "requests_failed": 0, "slo": {"ttft_s": 2.0}, "ratio": None,
           "by_role": {"prefill": 1.25}, "policy": "hpa", "latency_estimated": False}  # fmt: skip
    out = aggregate([run])
    assert out == {
        "seeds": [7],
        "gpu_hours": {"mean": 2.5, "ci95": None, "n": 1},  # one run: no interval, never a 0-width one
        "requests_failed": {"mean": 0, "ci95": None, "n": 1},
        "slo": {"ttft_s": 2.0},  # what the run was asked, not a figure
        "ratio": None,
        "by_role": {"prefill": {"mean": 1.25, "ci95": None, "n": 1}},
        "policy": "hpa",
        "latency_estimated": False,
    }
    plain = means(out)
    assert plain.pop("seeds") == [7] and plain == {k: v for k, v in run.items() if k != "seed"}


@pytest.mark.parametrize(
    ("values", "expect"),
    [([1, 3, 5, 4, 2], True), ([5, 4, 3], True), ([1, 2, 3], True), ([1, 5, 1, 5, 1], False), ([], True)],
)
def test_is_unimodal(values, expect) -> None:
    assert is_unimodal([float(v) for v in values], tolerance=0.0) is expect


@pytest.mark.parametrize(
    ("counts", "expect"), [([1, 2, 3, 2, 1], 1), ([1, 1, 1], 0), ([1, 2, 1, 2, 1], 3), ([3, 2, 2, 4], 1)]
)
def test_direction_reversals(counts, expect) -> None:
    assert direction_reversals([float(c) for c in counts]) == expect


def test_every_decision_record_names_a_reason_for_every_step() -> None:
    from heteroscale.config.catalog import calibration_for
    from heteroscale.controller.journal import Journal
    from heteroscale.sim.runner import SimulationRun

    sc = b.scenario(prefill=1, decode=1)
    sc = dataclasses.replace(sc, services=(dataclasses.replace(sc.services[0], policy=dataclasses.replace(
        sc.services[0].policy, name="heteroscale")),))  # fmt: skip
    tr = b.trace(n=20_000, rate_rps=40.0, output_tokens=200)  # 8,000 tok/s: far above 1P/1D's target
    run = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr))
    run.journal = Journal(keep=True)
    run.controller.journal = run.journal
    run.run()
    records = run.journal.records
    assert records
    reasons = {r.value for r in Reason}
    moved = 0
    for rec in records:
        assert rec.decision.steps, "every decision lists its steps"
        for step in rec.decision.steps:
            assert step.reason.value in reasons and step.name
        if (rec.decision.desired_prefill, rec.decision.desired_decode) != (
            rec.decision.current_prefill,
            rec.decision.current_decode,
        ):
            moved += 1
            assert rec.plan["launches"] or rec.plan["removals"] or rec.plan["unplaced"]
    assert moved > 0  # the load is far above 1P/1D: the policy scaled out, and said why
