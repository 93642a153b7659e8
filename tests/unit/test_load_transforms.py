"""Load transforms (output/input length scales, rate steps) and windows (parts of a load): the pure
functions, the scenario fields that set them, and how the runner applies them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heteroscale.config import load_scenario, resolved_config_dict, write_resolved_config
from heteroscale.config.catalog import calibration_for
from heteroscale.errors import ConfigError
from heteroscale.experiments.pressure import length_mix
from heteroscale.sim.loadgen import RateCurve, read_rate_curve
from heteroscale.sim.runner import SimulationRun, build_trace
from heteroscale.sim.scenario import Fidelity
from heteroscale.sim.traces import RequestTrace, read_trace
from heteroscale.sim.transforms import LengthScale, RateStep, apply_rate_steps, rate_multiplier, scale_lengths
from heteroscale.sim.windows import LoadWindow, WindowKind, resolve_window, steepest_start
from tests.unit.config_builders import one_line_error
from tests.unit.variant_builders import line_of, scenario_dict, write


def flat(n: int, gap_s: float = 0.1, cached: bool = False) -> RequestTrace:
    return RequestTrace(
        name="flat",
        arrival_s=np.arange(n, dtype=np.float64) * gap_s,
        input_tokens=np.arange(100, 100 + n, dtype=np.int64),
        output_tokens=np.arange(1, n + 1, dtype=np.int64),
        cached_tokens=np.full(n, 50, dtype=np.int64) if cached else None,
    )


def poisson_load(**load: Any) -> dict[str, Any]:
    base = {"kind": "poisson", "trace": "azure-conv", "rate_curve": "servegen-m-large", "rate_curve_day": 0}
    return {"services.0.load": base | load, "simulation.duration_s": None}


# --- length scales ----------------------------------------------------------------------------------


def test_output_scale_multiplies_rounds_and_caps() -> None:
    trace = flat(5)  # outputs 1..5
    out = scale_lengths(trace, LengthScale(output_scale=2.5, output_cap_tokens=10))
    assert out.output_tokens.tolist() == [3, 5, 8, 10, 10]  # 2.5, 5, 7.5, 10, 12.5 → half up, cap 10
    assert np.array_equal(out.input_tokens, trace.input_tokens) and out.arrival_s is trace.arrival_s


def test_a_scale_below_one_keeps_one_token() -> None:
    out = scale_lengths(flat(3), LengthScale(output_scale=0.1, input_scale=0.001))
    assert out.output_tokens.tolist() == [1, 1, 1] and out.input_tokens.tolist() == [1, 1, 1]


def test_input_scale_scales_the_cached_prefix_too() -> None:
    out = scale_lengths(flat(3, cached=True), LengthScale(input_scale=2.0, input_cap_tokens=201))
    assert out.input_tokens.tolist() == [200, 201, 201]
    assert out.cached_tokens is not None and out.cached_tokens.tolist() == [100, 100, 100]
    tight = scale_lengths(flat(1, cached=True), LengthScale(input_scale=3.0, input_cap_tokens=120))
    assert tight.cached_tokens is not None and tight.cached_tokens.tolist() == [119]  # ≤ input − 1


def test_the_identity_scale_returns_the_trace_itself() -> None:
    trace = flat(3)
    assert scale_lengths(trace, LengthScale()) is trace


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"output_scale": 0.0}, "output_scale must be a positive number"),
        ({"input_scale": float("inf")}, "input_scale must be a positive number"),
        ({"output_cap_tokens": 0}, "output_cap_tokens must be a positive integer"),
    ],
)
def test_bad_length_scales_are_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=f"^{problem}"):
        LengthScale(**changes)


# --- rate steps -------------------------------------------------------------------------------------


def test_the_multiplier_ramps_linearly_and_steps_multiply() -> None:
    steps = [RateStep(at_s=100, factor=2, ramp_s=60), RateStep(at_s=400, factor=0.5, ramp_s=0)]
    t = np.array([0.0, 100.0, 130.0, 160.0, 399.0, 400.0])
    assert rate_multiplier(steps, t).tolist() == [1.0, 1.0, 1.5, 2.0, 2.0, 1.0]


def test_a_step_doubles_the_arrivals_after_its_ramp_and_leaves_those_before() -> None:
    trace = flat(20_000, gap_s=0.1)  # 10 requests/s for 2,000 s
    doubled = apply_rate_steps(trace, [RateStep(at_s=1000, factor=2, ramp_s=60)], np.random.default_rng(0))
    counts = np.histogram(doubled.arrival_s, bins=[0, 1000, 1060, 2000])[0]
    assert counts[0] == 10_000  # before the step: exactly the original requests
    assert counts[2] == pytest.approx(2 * 9_400, rel=0.02)  # ×2 after the ramp (binomial sd ≈ 0.3 %)
    assert counts[1] == pytest.approx(600 * 1.5, rel=0.1)  # the ramp's mean multiplier is 1.5
    assert bool((np.diff(doubled.arrival_s) >= 0).all())
    # copies carry the lengths of the request they follow; each original is kept
    assert set(trace.input_tokens.tolist()) == set(doubled.input_tokens.tolist())


def test_a_step_down_thins_and_keeps_each_survivor_whole() -> None:
    trace = flat(20_000, gap_s=0.1, cached=True)
    halved = apply_rate_steps(trace, [RateStep(at_s=0, factor=0.5, ramp_s=0)], np.random.default_rng(1))
    assert len(halved) == pytest.approx(10_000, rel=0.03)
    kept = np.searchsorted(trace.arrival_s, halved.arrival_s)
    assert np.array_equal(trace.arrival_s[kept], halved.arrival_s)  # thinning moves no request
    assert np.array_equal(trace.output_tokens[kept], halved.output_tokens)
    assert halved.cached_tokens is not None and set(halved.cached_tokens.tolist()) == {50}


def test_steps_are_deterministic_in_the_generator_and_offset_by_the_window() -> None:
    trace = flat(5_000)
    steps = [RateStep(at_s=1000, factor=3, ramp_s=0)]
    a = apply_rate_steps(trace, steps, np.random.default_rng(5))
    b = apply_rate_steps(trace, steps, np.random.default_rng(5))
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert len(a) == len(trace)  # the trace ends at 500 s, before the step
    shifted = apply_rate_steps(trace, steps, np.random.default_rng(5), offset_s=800.0)  # 200 s of it after
    assert len(shifted) - len(trace) == pytest.approx(2 * 3_000, rel=0.01)


# --- windows ------------------------------------------------------------------------------------------


def curve(rates: list[float], window_s: float = 600.0) -> RateCurve:
    starts = np.arange(len(rates), dtype=np.float64) * window_s
    return RateCurve("c", starts, np.array(rates, dtype=np.float64), window_s)


def test_the_steepest_window_is_a_sustained_rise_not_one_spike() -> None:
    # a steady rise over windows 0..5 and a single spike at window 10: the rise wins (a least-squares
    # slope would pick the run ending on the spike)
    rates = [10, 15, 20, 25, 30, 35, 35, 35, 35, 35, 200, 35]
    assert steepest_start(curve(rates), 6 * 600.0) == 0.0
    assert steepest_start(curve([50, 45, *rates]), 6 * 600.0) == 600.0  # one drop is outvoted, two are not
    assert steepest_start(curve([1, 1, 1, 1]), 1200.0) == 0.0  # ties go to the earliest
    with pytest.raises(ConfigError, match="steepest_s 3000 s is longer than the load"):
        steepest_start(curve([1, 2, 3, 4]), 3000.0)


def test_steepest_on_servegen_m_large_day0_is_the_noon_rise() -> None:
    day0 = read_rate_curve(data_file("servegen_language_m-large_rate.csv")).day(0)
    assert steepest_start(day0, 3 * 3600.0) == 12 * 3600.0  # 12:00-15:00, 224 → 345 rps
    part = resolve_window(LoadWindow(WindowKind.STEEPEST, length_s=1350.0), 10_800.0, day0, 8.0)
    assert (part.start_s, part.end_s) == (5400.0, 6750.0)  # the same 3 h at x8 compression


def test_halves_and_ranges_resolve_on_the_span() -> None:
    assert resolve_window(LoadWindow(WindowKind.FIRST_HALF), 100.0) == resolve_window(
        LoadWindow(WindowKind.RANGE, start_s=0.0, end_s=50.0), 100.0
    )
    second = resolve_window(LoadWindow(WindowKind.SECOND_HALF), 100.0)
    assert (second.start_s, second.end_s) == (50.0, None)
    with pytest.raises(ConfigError, match=r"end_s 120 s is past the end of the load \(100 s\)"):
        resolve_window(LoadWindow(WindowKind.RANGE, start_s=10.0, end_s=120.0), 100.0)


def data_file(name: str) -> Path:
    from heteroscale.config.bundled import data_path

    return data_path("traces", name)


# --- scenario fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "where", "problem"),
    [
        ({"services.0.load.output_scale": 0}, "services[0].load.output_scale", "greater than 0"),
        ({"services.0.load.output_scale": 100.0}, "services[0].load.output_scale", "less than or equal to 64"),
        ({"services.0.load.output_cap_tokens": 0}, "services[0].load.output_cap_tokens", "greater than or equal"),
        ({"services.0.load.input_scale": -2.0}, "services[0].load.input_scale", "greater than 0"),
        (
            {"services.0.load.rate_steps": [{"at_s": 10, "factor": 0}]},
            "services[0].load.rate_steps[0].factor",
            "greater than 0",
        ),
        ({"services.0.load.rate_steps": [{"at_s": -1, "factor": 2}]}, "services[0].load.rate_steps[0].at_s", ""),
        (
            {"services.0.load.rate_steps": [{"at_s": 1, "factor": 2, "ramp": 9}]},
            "services[0].load.rate_steps[0].ramp",
            "did you mean 'ramp_s'",
        ),
        ({"services.0.load.window": {}}, "services[0].load.window", "give exactly one of"),
        ({"services.0.load.window": {"half": "third"}}, "services[0].load.window.half", "'first' or 'second'"),
        ({"services.0.load.window": {"start_s": 10}}, "services[0].load.window", "needs both start_s and end_s"),
        (
            {"services.0.load.window": {"start_s": 10, "end_s": 5}},
            "services[0].load.window",
            "end_s (5) must be after start_s (10)",
        ),
        (
            {"services.0.load.window": {"start_s": 0, "end_s": 99_999}},
            "services[0].load.window",
            "end_s 99999 s is past the end of the load (1717.97 s)",
        ),
        ({"services.0.load.window": {"steepest_s": 600}}, "services[0].load.window", "needs a rate curve"),
    ],
)
def test_a_bad_transform_or_window_is_one_line_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], where: str, problem: str
) -> None:
    message = one_line_error(write(tmp_path, scenario_dict(**changes)))
    assert f": {where}: " in message, message
    assert problem in message, message


def test_a_day_outside_the_curve_is_refused_when_the_scenario_loads(tmp_path: Path) -> None:
    # regression: a rate_curve_day past the curve loaded fine and failed mid-run without naming the field
    path = write(tmp_path, scenario_dict(**poisson_load(rate_curve_day=20)))
    message = one_line_error(path)
    assert ": services[0].load.rate_curve_day: " in message and "day 20 is outside the curve (days 0..13)" in message
    assert message.endswith(f"(line {line_of(path, 'rate_curve_day: 20')})"), message


def test_rate_scale_on_a_replayed_trace_is_refused_not_ignored(tmp_path: Path) -> None:
    # regression: kind trace silently ignored rate_scale (a replay has no rate curve to scale)
    message = one_line_error(write(tmp_path, scenario_dict(**{"services.0.load.rate_scale": 2.0})))
    assert ": services[0].load: rate_scale scales a rate curve (kind 'poisson')" in message, message


def test_a_window_of_a_poisson_load_with_copies_is_refused(tmp_path: Path) -> None:
    message = one_line_error(write(tmp_path, scenario_dict(**poisson_load(copies=2, window={"half": "first"}))))
    assert ": services[0].load.window: a window of a poisson load with copies is ambiguous" in message


# --- the runner ---------------------------------------------------------------------------------------


def replay(tmp_path: Path, **load: Any) -> Any:
    base = {"kind": "trace", "trace": "azure-code", "time_compression": 2.0}
    (run,) = load_scenario(str(write(tmp_path, scenario_dict(**{"services.0.load": base | load})))).services
    return run.load


def test_the_halves_of_a_replay_are_the_whole_replay_cut_and_rebased(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    whole = build_trace(replay(tmp_path), rng, "s")
    first = build_trace(replay(tmp_path, window={"half": "first"}), rng, "s")
    second = build_trace(replay(tmp_path, window={"half": "second"}), rng, "s")
    half = float(whole.arrival_s[-1]) / 2
    assert len(first) + len(second) == len(whole)
    assert np.allclose(first.arrival_s, whole.arrival_s[: len(first)])
    assert np.allclose(second.arrival_s + half, whole.arrival_s[len(first) :])
    assert float(first.arrival_s[-1]) < half <= float(whole.arrival_s[len(first)])


def test_a_poisson_window_draws_only_its_interval(tmp_path: Path) -> None:
    (run,) = load_scenario(
        str(write(tmp_path, scenario_dict(**poisson_load(window={"start_s": 3600, "end_s": 4200}, rate_scale=0.01)))),
    ).services
    part = build_trace(run.load, np.random.default_rng(3), "s")
    assert float(part.arrival_s[0]) >= 0.0 and float(part.arrival_s[-1]) < 600.0
    # the curve's rate there (≈ 200 rps × 0.01) for 600 s, give or take the Poisson noise
    assert len(part) == pytest.approx(600 * 2.0, rel=0.25)


def test_transforms_are_part_of_the_load_the_same_for_every_policy(tmp_path: Path) -> None:
    steps = [{"at_s": 300, "factor": 2, "ramp_s": 60}]
    changes = {
        "services.0.load": {
            "kind": "trace",
            "trace": "azure-code",
            "time_compression": 2.0,
            "rate_steps": steps,
            "output_scale": 8.0,
            "output_cap_tokens": 64,
        },
        "simulation.duration_s": 600,
    }
    scenario = load_scenario(str(write(tmp_path, scenario_dict(**changes))))
    cal = calibration_for(scenario)
    runs = [
        SimulationRun(scenario, cal, policies={"code-32b": (name, {})}) for name in ("heteroscale", "hpa", "aibrix-apa")
    ]
    first = runs[0].loads[0].trace
    assert int(first.output_tokens.max()) == 64 and float(first.output_tokens.mean()) > 27.9 * 1.5
    for other in runs[1:]:
        trace = other.loads[0].trace
        assert np.array_equal(trace.arrival_s, first.arrival_s)
        assert np.array_equal(trace.output_tokens, first.output_tokens)
    before = np.histogram(first.arrival_s, bins=[60, 300, 360, 600])[0]
    assert before[2] / 240 == pytest.approx(2 * before[0] / 240, rel=0.25)  # the Azure code trace is bursty


def test_the_pressure_tests_length_mix_has_the_scaled_outputs(tmp_path: Path) -> None:
    load = {"kind": "trace", "trace": "azure-conv", "output_scale": 8.0, "output_cap_tokens": 8192}
    (run,) = load_scenario(str(write(tmp_path, scenario_dict(**{"services.0.load": load})))).services
    raw = read_trace(run.load.trace_path)
    mix = length_mix(run)
    assert float(mix.output_tokens.mean()) == pytest.approx(8 * float(raw.output_tokens.mean()), rel=0.01)


def test_a_fluid_poisson_window_and_scale_reach_the_curve_load(tmp_path: Path) -> None:
    changes = poisson_load(window={"start_s": 3600, "end_s": 4200}, output_scale=2.0)
    scenario = load_scenario(str(write(tmp_path, scenario_dict(**changes))))
    sim = SimulationRun(scenario, calibration_for(scenario), fidelity=Fidelity.FLUID)
    load = sim.loads[0]
    assert load.rate_curve is not None and load.curve_start_s == 3600.0 and load.duration_s == 600.0
    assert load.load_end_s() == 600.0
    raw = read_trace(scenario.services[0].load.trace_path)
    assert float(load.trace.output_tokens.mean()) == pytest.approx(2 * float(raw.output_tokens.mean()), rel=0.01)


def test_the_resolved_config_round_trips_the_transforms(tmp_path: Path) -> None:
    load = {
        "kind": "poisson",
        "trace": "azure-conv",
        "rate_curve": "servegen-m-large",
        "rate_curve_day": 1,
        "output_scale": 8.0,
        "output_cap_tokens": 8192,
        "input_scale": 1.5,
        "rate_steps": [{"at_s": 600, "factor": 2, "ramp_s": 30}],
        "window": {"steepest_s": 1800},
    }
    scenario = load_scenario(str(write(tmp_path, scenario_dict(**{"services.0.load": load}))))
    out = tmp_path / "resolved.yaml"
    write_resolved_config(scenario, out)
    again = load_scenario(str(out))
    assert again.services[0].load == scenario.services[0].load
    assert resolved_config_dict(again)["services"][0]["load"]["window"] == {"steepest_s": 1800.0}
    assert dataclasses.replace(again.services[0].load.lengths) == LengthScale(1.5, None, 8.0, 8192)
