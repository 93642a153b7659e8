"""Calibration scorecard: per-SKU efficiencies, the cached-prefix attention term, the generalised fit,
profile formats, held-out scoring, engine profiles and ``heteroscale calibrate``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import pytest

from heteroscale.cli.calibrate import packaged_scorecard
from heteroscale.cli.main import main
from heteroscale.config.catalog import calibration, calibration_for, load_catalog
from heteroscale.config.profile_sources import engine_calibration, packaged_source, pooled_calibration
from heteroscale.domain.hardware import Role
from heteroscale.errors import ConfigError
from heteroscale.perf import Calibration, FitSpec, ProfileRow, SkuEfficiency, build_instance_perf, fit_engine
from heteroscale.perf.calibrate import ENGINE_TERMS
from heteroscale.perf.engines import ENGINE_PROFILES, EngineProfile, assumptions
from heteroscale.perf.model import predict_row_time_s
from heteroscale.perf.profile_formats import parse_distserve_json, parse_kernel_times_csv
from heteroscale.perf.roofline import matmul_params
from heteroscale.perf.scorecard import SPLIT_CONFIG, Source, regime, score_held_out
from heteroscale.reports.calibration import scorecard_json
from heteroscale.sim.runner import SimulationRun
from tests.support import builders as b

DATA = files("heteroscale.data")
KERNEL_HEADER = "run,model,sku,tp,phase,new_tokens,cached_tokens,batch,ctx_per_seq,kernel_ms_median,kernel_ms_min\n"


def _perf(model_id: str, sku_id: str, tp: int, cal: Calibration):
    cat = load_catalog()
    return build_instance_perf(cat.models[model_id], cat.skus[sku_id], tp, cal)


# -- the model: per-SKU efficiencies and the cached-prefix term --------------------------------


def test_a_sku_entry_overrides_the_shared_efficiencies_and_others_keep_them() -> None:
    shared = Calibration.default()
    own = SkuEfficiency("h100-sxm", compute=0.3, attention=0.2, hbm=0.4)
    cal = replace(shared, sku_efficiencies=(own,))
    h100, a100 = _perf("llama-3.1-8b", "h100-sxm", 1, cal), _perf("llama-3.1-8b", "a100-80g", 1, cal)
    h100_shared, a100_shared = (
        _perf("llama-3.1-8b", "h100-sxm", 1, shared),
        _perf("llama-3.1-8b", "a100-80g", 1, shared),
    )
    assert h100.prefill_s_per_token == pytest.approx(h100_shared.prefill_s_per_token * shared.prefill_compute_eff / 0.3)
    assert h100.prefill_s_per_attn_unit == pytest.approx(
        h100_shared.prefill_s_per_attn_unit * shared.prefill_compute_eff / 0.2
    )
    assert h100.weight_read_s == pytest.approx(h100_shared.weight_read_s * shared.decode_bw_eff / 0.4)
    assert (a100.prefill_s_per_token, a100.weight_read_s) == (
        a100_shared.prefill_s_per_token,
        a100_shared.weight_read_s,
    )


def test_sku_efficiency_rejects_unphysical_values() -> None:
    with pytest.raises(ValueError, match="hbm"):
        SkuEfficiency("h200", 0.5, 0.5, 1.2)


@pytest.mark.parametrize(("new", "cached"), [(1024, 16384), (512, 4096), (4096, 0)])
def test_cached_prefix_attention_counts_every_causal_pair(new: int, cached: int) -> None:
    """Regression: the attention of ``new`` tokens over a ``cached`` prefix was counted as
    ``new·cached/2 + new²/2`` pairs (the cached half missing), 37–40 % low on the H200 rows."""
    model = load_catalog().models["llama-3.1-8b"]
    perf = _perf("llama-3.1-8b", "h200", 1, Calibration.default())
    pairs = new * cached + new * new / 2.0
    per_pair = 4.0 * model.layers * model.heads * model.head_dim
    flops = perf.prefill_flops(new, float(new * (cached + new)), float(new * cached))
    assert flops == pytest.approx(2.0 * matmul_params(model) * new + per_pair * pairs)
    row = ProfileRow("llama-3.1-8b", "h200", 1, Role.PREFILL, new, 1, 0, 0.1, "t", cached_tokens=cached)
    expected = perf.prefill_time_s(new, float(new * (cached + new)), float(new * cached))
    assert predict_row_time_s(perf, row) == expected


def test_the_request_engine_charges_the_cached_prefix_attention() -> None:
    """Regression: the simulator's prefill of a prefix-cache hit paid half the cached attention."""
    sc = b.scenario(prefill=1, decode=1)
    tr = b.trace(n=1, rate_rps=1.0, input_tokens=32_000, output_tokens=2, cached_tokens=[30_000])
    run = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr))
    run.run()
    prefill = [i for i in run.cluster.instances.values() if i.role is Role.PREFILL]
    perf = prefill[0].perf
    new, cached = 2_000, 30_000
    expected = perf.prefill_kernel_s(new, float(new * (cached + new)), float(new * cached))
    assert sum(i.acc_kernel_s for i in prefill) == pytest.approx(expected, rel=1e-9)
    assert expected > perf.prefill_kernel_s(new, float(new * (cached + new))) * 1.05


