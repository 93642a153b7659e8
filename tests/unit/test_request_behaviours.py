"""Engine behaviours of the request engine (``simulation.engine``): phase timestamps, percentiles,
KV-transfer concurrency, direct KV settings, the batched-token cap, chunked prefill, KV reservation
and preemption, and the mixed pool."""

from __future__ import annotations

import csv
import io
import math

import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.config.profile_sources import engine_calibration
from heteroscale.domain.hardware import Role
from heteroscale.perf import Calibration
from heteroscale.sim.records import RecordWriter
from heteroscale.sim.request_engine import RequestEngine
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import EngineSettings, KvReservation, KvTransfer, Preemption
from tests.support import builders as b


def engine_for(
    tr, prefill: int = 1, decode: int = 1, calibration: Calibration | None = None, **engine
) -> tuple[SimulationRun, RequestEngine, io.StringIO]:
    sc = b.scenario(prefill=prefill, decode=decode, engine=EngineSettings(**engine), max_tail_s=36_000.0)
    r = SimulationRun(sc, calibration or calibration_for(sc), loads=b.loads_for(sc, tr))
    eng = r.engine
    assert isinstance(eng, RequestEngine)
    buf = io.StringIO()
    eng.records = RecordWriter(buf)
    r._deploy_initial()
    return r, eng, buf


def rows(buf: io.StringIO) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(buf.getvalue())))


def f(row: dict[str, str], key: str) -> float:
    return float(row[key])


def decode_perf(r: SimulationRun):
    return next(p for (_, s), p in r.perfs.items() if s.role is Role.DECODE)


def prefill_perf(r: SimulationRun):
    return next(p for (_, s), p in r.perfs.items() if s.role is Role.PREFILL)


def step_until_done(eng: RequestEngine, n: int, watch=None, step_s: float = 0.05, limit_s: float = 20_000.0) -> None:
    """Run in small steps until ``n`` requests are done (bounded), calling ``watch`` after each step."""
    t = eng.now_s
    while sum(s.completed + s.failed for s in eng.stats) < n:
        t += step_s
        assert t < limit_s, "requests never finished"
        eng.run_until(t)
        if watch is not None:
            watch()


# -- phase timestamps and percentiles -----------------------------------------------------------------


def test_phase_timestamps_are_ordered_and_split_ttft_exactly() -> None:
    _, eng, buf = engine_for(b.trace(n=200, rate_rps=20.0, input_tokens=3000, output_tokens=50), prefill=1, decode=1)
    eng.run_until(2_000.0)
    ok = [r for r in rows(buf) if r["status"] == "ok"]
    assert len(ok) == 200
    for r in ok:
        t = [f(r, k) for k in ("arrival_s", "prefill_queued_s", "prefill_start_s", "prefill_end_s")]
        t += [f(r, k) for k in ("transfer_start_s", "transfer_end_s", "decode_admit_s", "finish_s")]
        assert t == sorted(t), r
        queueing = f(r, "prefill_start_s") - f(r, "arrival_s")
        prefill = f(r, "prefill_end_s") - f(r, "prefill_start_s")
        transfer = f(r, "transfer_end_s") - f(r, "prefill_end_s")
        admission = f(r, "first_token_s") - f(r, "transfer_end_s")
        assert queueing + prefill + transfer + admission == pytest.approx(f(r, "ttft_s"), abs=2e-6)
    # at 20 req/s of 3,000-token prompts one prefill instance queues: some requests wait before prefill
    assert max(f(r, "prefill_start_s") - f(r, "arrival_s") for r in ok) > 0.1


