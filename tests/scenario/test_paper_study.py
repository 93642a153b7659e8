"""Issue-level outcomes on the embedded scenarios: the policy comparison, the signal study, the ratio sweep.

These run the simulator for a simulated day per policy (fluid fidelity) and a 3-hour ramp at request
fidelity; together they take a few minutes. They assert behaviour (who wins, by which criterion), not time.
"""

from __future__ import annotations

from typing import Any

import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.experiments.compare import Comparison, compare
from heteroscale.experiments.figures import means
from heteroscale.experiments.study import study_metrics
from heteroscale.experiments.sweep import sweep_ratio

pytestmark = pytest.mark.slow

PEERS = ("hpa", "aibrix-apa", "kthena", "dynamo-sla", "independent-tps")


@pytest.fixture(scope="module")
def diurnal() -> dict[str, Any]:
    scenario = load_scenario("diurnal")
    result, _ = compare(scenario, calibration_for(scenario), ("heteroscale", "static-peak", *PEERS), jobs=2)
    return {name: means(summary) for name, summary in result["policies"].items()}


def test_heteroscale_meets_slo_close_to_the_oracle(diurnal: dict[str, Any]) -> None:
    h = diurnal["heteroscale"]
    assert h["slo_attainment"] >= 0.99
    assert h["gpu_hours_vs_oracle"] <= 1.15
    assert h["pd_ratio_deviation"] <= 0.10
    assert h["requests_failed"] == 0


def test_heteroscale_uses_fewer_gpu_hours_than_static_peak_and_no_peer_beats_it_on_both(
    diurnal: dict[str, Any],
) -> None:
    h = diurnal["heteroscale"]
    assert h["gpu_hours"] <= 0.80 * diurnal["static-peak"]["gpu_hours"]
    # the peers run as shipped: one may use fewer GPU-hours (Kthena, Dynamo's planner), but then it
    # meets the SLO less often
    for peer in PEERS:
        p = diurnal[peer]
        assert h["gpu_hours"] < p["gpu_hours"] or h["slo_attainment"] > p["slo_attainment"], peer


def test_no_contender_bills_less_than_the_lower_bound(diurnal: dict[str, Any]) -> None:
    for name, summary in diurnal.items():
        assert summary["gpu_hours_vs_lower_bound"] >= 1.0, name


def test_heteroscale_raises_utilisation_over_static_peak(diurnal: dict[str, Any]) -> None:
    h, s = diurnal["heteroscale"], diurnal["static-peak"]
    assert h["avg_gpu_util_by_role"]["prefill"] >= s["avg_gpu_util_by_role"]["prefill"] + 0.25
    assert h["avg_gpu_util"] > s["avg_gpu_util"]
    assert h["avg_sm_activity"] > s["avg_sm_activity"]


def test_heteroscale_meets_slo_request_by_request_on_the_steepest_ramp() -> None:
    scenario = load_scenario("diurnal-ramp")
    run = Comparison(scenario, calibration_for(scenario)).run_policy("heteroscale", scenario.settings.seed)
    assert run.summary["latency_estimated"] is False
    assert run.summary["requests_total"] > 500_000
    assert run.summary["slo_attainment"] >= 0.99
    assert run.summary["gpu_hours_vs_oracle"] <= 1.15


@pytest.fixture(scope="module")
def study() -> dict[str, Any]:
    scenario = load_scenario("diurnal")
    result, _ = study_metrics(scenario, calibration_for(scenario))
    return result


def test_without_autoscaling_decode_stays_busy_while_prefill_follows_the_load(study: dict[str, Any]) -> None:
    series = study["no_autoscaling"]["series"]
    decode = [r["decode_gpu_util"] for r in series if r["decode_gpu_util"] is not None]
    assert min(decode) >= 0.8
    pairs = [(r["arrivals_per_s"], r["prefill_gpu_util"]) for r in series if r["prefill_gpu_util"] is not None]
    low = [u for a, u in pairs if a < 0.4 * max(a for a, _ in pairs)]
    high = [u for a, u in pairs if a > 0.8 * max(a for a, _ in pairs)]
    assert sum(high) / len(high) > 2.0 * sum(low) / len(low)


def test_decode_gpu_util_never_scales_in(study: dict[str, Any]) -> None:
    run = study["signals"]["decode-gpu-util"]
    assert run["gpu_hours_vs_no_autoscaling"] >= 0.90


@pytest.mark.parametrize("signal", ["decode-tps", "prefill-tps"])
def test_tps_signals_follow_the_load_down(study: dict[str, Any], signal: str) -> None:
    assert study["signals"][signal]["min_over_peak"] <= 0.45


def test_ttft_reverses_direction_more_often_than_decode_tps(study: dict[str, Any]) -> None:
    s = study["signals"]
    assert s["ttft"]["direction_reversals"] > s["decode-tps"]["direction_reversals"]


def test_ratio_sweep_is_unimodal_and_service_specific() -> None:
    results = {}
    for name in ("default", "bursty"):
        scenario = load_scenario(name)
        results[name] = sweep_ratio(scenario, calibration_for(scenario), instances=10, duration_s=240.0)
        assert results[name]["unimodal"], results[name]["splits"]
    assert results["default"]["best"] != results["bursty"]["best"]