def test_opt_and_bloom_count_a_two_matrix_mlp() -> None:
    cat = load_catalog()
    opt = cat.models["opt-13b"]
    attention = 4 * opt.hidden_size * opt.heads * opt.head_dim
    assert matmul_params(opt) == opt.layers * (attention + 2 * opt.hidden_size * opt.intermediate_size)
    assert (cat.models["bloom-176b"].mlp_matrices, cat.models["llama-3.1-8b"].mlp_matrices) == (2, 3)
    assert cat.resolve_model("facebook/opt-66b") == "opt-66b"
    assert cat.resolve_model("bigscience/bloom") == "bloom-176b"


# -- the generalised fit ------------------------------------------------------------------------


def _synthetic_rows(truth: Calibration, kernel_only: bool = False) -> list[ProfileRow]:
    rows = []
    for model_id, sku_id, tp in (
        ("llama-3.1-8b", "h100-sxm", 1),
        ("qwen3-32b", "a100-80g", 2),
        ("llama2-70b", "h100-sxm", 4),
    ):
        perf = _perf(model_id, sku_id, tp, truth)
        for prompt, batch, cached in ((128, 1, 0), (2048, 1, 0), (8192, 1, 0), (512, 8, 0), (1024, 1, 8192)):
            row = ProfileRow(model_id, sku_id, tp, Role.PREFILL, prompt, batch, 0, 1.0, "syn", cached_tokens=cached)
            row = replace(row, kernel_only=kernel_only)
            rows.append(replace(row, time_s=predict_row_time_s(perf, row)))
        for batch, ctx in ((1, 1024), (8, 2048), (64, 1024), (256, 4096), (32, 16384)):
            row = replace(
                ProfileRow(model_id, sku_id, tp, Role.DECODE, ctx, batch, batch * ctx, 1.0, "syn"),
                kernel_only=kernel_only,
            )
            rows.append(replace(row, time_s=predict_row_time_s(perf, row)))
    return rows


