"""Performance model: catalog, profile parsing, roofline, InstancePerf and calibration."""

from __future__ import annotations

import hashlib
import itertools
import statistics
from collections.abc import Callable
from dataclasses import fields, replace
from functools import cache
from importlib.resources import files
from typing import Any

import pytest
import yaml

from heteroscale.domain.hardware import GpuSku, ModelSpec, Role
from heteroscale.perf import (
    Calibration,
    InstancePerf,
    ProfileRow,
    build_instance_perf,
    exclusion_reason,
    fit_calibration,
    fit_rows,
    parse_aiconfigurator_csv,
    parse_splitwise_csv,
    predict_row_time_s,
    roofline_terms,
)
from heteroscale.perf.roofline import lm_head_params, matmul_params

DATA = files("heteroscale.data")
GPU_IDS = ("h100-sxm", "h800", "h20", "h200", "a100-80g", "l40s", "l20", "b200", "mi300x")
MODEL_IDS = ("llama-3.1-8b", "llama-3.1-70b", "qwen3-8b", "qwen3-32b", "llama2-70b", "bloom-176b", "opt-13b", "opt-66b")
TIED_EMBEDDINGS = frozenset({"bloom-176b", "opt-13b", "opt-66b"})  # input embedding = LM head


# -- builders (package data read via importlib.resources; cached, values are immutable) ----------


@cache
def _catalog_docs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    gpus = yaml.safe_load((DATA / "catalog" / "gpus.yaml").read_text(encoding="utf-8"))["gpus"]
    models = yaml.safe_load((DATA / "catalog" / "models.yaml").read_text(encoding="utf-8"))["models"]
    return gpus, models


@cache
def _skus() -> dict[str, GpuSku]:
    names = {f.name for f in fields(GpuSku)}
    return {e["id"]: GpuSku(**{k: v for k, v in e.items() if k in names}) for e in _catalog_docs()[0]}


@cache
def _models() -> dict[str, ModelSpec]:
    names = {f.name for f in fields(ModelSpec)}
    return {e["id"]: ModelSpec(**{k: v for k, v in e.items() if k in names}) for e in _catalog_docs()[1]}


@cache
def _splitwise() -> tuple[ProfileRow, ...]:
    text = (DATA / "profiles" / "perf_model.csv").read_text(encoding="utf-8")
    return tuple(parse_splitwise_csv(text, "perf_model.csv"))


@cache
def _aiconfigurator() -> tuple[ProfileRow, ...]:
    text = (DATA / "profiles" / "aiconfigurator_estimates.csv").read_text(encoding="utf-8")
    return tuple(parse_aiconfigurator_csv(text, "aiconfigurator_estimates.csv"))


@cache
def _fitted() -> Calibration:
    return fit_calibration(_splitwise(), _models(), _skus())


def make_perf(
    model_id: str = "llama2-70b",
    sku_id: str = "h100-sxm",
    tp: int = 8,
    calibration: Calibration | None = None,
    **model_overrides: Any,
) -> InstancePerf:
    model = replace(_models()[model_id], **model_overrides)
    return build_instance_perf(model, _skus()[sku_id], tp, calibration or _fitted())


def _measured_median_s(sku: str, tp: int, phase: Role, prompt: int, batch: int, output: int = 128) -> float:
    times = [
        r.time_s
        for r in _splitwise()
        if r.hardware == sku
        and r.tp == tp
        and r.phase is phase
        and r.model_id == "llama2-70b"
        and (r.prompt_tokens, r.batch, r.output_tokens) == (prompt, batch, output)
    ]
    return statistics.median(times)


# -- catalog and package data ------------------------------------------------------------------


def test_catalog_has_every_canonical_id() -> None:
    assert tuple(_skus()) == GPU_IDS
    assert tuple(_models()) == MODEL_IDS


