"""Rate curves and Poisson load generated from them (heteroscale.sim.traces / heteroscale.sim.loadgen)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim.traces import (
    bundled_trace_path,
    generate_poisson,
    read_rate_curve,
    read_trace,
)
from tests.unit.trace_builders import (
    CURVE_HEADER,
    lengths_table,
    make_curve,
    make_trace,
    write,
)

# ---------------------------------------------------------------- rate curves


def test_m_large_day_zero() -> None:
    curve = read_rate_curve(bundled_trace_path("servegen_language_m-large_rate.csv"))
    assert curve.window_s == 600.0
    assert len(curve) == 14 * 144
    day = curve.day(0)
    assert len(day) == 144
    assert day.window_start_s[0] == 0.0
    assert day.peak_rps == pytest.approx(583.0, abs=0.5)
    assert day.peak_to_trough() == pytest.approx(3.86, abs=0.005)
    assert float(day.rate_rps.mean()) / day.peak_rps == pytest.approx(0.48, abs=0.005)
    assert curve.day(13).window_start_s[-1] == 86_400.0 - 600.0
    with pytest.raises(ConfigError, match=r"day 14 is outside"):
        curve.day(14)


def test_m_small_zero_windows_are_dropped_for_the_trough() -> None:
    curve = read_rate_curve(bundled_trace_path("servegen_language_m-small_rate.csv"))
    assert int((curve.rate_rps == 0).sum()) == 37
    assert curve.peak_to_trough(drop_zero=False) == math.inf
    assert math.isfinite(curve.peak_to_trough())


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (f"{CURVE_HEADER}\n0,1.0,2\n600,-1.0,2\n", 3, "total_rate_rps must be ≥ 0"),
        (f"{CURVE_HEADER}\n0,1.0,2\n600,fast,2\n", 3, "total_rate_rps: not a number"),
        (f"{CURVE_HEADER}\n0,1.0,2\n600,1.0\n", 3, "expected 3 columns, got 2"),
        (f"{CURVE_HEADER}\n600,1.0,2\n0,1.0,2\n", 3, "window_start_s 0 is not after the previous 600"),
        (f"{CURVE_HEADER}\n0,1.0,2\n600,1.0,2.5\n", 3, "active_clients: not an integer"),
        ("start,rate\n0,1.0\n", 1, "missing header"),
    ],
)
def test_rate_curve_bad_rows(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, "r.csv", text)
    with pytest.raises(TraceError) as caught:
        read_rate_curve(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert problem in str(caught.value)


def test_rate_curve_skip_and_window_inference(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", f"{CURVE_HEADER}\n0,1.0,2\nbad,1,1\n600,3.0,2\n1800,2.0,1\n")
    curve = read_rate_curve(path, skip_bad_rows=True)
    assert curve.window_s == 600.0
    assert curve.window_start_s.tolist() == [0.0, 600.0, 1800.0]
    one = write(tmp_path, "one.csv", "window_start_s,total_rate_rps\n0,4.0\n")
    with pytest.raises(TraceError, match="one window only"):
        read_rate_curve(one)
    assert read_rate_curve(one, window_s=60.0).expected_requests == 240.0


# ---------------------------------------------------------------- generate_poisson


def test_generate_poisson_is_deterministic_per_seed() -> None:
    curve, lengths = make_curve([5.0, 0.0, 20.0, 1.0]), lengths_table()
    first = generate_poisson(curve, lengths, np.random.default_rng(42))
    again = generate_poisson(curve, lengths, np.random.default_rng(42))
    other = generate_poisson(curve, lengths, np.random.default_rng(43))
    for column in ("arrival_s", "input_tokens", "output_tokens", "cached_tokens"):
        assert np.array_equal(getattr(first, column), getattr(again, column))
    assert not np.array_equal(first.arrival_s, other.arrival_s)


@pytest.mark.parametrize(
    ("rates", "rate_scale", "start_s", "duration_s", "expected"),
    [
        ([5.0, 0.0, 20.0, 1.0], 1.0, 0.0, None, 600.0 * 26.0),
        ([5.0, 0.0, 20.0, 1.0], 2.5, 0.0, None, 2.5 * 600.0 * 26.0),
        ([5.0, 0.0, 20.0, 1.0], 0.1, 0.0, None, 0.1 * 600.0 * 26.0),
        ([5.0, 0.0, 20.0, 1.0], 1.0, 300.0, 1500.0, 300.0 * 5.0 + 600.0 * 20.0),
        ([10.0] * 144, 1.0, 0.0, None, 10.0 * 86_400.0),
    ],
)
def test_generate_poisson_count_matches_integral_of_rate(
    rates: list[float], rate_scale: float, start_s: float, duration_s: float | None, expected: float
) -> None:
    lengths = lengths_table()
    for seed in range(5):
        trace = generate_poisson(
            make_curve(rates), lengths, np.random.default_rng(seed),
            rate_scale=rate_scale, start_s=start_s, duration_s=duration_s,
        )  # fmt: skip
        assert abs(len(trace) - expected) < 5.0 * math.sqrt(expected)
        assert bool(np.all(np.diff(trace.arrival_s) >= 0))
        assert trace.arrival_s.min() >= 0.0
        if duration_s is not None:
            assert trace.arrival_s.max() < duration_s


def test_generate_poisson_follows_the_windows() -> None:
    curve = make_curve([50.0, 0.0, 200.0])
    trace = generate_poisson(curve, lengths_table(), np.random.default_rng(7))
    per_window = np.histogram(trace.arrival_s, bins=[0.0, 600.0, 1200.0, 1800.0])[0]
    assert per_window[1] == 0
    for count, expected in ((per_window[0], 30_000.0), (per_window[2], 120_000.0)):
        assert abs(count - expected) < 5.0 * math.sqrt(expected)
    # uniform inside a window: each half of the busy window holds half the requests
    first_half = int(((trace.arrival_s >= 1200.0) & (trace.arrival_s < 1500.0)).sum())
    assert abs(first_half - per_window[2] / 2) < 5.0 * math.sqrt(per_window[2] / 4)


def test_generate_poisson_time_compression_squeezes_the_same_draws() -> None:
    curve, lengths = make_curve([5.0, 20.0]), lengths_table()
    slow = generate_poisson(curve, lengths, np.random.default_rng(3))
    fast = generate_poisson(curve, lengths, np.random.default_rng(3), time_compression=4.0)
    assert len(fast) == len(slow)
    np.testing.assert_allclose(fast.arrival_s, slow.arrival_s / 4.0, rtol=1e-12, atol=1e-9)
    assert fast.arrival_s.max() < 1200.0 / 4.0
    assert fast.mean_rps == pytest.approx(4.0 * slow.mean_rps)
    late = generate_poisson(curve, lengths, np.random.default_rng(3), time_compression=4.0, start_s=150.0)
    assert late.arrival_s.max() < 150.0
    assert abs(len(late) - 20.0 * 600.0) < 5.0 * math.sqrt(20.0 * 600.0)


def test_generate_poisson_resamples_whole_rows() -> None:
    trace = generate_poisson(make_curve([30.0]), lengths_table(), np.random.default_rng(11))
    assert trace.cached_tokens is not None
    assert np.array_equal(trace.output_tokens, 2 * trace.input_tokens)
    assert np.array_equal(trace.cached_tokens, trace.input_tokens - 1)
    assert set(trace.input_tokens.tolist()) == set(range(1, 51))
    unknown = generate_poisson(make_curve([1.0]), make_trace([0.0]), np.random.default_rng(1))
    assert unknown.cached_tokens is None


@pytest.mark.parametrize(
    "kwargs",
    [{"rate_scale": -1.0}, {"time_compression": 0.0}, {"time_compression": math.inf}, {"duration_s": -5.0}],
)
def test_generate_poisson_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        generate_poisson(make_curve([1.0]), lengths_table(), np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]


def test_generate_poisson_on_a_day_of_m_large() -> None:
    day = read_rate_curve(bundled_trace_path("servegen_language_m-large_rate.csv")).day(0)
    conv = read_trace(bundled_trace_path("AzureLLMInferenceTrace_conv.csv"))
    hour = generate_poisson(day, conv, np.random.default_rng(0), duration_s=3600.0, start_s=12 * 3600.0)
    expected = float(day.rate_rps[72:78].sum()) * 600.0
    assert abs(len(hour) - expected) < 5.0 * math.sqrt(expected)