def test_a_lone_request_s_phases_are_its_prefill_time_and_its_transfer_time() -> None:
    r, eng, buf = engine_for(b.trace(n=1, input_tokens=2000, output_tokens=11), kv_link_gbyte_per_s=10.0)
    eng.run_until(100.0)
    (row,) = rows(buf)
    perf = prefill_perf(r)
    assert f(row, "prefill_end_s") - f(row, "prefill_start_s") == pytest.approx(
        perf.prefill_time_s(2000, 2000.0 * 2000.0), abs=2e-6
    )
    xfer = 2000 * perf.kv_bytes_per_token / 10e9 + r.scenario.topology.kv_bandwidth.setup_s
    assert f(row, "transfer_end_s") - f(row, "prefill_end_s") == pytest.approx(xfer, abs=2e-6)
    # SplitwiseSim's TBT: (completion − prefill end) / every output token
    want = (f(row, "finish_s") - f(row, "prefill_end_s")) / 11
    assert f(row, "tbt_splitwise_s") == pytest.approx(want, abs=2e-6)


def test_summary_has_p50_p90_p99_of_every_latency() -> None:
    sc = b.scenario(prefill=1, decode=1)
    s = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, b.trace(n=300, rate_rps=8.0))).run()
    lat = s["latency"]
    assert set(lat) == {"ttft_s", "tbt_s", "e2e_s", "queueing_s", "transfer_s", "ttft_splitwise_s", "tbt_splitwise_s"}
    for name, q in lat.items():
        assert q["p50"] <= q["p90"] <= q["p99"], name
    assert lat["ttft_s"]["p50"] == s["ttft_p50_s"] and lat["ttft_s"]["p90"] == s["ttft_p90_s"]
    assert lat["e2e_s"]["p50"] > lat["ttft_s"]["p50"]
    assert lat["transfer_s"]["p50"] > 0.0
    assert s["services"]["svc"]["latency"]["e2e_s"] == lat["e2e_s"]


# -- KV transfer and direct KV settings ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [KvTransfer.QUEUED, KvTransfer.PARALLEL])
def test_transfer_concurrency_queued_vs_parallel_by_hand(mode: KvTransfer) -> None:
    # three prompts arrive together: the first runs alone, the other two queue behind it and are
    # prefilled in one batch; each sends 4,000 tokens of KV at 1 GB/s
    tr = b.trace(n=3, rate_rps=1e6, input_tokens=4000, output_tokens=5)
    r, eng, buf = engine_for(tr, kv_transfer=mode, kv_link_gbyte_per_s=1.0, kv_link_latency_s=0.01)
    eng.run_until(200.0)
    first, *pair = sorted(rows(buf), key=lambda x: f(x, "transfer_end_s"))
    assert pair[0]["prefill_end_s"] == pair[1]["prefill_end_s"] != first["prefill_end_s"]
    one = 4000 * prefill_perf(r).kv_bytes_per_token / 1e9  # seconds on the wire per prompt
    assert f(first, "transfer_end_s") - f(first, "prefill_end_s") == pytest.approx(one + 0.01, abs=2e-6)
    pe = f(pair[0], "prefill_end_s")
    ends = [f(x, "transfer_end_s") for x in pair]
    if mode is KvTransfer.QUEUED:  # one after the other, behind the first prompt's KV on the NIC
        start = max(pe, f(first, "prefill_end_s") + one)
        assert ends == pytest.approx([start + one + 0.01, start + 2 * one + 0.01], abs=2e-6)
    else:  # side by side at the full link rate
        assert ends == pytest.approx([pe + one + 0.01, pe + one + 0.01], abs=2e-6)


def test_kv_capacity_set_directly_in_tokens_or_gib() -> None:
    tr = b.trace(n=1)
    _, eng, _ = engine_for(tr, kv_capacity_tokens=50_000)
    assert eng.services[0].d_all[0].cap_tokens == 50_000
    r, eng, _ = engine_for(tr, kv_capacity_gib=16.0)
    assert eng.services[0].d_all[0].cap_tokens == int(16 * 1024**3 / decode_perf(r).kv_bytes_per_token)


# -- batching: the token cap and chunked prefill --------------------------------------------------------


