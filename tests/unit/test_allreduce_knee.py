"""The large-message all-reduce term: a step whose all-reduce message (step tokens × hidden × 2 bytes)
reaches ``large_message_bytes`` runs its all-reduces at ``large_message_comm_bw_eff``; without that
efficiency (every shipped profile) nothing changes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from heteroscale.config.catalog import calibration, load_catalog
from heteroscale.domain.hardware import Role
from heteroscale.perf import Calibration, FitSpec, ProfileRow, build_instance_perf, fit_engine, roofline_terms
from heteroscale.perf.calibrate import LARGE_MESSAGE_BYTES
from heteroscale.perf.engines import ENGINE_PROFILES, assumptions
from heteroscale.perf.model import InstancePerf, predict_row_time_s

KNEE = replace(Calibration.default(), large_message_comm_bw_eff=0.2)


def _perf(cal: Calibration, model_id: str = "llama2-70b", sku_id: str = "h100-sxm", tp: int = 8) -> InstancePerf:
    cat = load_catalog()
    return build_instance_perf(cat.models[model_id], cat.skus[sku_id], tp, cal)


def _link_s_per_token(model_id: str = "llama2-70b", sku_id: str = "h100-sxm", tp: int = 8) -> float:
    cat = load_catalog()
    return roofline_terms(cat.models[model_id], cat.skus[sku_id], tp).allreduce_s_per_token


@pytest.mark.parametrize(
    ("model_id", "last_small", "first_large"),
    [("llama2-70b", 3906, 3907), ("bloom-176b", 2232, 2233)],  # 64e6 / (h · 2): h 8192 and 14336
)
def test_a_step_is_large_from_the_threshold_in_message_bytes(model_id: str, last_small: int, first_large: int) -> None:
    """Only the step whose message reaches the threshold pays the large-message efficiency, and it pays
    it on every token (the whole message is slower, not its bytes past the threshold)."""
    link = _link_s_per_token(model_id)
    knee, plain = _perf(KNEE, model_id), _perf(Calibration.default(), model_id)
    for n in (1024, last_small):
        assert knee.prefill_kernel_s(n, n * 512.0) == plain.prefill_kernel_s(n, n * 512.0)
    for n in (first_large, 8192, 32768):
        extra = knee.prefill_kernel_s(n, n * 512.0) - plain.prefill_kernel_s(n, n * 512.0)
        assert extra == pytest.approx(n * link * (1 / 0.2 - 1 / 0.7), rel=1e-9)


def test_a_step_above_the_knee_costs_more_per_token_than_one_below() -> None:
    """Batches of 512-token prompts: without the knee a 4,096-token step is cheaper per token than a
    2,048-token one (fixed costs shared by more tokens); with it, dearer — as the 2023 engine measured."""
    below, above = 2048, 4096

    def per_token(perf: InstancePerf, n: int) -> float:
        return perf.prefill_time_s(n, n * 512.0) / n

    plain, knee = _perf(Calibration.default()), _perf(KNEE)
    assert per_token(plain, above) < per_token(plain, below)
    assert per_token(knee, above) > per_token(knee, below)
    assert per_token(knee, below) == per_token(plain, below)


def test_a_decode_step_of_as_many_sequences_pays_it_too_and_stays_affine() -> None:
    link = _link_s_per_token()
    plain, knee = _perf(Calibration.default()), _perf(KNEE)
    assert knee.decode_step_time_s(256, 256 * 1024) == plain.decode_step_time_s(256, 256 * 1024)
    extra = knee.decode_step_time_s(4096, 4096 * 64) - plain.decode_step_time_s(4096, 4096 * 64)
    assert extra == pytest.approx(4096 * link * (1 / 0.2 - 1 / 0.7), rel=1e-9)
    base_s, per_s = knee.decode_linear(4096)
    assert knee.decode_step_time_s(4096, 4096 * 64) == base_s + per_s * 4096 * 64


@pytest.mark.parametrize("profile", [p.name for p in ENGINE_PROFILES if not p.fit_large_message_comm])
def test_a_profile_without_the_knee_is_unchanged(profile: str) -> None:
    """No shipped profile sets a large-message efficiency, and one set equal to the link efficiency
    gives bit-identical times: the branch cannot move a profile that has no knee."""
    cal = calibration(profile)
    assert cal.large_message_comm_bw_eff is None
    same = replace(cal, large_message_comm_bw_eff=cal.comm_bw_eff)
    for sku_id, tp in (("h100-sxm", 8), ("a100-80g", 4)):
        plain, tied = _perf(cal, sku_id=sku_id, tp=tp), _perf(same, sku_id=sku_id, tp=tp)
        for n in (512, 2048, 4096, 8192, 32768):
            assert tied.prefill_time_s(n, float(n * n)) == plain.prefill_time_s(n, float(n * n))
        for batch in (1, 64, 4096):
            assert tied.decode_step_time_s(batch, batch * 1024) == plain.decode_step_time_s(batch, batch * 1024)
    assert "MB messages" not in assumptions(profile, cal)


def test_the_summary_line_names_the_knee_where_a_calibration_has_one() -> None:
    assert "all-reduces at 70 % of link bandwidth (20 % from 64 MB messages)" in assumptions("mine", KNEE)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("large_message_comm_bw_eff", 0.0, "large_message_comm_bw_eff must be in"),
        ("large_message_comm_bw_eff", 1.5, "large_message_comm_bw_eff must be in"),
        ("large_message_bytes", 0.0, "large_message_bytes must be > 0"),
    ],
)
def test_calibration_rejects_an_unphysical_knee(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(Calibration.default(), **{field: value})


def _rows(truth: Calibration) -> list[ProfileRow]:
    """Exact rows of ``truth``: prefills both sides of the knee, decode steps below it."""
    rows = []
    for model_id, sku_id, tp in (
        ("qwen3-32b", "a100-80g", 2),
        ("llama2-70b", "h100-sxm", 4),
        ("llama2-70b", "h100-sxm", 8),
    ):
        perf = _perf(truth, model_id, sku_id, tp)
        for prompt, batch in ((128, 1), (1024, 1), (2048, 1), (512, 4), (8192, 1), (512, 16), (512, 64)):
            row = ProfileRow(model_id, sku_id, tp, Role.PREFILL, prompt, batch, 0, 1.0, "syn")
            rows.append(replace(row, time_s=predict_row_time_s(perf, row)))
        for batch, ctx in ((1, 1024), (8, 2048), (64, 1024), (256, 4096)):
            row = ProfileRow(model_id, sku_id, tp, Role.DECODE, ctx, batch, batch * ctx, 1.0, "syn")
            rows.append(replace(row, time_s=predict_row_time_s(perf, row)))
    return rows


def test_fit_engine_recovers_the_large_message_efficiency_from_exact_rows() -> None:
    truth = replace(Calibration.default(), comm_bw_eff=0.5, large_message_comm_bw_eff=0.18)
    cat = load_catalog()
    spec = FitSpec("syn", fitted_terms=("prefill_step_overhead_s",), fit_comm_bw=True, fit_large_message_comm=True)
    fit = fit_engine(_rows(truth), cat.models, cat.skus, spec)
    assert fit.large_message_comm_bw_eff == pytest.approx(0.18, rel=1e-5)
    assert fit.comm_bw_eff == pytest.approx(0.5, rel=1e-5)
    assert fit.large_message_bytes == LARGE_MESSAGE_BYTES
    tied = fit_engine(_rows(truth), cat.models, cat.skus, replace(spec, fit_large_message_comm=False))
    assert tied.large_message_comm_bw_eff is None  # the base's: the knee is fitted only where asked