def test_fit_engine_recovers_per_sku_efficiencies_and_engine_terms_from_exact_rows() -> None:
    truth = replace(
        Calibration.default(),
        allreduce_hop_latency_s=4e-6,
        prefill_step_overhead_s=0.006,
        decode_step_overhead_s=0.002,
        decode_seq_overhead_s=5e-5,
        decode_layer_latency_bytes=3e8,
        sku_efficiencies=(SkuEfficiency("a100-80g", 0.62, 0.4, 0.85), SkuEfficiency("h100-sxm", 0.5, 0.3, 0.8)),
    )
    terms = tuple(t for t in ENGINE_TERMS if t not in ("prefill_layer_latency_bytes", "allreduce_call_latency_s"))
    spec = FitSpec("syn", per_sku=True, separate_attention=True, fitted_terms=terms)
    fit = fit_engine(_synthetic_rows(truth), load_catalog().models, load_catalog().skus, spec)
    for want in truth.sku_efficiencies:
        got = fit.efficiency(want.sku_id)
        assert (got.compute, got.attention, got.hbm) == pytest.approx(
            (want.compute, want.attention, want.hbm), rel=1e-6
        )
    for name in terms:
        assert getattr(fit, name) == pytest.approx(getattr(truth, name), rel=1e-5, abs=1e-12)


@pytest.mark.parametrize(("model_id", "tp"), [("opt-13b", 1), ("opt-13b", 2), ("opt-66b", 4), ("opt-66b", 8)])
def test_worker_dispatch_is_host_time_of_every_step_above_tp_one(model_id: str, tp: int) -> None:
    """The dispatch term adds the same host time to a prefill and a decode step at TP > 1 (the work
    fixed), nothing at TP 1 (one process drives one GPU), and no GPU-busy time."""
    dispatch_s = 0.006
    without = replace(Calibration.default(), sku_efficiencies=(SkuEfficiency("a100-80g", 0.55, 0.45, 0.85),))
    with_dispatch = replace(without, worker_dispatch_overhead_s=dispatch_s)
    plain, dispatched = _perf(model_id, "a100-80g", tp, without), _perf(model_id, "a100-80g", tp, with_dispatch)
    want = dispatch_s if tp > 1 else 0.0
    assert dispatched.prefill_time_s(2048, 2048.0**2) - plain.prefill_time_s(2048, 2048.0**2) == pytest.approx(
        want, abs=1e-12
    )
    assert dispatched.decode_step_time_s(16, 16 * 1024) - plain.decode_step_time_s(16, 16 * 1024) == pytest.approx(
        want, abs=1e-12
    )
    assert dispatched.decode_host_s(16) - plain.decode_host_s(16) == pytest.approx(want, abs=1e-12)
    assert dispatched.prefill_kernel_s(2048, 2048.0**2) == plain.prefill_kernel_s(2048, 2048.0**2)
    assert dispatched.decode_kernel_s(16, 16 * 1024) == pytest.approx(plain.decode_kernel_s(16, 16 * 1024), rel=1e-12)


def test_fit_engine_recovers_link_efficiency_and_worker_dispatch_from_exact_rows() -> None:
    """Rows at TP 1, 2 and 4 tell the TP > 1 step cost from the host terms, and the per-token link
    time from compute: both come back from exact rows."""
    truth = replace(
        Calibration.default(),
        comm_bw_eff=0.25,
        worker_dispatch_overhead_s=0.007,
        prefill_step_overhead_s=0.009,
        decode_step_overhead_s=0.004,
        sku_efficiencies=(SkuEfficiency("a100-80g", 0.62, 0.4, 0.85), SkuEfficiency("h100-sxm", 0.5, 0.3, 0.8)),
    )
    terms = ("prefill_step_overhead_s", "decode_step_overhead_s", "decode_seq_overhead_s", "worker_dispatch_overhead_s")
    spec = FitSpec("syn", per_sku=True, separate_attention=True, fitted_terms=terms, fit_comm_bw=True)
    fit = fit_engine(_synthetic_rows(truth), load_catalog().models, load_catalog().skus, spec)
    assert fit.comm_bw_eff == pytest.approx(0.25, rel=1e-5)
    assert fit.worker_dispatch_overhead_s == pytest.approx(0.007, rel=1e-5)
    assert fit.prefill_step_overhead_s == pytest.approx(0.009, rel=1e-5)
    unfitted = fit_engine(
        _synthetic_rows(truth), load_catalog().models, load_catalog().skus, replace(spec, fit_comm_bw=False)
    )
    assert unfitted.comm_bw_eff == Calibration.default().comm_bw_eff  # the spec's base, as before