def test_max_batched_tokens_caps_the_decode_batch_and_the_prefill_batch() -> None:
    tr = b.trace(n=40, rate_rps=1e6, input_tokens=1000, output_tokens=200)
    _, eng, _ = engine_for(tr, max_batched_tokens=2500)
    d = eng.services[0].d_all[0]
    p = eng.services[0].p_all[0]
    peaks = {"b": 0, "prefill": 0}

    def watch() -> None:
        peaks["b"] = max(peaks["b"], d.b)
        if p.busy:
            peaks["prefill"] = max(peaks["prefill"], p.batch_tokens)

    step_until_done(eng, 40, watch, step_s=0.01)
    assert peaks["prefill"] == 2000  # two 1,000-token prompts fit 2,500, three do not
    assert peaks["b"] == 40  # 40 decodes are 40 tokens an iteration: under the cap
    _, eng, _ = engine_for(tr, max_batched_tokens=16)
    d = eng.services[0].d_all[0]
    peaks["b"] = 0
    step_until_done(eng, 40, lambda: peaks.__setitem__("b", max(peaks["b"], d.b)), step_s=0.01)
    assert peaks["b"] == 16


def test_chunked_prefill_bounds_the_tokens_of_every_batch_and_still_completes() -> None:
    tr = b.trace(n=3, rate_rps=1e6, input_tokens=[10_000, 300, 300], output_tokens=5)
    _, eng, buf = engine_for(tr, prefill_chunk_tokens=2048)
    sizes: list[int] = []
    original = eng._run_batch  # every prefill batch starts here

    def observe(inst, batch, tokens, attn, prefix, now_s):
        original(inst, batch, tokens, attn, prefix, now_s)
        sizes.append(inst.batch_tokens)

    eng._run_batch = observe  # type: ignore[method-assign]
    step_until_done(eng, 3)
    assert sum(sizes) == 10_600
    assert max(sizes) == 2048 and len(sizes) == math.ceil(10_600 / 2048)
    # unchunked, the long prompt runs whole in one batch
    _, eng2, _ = engine_for(tr)
    sizes2: list[int] = []
    original2 = eng2._run_batch  # every prefill batch starts here

    def observe2(inst, batch, tokens, attn, prefix, now_s):
        original2(inst, batch, tokens, attn, prefix, now_s)
        sizes2.append(inst.batch_tokens)

    eng2._run_batch = observe2  # type: ignore[method-assign]
    step_until_done(eng2, 3)
    assert max(sizes2) >= 10_000
    assert len(rows(buf)) == 3


@pytest.mark.parametrize("profile", [None, "measured-2023"])
def test_every_prefill_batch_takes_the_performance_model_s_time_bit_for_bit(profile: str | None) -> None:
    # the engine works a batch's time out in place (its hot path): it must stay the model's to the last
    # bit, for a request that finds its instance idle (it is the batch) and for batches off the queue;
    # measured-2023's all-reduce knee (perf.model) makes the first, long batch take the large-message rate
    inputs = [9000, 500, 700, 900]
    tr = b.trace(n=4, rate_rps=1e6, input_tokens=inputs, output_tokens=5, cached_tokens=[0, 200, 0, 300])
    r, eng, _ = engine_for(tr, calibration=None if profile is None else engine_calibration(profile))
    perf = prefill_perf(r)
    if profile is not None:
        assert inputs[0] >= perf.large_message_tokens > sum(inputs[1:])
        assert perf.prefill_comm_large_s_per_token > perf.prefill_comm_s_per_token
    sizes: list[int] = []
    original = eng._run_batch

    def observe(inst, batch, tokens, attn, prefix, now_s):
        original(inst, batch, tokens, attn, prefix, now_s)
        sizes.append(len(batch))
        want = perf.prefill_time_s(tokens, attn, prefix)
        assert inst.batch_end == now_s + want
        assert inst.batch_kfrac == perf.prefill_kernel_s(tokens, attn, prefix) / want

    eng._run_batch = observe  # type: ignore[method-assign]
    step_until_done(eng, 4)
    assert sizes == [1, 3]  # the first finds the instance idle; the rest queue behind it


