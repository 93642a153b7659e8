"""Fluid fidelity validated where it is used: the trust table, the labels every fluid summary carries,
and the fluid engine's queueing near capacity against the request engine on the same requests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from heteroscale.config.catalog import calibration_for
from heteroscale.sim.fidelity import (
    FluidRegime,
    estimate_labels,
    fluid_regime_ok,
    peak_load_fraction,
    regime,
    window_load_fraction,
)
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import Fidelity
from tests.support import builders as b
from tests.unit import policy_builders as pb


@pytest.mark.parametrize(
    ("fraction", "metric", "ok"),
    [
        (0.3, "avg_gpu_util_by_role", True),
        (0.3, "ttft_p50_s", True),
        (0.3, "slo_attainment", True),
        (0.3, "ttft_p99_s", False),  # light load: p99 is not bounded
        (0.8, "ttft_p99_s", True),
        (0.8, "slo_attainment", True),
        (0.8, "tbt_p50_s", False),  # loaded: p50 is not bounded
        (0.95, "ttft_p99_s", False),  # near the knee: missed on one benchmark case, an estimate
        (0.95, "avg_tps_by_role", True),
        (1.2, "slo_attainment", False),
        (1.2, "avg_gpu_util", True),
        (None, "slo_attainment", False),  # unknown load: only throughput is trusted
        (None, "avg_tps_by_role", True),
        (0.3, "no_such_metric", False),
    ],
)
def test_the_trust_table(fraction: float | None, metric: str, ok: bool) -> None:
    assert fluid_regime_ok(fraction, metric) is ok


def test_regimes_and_labels() -> None:
    assert [regime(f) for f in (0.1, 0.7, 1.0, 1.01)] == [
        FluidRegime.LIGHT,
        FluidRegime.LOADED,
        FluidRegime.LOADED,
        FluidRegime.OVERLOAD,
    ]
    assert set(estimate_labels(None).values()) == {"estimate"}
    assert estimate_labels(0.5)["ttft_p50_s"] == "trusted"
    assert estimate_labels(0.5)["ttft_p99_s"] == "estimate"


def test_the_load_fraction_needs_a_pressure_test() -> None:
    tested = pb.targets(
        requests_per_s_per_prefill=3.0, requests_per_s_per_decode=2.0, margin=0.5, source="pressure-test: knee"
    )
    # capacity = min(3·4, 2·2) / 0.5 = 8 req/s
    assert window_load_fraction(6.0, 4, 2, tested) == pytest.approx(0.75)
    assert window_load_fraction(1.0, 0, 2, tested) == float("inf")
    assert window_load_fraction(6.0, 4, 2, dataclasses.replace(tested, source="perf-model")) is None


def _mixed_trace(rate_rps: float, duration_s: float, seed: int) -> object:
    rng = np.random.default_rng(seed)
    n = int(rate_rps * duration_s)
    inp = rng.choice([200, 800, 1500, 3000, 6000], size=n, p=[0.3, 0.3, 0.2, 0.15, 0.05]).tolist()
    out = rng.choice([20, 150, 400], size=n).tolist()
    return b.trace(n=n, rate_rps=rate_rps, input_tokens=inp, output_tokens=out, seed=seed)


def test_a_fluid_summary_carries_its_labels_and_a_request_summary_none() -> None:
    sc = b.scenario(prefill=2, decode=2)
    tr = b.trace(n=400, rate_rps=4.0)
    tested = {"svc": pb.targets(source="pressure-test: knee 10 req/s", margin=1.0)}
    flu = SimulationRun(sc, calibration_for(sc), fidelity=Fidelity.FLUID, loads=b.loads_for(sc, tr), targets=tested)
    fluid = flu.run()
    expected = peak_load_fraction(flu.telemetry.series("svc"), tested["svc"])
    assert expected is not None and expected > 0
    assert fluid["fluid_load_fraction"] == pytest.approx(expected, abs=1e-4)
    assert fluid["fluid_regime"] == regime(expected).value
    assert fluid["fluid_estimates"] == estimate_labels(expected)
    assert fluid["services"]["svc"]["fluid_estimates"] == fluid["fluid_estimates"]
    untested = SimulationRun(sc, calibration_for(sc), fidelity=Fidelity.FLUID, loads=b.loads_for(sc, tr)).run()
    assert untested["fluid_load_fraction"] is None
    assert set(untested["fluid_estimates"].values()) == {"estimate"}
    request = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr)).run()
    assert request["fluid_estimates"] is None and request["fluid_regime"] is None


def test_fluid_queueing_near_capacity_matches_the_request_engine() -> None:
    """At ~93 % prefill utilisation (just below the SLO knee) the fluid engine used to overestimate
    queueing (solo-prefill capacity, an M/M/c wait that explodes as ρ → 1): SLO attainment 70 % vs
    92 %. Now within the loaded regime's bounds (p99 ±25 %, SLO ±3 points)."""
    sc = b.scenario(prefill=2, decode=2)
    tr = _mixed_trace(17.5, 600.0, seed=11)
    req = SimulationRun(sc, calibration_for(sc), loads=b.loads_for(sc, tr)).run()
    flu = SimulationRun(sc, calibration_for(sc), fidelity=Fidelity.FLUID, loads=b.loads_for(sc, tr)).run()
    assert req["avg_gpu_util_by_role"]["prefill"] > 0.8  # the regime this is about
    assert flu["slo_attainment"] == pytest.approx(req["slo_attainment"], abs=0.03)
    assert flu["ttft_p99_s"] == pytest.approx(req["ttft_p99_s"], rel=0.25)
    for role in ("prefill", "decode"):
        assert flu["avg_gpu_util_by_role"][role] == pytest.approx(req["avg_gpu_util_by_role"][role], rel=0.05)


def test_the_table_says_which_fluid_figures_to_trust() -> None:
    from heteroscale.reports.table import summary_table

    sc = b.scenario(prefill=2, decode=2)
    tr = b.trace(n=200, rate_rps=2.0)
    tested = {"svc": pb.targets(source="pressure-test: knee 10 req/s", margin=1.0)}
    run = SimulationRun(sc, calibration_for(sc), fidelity=Fidelity.FLUID, loads=b.loads_for(sc, tr), targets=tested)
    table = summary_table(run.run())
    assert "of the SLO knee (light); trusted: slo_attainment, tbt_p50_s, ttft_p50_s" in table
    untested = SimulationRun(sc, calibration_for(sc), fidelity=Fidelity.FLUID, loads=b.loads_for(sc, tr)).run()
    assert "trusted: throughput and utilisation only" in summary_table(untested)
