"""Request-level engine: lifecycle, latency definitions, KV transfer, analytic decode, determinism."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.sim.records import RecordWriter
from heteroscale.sim.request_engine import RequestEngine
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import Fidelity
from tests.support import builders as b


def run(sc, tr, **kw):
    r = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr), **kw)
    return r, r.run()


def test_light_load_completes_every_request_with_sane_figures() -> None:
    sc = b.scenario(prefill=2, decode=2)
    _, s = run(sc, b.trace(n=500, rate_rps=2.0))
    assert s["requests_total"] == 500
    assert s["requests_completed"] == 500
    assert s["requests_failed"] == 0
    assert s["slo_attainment"] == 1.0
    for key in ("avg_gpu_util", "avg_sm_activity"):
        assert 0.0 < s[key] <= 1.0
    for role in ("prefill", "decode"):
        assert 0.0 < s["avg_gpu_util_by_role"][role] <= 1.0
        assert s["avg_sm_activity_by_role"][role] < s["avg_gpu_util_by_role"][role]
    # four TP4 instances billed for the whole run
    assert s["gpu_hours"] == pytest.approx(16 * s["simulated_s"] / 3600.0, rel=1e-6)
    assert s["scale_actions"] == 0


def test_same_seed_same_summary_and_event_count() -> None:
    sc = b.scenario()
    tr = b.trace(n=300, rate_rps=4.0)
    _, s1 = run(sc, tr)
    _, s2 = run(sc, tr)
    s1.pop("wall_s")
    s2.pop("wall_s")
    assert s1 == s2


def test_ttft_of_a_lone_request_is_prefill_plus_transfer() -> None:
    sc = b.scenario(prefill=1, decode=1)
    tr = b.trace(n=1, rate_rps=1.0, input_tokens=2000, output_tokens=11)
    r, s = run(sc, tr)
    perf = next(iter(r.perfs.values()))
    prefill_s = perf.prefill_time_s(2000, 2000.0 * 2000.0)
    xfer_min = 2000 * perf.kv_bytes_per_token / (4 * 400e9 / 8) + sc.topology.kv_bandwidth.setup_s
    assert s["ttft_p50_s"] >= prefill_s
    assert s["ttft_p50_s"] == pytest.approx(prefill_s + xfer_min, rel=0.3)
    # TBT: mean of the 10 decode steps while the context grows from 2000 tokens
    steps = [perf.decode_step_time_s(1, 2000 + i) for i in range(10)]
    assert s["tbt_p50_s"] == pytest.approx(sum(steps) / 10, rel=1e-3)


def test_kv_transfer_across_big_pods_is_slower_than_within_a_mini_pod() -> None:
    same = b.topology([b.node("s2a", "s1a", "n0"), b.node("s2a", "s1a", "n1")])
    cross = b.topology([b.node("s2a", "s1a", "n0"), b.node("s2b", "s1b", "n1")])
    tr = b.trace(n=1, input_tokens=8000, output_tokens=2)
    svc = b.service()
    _, near = run(b.scenario(svc, prefill=1, decode=1, topo=b.topology([same.nodes[0], same.nodes[1]])), tr)
    # one node each side: prefill on n0 (first fit), decode needs the second node when n0 is full
    full0 = b.topology([b.node("s2a", "s1a", "n0", gpus=4), b.node("s2b", "s1b", "n1", gpus=4)])
    _, far = run(b.scenario(svc, prefill=1, decode=1, topo=full0), tr)
    assert cross.nodes[0].path != cross.nodes[1].path
    assert far["ttft_p50_s"] > near["ttft_p50_s"]


def _decode_reference(perf, admissions: list[tuple[float, int, int]]) -> list[float]:
    """Brute-force per-step decode of one instance: (admit time, input, output) → finish times."""
    pending = sorted(admissions)
    members: list[list[float]] = []  # [remaining steps, context, index]
    finish = [0.0] * len(admissions)
    order = {id(a): i for i, a in enumerate(admissions)}
    t = 0.0
    for _ in range(1_000_000):
        while pending and pending[0][0] <= t:
            a = pending.pop(0)
            members.append([a[2] - 1, a[1], order[id(a)]])
        if not members:
            if not pending:
                break
            t = pending[0][0]
            continue
        ctx = sum(m[1] for m in members)
        t += perf.decode_step_time_s(len(members), int(ctx))
        for m in members:
            m[0] -= 1
            m[1] += 1
        for m in [m for m in members if m[0] <= 0]:
            finish[int(m[2])] = t
            members.remove(m)
    return finish


def test_analytic_decode_matches_a_step_by_step_reference() -> None:
    sc = b.scenario(prefill=1, decode=1)
    r = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, b.trace(n=1)))
    eng = r.engine
    assert isinstance(eng, RequestEngine)
    eng.launch(0, sc.services[0].spec.decode_shapes[0], "dg", "n0", 0.0, warm=True)
    d = eng.services[0].d_all[0]
    rng = np.random.default_rng(7)
    admissions = [
        (float(t), int(i), int(o))
        for t, i, o in zip(
            np.sort(rng.uniform(0, 5, 40)), rng.integers(100, 3000, 40), rng.integers(2, 400, 40), strict=True
        )
    ]
    from heteroscale.sim.request_engine import Req

    buf = io.StringIO()
    eng.records = RecordWriter(buf)  # each completion's finish time, as the records write it
    for k, (t, inp, out) in enumerate(admissions):
        eng.run_until(t)
        req = Req(k, 0, t, inp, out, 0)
        eng.in_flight += 1
        eng._advance(d, t)
        eng._admit(d, req, t)
        eng._reschedule(d, t)
    eng.run_until(10_000.0)
    finish_engine = {int(r["request"]): float(r["finish_s"]) for r in csv.DictReader(io.StringIO(buf.getvalue()))}
    ref = _decode_reference(d.perf, admissions)
    got = [finish_engine[k] for k in range(len(admissions))]
    for g, want, (t0, _, _) in zip(got, ref, admissions, strict=True):
        # the engine admits mid-step (continuous time); the reference at step boundaries
        assert g == pytest.approx(want, rel=0.01, abs=0.06), (t0, g, want)


def test_event_count_grows_with_requests_not_tokens() -> None:
    sc = b.scenario(prefill=2, decode=4)
    _, short = run(sc, b.trace(n=400, rate_rps=1.0, output_tokens=50))
    _, long = run(sc, b.trace(n=400, rate_rps=1.0, output_tokens=1000))
    assert long["events"] < 1.5 * short["events"]
    assert short["events"] < 10 * 400


def test_kv_capacity_bounds_the_decode_batch() -> None:
    sc = b.scenario(prefill=2, decode=1, max_tail_s=36_000.0)
    perf = None
    r = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, b.trace(n=1)))
    for (_svc, shape), p in r.perfs.items():
        if shape.role is Role.DECODE:
            perf = p
    assert perf is not None
    per_req = 60_000
    burst = b.trace(
        n=int(perf.kv_capacity_tokens / per_req) + 20,
        rate_rps=500.0,
        input_tokens=50_000,
        output_tokens=10_000,
    )
    r2 = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, burst))
    r2._deploy_initial()
    r2.engine.run_until(30.0)
    d = r2.engine.services[0].d_all[0]  # type: ignore[attr-defined]
    assert d.resv <= perf.kv_capacity_tokens
    assert len(d.waiting) > 0  # the rest waits for KV memory


def test_prefix_cache_hits_skip_prefill_compute_and_transfer() -> None:
    sc_hit = b.scenario(b.service(prefix_cache_hit_rate=0.5))
    sc_miss = b.scenario()
    tr = b.trace(n=300, rate_rps=2.0, input_tokens=4000)
    _, hit = run(sc_hit, tr)
    _, miss = run(sc_miss, tr)
    assert hit["avg_tps_by_role"]["prefill"] == pytest.approx(0.5 * miss["avg_tps_by_role"]["prefill"], rel=0.02)
    assert hit["ttft_p50_s"] < miss["ttft_p50_s"]


def test_trace_cached_tokens_take_precedence_over_hit_rate() -> None:
    sc = b.scenario(b.service(prefix_cache_hit_rate=0.9))
    tr = b.trace(n=100, input_tokens=1000, cached_tokens=[0] * 100)
    r, s = run(sc, tr)
    assert int(r.loads[0].cached_tokens.sum()) == 0
    assert s["avg_tps_by_role"]["prefill"] * s["simulated_s"] == pytest.approx(100 * 1000, rel=1e-6)


@pytest.mark.parametrize(
    ("mode", "grace_s", "expect_failed"),
    [
        (ScaleInMode.KILL, 0.0, True),  # killed at once: in-flight requests fail
        (ScaleInMode.KILL, 5.0, True),  # a short termination grace: long decodes outlive it and fail
        (ScaleInMode.DRAIN, 600.0, False),  # drained: in-flight work finishes
    ],
)
def test_scale_in_modes(mode: ScaleInMode, grace_s: float, expect_failed: bool) -> None:
    sc = b.scenario(prefill=2, decode=2)
    tr = b.trace(n=600, rate_rps=6.0, output_tokens=400)
    r = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr))
    r._deploy_initial()
    eng = r.engine
    eng.run_until(40.0)
    victim = next(i for i in r.cluster.live if i.role is Role.DECODE)
    eng.remove(victim.id, mode, grace_s, 40.0)
    eng.run_until(5_000.0)
    s_failed = sum(st.failed for st in eng.stats)
    assert (s_failed > 0) is expect_failed
    assert victim.lifecycle is Lifecycle.GONE
    done = sum(st.completed for st in eng.stats)
    assert done + s_failed == 600


def test_cold_start_delays_a_launched_instance_and_bills_from_launch() -> None:
    sc = b.scenario(prefill=1, decode=1, cold_start_s=120.0)
    r = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, b.trace(n=10)))
    r._deploy_initial()
    eng = r.engine
    shape = sc.services[0].spec.prefill_shapes[0]
    inst_id = eng.launch(0, shape, "dg", "n1", 10.0, warm=False)
    inst = r.cluster.instances[inst_id]
    eng.run_until(129.0)
    assert inst.lifecycle is Lifecycle.STARTING
    eng.run_until(131.0)
    assert inst.lifecycle is Lifecycle.READY
    billing = r.cluster.close_billing(131.0)
    assert billing.gpu_s_by_role["prefill"] == pytest.approx(4 * 131.0 + 4 * 121.0)


def test_fluid_and_request_agree_on_a_moderate_load() -> None:
    sc = b.scenario(prefill=2, decode=2)
    tr = b.trace(n=3000, rate_rps=4.0, input_tokens=1500, output_tokens=150)
    _, req = run(sc, tr)
    _, flu = run(sc, tr, fidelity=Fidelity.FLUID)
    assert flu["latency_estimated"] is True
    for role in ("prefill", "decode"):
        assert flu["avg_gpu_util_by_role"][role] == pytest.approx(req["avg_gpu_util_by_role"][role], rel=0.1)
        assert flu["avg_tps_by_role"][role] == pytest.approx(req["avg_tps_by_role"][role], rel=0.1)
    assert flu["ttft_p50_s"] == pytest.approx(req["ttft_p50_s"], rel=0.1)
    assert flu["tbt_p50_s"] == pytest.approx(req["tbt_p50_s"], rel=0.1)


# -- drain-aware scale-in -------------------------------------------------------------------------

# every KV transfer crawls (~60 s for a 4,000-token prompt), so a test can remove an instance mid-transfer
SLOW_KV = {k: 1e-4 for k in ("same_node", "same_s1", "same_s2", "same_cluster", "cross_cluster")}


def engine_for(sc, tr) -> tuple[SimulationRun, RequestEngine]:
    r = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr))
    r._deploy_initial()
    eng = r.engine
    assert isinstance(eng, RequestEngine)
    return r, eng


def run_until_true(eng: RequestEngine, cond, step_s: float = 0.25, limit_s: float = 3_600.0) -> float:
    t = eng.now_s
    while not cond():
        t += step_s
        assert t < limit_s, "condition never held"
        eng.run_until(t)
    return t


def totals(eng: RequestEngine) -> tuple[int, int, int, int]:
    """(completed, failed, failed by scale-in, failed for KV capacity) over every service."""
    s = eng.stats
    return (
        sum(x.completed for x in s),
        sum(x.failed for x in s),
        sum(x.failed_scale_in for x in s),
        sum(x.failed_kv_capacity for x in s),
    )


@pytest.mark.parametrize("output_tokens", [50, 1])
def test_a_draining_decode_stays_until_its_inbound_transfer_lands_and_its_requests_finish(output_tokens) -> None:
    sc = b.scenario(prefill=1, decode=2, topo=b.topology(**SLOW_KV))
    _, eng = engine_for(sc, b.trace(n=1, input_tokens=4000, output_tokens=output_tokens))
    t = run_until_true(eng, lambda: any(d.inbound for d in eng.services[0].d_all))
    victim = next(d for d in eng.services[0].d_all if d.inbound)
    landing_s = eng.services[0].p_all[0].nic_free_at + sc.topology.kv_bandwidth.setup_s
    assert landing_s > t + 30.0
    eng.remove(victim.id, ScaleInMode.DRAIN, 600.0, t)
    assert victim.lifecycle is Lifecycle.DRAINING
    assert victim not in eng.services[0].d_routable
    eng.run_until(landing_s - 1.0)
    assert victim.lifecycle is Lifecycle.DRAINING and victim.inbound == 1
    eng.run_until(landing_s + 1e-6)
    assert victim.inbound == 0
    if output_tokens > 1:
        assert victim.lifecycle is Lifecycle.DRAINING and victim.b == 1  # admitted, decoding
    else:
        # the request completed on admission: nothing left, gone at once (not at the drain deadline)
        assert victim.lifecycle is Lifecycle.GONE and victim.gone_at_s == pytest.approx(landing_s)
    eng.run_until(landing_s + 60.0)
    assert victim.lifecycle is Lifecycle.GONE
    assert victim.gone_at_s < landing_s + 30.0
    assert totals(eng) == (1, 0, 0, 0)
    assert victim.acc_tokens > 0 or output_tokens == 1


def test_a_draining_prefill_is_not_gone_before_its_outbound_transfer_has_left() -> None:
    sc = b.scenario(prefill=1, decode=1, topo=b.topology(**SLOW_KV))
    _, eng = engine_for(sc, b.trace(n=1, input_tokens=4000, output_tokens=20))
    p = eng.services[0].p_all[0]
    t = run_until_true(eng, lambda: not p.busy and p.nic_free_at > eng.now_s)
    eng.remove(p.id, ScaleInMode.DRAIN, 600.0, t)
    assert p.lifecycle is Lifecycle.DRAINING
    eng.run_until(p.nic_free_at - 1.0)
    assert p.lifecycle is Lifecycle.DRAINING
    eng.run_until(p.nic_free_at + 1.0)
    assert p.lifecycle is Lifecycle.GONE
    eng.run_until(200.0)
    assert totals(eng) == (1, 0, 0, 0)


def test_a_draining_prefill_keeps_the_kv_of_requests_waiting_for_a_decode_instance() -> None:
    """Its KV lives there until a decode instance takes it: the prefill instance may not go first."""
    sc = b.scenario(prefill=1, decode=1)
    _, eng = engine_for(sc, b.trace(n=20, rate_rps=10.0, output_tokens=20))
    p, d = eng.services[0].p_all[0], eng.services[0].d_all[0]
    eng.set_discovery(d.id, False)  # held: no routable decode instance
    eng.run_until(10.0)
    assert len(eng.services[0].pending_decode) == 20
    eng.remove(p.id, ScaleInMode.DRAIN, 600.0, 10.0)
    eng.run_until(60.0)
    assert p.lifecycle is Lifecycle.DRAINING and p.kv_held == 20
    eng.set_discovery(d.id, True)  # routable again: the waiting requests are served, not stranded
    eng.run_until(120.0)
    assert not eng.services[0].pending_decode
    assert p.lifecycle is Lifecycle.GONE
    assert totals(eng) == (20, 0, 0, 0)


def test_killing_a_prefill_that_holds_waiting_kv_fails_those_requests_by_scale_in() -> None:
    sc = b.scenario(prefill=1, decode=1)
    _, eng = engine_for(sc, b.trace(n=20, rate_rps=10.0, output_tokens=20))
    p, d = eng.services[0].p_all[0], eng.services[0].d_all[0]
    eng.set_discovery(d.id, False)
    eng.run_until(10.0)
    eng.remove(p.id, ScaleInMode.KILL, 0.0, 10.0)
    assert p.lifecycle is Lifecycle.GONE
    eng.set_discovery(d.id, True)
    eng.run_until(60.0)
    assert totals(eng) == (0, 20, 20, 0)
    assert eng.in_flight == 0


@pytest.mark.parametrize("role", [Role.PREFILL, Role.DECODE])
def test_draining_every_instance_of_a_role_loses_no_request_with_a_long_grace(role: Role) -> None:
    sc = b.scenario(prefill=2, decode=2, cold_start_s=60.0)
    tr = b.trace(n=400, rate_rps=5.0, output_tokens=400)
    r, eng = engine_for(sc, tr)
    eng.run_until(30.0)
    victims = [i for i in r.cluster.live if i.role is role]
    assert any(i.b if role is Role.DECODE else (i.busy or i.queue) for i in victims)  # type: ignore[attr-defined]
    for v in victims:
        eng.remove(v.id, ScaleInMode.DRAIN, 600.0, 30.0)
    eng.run_until(45.0)
    pending = eng.services[0].pending_prefill if role is Role.PREFILL else eng.services[0].pending_decode
    assert pending  # new work waits for a routable instance of the role
    shape = sc.services[0].spec.shapes(role)[0]
    eng.launch(0, shape, "dg", "m0", 45.0, warm=False)
    eng.run_until(3_000.0)
    assert all(v.lifecycle is Lifecycle.GONE for v in victims)
    assert max(v.gone_at_s for v in victims) < 30.0 + 600.0  # emptied, not killed at the deadline
    assert totals(eng) == (400, 0, 0, 0)


def test_kill_with_a_termination_grace_fails_in_flight_requests_by_scale_in() -> None:
    import io

    from heteroscale.sim.records import RecordWriter

    sc = b.scenario(prefill=2, decode=2)
    # decodes of 3,000 tokens take well over the 30 s grace
    r, eng = engine_for(sc, b.trace(n=300, rate_rps=5.0, output_tokens=3000))
    buf = io.StringIO()
    eng.records = RecordWriter(buf)
    eng.run_until(40.0)
    victim = next(i for i in r.cluster.live if i.role is Role.DECODE)
    busy = victim.b  # type: ignore[attr-defined]
    assert busy > 0
    eng.remove(victim.id, ScaleInMode.KILL, 30.0, 40.0)
    assert victim.lifecycle is Lifecycle.DRAINING
    eng.run_until(70.0 + 1e-6)
    assert victim.lifecycle is Lifecycle.GONE and victim.gone_at_s == pytest.approx(70.0)
    eng.run_until(5_000.0)
    completed, failed, by_scale_in, by_kv = totals(eng)
    assert failed > 0 and by_scale_in == failed and by_kv == 0
    assert completed + failed == 300
    statuses = [line.rsplit(",", 1)[1] for line in buf.getvalue().splitlines()[1:]]
    assert statuses.count("failed:scale-in") == failed
    assert statuses.count("ok") == completed


def test_a_request_that_no_decode_kv_cache_can_hold_fails_for_kv_capacity_without_blocking_others() -> None:
    sc = b.scenario(prefill=1, decode=1)
    probe, _ = engine_for(sc, b.trace(n=1))
    cap = next(p.kv_capacity_tokens for (_, s), p in probe.perfs.items() if s.role is Role.DECODE)
    outputs = [50] * 30
    outputs[3] = cap  # 1,000 prompt tokens + cap output tokens > cap
    _, eng = engine_for(sc, b.trace(n=30, rate_rps=5.0, output_tokens=outputs))
    eng.run_until(600.0)
    assert totals(eng) == (29, 1, 0, 1)
    assert not eng.services[0].d_all[0].waiting


@pytest.mark.parametrize("fidelity", [Fidelity.REQUEST, Fidelity.FLUID])
def test_per_window_slo_counts_add_up_to_the_run(fidelity: Fidelity) -> None:
    sc = b.scenario(prefill=2, decode=2, max_tail_s=600.0)
    tr = b.trace(n=1500, rate_rps=8.0, output_tokens=[100, 3000] * 750)
    r = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr), fidelity=fidelity)
    r._deploy_initial()
    eng = r.engine
    eng.run_until(60.0)
    victim = next(i for i in r.cluster.live if i.role is Role.DECODE)
    eng.remove(victim.id, ScaleInMode.KILL, 0.0, 60.0)
    eng.run_until(3_000.0)  # a multiple of the window, long after the last request
    eng.finalize(3_000.0)
    stats = eng.stats[0]
    rows = r.telemetry.series("svc")
    met = sum(w.slo_met for w in rows)
    missed = sum(w.slo_missed for w in rows)
    assert stats.failed_scale_in == stats.failed > 0
    assert met > 0 and missed >= stats.failed
    if fidelity is Fidelity.REQUEST:
        assert stats.completed + stats.failed == 1500
        assert met == stats.met_slo
        assert met + missed == stats.completed + stats.failed
    else:
        assert met == pytest.approx(stats.met_slo, abs=1)
        assert met + missed == pytest.approx(stats.completed + stats.failed, abs=2)
    assert all(w.slo_met >= 0 and w.slo_missed >= 0 for w in rows)
    assert rows[0].flat()["slo_met"] == rows[0].slo_met


def test_queue_window_mean_sees_a_burst_that_the_window_end_misses() -> None:
    # 40 long prompts arrive within 0.1 s on one prefill instance: they queue for seconds, and the
    # queue is empty again long before the first 30 s window ends
    sc = b.scenario(prefill=1, decode=1)
    r, s = run(sc, b.trace(n=40, rate_rps=400.0, input_tokens=2000, output_tokens=5))
    first = r.telemetry.series(sc.services[0].spec.name)[0]
    assert s["requests_completed"] == 40
    assert first.prefill.queue_len == 0
    # 30 one-second samples: the queue held up to 39 for a few seconds, then nothing
    assert first.prefill.queue_len_mean is not None and 1.0 < first.prefill.queue_len_mean < 39.0
    assert first.prefill.running == 0 and first.prefill.running_mean is not None and first.prefill.running_mean > 0