# -- KV reservation and preemption --------------------------------------------------------------------


def _burst(n: int = 30):
    return b.trace(n=n, rate_rps=1e6, input_tokens=1000, output_tokens=2000)


def test_reservation_at_admission_never_preempts_and_admits_fewer() -> None:
    _, eng, buf = engine_for(_burst(), kv_capacity_tokens=20_000)
    d = eng.services[0].d_all[0]
    peak = [0]
    step_until_done(eng, 30, lambda: peak.__setitem__(0, max(peak[0], d.b)), step_s=0.5)
    assert peak[0] == 6  # 20,000 // (1,000 + 2,000) reserved tokens each
    assert all(r["status"] == "ok" and r["preemptions"] == "0" for r in rows(buf))


@pytest.mark.parametrize("mode", [Preemption.RECOMPUTE, Preemption.SWAP])
def test_kv_growing_to_capacity_preempts_and_every_request_still_completes(mode: Preemption) -> None:
    _, eng, buf = engine_for(_burst(), kv_capacity_tokens=20_000, kv_reservation=KvReservation.GROW, preemption=mode)
    d = eng.services[0].d_all[0]
    peak = [0, 0.0]

    def watch() -> None:
        peak[0] = max(peak[0], d.b)
        peak[1] = max(peak[1], d.ctx)

    step_until_done(eng, 30, watch, step_s=0.5)
    got = rows(buf)
    assert all(r["status"] == "ok" for r in got) and len(got) == 30
    assert peak[0] > 6  # more members than full reservation allows
    assert peak[1] <= 20_000 + 1e-6  # the KV never exceeds the capacity
    assert sum(int(r["preemptions"]) for r in got) > 0


def test_preemption_stalls_cost_what_the_mode_says() -> None:
    """Recompute prefills the victim's context again; swap copies it at 25 GB/s: for Llama-3.1-70B a
    copy is far cheaper than a prefill, so the swap run finishes sooner."""
    ends = {}
    for mode in (Preemption.RECOMPUTE, Preemption.SWAP):
        _, eng, buf = engine_for(
            _burst(), kv_capacity_tokens=20_000, kv_reservation=KvReservation.GROW, preemption=mode
        )
        step_until_done(eng, 30, step_s=0.5)
        ends[mode] = max(f(r, "finish_s") for r in rows(buf))
    assert ends[Preemption.SWAP] < ends[Preemption.RECOMPUTE]


# -- mixed pool ---------------------------------------------------------------------------------------


def test_mixed_pool_lends_nothing_under_light_load() -> None:
    tr = b.trace(n=200, rate_rps=2.0)
    sc_off = b.scenario(prefill=1, decode=1)
    sc_on = b.scenario(prefill=1, decode=1, engine=EngineSettings(mixed_pool=True))
    off = SimulationRun(sc_off, calibration_for(sc_off), loads=b.loads_for(sc_off, tr)).run()
    on = SimulationRun(sc_on, calibration_for(sc_on), loads=b.loads_for(sc_on, tr)).run()
    for s in (off, on):
        s.pop("wall_s")
        s.pop("engine_settings")
    assert on == off


