"""The decode-TPS forecaster: persistence, trend, seasonal profile, its gate, the cap, and its state."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from heteroscale.policy.forecast import (
    Forecast,
    ForecastParams,
    ForecastState,
    forecast,
    observe,
)

DAY_S = 86_400.0
TICK_S = 30.0
H_S = 150.0  # cold start 120 s + one tick


def params(**overrides: Any) -> ForecastParams:
    return ForecastParams(**overrides)


def fed(signal: Callable[[float], float], start_s: float, end_s: float, p: ForecastParams) -> ForecastState:
    """The state after observing ``signal`` every tick in ``[start_s, end_s)``."""
    state = ForecastState()
    for k in range(int((end_s - start_s) / TICK_S)):
        t = start_s + k * TICK_S
        state = observe(state, t, signal(t), p)
    return state


def replay(
    signal: Callable[[float], float], seasons: float, p: ForecastParams, from_s: float, to_s: float
) -> list[tuple[float, Forecast]]:
    """Observe ``signal`` every tick for ``seasons`` seasons; forecasts made at ticks in [from_s, to_s)."""
    state = ForecastState()
    out: list[tuple[float, Forecast]] = []
    for k in range(int(seasons * p.season_s / TICK_S)):
        t = k * TICK_S
        state = observe(state, t, signal(t), p)
        if from_s <= t < to_s:
            out.append((t, forecast(state, t, H_S, p)))
    return out


# ------------------------------------------------------------------------------------- persistence, trend


@pytest.mark.parametrize(
    ("name", "level", "slope"),
    [
        ("rising ramp", 1000.0, 2.0),
        ("flat", 5000.0, 0.0),
        ("falling ramp", 9000.0, -3.0),
    ],
)
def test_a_straight_line_is_extrapolated_by_the_trend(name: str, level: float, slope: float) -> None:
    p = params()
    state = fed(lambda t: level + slope * t, 0.0, 900.0, p)
    now_s = 870.0
    got = forecast(state, now_s, H_S, p)
    assert got.method == "trend", name
    assert got.value == pytest.approx(level + slope * (now_s + H_S)), name
    assert not got.capped
    assert f"at +{H_S:g} s" in got.detail


@pytest.mark.parametrize(("points", "expect"), [(0, 0.0), (1, 700.0), (2, 710.0)])
def test_too_few_points_give_persistence(points: int, expect: float) -> None:
    p = params()
    state = fed(lambda t: 700.0 + t / 3.0, 0.0, points * TICK_S, p)
    got = forecast(state, max(0.0, (points - 1) * TICK_S), H_S, p)
    assert got.method == "persistence"
    assert got.value == pytest.approx(expect)


def test_forecast_counts_the_horizon_from_the_latest_observation() -> None:
    p = params()
    state = fed(lambda t: 100.0 + t, 0.0, 300.0, p)  # last observation at 270 s
    got = forecast(state, 300.0, H_S, p)  # 30 s later: effective horizon 180 s
    assert got.value == pytest.approx(100.0 + 450.0)
    assert "at +180 s" in got.detail


@pytest.mark.parametrize(
    ("max_growth", "expect"),
    [(3.0, 300.0), (2.0, 200.0), (5.0, 310.0)],  # uncapped: level 85 + 1.5 tok/s² × 150 s = 310
)
def test_the_forecast_is_capped_at_max_growth_times_current(max_growth: float, expect: float) -> None:
    p = params(max_growth=max_growth)
    state = ForecastState()
    for t, v in [(0.0, 10.0), (30.0, 10.0), (60.0, 100.0)]:
        state = observe(state, t, v, p)
    got = forecast(state, 60.0, H_S, p)
    assert got.value == pytest.approx(expect)
    assert got.capped is (expect < 310.0)
    assert ("capped at" in got.detail) is got.capped


def test_the_forecast_is_never_negative() -> None:
    p = params()
    state = fed(lambda t: 1000.0 - 3.0 * t, 0.0, 330.0, p)  # reaches 10 at 330 s, −440 150 s later
    got = forecast(state, 300.0, H_S, p)
    assert got.value == 0.0


@pytest.mark.parametrize("bad", [math.nan, -1.0, math.inf])
def test_nan_negative_and_infinite_values_are_ignored(bad: float) -> None:
    p = params()
    state = fed(lambda t: 500.0, 0.0, 300.0, p)
    assert observe(state, 300.0, bad, p) is state
    assert forecast(observe(state, 300.0, bad, p), 300.0, H_S, p) == forecast(state, 300.0, H_S, p)


@pytest.mark.parametrize("at_s", [270.0, 100.0])  # repeated, out of order
def test_observations_not_after_the_latest_are_ignored(at_s: float) -> None:
    p = params()
    state = fed(lambda t: 500.0, 0.0, 300.0, p)
    assert observe(state, at_s, 9999.0, p) is state


# ---------------------------------------------------------------------------------------------- seasonal


def daily_sine(scale_day_2: float = 1.0) -> Callable[[float], float]:
    """A diurnal profile (trough at 00:00, peak at 12:00); from the second day on, ``scale_day_2`` × it."""

    def signal(t: float) -> float:
        base = 1000.0 + 600.0 * math.sin(2 * math.pi * t / DAY_S - math.pi / 2)
        return base * (scale_day_2 if t >= DAY_S else 1.0)

    return signal


@pytest.mark.parametrize(
    ("name", "scale_day_2", "gate"),
    [
        ("same level", 1.0, False),
        ("day 2 is 20 % busier", 1.2, False),
        ("with the gate", 1.2, True),
    ],
)
def test_a_learned_daily_profile_beats_persistence_on_the_next_days_rise(
    name: str, scale_day_2: float, gate: bool
) -> None:
    p = params(gate_seasonal=gate)
    signal = daily_sine(scale_day_2)
    rise = (DAY_S + 2 * 3600.0, DAY_S + 10 * 3600.0)  # 02:00–10:00 of day 2: the load rises
    made = replay(signal, 1.5, p, *rise)
    err = sum(abs(f.value - signal(t + H_S)) for t, f in made) / len(made)
    err_persistence = sum(abs(signal(t) - signal(t + H_S)) for t, _ in made) / len(made)
    assert err < 0.1 * err_persistence, name
    methods = {f.method for _, f in made}
    assert methods == ({"seasonal", "trend"} if gate else {"seasonal"}), name


def onset(t: float, season_s: float = 10_800.0) -> float:
    """Flat 1000, then a steep daily ramp to 3000 over 20 min starting at 1/3 of the season; flat after."""
    phase = t % season_s
    start = season_s / 3.0
    return 1000.0 + 2000.0 * min(1.0, max(0.0, (phase - start) / 1200.0))


def test_the_profile_anticipates_a_repeating_ramp_the_trend_cannot_see() -> None:
    season_s = 10_800.0  # compressed time: a 3-hour "day"
    p = params(season_s=season_s, gate_seasonal=False)
    start = season_s + season_s / 3.0
    made = replay(onset, 1.5, p, start - 300.0, start + 60.0)  # the 5 minutes before the ramp, and its start

    def mean_error(pick: Callable[[float, Forecast], float]) -> float:
        return sum(abs(pick(t, f) - onset(t + H_S)) for t, f in made) / len(made)

    seasonal = mean_error(lambda t, f: f.value)
    persistence = mean_error(lambda t, f: onset(t))
    trend_state = fed(onset, 0.0, start + 60.0, params(season_s=season_s, use_profile=False))
    assert {f.method for _, f in made} == {"seasonal"}
    assert seasonal < 0.6 * persistence
    last_trend = forecast(trend_state, start + 30.0, H_S, params(season_s=season_s, use_profile=False))
    assert abs(made[-1][1].value - onset(start + 30.0 + H_S)) < abs(last_trend.value - onset(start + 30.0 + H_S))


def test_the_gate_keeps_a_profile_that_does_not_repeat_out() -> None:
    season_s = 10_800.0
    p = params(season_s=season_s)

    def flipped(t: float) -> float:  # the second season is the first one upside down
        wave = 400.0 * math.sin(2 * math.pi * t / season_s)
        return 1000.0 + (wave if t < season_s else -wave)

    made = replay(flipped, 1.9, p, 1.2 * season_s, 1.9 * season_s)
    shares = [f.method for _, f in made]
    assert shares.count("trend") > 0.9 * len(shares)
    assert any("profile forecasts worse lately" in f.detail for _, f in made)


def test_details_say_which_method_and_why() -> None:
    p = params(season_s=10_800.0)
    early = fed(lambda t: 1000.0 + t / 10.0, 0.0, 3600.0, p)
    detail = forecast(early, 3570.0, H_S, p).detail
    assert detail.startswith("trend +0.1 tok/s² over 300 s")
    assert "no seasonal: 0.33 of a season seen" in detail
    after = replay(onset, 1.5, params(season_s=10_800.0, gate_seasonal=False), 14_400.0, 14_430.0)
    assert after[0][1].detail.startswith("seasonal ×")
    assert "bucket 32→33, 1 season seen" in after[0][1].detail  # 14 400 s is 3600 s into the season: 112.5 s buckets


# ------------------------------------------------------------------------------------------------- state


def test_history_and_profile_stay_bounded() -> None:
    p = params(season_s=3600.0, buckets=12, trend_window_s=300.0, max_history_points=50)
    state = ForecastState()
    for k in range(8_000):  # 1 s ticks for 2.2 seasons
        state = observe(state, float(k), 100.0 + (k % 977), p)
    assert len(state.history) == 50  # 301 points in the window, capped by max_history_points
    assert state.history[-1][0] - state.history[0][0] <= p.trend_window_s
    assert len(state.profile) == 12
    assert len(state.pending) <= p.score_horizon_s + 1


def test_history_is_pruned_to_the_trend_window() -> None:
    p = params(trend_window_s=600.0)
    state = fed(lambda t: 1.0, 0.0, 10 * 3600.0, p)
    assert len(state.history) == 21  # 600 s / 30 s + 1
    assert state.history[0][0] == state.history[-1][0] - 600.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("season_s", 0.0),
        ("season_s", math.nan),
        ("buckets", 0),
        ("profile_alpha", 0.0),
        ("profile_alpha", 1.5),
        ("trend_window_s", -1.0),
        ("max_growth", 0.5),
        ("min_trend_points", 1),
        ("max_history_points", 2),
        ("score_horizon_s", 0.0),
        ("score_alpha", 0.0),
        ("min_scored", -1),
    ],
)
def test_invalid_params_raise_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        params(**{field: value})