def test_kernel_only_rows_fit_no_host_overhead() -> None:
    truth = replace(
        Calibration.default(),
        prefill_step_overhead_s=0.0,
        decode_step_overhead_s=0.0,
        decode_seq_overhead_s=0.0,
        prefill_layer_latency_bytes=2e8,
        decode_layer_latency_bytes=1e8,
        sku_efficiencies=(SkuEfficiency("a100-80g", 0.6, 0.5, 0.8), SkuEfficiency("h100-sxm", 0.55, 0.45, 0.75)),
    )
    spec = EngineProfile("k", "kernels", "x", kernel_only=True).fit_spec()
    spec = replace(spec, prior_weight=0.0)
    fit = fit_engine(_synthetic_rows(truth, kernel_only=True), load_catalog().models, load_catalog().skus, spec)
    assert (fit.prefill_step_overhead_s, fit.decode_step_overhead_s, fit.decode_seq_overhead_s) == (0.0, 0.0, 0.0)
    assert fit.efficiency("h100-sxm").hbm == pytest.approx(0.75, rel=1e-6)
    assert fit.prefill_layer_latency_bytes == pytest.approx(2e8, rel=1e-5)


def test_the_current_profile_keeps_the_pooled_fit_the_simulator_always_used() -> None:
    """The default profile must not move: the pooled llama2-70b fit with the 2025-engine priors."""
    current = calibration("current")
    assert current == pooled_calibration().with_engine_of(Calibration.default())
    assert current.sku_efficiencies == ()
    assert (current.prefill_compute_eff, current.decode_bw_eff) == pytest.approx((0.5702551, 0.9053558), rel=1e-6)
    assert (current.comm_bw_eff, current.worker_dispatch_overhead_s) == (0.7, 0.0)  # the priors: not fitted


def test_every_engine_profile_resolves_and_an_unknown_one_is_a_config_error() -> None:
    for profile in ENGINE_PROFILES:
        assert isinstance(calibration(profile.name), Calibration)
    assert {e.sku_id for e in engine_calibration("gpu-kernels").sku_efficiencies} == {"h200"}
    assert {e.sku_id for e in engine_calibration("measured-2023").sku_efficiencies} == {"a100-80g", "h100-sxm"}
    with pytest.raises(ConfigError, match="unknown perf engine 'turbo'"):
        calibration("turbo")


def test_assumptions_line_names_the_profile_and_its_numbers() -> None:
    line = assumptions("current", calibration("current"))
    assert line.startswith("current: 2025-class engine priors")
    assert "host 3.0 ms/prefill step, 1.5 ms/decode step" in line and "0.57/0.57/0.91" in line
    assert assumptions("my-own", Calibration.default()).startswith("my-own: a calibration given by the caller")


# -- profile formats ------------------------------------------------------------------------------