def test_mixed_pool_lends_prompts_to_the_decode_pool_under_prefill_overload() -> None:
    # 6,000-token prompts at 10/s swamp one prefill instance (its queue passes 8,192 tokens at once)
    tr = b.trace(n=100, rate_rps=10.0, input_tokens=6000, output_tokens=20)
    _, eng, buf = engine_for(tr, prefill=1, decode=2, mixed_pool=True)
    step_until_done(eng, 100, step_s=1.0)
    got = rows(buf)
    assert all(r["status"] == "ok" for r in got)
    lent = [r for r in got if r["lent"] == "1"]
    # lent: a prompt run on a decode instance or a decode on a prefill instance, nothing else
    assert all(r["prefill_instance"].startswith("svc-d") or r["decode_instance"].startswith("svc-p") for r in lent)
    assert any(r["prefill_instance"].startswith("svc-d") for r in lent)
    # both phases on one instance need no transfer
    same = [r for r in got if r["prefill_instance"] == r["decode_instance"]]
    assert same and all(r["transfer_start_s"] == r["transfer_end_s"] == r["prefill_end_s"] for r in same)
    _, eng_off, buf_off = engine_for(tr, prefill=1, decode=2)
    step_until_done(eng_off, 100, step_s=1.0)
    ttft = sorted(f(r, "ttft_s") for r in got)
    ttft_off = sorted(f(r, "ttft_s") for r in rows(buf_off))
    assert ttft[-1] < ttft_off[-1]  # lending relieves the prefill queue


def test_mixed_pool_lends_decodes_to_the_prefill_pool_when_decode_kv_is_full() -> None:
    tr = b.trace(n=30, rate_rps=1e6, input_tokens=1000, output_tokens=2000)
    _, eng, buf = engine_for(tr, mixed_pool=True, kv_capacity_tokens=20_000)
    step_until_done(eng, 30, step_s=0.5)
    got = rows(buf)
    assert all(r["status"] == "ok" for r in got)
    on_prefill = [r for r in got if r["decode_instance"].startswith("svc-p")]
    assert on_prefill and all(r["lent"] == "1" for r in on_prefill)


def test_mixed_pool_books_a_decode_at_arrival_and_lends_it_when_the_decode_pool_is_booked_full() -> None:
    """SplitwiseSim judges a decode instance full on the KV booked when requests arrive (prompt +
    output each, from arrival), not on what its batch holds when a prompt ends."""
    # a burst of 4,000-token prompts: from the fifth arrival on, 5 × 4,010 booked tokens reach the
    # decode instance's 20,000 while it holds nothing yet (the first prompt takes ≈ 0.4 s)
    tr = b.trace(n=12, rate_rps=1e6, input_tokens=4000, output_tokens=10)
    engine = {"mixed_pool": True, "kv_capacity_tokens": 20_000, "mixed_pool_prompt_tokens": 10**9}
    _, eng, buf = engine_for(tr, prefill=1, decode=1, **engine)
    eng.run_until(0.01)
    p, d = eng.services[0].p_all[0], eng.services[0].d_all[0]
    placed = sorted([*p.batch, *p.queue, *d.lent_batch, *d.lent_queue], key=lambda r: r.rid)
    assert len(placed) == 12 and d.resv == 0
    assert all(math.isnan(r.t_pe) for r in placed)  # no prompt has ended
    assert [r.dinst for r in placed[:4]] == [d] * 4
    assert p.shadow is not None and placed[4].dinst is p.shadow  # the fifth: lent at arrival
    step_until_done(eng, 12, step_s=0.5)
    got = rows(buf)
    assert all(r["status"] == "ok" for r in got)
    on_prefill = [r for r in got if r["decode_instance"] == "svc-p0"]
    assert on_prefill and all(r["lent"] == "1" for r in on_prefill)


def test_mixed_pool_keeps_an_instance_until_it_is_idle_then_returns_it_to_its_pool() -> None:
    tr = b.trace(n=100, rate_rps=10.0, input_tokens=6000, output_tokens=20)
    _, eng, _ = engine_for(tr, prefill=1, decode=2, mixed_pool=True)
    sv = eng.services[0]
    seen_mixed: set[str] = set()

    def watch() -> None:
        assert sv.pools is not None
        for x in sv.pools.mixed:
            assert x.in_mixed_pool
            seen_mixed.add(x.id)

    step_until_done(eng, 100, watch=watch, step_s=0.25)
    assert seen_mixed  # the overload moved instances into the mixed pool
    ps = sv.pools
    assert ps is not None and ps.mixed == []  # all idle now: every one is back in its own pool
    assert set(ps.prompt) == set(sv.p_all) and set(ps.token) == set(sv.d_all)
    assert not any(x.in_mixed_pool for x in (*sv.p_all, *sv.d_all))


