"""Forecast accuracy on a real day-scale rate curve: persistence vs trend vs seasonal + trend.

Replays the bundled ServeGen m-large rate curve (days 0–2, each ``.day(i).smoothed(60)``, back to back)
as a signal sampled every 30 s, feeds :func:`heteroscale.policy.forecast.observe` with it and, at every
sample, forecasts 150 s ahead (a 120 s cold start + one 30 s tick). The curve is in requests/s; errors
are relative, so the unit does not matter (decode tokens/s is the same curve times a mean output
length). Two signals: ``clean`` (the curve itself) and ``noisy`` (× (1 + N(0, 2 %)), roughly what a
30 s telemetry window of a few thousand requests shows; seeded). Errors are always against the clean
value 150 s later: the load to provision for, not its noisy reading.

Figures, one ``name=value`` line each; ``mape_pct`` = mean |forecast − actual| / actual × 100:

* ``<signal>.persistence.day1`` / ``.days23`` — the value now as the forecast;
* ``<signal>.forecaster.day1`` — the forecaster before a full season: trend only;
* ``<signal>.trend.days23`` — trend only on days 2–3 (``use_profile=False``), 300 s window (default);
  ``trend_w600`` the same with a 600 s window;
* ``<signal>.forecaster.days23`` — the forecaster (seasonal + residual trend, behind its gate);
  ``seasonal_ungated`` — the profile used whenever it has the buckets (``gate_seasonal=False``);
* suffix ``.rising`` — only samples where the actual value 150 s later is > 1 % above the value now;
  suffix ``.ramp`` — only samples in a ramp-up of the load as defined by
  :func:`heteroscale.experiments.ramps.ramp_windows` (defaults: +10 % of the 5-min-smoothed load
  within 10 min);
* ``under_pct`` — mean shortfall max(0, actual − forecast) / actual × 100 on ramp samples (what costs
  SLO misses);
* ``<signal>.seasonal_share.days23`` — fraction of days 2–3 forecasts the forecaster made seasonally.

Run: ``.venv/bin/python benchmarks/forecast_accuracy.py`` (a few seconds).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
CURVE = ROOT / "src/heteroscale/data/traces/servegen_language_m-large_rate.csv"
STEP_S = 30.0
HORIZON_S = 150.0
DAYS = 3
DAY_S = 86_400.0
NOISE = 0.02
RISING = 0.01

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Sample:
    """A row for ramp_windows: the offered load of one 30 s window."""

    t_s: float
    window_s: float
    arrivals_per_s: float
    slo_met: int = 0
    slo_missed: int = 0


def signal() -> Floats:
    from heteroscale.sim.loadgen import read_rate_curve

    curve = read_rate_curve(CURVE)
    t = np.arange(0.0, DAY_S, STEP_S)
    parts = []
    for day in range(DAYS):
        smooth = curve.day(day).smoothed(60.0)
        idx = np.clip(np.searchsorted(smooth.window_start_s, t, side="right") - 1, 0, len(smooth) - 1)
        parts.append(smooth.rate_rps[idx])
    return np.concatenate(parts)


def run(values: Floats, **overrides: Any) -> tuple[Floats, list[str]]:
    """Forecasts (for t + HORIZON_S) made at every sample, and their methods."""
    from heteroscale.policy.forecast import ForecastParams, ForecastState, forecast, observe

    params = ForecastParams(unit="req/s", **overrides)
    state = ForecastState()
    out = np.empty_like(values)
    methods: list[str] = []
    for i, v in enumerate(values):
        now_s = i * STEP_S
        state = observe(state, now_s, float(v), params)
        f = forecast(state, now_s, HORIZON_S, params)
        out[i] = f.value
        methods.append(f.method)
    return out, methods


def mape(pred: Floats, actual: Floats, mask: Mask) -> float:
    m = mask & (actual > 0)
    return float(np.mean(np.abs(pred[m] - actual[m]) / actual[m]) * 100.0)


def under(pred: Floats, actual: Floats, mask: Mask) -> float:
    m = mask & (actual > 0)
    return float(np.mean(np.maximum(0.0, actual[m] - pred[m]) / actual[m]) * 100.0)


def main() -> int:
    from heteroscale.experiments.ramps import ramp_windows

    started = time.perf_counter()
    clean = signal()
    noisy = clean * (1.0 + NOISE * np.random.default_rng(7).standard_normal(clean.shape))
    lag = round(HORIZON_S / STEP_S)
    per_day = round(DAY_S / STEP_S)
    n = len(clean) - lag
    actual = clean[lag:]
    day1 = np.arange(n) < per_day
    days23 = ~day1
    rising = days23 & (actual > clean[:n] * (1.0 + RISING))
    rows = [Sample(t_s=(i + 1) * STEP_S, window_s=STEP_S, arrivals_per_s=float(v)) for i, v in enumerate(clean)]
    ramp = days23 & np.asarray(ramp_windows(rows), dtype=bool)[:n]
    print(f"samples.days23={int(days23.sum())} samples.rising={int(rising.sum())} samples.ramp={int(ramp.sum())}")
    for name, values in (("clean", clean), ("noisy", noisy)):
        now = values[:n]
        forecaster, methods = run(values)
        runs = {
            "persistence": now,
            "trend": run(values, use_profile=False)[0][:n],
            "trend_w600": run(values, use_profile=False, trend_window_s=600.0)[0][:n],
            "seasonal_ungated": run(values, gate_seasonal=False)[0][:n],
            "forecaster": forecaster[:n],
        }
        print(f"{name}.persistence.day1_mape_pct={mape(now, actual, day1):.3f}")
        print(f"{name}.forecaster.day1_mape_pct={mape(runs['forecaster'], actual, day1):.3f}")
        for key, pred in runs.items():
            print(f"{name}.{key}.days23_mape_pct={mape(pred, actual, days23):.3f}")
            print(f"{name}.{key}.days23.rising_mape_pct={mape(pred, actual, rising):.3f}")
            print(f"{name}.{key}.days23.ramp_mape_pct={mape(pred, actual, ramp):.3f}")
            print(f"{name}.{key}.days23.ramp_under_pct={under(pred, actual, ramp):.3f}")
        share = float(np.mean([m == "seasonal" for m in methods[per_day:n]]))
        print(f"{name}.seasonal_share.days23={share:.3f}")
    print(f"wall_s={time.perf_counter() - started:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
