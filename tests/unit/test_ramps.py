"""Ramp-up windows of the offered load, SLO misses in them, and the share of misses a policy removes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from heteroscale.experiments.ramps import RampSlo, ramp_misses_removed, ramp_slo, ramp_windows, smoothed_arrivals
from heteroscale.sim.telemetry import RoleWindow, WindowRow

TICK_S = 30.0


def role_window(**overrides: Any) -> RoleWindow:
    base: dict[str, Any] = {
        "instances_ready": 1,
        "instances_starting": 0,
        "instances_draining": 0,
        "tps": 0.0,
        "gpu_util": None,
        "sm_activity": None,
        "compute_efficiency": None,
        "queue_len": 0.0,
        "running": 0.0,
        "kv_usage": None,
    }
    base.update(overrides)
    return RoleWindow(**base)


def row(**overrides: Any) -> WindowRow:
    base: dict[str, Any] = {
        "t_s": TICK_S,
        "window_s": TICK_S,
        "service": "svc",
        "prefill": role_window(),
        "decode": role_window(),
        "arrivals_per_s": 10.0,
        "completions": 0,
        "ttft_p50_s": None,
        "ttft_p90_s": None,
        "ttft_p99_s": None,
        "tbt_p50_s": None,
        "tbt_p90_s": None,
        "tbt_p99_s": None,
        "mean_input_tokens": None,
        "mean_output_tokens": None,
    }
    base.update(overrides)
    return WindowRow(**base)


def series(rates: list[float], met: list[int] | None = None, missed: list[int] | None = None) -> list[WindowRow]:
    """One row per 30 s tick, ending at 30, 60, … s."""
    n = len(rates)
    met = met if met is not None else [0] * n
    missed = missed if missed is not None else [0] * n
    return [
        row(t_s=(i + 1) * TICK_S, arrivals_per_s=r, slo_met=m, slo_missed=x)
        for i, (r, m, x) in enumerate(zip(rates, met, missed, strict=True))
    ]


def marked(flags: list[bool]) -> list[int]:
    return [i for i, f in enumerate(flags) if f]


def test_step_up_marks_the_lookahead_span_before_and_across_the_step() -> None:
    # 10 req/s for 40 ticks, then 20 req/s for 40 ticks; no smoothing to keep the arithmetic exact:
    # row i (t = 30(i+1)) starts a ramp when row i + 20 (t + 600 s) is at 20 → i ∈ [20, 39]; each marks
    # [t, t + 600 s], so rows 20 … 59 are in the ramp-up
    rows = series([10.0] * 40 + [20.0] * 40)
    flags = ramp_windows(rows, smooth_s=0.0, rise=0.10, lookahead_s=600.0)
    assert marked(flags) == list(range(20, 60))


def test_step_up_with_default_smoothing_marks_around_the_step() -> None:
    rows = series([10.0] * 60 + [20.0] * 60)
    flags = ramp_windows(rows)
    got = marked(flags)
    # the smoothed step rises over rows 55 … 64; the span starts about lookahead before it ends and
    # ends lookahead after it starts: contiguous, and it covers the step itself
    assert got == list(range(got[0], got[-1] + 1))
    assert 35 <= got[0] <= 45
    assert 75 <= got[-1] <= 85
    assert all(flags[i] for i in range(55, 65))


@pytest.mark.parametrize(
    ("name", "rates"),
    [
        ("flat", [10.0] * 80),
        ("falling step", [20.0] * 40 + [10.0] * 40),
        ("falling line", [30.0 - 0.25 * i for i in range(80)]),
        ("zero", [0.0] * 80),
        ("slow drift below the margin", [10.0 + 0.01 * i for i in range(80)]),  # +2 % per 600 s
    ],
)
def test_loads_without_a_ramp_mark_nothing(name: str, rates: list[float]) -> None:
    assert not any(ramp_windows(series(rates))), name


def test_smoothing_ignores_a_one_window_spike() -> None:
    rates = [10.0] * 80
    rates[40] = 20.0  # one 30 s window at 2×
    rows = series(rates)
    assert not any(ramp_windows(rows))  # smoothed over 11 windows (ends within ±150 s): +0.9 req/s, < 10 %
    assert any(ramp_windows(rows, smooth_s=0.0))  # unsmoothed it would count


def test_smoothed_arrivals_is_a_centred_duration_weighted_mean() -> None:
    rows = series([0.0, 0.0, 30.0, 0.0, 0.0])
    # ±45 s around each window end: three windows in the middle, two at the edges
    assert smoothed_arrivals(rows, smooth_s=90.0) == pytest.approx([0.0, 10.0, 10.0, 10.0, 0.0])


def test_windows_too_close_to_the_end_cannot_start_a_ramp() -> None:
    rows = series([10.0] * 30 + [20.0] * 5)  # the step comes 150 s before the end
    flags = ramp_windows(rows, smooth_s=0.0)
    assert marked(flags) == list(range(10, 35))  # rows 10 … 14 see the step 600 s later; marks to the end


def test_rows_out_of_order_or_bad_arguments_raise() -> None:
    rows = series([10.0] * 3)
    with pytest.raises(ValueError, match="time order"):
        ramp_windows(list(reversed(rows)))
    with pytest.raises(ValueError, match="lookahead_s"):
        ramp_windows(rows, lookahead_s=0.0)
    with pytest.raises(ValueError, match="rise"):
        ramp_windows(rows, rise=-0.1)
    with pytest.raises(ValueError, match="3 rows"):
        ramp_slo(rows, ramps=[True])


def test_misses_are_counted_only_in_ramp_windows() -> None:
    rates = [10.0] * 40 + [20.0] * 40
    met = [100] * 80
    missed = [0] * 80
    missed[5] = 50  # before the ramp: not counted
    missed[45] = 30  # in the ramp (rows 20 … 59 with no smoothing)
    missed[70] = 40  # after it: not counted
    rows = series(rates, met, missed)
    slo = ramp_slo(rows, smooth_s=0.0)
    assert slo == RampSlo(
        windows=80, ramp_windows=40, requests=40 * 100 + 30, missed=30, attainment=1 - 30 / 4030, ramp_seconds=1200.0
    )
    assert slo.as_dict()["ramp_missed"] == 30


def test_given_ramps_are_used_as_is() -> None:
    rows = series([10.0] * 4, met=[1, 2, 3, 4], missed=[1, 0, 2, 0])
    slo = ramp_slo(rows, ramps=[False, True, True, False])
    assert (slo.ramp_windows, slo.requests, slo.missed, slo.ramp_seconds) == (2, 7, 2, 60.0)


def test_no_ramp_means_no_attainment() -> None:
    slo = ramp_slo(series([10.0] * 40, met=[5] * 40))
    assert (slo.ramp_windows, slo.requests, slo.attainment) == (0, 0, None)


def ramp(missed: int) -> RampSlo:
    return RampSlo(
        windows=10, ramp_windows=4, requests=100, missed=missed, attainment=1 - missed / 100, ramp_seconds=120
    )


@pytest.mark.parametrize(
    ("reactive", "predictive", "removed"),
    [
        (40, 10, 0.75),
        (40, 0, 1.0),
        (40, 40, 0.0),
        (20, 30, -0.5),  # the predictive run missed more
        (0, 0, None),
        (0, 5, None),
    ],
)
def test_ramp_misses_removed(reactive: int, predictive: int, removed: float | None) -> None:
    got = ramp_misses_removed(ramp(reactive), ramp(predictive))
    assert got == (pytest.approx(removed) if removed is not None else None)


def test_row_builder_sets_the_slo_fields() -> None:
    r = row(slo_met=3, slo_missed=1)
    assert dataclasses.asdict(r)["slo_met"] == 3
    assert (r.slo_met, r.slo_missed) == (3, 1)