def test_catalog_aliases_are_unique_and_never_shadow_an_id() -> None:
    for entries in _catalog_docs():
        ids = {e["id"] for e in entries}
        seen: dict[str, str] = {}
        for entry in entries:
            for alias in entry["aliases"]:
                key = str(alias).lower()
                owner = seen.get(key, entry["id"])
                assert owner == entry["id"], f"alias {alias!r} used by {owner} and {entry['id']}"
                assert key not in ids or key == entry["id"]
                seen[key] = entry["id"]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("h100", "h100-sxm"),
        ("h100-80gb", "h100-sxm"),
        ("h100_sxm", "h100-sxm"),
        ("H100 SXM5 80GB", "h100-sxm"),
        ("a100", "a100-80g"),
        ("a100-80gb", "a100-80g"),
        ("a100_sxm", "a100-80g"),
        ("h200_sxm", "h200"),
        ("b200_sxm", "b200"),
        ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("Qwen/Qwen3-8B", "qwen3-8b"),
        ("Llama-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Llama-2-70b-hf", "llama2-70b"),
    ],
)
def test_catalog_alias_resolves(alias: str, canonical: str) -> None:
    owners = [e["id"] for entries in _catalog_docs() for e in entries if alias in e["aliases"]]
    assert owners == [canonical]


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_architecture_reproduces_published_parameter_count(model_id: str) -> None:
    model = _models()[model_id]
    embedding_and_head = (1 if model_id in TIED_EMBEDDINGS else 2) * lm_head_params(model)
    assert (matmul_params(model) + embedding_and_head) / 1e9 == pytest.approx(model.params_b, rel=0.01)


@pytest.mark.parametrize(
    ("name", "sha256"),
    [
        ("perf_model.csv", "dbbe505d1d64fc4bd1ec03c50edf944643586de4f68a81e94cbd55dd5bdfbf41"),
        ("aiconfigurator_estimates.csv", "ca4e1e682cb73e773301106cfecf448ab30cfdc4f3cefa89b3bf29cc7574d8f1"),
    ],
)
def test_profile_data_is_byte_for_byte_the_source(name: str, sha256: str) -> None:
    data = (DATA / "profiles" / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha256
    assert sha256 in (DATA / "profiles" / "LICENSES.md").read_text(encoding="utf-8")


# -- parsing ------------------------------------------------------------------------------------


def test_splitwise_rows_map_hardware_and_mark_copied_decode_column() -> None:
    rows = _splitwise()
    assert len(rows) == 2 * 1260
    assert {r.sku_id for r in rows} == {"a100-80g", "h100-sxm", "h100-80gb-pcap"}
    pcap_decode = [r for r in rows if r.hardware == "h100-80gb-pcap" and r.phase is Role.DECODE]
    assert pcap_decode
    assert not any(r.measured for r in pcap_decode)
    first_prefill, first_decode = rows[0], rows[1]
    assert (first_prefill.phase, first_prefill.prompt_tokens, first_prefill.batch) == (Role.PREFILL, 512, 1)
    assert first_prefill.time_s == pytest.approx(0.1962532191537321)
    assert first_decode.context_tokens == 1 * (512 + 64)


def test_aiconfigurator_rows_map_to_catalog_ids() -> None:
    rows = _aiconfigurator()
    assert len(rows) == 40
    assert {r.sku_id for r in rows} == {"h100-sxm", "h200", "a100-80g", "l40s", "b200"}
    assert {r.model_id for r in rows} == {"qwen3-8b", "qwen3-32b", "llama-3.1-8b", "llama-3.1-70b"}
    assert not any(r.measured for r in rows)
    decode = next(r for r in rows if r.phase is Role.DECODE)
    assert (decode.batch, decode.context_tokens) == (64, 64 * (2048 + 128))
    prefill = next(r for r in rows if r.phase is Role.PREFILL)
    assert (prefill.batch, prefill.new_tokens, prefill.attn_units) == (1, 2048, 2048.0**2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,hardware\nllama2-70b,a100-80gb\n", "missing column"),
        (
            "model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,tensor_parallel\n"
            "llama2-70b,a100-80gb,512,1,128,abc,54.8,2\n",
            "bad.csv:2",
        ),
        (
            "model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,tensor_parallel\n"
            "llama2-70b,a100-80gb,512,0,128,196.2,54.8,2\n",
            "bad.csv:2",
        ),
    ],
)
def test_splitwise_parser_rejects_malformed_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_splitwise_csv(text, "bad.csv")


def test_aiconfigurator_parser_rejects_unknown_mode() -> None:
    text = "model,system,tp,mode,batch_size,isl,osl,ttft_ms,tpot_ms\nQwen/Qwen3-8B,h100_sxm,1,disagg,1,2048,256,44.5,\n"
    with pytest.raises(ValueError, match="unknown mode"):
        parse_aiconfigurator_csv(text, "x.csv")