def test_kernel_times_csv_gives_kernel_only_prefill_and_decode_rows() -> None:
    text = (
        KERNEL_HEADER
        + "2,llama-3.1-8b,h200,1,prefill,1024,16384,1,,54.758,53.9\n1,qwen3-32b,h200,1,decode,,,64,2048,28.957,28.6\n"
    )
    prefill, decode = parse_kernel_times_csv(text, "k.csv")
    assert (prefill.kernel_only, prefill.new_tokens, prefill.cached_tokens, prefill.time_s) == (
        True,
        1024,
        16384,
        0.054758,
    )
    assert prefill.prefix_units == 1024 * 16384 and prefill.attn_units == 1024 * (16384 + 1024)
    assert (decode.phase, decode.batch, decode.context_tokens) == (Role.DECODE, 64, 64 * 2048)
    assert regime(prefill) == "prefill/cached-prefix" and regime(decode) == "decode/batch 33-128/context long"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,llama-3.1-8b,h200,1,prefill,,0,1,,5.0,5.0", r"k\.csv:2: column 'new_tokens'"),
        ("1,llama-3.1-8b,h200,1,train,10,0,1,,5.0,5.0", r"k\.csv:2: phase must be prefill or decode"),
        ("1,llama-3.1-8b,h200,1,decode,,,0,1024,5.0,5.0", r"k\.csv:2: a decode row needs batch >= 1"),
    ],
)
def test_kernel_times_csv_rejects_malformed_lines(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_kernel_times_csv(KERNEL_HEADER + line + "\n", "k.csv")


def test_distserve_json_is_evaluated_on_the_profiled_grid() -> None:
    entry = {"decoding_large_small_bs_threshold": 95, "prefill": [10.0, 0.1, 1e-5]}
    entry |= {"decoding_smallbs": [20.0, 0.001, 0.05], "decoding_largebs": [5.0, 0.001, 0.2]}
    rows = parse_distserve_json(json.dumps({"facebook/opt-13b": {"1": entry}}), "d.json", limits={})
    prefill = [r for r in rows if r.phase is Role.PREFILL]
    assert all(r.batch * ((r.prompt_tokens + 15) // 16 * 16) <= 65000 for r in prefill)
    one = next(r for r in prefill if (r.batch, r.prompt_tokens) == (4, 512))
    assert one.time_s == pytest.approx((10.0 + 0.1 * 2048 + 1e-5 * 4 * 512 * 512) / 1e3)
    large = next(r for r in rows if r.phase is Role.DECODE and (r.batch, r.prompt_tokens) == (128, 256))
    assert large.time_s == pytest.approx((5.0 + 0.001 * 128 * 256 + 0.2 * 128) / 1e3)
    assert large.context_tokens == 128 * (256 + 8)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "d.json: not JSON"), ('{"m": {"1": {"prefill": [1, 2]}}}', "decoding_large_small_bs_threshold")],
)
def test_distserve_json_rejects_malformed_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_distserve_json(text, "d.json")


@pytest.mark.parametrize(
    "name", ["h200_kernel_times.csv", "profiler-a100-80g.distserve.json", "profiler-a100-80g.vllm.json"]
)
def test_new_profile_files_are_listed_with_their_checksum(name: str) -> None:
    digest = hashlib.sha256((DATA / "profiles" / name).read_bytes()).hexdigest()
    assert digest in (DATA / "profiles" / "LICENSES.md").read_text(encoding="utf-8")


# -- held-out scoring -----------------------------------------------------------------------------


def test_held_out_rows_are_scored_by_a_fit_that_never_saw_them() -> None:
    """A configuration whose times are doubled is predicted from the other one as the truth (error
    −50 %), which no fit that saw those rows would do."""
    truth = replace(Calibration.default(), sku_efficiencies=(SkuEfficiency("h100-sxm", 0.5, 0.4, 0.8),))
    rows = [r for r in _synthetic_rows(truth) if r.sku_id == "h100-sxm"]
    doubled = tuple(replace(r, time_s=2 * r.time_s) if r.model_id == "llama2-70b" else r for r in rows)
    cat = load_catalog()
    profile = EngineProfile("syn", "synthetic", "syn")
    held = score_held_out(Source("syn", "synthetic", "measured", "syn", doubled), profile, cat.models, cat.skus)
    folds = dict(held.folds)
    assert held.split == SPLIT_CONFIG and list(folds) == ["llama-3.1-8b tp1", "llama2-70b tp4"]
    assert folds["llama2-70b tp4"].median_signed == pytest.approx(-0.5, abs=0.02)
    assert folds["llama2-70b tp4"].n == len([r for r in doubled if r.model_id == "llama2-70b"])
    in_sample = fit_engine(list(doubled), cat.models, cat.skus, profile.fit_spec())
    perf = _perf("llama2-70b", "h100-sxm", 4, in_sample)
    seen = [(predict_row_time_s(perf, r) - r.time_s) / r.time_s for r in doubled if r.model_id == "llama2-70b"]
    assert folds["llama2-70b tp4"].max < 0.52
    assert min(abs(e) for e in seen) < 0.1  # a fit that saw them matches some of them


