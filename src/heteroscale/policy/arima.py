"""The load predictors of Dynamo's SLA planner: ``constant`` and its default, ``arima``.

Dynamo (``components/planner/src/dynamo/planner/utils/load_predictor.py``) keeps the last
``window_size`` (50) interval values of a series. With fewer than ``minimum_data_points`` (5) both
predictors return the last value; ``constant`` always does. ``arima`` fits ``pmdarima.auto_arima``
with its defaults and forecasts one interval ahead. pmdarima is not a dependency here; this is the
same search, smaller:

* the differencing order d (0–2) by the KPSS level-stationarity test at 5 % (pmdarima's ``ndiffs``
  with ``test='kpss'``, short lag truncation ⌊3·√n / 13⌋, critical value 0.463);
* on the differenced series, AR(p) for p = 0…5 fitted by conditional least squares on a common
  sample, with an intercept when d < 2 (pmdarima's ``with_intercept='auto'``), the lowest AIC wins;
  an order with fewer than three observations per coefficient, or a non-stationary AR fit (which
  pmdarima's maximum likelihood excludes), is not taken;
* the forecast is integrated back d times. It is not clamped (Dynamo does not clamp either).

pmdarima also tries moving-average terms and fits by maximum likelihood; with the short, smooth
series a planner sees (one value per 180 s) its choice is most often a random walk with or without
drift, which this search finds too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

KPSS_CRITICAL_5PCT = 0.463
MAX_D = 2
MAX_P = 5


def kpss_statistic(values: Sequence[float] | np.ndarray) -> float:
    """The KPSS level-stationarity statistic (Newey–West long-run variance, Bartlett weights)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    e = x - x.mean()
    s = np.cumsum(e)
    lags = int(3.0 * math.sqrt(n) / 13.0)
    variance = float(e @ e) / n
    for lag in range(1, lags + 1):
        weight = 1.0 - lag / (lags + 1.0)
        variance += 2.0 * weight * float(e[lag:] @ e[:-lag]) / n
    if variance <= 0:
        return 0.0
    return float(s @ s) / (n * n * variance)


def differencing_order(values: Sequence[float] | np.ndarray) -> int:
    """d such that the series differenced d times passes the KPSS test (at most 2)."""
    x = np.asarray(values, dtype=np.float64)
    d = 0
    while d < MAX_D and len(x) > 3 and np.ptp(x) > 0 and kpss_statistic(x) > KPSS_CRITICAL_5PCT:
        x = np.diff(x)
        d += 1
    return d


def _fit_ar(z: np.ndarray, p: int, start: int, intercept: bool) -> tuple[float, np.ndarray, float]:
    """(AIC, coefficients [intercept, φ1…φp], residual variance) of AR(p) on z[start:]."""
    rows = len(z) - start
    columns = [np.ones(rows)] if intercept else []
    columns += [z[start - i : len(z) - i] for i in range(1, p + 1)]
    y = z[start:]
    if not columns:
        coef = np.zeros(0)
        residual = y
    else:
        design = np.column_stack(columns)
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        residual = y - design @ coef
    sigma2 = max(float(residual @ residual) / rows, 1e-12)
    k = len(coef) + 1  # + the variance
    return rows * math.log(sigma2) + 2.0 * k, coef, sigma2


def stationary(ar: np.ndarray) -> bool:
    """Whether AR coefficients φ1…φp describe a stationary process (companion eigenvalues inside 1)."""
    p = len(ar)
    if p == 0:
        return True
    companion = np.zeros((p, p))
    companion[0, :] = ar
    companion[1:, :-1] = np.eye(p - 1)
    return bool(np.all(np.abs(np.linalg.eigvals(companion)) < 1.0 - 1e-9))


def arima_forecast(values: Sequence[float]) -> float:
    """One-step-ahead forecast of ``values`` (module doc)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return 0.0
    if len(x) < 3 or np.ptp(x) == 0:
        return float(x[-1])
    d = differencing_order(x)
    z = np.diff(x, n=d) if d else x
    intercept = d < MAX_D
    # orders with fewer than three rows per coefficient are not tried (an AR fit on 4 points explodes)
    fits = [p for p in range(MAX_P + 1) if len(z) - p >= 3 * (p + int(intercept))]
    max_p = max(fits, default=0)
    start = max_p
    best: tuple[float, np.ndarray, int] | None = None
    for p in range(max_p + 1):
        aic, coef, _ = _fit_ar(z, p, start, intercept)
        if not stationary(coef[1:] if intercept else coef):
            continue  # pmdarima (statsmodels) keeps the AR part stationary
        if best is None or aic < best[0] - 1e-9:
            best = (aic, coef, p)
    if best is None:
        return float(x[-1])
    _, coef, p = best
    step = float(coef[0]) if intercept else 0.0
    lags = coef[1:] if intercept else coef
    step += sum(float(lags[i - 1]) * float(z[-i]) for i in range(1, p + 1))
    if d == 0:
        return step
    if d == 1:
        return float(x[-1]) + step
    return float(x[-1]) + float(x[-1] - x[-2]) + step


def predict_next(values: Sequence[float], predictor: str, min_points: int = 5) -> float:
    """The next interval's value of a series by Dynamo's ``predictor`` (``arima`` or ``constant``)."""
    if not values:
        return 0.0
    if predictor == "constant" or len(values) < min_points:
        return float(values[-1])
    if predictor == "arima":
        return arima_forecast(values)
    raise ValueError(f"unknown load predictor {predictor!r} (known: arima, constant)")


__all__ = ["arima_forecast", "differencing_order", "kpss_statistic", "predict_next", "stationary"]
