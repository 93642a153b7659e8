"""The true lower bound: saturation costs per request, the per-window bound, the check every run makes,
and the ratio-oracle (a reference, billed only for the run)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.errors import SimulationInvariantError
from heteroscale.experiments.lower_bound import lower_bound
from heteroscale.experiments.oracle import oracle_plan
from heteroscale.perf import build_instance_perf
from heteroscale.policy.context import Targets
from heteroscale.sim.cluster import SimCluster
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.saturation import decode_fixed_s_per_token, largest_batch, request_costs
from tests.support import builders as b

H100_P = InstanceShape(Role.PREFILL, "h100-sxm", 4)
H100_D = InstanceShape(Role.DECODE, "h100-sxm", 4)


def perfs_for(spec, sc):  # type: ignore[no-untyped-def]
    cal = calibration_for(sc)
    model = sc.models[spec.model]
    return {
        s: build_instance_perf(model, sc.skus[s.sku], s.tp, cal, sc.settings.kv_activation_reserve)
        for role in Role
        for s in spec.shapes(role)
    }


def test_a_full_prefill_batch_takes_at_least_the_bound_and_hardly_more() -> None:
    sc = b.scenario()
    spec = sc.services[0].spec
    perf = perfs_for(spec, sc)[H100_P]
    k = spec.max_prefill_tokens // 1024  # prompts of 1,024 new tokens behind 512 cached, filling the budget
    tr = b.trace(n=k, input_tokens=1536, output_tokens=2, cached_tokens=[512] * k)
    costs = request_costs(spec, tr, tr.cached_tokens, perfs_for(spec, sc), sc.skus)
    batch_s = perf.prefill_time_s(1024 * k, float(k * 1024 * 1536))
    bound_s = float(costs.prefill_gpu_s.sum()) / H100_P.gpus
    assert bound_s <= batch_s
    assert bound_s >= 0.98 * batch_s  # at the budget only the weight-read floor separates them


def test_every_feasible_decode_step_takes_at_least_the_bound() -> None:
    sc = b.scenario()
    spec = sc.services[0].spec
    perf = perfs_for(spec, sc)[H100_D]
    reservations = np.full(1000, 1200.0)
    batch = largest_batch(perf, reservations, spec.max_decode_batch)
    assert 1 < batch <= spec.max_decode_batch
    phi = decode_fixed_s_per_token(perf, batch)
    for b_ in range(1, batch + 1):
        for context in (0, 1000 * b_, 3000 * b_):
            step = perf.decode_step_time_s(b_, context)
            assert step >= b_ * phi + perf.decode_s_per_context_token * context
    # and at the largest batch the bound is within half a sequence of the step itself
    full = perf.decode_step_time_s(batch, 1200 * batch)
    assert full <= (batch * phi + perf.decode_s_per_context_token * 1200 * batch) * (1.0 + 1.0 / batch)


def test_each_request_goes_to_its_cheapest_shape_that_can_hold_it() -> None:
    # a small-memory decode shape (L40S) and a large one (H200): long requests fit only the large one
    small = InstanceShape(Role.DECODE, "l40s", 2)
    large = InstanceShape(Role.DECODE, "h200", 2)
    spec = b.service(model="llama-3.1-8b", prefill_shapes=(InstanceShape(Role.PREFILL, "l40s", 1),),
                     decode_shapes=(small, large))  # fmt: skip
    sc = b.scenario(spec=spec)
    perfs = perfs_for(spec, sc)
    cap_small, cap_large = perfs[small].kv_capacity_tokens, perfs[large].kv_capacity_tokens
    assert cap_small < cap_large
    lengths = [1000, cap_small + 1000, cap_large + 1000]  # fits both, the large only, neither
    tr = b.trace(n=3, input_tokens=lengths, output_tokens=50)
    cached = np.zeros(3, dtype=np.int64)
    both = request_costs(spec, tr, cached, perfs, sc.skus)
    alone = {s: request_costs(dataclasses.replace(spec, decode_shapes=(s,)), tr, cached, perfs, sc.skus)
             for s in (small, large)}  # fmt: skip
    assert both.servable.tolist() == [True, True, False]
    assert alone[small].servable.tolist() == [True, False, False]
    assert both.decode_gpu_s[0] == min(alone[small].decode_gpu_s[0], alone[large].decode_gpu_s[0])
    assert both.decode_gpu_s[1] == alone[large].decode_gpu_s[1] > 0
    assert both.decode_gpu_s[2] == 0.0  # never served by any run: not part of the bound
    assert both.decode_cost_s[0] == min(alone[small].decode_cost_s[0], alone[large].decode_cost_s[0])


def test_windows_hold_the_work_that_arrived_in_them_and_sum_to_the_total() -> None:
    sc = b.scenario()
    spec = sc.services[0].spec
    tr = dataclasses.replace(b.trace(n=4), arrival_s=np.array([1.0, 59.0, 61.0, 89.0]))
    load = ServiceLoad(spec, tr, np.zeros(4, dtype=np.int64), 120.0)
    costs = request_costs(spec, tr, load.cached_tokens, perfs_for(spec, sc), sc.skus)
    bound = lower_bound(load, costs, horizon_s=90.0, window_s=60.0)
    assert [w.length_s for w in bound.windows] == [60.0, 30.0]  # the last window is the run's last 30 s
    per = costs.prefill_gpu_s + costs.decode_gpu_s
    assert bound.windows[0].prefill_gpu_s + bound.windows[0].decode_gpu_s == pytest.approx(per[:2].sum())
    assert bound.gpu_hours == pytest.approx(per.sum() / 3600.0)
    assert bound.peak_gpus == pytest.approx(per[2:].sum() / 30.0)
    longer = lower_bound(load, costs, horizon_s=600.0, window_s=60.0)
    assert longer.gpu_hours == pytest.approx(bound.gpu_hours)  # an idle tail adds nothing


def _overloaded(n: int, output_tokens: int, input_tokens: int) -> SimulationRun:
    """1P/1D held fixed, every request arriving within a few seconds: each pool busy while it has work."""
    sc = b.scenario(prefill=1, decode=1, cold_start_s=0.0, tick_s=5.0)  # the run ends on the tick after the work
    tr = b.trace(n=n, rate_rps=1000.0, input_tokens=input_tokens, output_tokens=output_tokens)
    return SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr))


@pytest.mark.parametrize(
    ("role", "n", "output_tokens", "input_tokens", "within"),
    [("decode", 2000, 400, 200, 1.08), ("prefill", 400, 2, 8000, 1.03)],  # measured: 1.043 and 1.016
)
def test_a_saturated_pool_bills_close_to_its_bound(
    role: str, n: int, output_tokens: int, input_tokens: int, within: float
) -> None:
    s = _overloaded(n, output_tokens, input_tokens).run()
    assert s["requests_completed"] == n
    billed, least = s["gpu_hours_by_role"][role], s["lower_bound"]["gpu_hours_by_role"][role]
    assert least <= billed <= within * least  # a bound, and not a loose one: the batch ramps are the gap


def test_every_run_checks_its_bill_against_the_bound_of_its_work(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _overloaded(400, 50, 500)
    real = SimCluster.close_billing

    def quarter_billed(self: SimCluster, now_s: float):  # type: ignore[no-untyped-def]
        billing = real(self, now_s)
        billing.gpu_s_by_role = {k: v / 4 for k, v in billing.gpu_s_by_role.items()}
        return billing

    monkeypatch.setattr(SimCluster, "close_billing", quarter_billed)
    with pytest.raises(SimulationInvariantError, match=r"scenario test: prefill GPU-hours .* below the saturation"):
        run.run()


def test_a_run_reports_the_bound_of_what_it_completed() -> None:
    sc = b.scenario(prefill=1, decode=1, duration_s=20.0)
    tr = b.trace(n=400, rate_rps=20.0, input_tokens=2000, output_tokens=300)
    run = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr))
    s = run.run()
    done = run.engine.completed_mask(0)
    assert 0 < int(done.sum()) == s["requests_completed"] < s["requests_total"]
    costs = run.costs[0]
    assert s["lower_bound"]["gpu_hours"] == pytest.approx(
        float((costs.prefill_gpu_s + costs.decode_gpu_s)[done].sum()) / 3600.0, abs=1e-6
    )
    assert s["lower_bound"]["basis"] == "completed requests"


def test_the_ratio_oracle_bills_only_the_run() -> None:
    spec = b.service()
    tr = b.trace(n=600, rate_rps=1.0, input_tokens=1000, output_tokens=100)
    load = ServiceLoad(spec, tr, np.zeros(len(tr), dtype=np.int64), 120.0)
    targets = Targets(
        decode_tps_per_instance=(("decode:h100-sxm:tp4", 50.0),),
        prefill_tps_per_instance=(("prefill:h100-sxm:tp4", 5000.0),),
        prefill_gpu_util=0.7, decode_gpu_util=0.7, prefill_sm_activity=0.6, decode_sm_activity=0.5,
        ttft_s=1.0, tbt_s=0.05, requests_per_s_per_prefill=5.0, requests_per_s_per_decode=5.0,
        mean_input_tokens=1000.0, mean_output_tokens=100.0,
    )  # fmt: skip
    plan = oracle_plan(load, targets, horizon_s=630.0)
    first, last = plan.windows
    gpus = [(w.prefill + w.decode) * 4 for w in plan.windows]
    assert (first.start_s, last.start_s) == (0.0, 600.0)
    assert plan.gpu_hours == pytest.approx((gpus[0] * 600 + gpus[1] * 30) / 3600)  # not a full last window