def test_a_source_with_one_configuration_cannot_be_held_out() -> None:
    rows = tuple(r for r in _synthetic_rows(Calibration.default()) if r.model_id == "llama-3.1-8b")
    cat = load_catalog()
    with pytest.raises(ValueError, match="cannot hold rows out"):
        score_held_out(Source("one", "one", "measured", "x", rows), EngineProfile("x", "x", "x"), cat.models, cat.skus)


def test_packaged_sources_leave_out_what_is_not_measured_or_not_in_the_catalog() -> None:
    splitwise = packaged_source("splitwise")
    reasons = dict((r, n) for r, n in _count(splitwise.excluded).items())
    assert reasons["not measured (estimate or copied column)"] == 420  # the power-capped decode column
    assert reasons["hardware 'h100-80gb-pcap' is no catalog SKU"] == 420
    assert sum(n for r, n in reasons.items() if r.startswith("TP2 batch-64")) == 20
    assert {r.model_id for r in splitwise.rows} == {"llama2-70b", "bloom-176b"}
    kernels = packaged_source("h200-kernels")
    assert len(kernels.rows) == 39 and all(r.kernel_only for r in kernels.rows)
    assert {r.model_id for r in packaged_source("distserve").rows} == {"opt-13b", "opt-66b"}


def _count(excluded: tuple[tuple[ProfileRow, str], ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, reason in excluded:
        out[reason] = out.get(reason, 0) + 1
    return out


# -- the command ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_json() -> dict:
    """The packaged scorecard as ``--json`` prints it (computed once: it fits ~30 folds)."""
    return json.loads(json.dumps(scorecard_json(packaged_scorecard()), sort_keys=True))


def test_report_scores_every_measured_source_held_out_under_its_engine(report_json: dict) -> None:
    held = {s["source"]: s for s in report_json["held_out"]}
    assert list(held) == ["splitwise", "h200-kernels", "distserve", "vllm"]
    engines = {name: s["engine"] for name, s in held.items()}
    assert engines == {
        "splitwise": "measured-2023",
        "h200-kernels": "gpu-kernels",
        "distserve": "distserve-2024",
        "vllm": "vllm-2024",
    }
    for s in held.values():
        assert s["split"] == SPLIT_CONFIG and s["in_target"] and len(s["folds"]) >= 2
        assert s["engine_assumptions"].startswith(s["engine"] + ":")
        assert sum(f["n"] for f in s["folds"].values()) == s["overall"]["n"]
    assert held["h200-kernels"]["by_regime"]["prefill/cached-prefix"]["n"] == 4
    assert {e["sku"] for e in held["splitwise"]["efficiencies"]} == {"a100-80g", "h100-sxm"}
    for e in held["splitwise"]["efficiencies"]:
        assert e["low"]["hbm"] <= e["fitted"]["hbm"] <= e["high"]["hbm"] <= 0.95 + 1e-12


def test_vllm_2024_meets_the_target_on_held_out_rows(report_json: dict) -> None:
    """Regression: without the TP > 1 worker dispatch and a fitted all-reduce bandwidth the vLLM profile
    missed the target (median 11.1 %, p90 28.9 %): the held-out OPT-13B TP1 fold came out 24 % slow
    (its fixed TP > 1 cost charged to TP 1) and the OPT-66B TP8 fold 22 % off."""
    vllm = {s["source"]: s for s in report_json["held_out"]}["vllm"]
    assert vllm["target_met"] is True
    assert vllm["overall"]["median"] <= 0.10 and vllm["overall"]["p90"] <= 0.25
    assert vllm["folds"]["opt-13b tp1"]["median"] < 0.10
    fitted = engine_calibration("vllm-2024")
    assert 0.003 < fitted.worker_dispatch_overhead_s < 0.015 and 0.1 < fitted.comm_bw_eff < 0.4
    assert engine_calibration("distserve-2024").worker_dispatch_overhead_s < 1e-4  # its engine has none


def test_measured_2023_keeps_its_link_efficiency_and_no_dispatch_term(report_json: dict) -> None:
    """The SplitwiseSim mirror's profile is not moved by the new terms (see perf/engines.py for why)."""
    cal = engine_calibration("measured-2023")
    assert (cal.comm_bw_eff, cal.worker_dispatch_overhead_s) == (0.7, 0.0)
    splitwise = {s["source"]: s for s in report_json["held_out"]}["splitwise"]
    assert splitwise["target_met"] is True  # regression: 6.0 % / 25.1 % without the large-message efficiency
    assert (splitwise["overall"]["median"], splitwise["overall"]["p90"]) == pytest.approx((0.0349, 0.1258), abs=5e-4)
    assert 0.1 < cal.large_comm_bw_eff < 0.3


def test_report_scores_estimates_outside_the_target_and_current_for_information(report_json: dict) -> None:
    (estimates,) = report_json["estimates"]
    assert (estimates["source"], estimates["engine"], estimates["in_target"]) == ("aiconfigurator", "current", False)
    assert estimates["target_met"] is None
    current = {s["source"]: s for s in report_json["current_on_measured"]}
    assert set(current) == {"splitwise", "h200-kernels", "distserve", "vllm"}
    assert not any(s["in_target"] for s in current.values())
    # the default profile streams HBM at the 2023 fit's 0.91: H200 decode kernels come out low
    assert current["h200-kernels"]["by_regime"]["decode/batch 1/context short"]["median_signed"] < -0.2


def test_report_text_names_split_engine_and_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--report"]) == 0
    out = capsys.readouterr().out
    assert "split: leave one (model, TP) configuration out" in out
    assert "engine profile measured-2023:" in out and "engine profile gpu-kernels:" in out
    assert "h200-kernels met" in out.splitlines()[-1]


def test_profile_file_is_scored_the_same_way(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = (DATA / "profiles" / "h200_kernel_times.csv").read_text(encoding="utf-8")
    mine = tmp_path / "mine.csv"
    mine.write_text(text.replace("h200", "h200_sxm"), encoding="utf-8")  # an alias resolves
    assert main(["calibrate", "--report", "--profile", str(mine), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    (held,) = card["held_out"]
    assert (held["source"], held["split"], held["overall"]["n"]) == ("mine.csv", SPLIT_CONFIG, 39)
    assert held["engine"] == "file:mine.csv" and "host 0.0 ms/prefill step" in held["engine_assumptions"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b\n1,2\n", "not a known profile format"),
        (KERNEL_HEADER + "1,llama-3.1-8b,h200,1,prefill,256,0,1,,8.4,8.2\n", "cannot hold rows out"),
        (KERNEL_HEADER + "1,llama-3.1-8b,h200,1,prefill,x,0,1,,8.4,8.2\n", "bad.csv:2: column 'new_tokens'"),
    ],
)
def test_bad_profile_file_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    assert main(["calibrate", "--report", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_calibrate_without_report_lists_the_engine_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--json"]) == 0
    profiles = json.loads(capsys.readouterr().out)["engine_profiles"]
    assert set(profiles) == {p.name for p in ENGINE_PROFILES}


def test_simulation_summary_prints_the_engine_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "small-mixed", "--fidelity", "fluid", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["perf_engine"] == "current"
    assert summary["perf_engine_assumptions"].startswith("current: 2025-class engine priors")
    assert main(["simulate", "--scenario", "small-mixed", "--fidelity", "fluid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(ln.split()[:3] == ["perf", "engine", "current:"] for ln in lines)