# -- the model ----------------------------------------------------------------------------------

SHAPES = [
    ("llama2-70b", "h100-sxm", 8),
    ("llama2-70b", "a100-80g", 4),
    ("llama-3.1-8b", "l40s", 1),
    ("qwen3-32b", "h20", 2),
    ("llama-3.1-70b", "b200", 4),
    ("qwen3-8b", "l20", 1),
]
CALIBRATIONS: dict[str, Callable[[], Calibration]] = {"fitted": _fitted, "default": Calibration.default}


@pytest.mark.parametrize(("model_id", "sku_id", "tp"), SHAPES)
@pytest.mark.parametrize("calibration", sorted(CALIBRATIONS))
@pytest.mark.parametrize(
    ("batch", "context_tokens"),
    [(1, 0), (1, 1), (1, 4097), (7, 3001), (64, 139_264), (256, 1_000_003), (1024, 123_457)],
)
def test_decode_linear_identity_is_exact(
    model_id: str, sku_id: str, tp: int, calibration: str, batch: int, context_tokens: int
) -> None:
    perf = make_perf(model_id, sku_id, tp, CALIBRATIONS[calibration]())
    base_s, per_context_token_s = perf.decode_linear(batch)
    assert perf.decode_step_time_s(batch, context_tokens) == base_s + per_context_token_s * context_tokens


@pytest.mark.parametrize(("model_id", "sku_id", "tp"), SHAPES)
def test_decode_step_time_is_monotone_in_batch_and_context(model_id: str, sku_id: str, tp: int) -> None:
    perf = make_perf(model_id, sku_id, tp)
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    by_batch = [perf.decode_step_time_s(b, 1000 * b) for b in batches]
    assert all(a < b for a, b in itertools.pairwise(by_batch))
    by_context = [perf.decode_step_time_s(32, c) for c in (0, 1, 1_000, 10_000, 100_000, 1_000_000)]
    assert all(a < b for a, b in itertools.pairwise(by_context))
    assert perf.decode_linear(32)[1] > 0.0
    assert 0.0 < perf.decode_kernel_s(32, 32_000) < perf.decode_step_time_s(32, 32_000)
    assert perf.decode_kernel_s(32, 32_000) + perf.decode_host_s(32) == pytest.approx(
        perf.decode_step_time_s(32, 32_000)
    )


@pytest.mark.parametrize(("model_id", "sku_id", "tp"), SHAPES)
def test_prefill_time_is_monotone_and_includes_host_overhead(model_id: str, sku_id: str, tp: int) -> None:
    perf = make_perf(model_id, sku_id, tp)
    tokens = [1, 16, 128, 512, 2048, 8192, 32768]
    by_tokens = [perf.prefill_time_s(n, float(n * n)) for n in tokens]
    assert all(a <= b for a, b in itertools.pairwise(by_tokens))
    assert by_tokens[-1] > by_tokens[2]
    by_attention = [perf.prefill_time_s(2048, a) for a in (0.0, 2048.0**2, 4 * 2048.0**2, 64 * 2048.0**2)]
    assert all(a < b for a, b in itertools.pairwise(by_attention))
    assert perf.prefill_time_s(2048, 2048.0**2) == pytest.approx(
        perf.prefill_host_overhead_s + perf.prefill_kernel_s(2048, 2048.0**2)
    )


def test_flop_counts_follow_the_architecture() -> None:
    model = _models()["llama-3.1-8b"]
    perf = make_perf("llama-3.1-8b", "h100-sxm", 1)
    attn = 2.0 * model.layers * model.heads * model.head_dim
    assert perf.prefill_flops(1000, 0.0) == pytest.approx(2.0 * matmul_params(model) * 1000)
    assert perf.prefill_flops(0, 1e6) == pytest.approx(attn * 1e6)
    assert perf.decode_flops(4, 0) == pytest.approx(4 * 2.0 * (matmul_params(model) + lm_head_params(model)))
    assert perf.decode_flops(0, 100) == pytest.approx(2.0 * attn * 100)