# -- the requests file ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "name"), [("plain", "requests.csv"), ("gzip", "requests.csv.gz"), ("off", None)])
def test_requests_csv_plain_gzip_or_off(tmp_path, mode: str, name: str | None) -> None:
    import gzip

    sc = b.scenario(prefill=1, decode=1)
    out = tmp_path / mode
    SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, b.trace(n=50)), out_dir=out, requests_csv=mode).run()
    files = sorted(p.name for p in out.iterdir() if p.name.startswith("requests"))
    assert files == ([] if name is None else [name])
    if name is not None:
        opener = gzip.open if mode == "gzip" else open
        with opener(out / name, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        assert len(lines) == 51 and lines[0].endswith(",status")


def test_cli_no_requests_csv_writes_the_other_outputs_only(tmp_path) -> None:
    import json

    from heteroscale.cli.main import main

    assert main(["simulate", "--json", "--scenario", "small-mixed", "--duration-s", "120", "--out", str(tmp_path),
                 "--no-requests-csv"]) == 0  # fmt: skip
    names = {p.name for p in tmp_path.iterdir()}
    assert "requests.csv" not in names and "requests.csv.gz" not in names
    assert json.loads((tmp_path / "summary.json").read_text())["requests_total"] > 0


# -- every combination accounts for every request, scale-in included -----------------------------------


@pytest.mark.parametrize("mode", ["drain", "kill"])
@pytest.mark.parametrize(
    "engine",
    [
        {"mixed_pool": True, "kv_capacity_tokens": 20_000},
        {"mixed_pool": True, "prefill_chunk_tokens": 1024, "kv_transfer": KvTransfer.PARALLEL},
        {"kv_reservation": KvReservation.GROW, "kv_capacity_tokens": 20_000, "preemption": Preemption.SWAP},
        {"kv_reservation": KvReservation.GROW, "kv_capacity_tokens": 20_000, "mixed_pool": True},
    ],
)
def test_every_request_ends_once_under_scale_in(engine, mode: str) -> None:
    from heteroscale.domain.state import Lifecycle, ScaleInMode

    tr = b.trace(n=120, rate_rps=6.0, input_tokens=[6000, 800, 2500] * 40, output_tokens=[50, 900, 300] * 40)
    _, eng, buf = engine_for(tr, prefill=2, decode=2, **engine)
    eng.run_until(8.0)
    victims = [eng.services[0].p_all[0], eng.services[0].d_all[0]]
    for v in victims:
        if mode == "drain":
            eng.remove(v.id, ScaleInMode.DRAIN, 600.0, 8.0)
        else:
            eng.remove(v.id, ScaleInMode.KILL, 5.0, 8.0)
    step_until_done(eng, 120, step_s=1.0)
    got = rows(buf)
    assert len(got) == 120 and len({x["request"] for x in got}) == 120  # each request ends exactly once
    assert eng.in_flight == 0
    assert all(v.lifecycle is Lifecycle.GONE for v in victims)
    if mode == "drain":  # a drain with a long grace loses nothing
        assert all(x["status"] == "ok" for x in got)
    else:
        assert all(x["status"] in ("ok", "failed:scale-in") for x in got)
        assert any(x["status"] == "failed:scale-in" for x in got)  # the kill caught work in flight
    # the behaviour under test happened
    if engine.get("mixed_pool"):
        assert any(x["lent"] == "1" for x in got)
    if engine.get("kv_reservation") is KvReservation.GROW:
        assert any(x["preemptions"] != "0" for x in got)