@pytest.mark.parametrize(
    ("phase", "prompt", "batch", "low", "high"),
    [
        (Role.PREFILL, 2048, 1, 1.6, 2.6),  # ≈2x (measured 2.0)
        (Role.DECODE, 512, 1, 1.3, 1.7),  # ≈1.4–1.5x (measured 1.5)
        (Role.DECODE, 512, 16, 1.2, 1.7),  # measured 1.48
    ],
)
def test_h100_beats_a100_by_the_measured_ratio_on_llama2_70b_tp8(
    phase: Role, prompt: int, batch: int, low: float, high: float
) -> None:
    a100 = make_perf("llama2-70b", "a100-80g", 8)
    h100 = make_perf("llama2-70b", "h100-sxm", 8)
    if phase is Role.PREFILL:
        tokens, attn = batch * prompt, float(batch * prompt * prompt)
        ratio = a100.prefill_time_s(tokens, attn) / h100.prefill_time_s(tokens, attn)
    else:
        context = batch * (prompt + 64)
        ratio = a100.decode_step_time_s(batch, context) / h100.decode_step_time_s(batch, context)
    measured = _measured_median_s("a100-80gb", 8, phase, prompt, batch) / _measured_median_s(
        "h100-80gb", 8, phase, prompt, batch
    )
    assert low <= ratio <= high
    assert ratio == pytest.approx(measured, rel=0.15)


def test_kv_capacity_positive_for_70b_on_h100_tp4() -> None:
    perf = make_perf("llama2-70b", "h100-sxm", 4)
    model = _models()["llama2-70b"]
    expected = (4 * 80e9 * 0.9 - model.weight_bytes) / model.kv_bytes_per_token
    assert perf.kv_capacity_tokens == int(expected)
    assert perf.kv_capacity_tokens > 400_000
    assert perf.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2


def test_model_that_does_not_fit_raises_naming_model_sku_and_tp() -> None:
    with pytest.raises(ValueError, match=r"llama-3\.1-70b.*l40s.*tp=1"):
        make_perf("llama-3.1-70b", "l40s", 1)


@pytest.mark.parametrize("tp", [0, -1])
def test_invalid_tp_raises(tp: int) -> None:
    with pytest.raises(ValueError, match="tensor-parallel"):
        make_perf("llama-3.1-8b", "h100-sxm", tp)


@pytest.mark.parametrize(("model_id", "sku_id", "tp"), [("llama-3.1-70b", "h100-sxm", 2), ("qwen3-32b", "l40s", 2)])
def test_fp8_halves_weight_bytes_and_raises_kv_capacity(model_id: str, sku_id: str, tp: int) -> None:
    bf16 = make_perf(model_id, sku_id, tp)
    fp8 = make_perf(model_id, sku_id, tp, bytes_per_param=1.0)
    assert fp8.weight_bytes == pytest.approx(bf16.weight_bytes / 2)
    assert fp8.kv_capacity_tokens > bf16.kv_capacity_tokens
    assert fp8.peak_flops == pytest.approx(2 * bf16.peak_flops)
    assert fp8.weight_read_s == pytest.approx(bf16.weight_read_s / 2)
    assert fp8.prefill_time_s(4096, 4096.0**2) < bf16.prefill_time_s(4096, 4096.0**2)


def test_pcie_tensor_parallelism_pays_for_the_link() -> None:
    nvlink = roofline_terms(_models()["qwen3-32b"], _skus()["h100-sxm"], 2)
    pcie = roofline_terms(_models()["qwen3-32b"], _skus()["l40s"], 2)
    assert pcie.allreduce_s_per_token == pytest.approx(nvlink.allreduce_s_per_token * 450 / 32)
    assert roofline_terms(_models()["qwen3-8b"], _skus()["l40s"], 1).allreduce_s_per_token == 0.0


def test_calibration_rejects_unphysical_values() -> None:
    with pytest.raises(ValueError, match="prefill_compute_eff"):
        replace(Calibration.default(), prefill_compute_eff=1.5)
    with pytest.raises(ValueError, match="decode_step_overhead_s"):
        replace(Calibration.default(), decode_step_overhead_s=-1e-3)


def test_with_engine_of_keeps_physics_and_takes_engine_terms() -> None:
    fitted, prior = _fitted(), Calibration.default()
    mixed = fitted.with_engine_of(prior)
    assert (mixed.prefill_compute_eff, mixed.decode_bw_eff, mixed.comm_bw_eff) == (
        fitted.prefill_compute_eff,
        fitted.decode_bw_eff,
        fitted.comm_bw_eff,
    )
    engine = (
        "allreduce_hop_latency_s",
        "prefill_step_overhead_s",
        "decode_step_overhead_s",
        "decode_seq_overhead_s",
        "decode_layer_latency_bytes",
    )
    assert all(getattr(mixed, name) == getattr(prior, name) for name in engine)


# -- calibration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicate", "reason"),
    [
        (lambda r: r.hardware == "h100-80gb-pcap" and r.phase is Role.DECODE, "not measured"),
        (
            lambda r: r.hardware == "h100-80gb-pcap" and r.phase is Role.PREFILL and r.model_id == "llama2-70b",
            "not a fitted catalog SKU",
        ),
        (lambda r: r.model_id == "bloom-176b" and r.measured, "not the fitted model"),
        (lambda r: r.tp == 2 and r.batch == 64 and r.sku_id in {"a100-80g", "h100-sxm"}, "anomalous"),
    ],
)
def test_exclusions(predicate: Any, reason: str) -> None:
    rows = [r for r in _splitwise() if predicate(r)]
    assert rows
    assert all(reason in (exclusion_reason(r) or "") for r in rows)


def test_fit_uses_only_measured_llama2_rows() -> None:
    used = fit_rows(_splitwise())
    assert len(used) == 1240
    assert {(r.model_id, r.sku_id) for r in used} == {("llama2-70b", "a100-80g"), ("llama2-70b", "h100-sxm")}
    assert all(exclusion_reason(r) is not None for r in _aiconfigurator())


def test_fit_is_deterministic_and_ignores_estimates() -> None:
    again = fit_calibration(list(_splitwise()), _models(), _skus())
    with_estimates = fit_calibration(list(_splitwise()) + list(_aiconfigurator()), _models(), _skus())
    assert again == _fitted()
    assert with_estimates == _fitted()


def test_fit_without_usable_rows_raises() -> None:
    with pytest.raises(ValueError, match="no measured"):
        fit_calibration(list(_aiconfigurator()), _models(), _skus())


def test_fitted_parameters_are_physical() -> None:
    cal = _fitted()
    assert 0.3 < cal.prefill_compute_eff < 0.9
    assert 0.5 < cal.decode_bw_eff <= 1.0
    assert 0.0 < cal.allreduce_hop_latency_s < 1e-4
    assert cal.prefill_step_overhead_s < 0.1
    assert cal.decode_seq_overhead_s < 1e-3


def test_fitted_model_is_within_15_percent_median_on_measured_rows() -> None:
    cache_: dict[tuple[str, str, int], InstancePerf] = {}
    errors = []
    for row in fit_rows(_splitwise()):
        key = (row.model_id, row.sku_id, row.tp)
        if key not in cache_:
            cache_[key] = make_perf(*key)
        errors.append(abs(predict_row_time_s(cache_[key], row) - row.time_s) / row.time_s)
    assert statistics.median(errors) <= 0.15
    by_phase = {
        phase: statistics.median(e for e, r in zip(errors, fit_rows(_splitwise()), strict=True) if r.phase is phase)
        for phase in Role
    }
    assert max(by_phase.values()) <= 0.15


@pytest.mark.parametrize("context", [600.0, 1500.0, 4000.0])
def test_dynamo_decode_profile_matches_the_model_at_its_fitted_points(context: float) -> None:
    from heteroscale.policy.targets import decode_itl_profile

    perf = make_perf(tp=4)
    floor_s, per_request, per_kv = decode_itl_profile(perf, 256, context)
    top = max(2, min(256, int(perf.kv_capacity_tokens // (2 * context))))

    def profile(b: int, ctx: float) -> float:
        return floor_s + (b - 1) * (per_request + per_kv * ctx)

    assert profile(1, context) == pytest.approx(perf.decode_step_time_s(1, int(context)))
    for ctx in (context, 2 * context):
        assert profile(top, ctx) == pytest.approx(perf.decode_step_time_s(top, int(top * ctx)), rel=1e-6)
    # between the fitted points it stays within 15 % of the model (Dynamo interpolates a sweep)
    mid = max(2, top // 2)
    assert profile(mid, context) == pytest.approx(perf.decode_step_time_s(mid, int(mid * context)), rel=0.15)
