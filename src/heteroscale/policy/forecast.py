"""Forecast the next interval's signal (decode tokens/s) from its history: seasonal profile + recent trend.

Pure and deterministic: no I/O, no clock, plain floats. The state is an immutable value that the
caller keeps between calls (``PolicyMemory.forecast``). :func:`observe` returns the next state;
:func:`forecast` reads one.

Notation: the history is ``(tᵢ, yᵢ)`` over the last ``trend_window_s`` (W) seconds, ending at the
latest observation ``(t₀, y₀)``. A forecast is for ``now_s + horizon_s``; its effective horizon is
``h = now_s + horizon_s − t₀`` (``horizon_s`` itself when the caller observes, then forecasts, at the
same ``now_s``). The season S = ``season_s`` is cut into B = ``buckets`` buckets of width ``w = S/B``;
an absolute *slot* is ``⌊t/w⌋`` and its bucket is ``slot mod B``.

Trend (least squares). ``ŷ(t) = a + b·(t − t̄)`` fitted over the history gives the slope ``b``
(value/s) and the level ``L = ŷ(t₀)`` (the fitted value at the latest observation: less noisy than y₀).

Seasonal profile (learned online). The observations of one pass through a bucket (a *visit*: one
slot) are averaged; when the visit ends its mean ``m`` is folded into the bucket by an EWMA,
``level ← (1 − α)·level + α·m`` with α = ``profile_alpha`` (the first visit sets ``level = m``). So α
weighs one *season's* bucket against the older ones whatever the sampling rate, and a bucket's level
describes its whole width, not its last samples. ``P(t)`` interpolates linearly between bucket centres
(circularly). ``P`` is read *as of one season before t*: a bucket already visited in the current season
(behind t₀) contributes the level from before that visit (``prev_level``), so a ratio never mixes
today's level with yesterday's shape.

Methods, in order of preference:

* ``seasonal`` — once a full season has passed since ``first_s`` and every bucket needed (around the
  history, t₀ and the target) has data as of one season ago::

      r   = P(t₀ + h) / P(t₀)                      seasonal ratio
      b_P = LS slope of P(tᵢ) over the history     the profile's own slope there …
      b_s = b_P · L / P(t₀)                        … scaled to today's level
      F   = L·r + (b − b_s)·h                      projection + residual trend

  The residual ``b − b_s`` is the part of the recent trend the profile does not explain (a ramp
  steeper or earlier than usual); it is 0 when today is the profile times a constant. Equivalently
  ``F`` is the trend forecast plus the profile's *curvature* over the horizon, ``L·(r − 1) − b_s·h``.
* ``trend`` — Holt-like ``F = L + b·h``: before a full season, with ``use_profile=False``, or while
  the seasonal gate is closed (below).
* ``persistence`` — fewer than ``min_trend_points`` points in the history: ``F = y₀``.

Seasonal gate (``gate_seasonal``). A profile helps only if the load repeats; on traffic whose
day-to-day shape does not, the curvature term is noise. So at every observation both methods also
forecast ``score_horizon_s`` ahead (kept as *pending*), and when an observation reaches a pending
target both are scored: EWMAs (weight ``score_alpha`` per scored sample) of their absolute errors. The
seasonal method is used only after ``min_scored`` scores and while its error EWMA is not above the
trend's. ``gate_seasonal=False`` uses the profile as soon as it has the buckets.

Finally ``F`` is clamped to ``[0, max_growth · y₀]`` so one noisy point cannot explode it (the
``detail`` says when the cap bit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

NO_VALUE = -1.0  # a pending seasonal forecast that could not be made (values are ≥ 0)

__all__ = [
    "Forecast",
    "ForecastParams",
    "ForecastState",
    "ProfileBucket",
    "forecast",
    "observe",
]


@dataclass(frozen=True, slots=True)
class ForecastParams:
    """How the forecaster learns and projects. Validated on construction (ValueError names the field)."""

    season_s: float = 86_400.0  # period of the seasonal profile (a compressed-time scenario: e.g. 10800)
    buckets: int = 96  # profile resolution (96 → 15 min buckets for a day)
    profile_alpha: float = 0.5  # EWMA weight of a new season's bucket mean (one visit) into the bucket
    trend_window_s: float = 300.0  # recent history kept and fitted for the trend (see benchmarks/forecast_accuracy)
    max_growth: float = 3.0  # cap of forecast / latest observation
    min_trend_points: int = 3  # fewer history points → persistence
    max_history_points: int = 256  # hard bound on the history, whatever the sampling rate
    use_profile: bool = True  # False: trend only (an ablation, or a service without seasonality)
    gate_seasonal: bool = True  # use the profile only while it forecasts better than the trend
    score_horizon_s: float = 150.0  # horizon of the shadow forecasts that score the two methods
    score_alpha: float = 0.02  # EWMA weight of one scored sample (0.02 ≈ the last 50 samples)
    min_scored: int = 20  # scored samples before the gate can open
    unit: str = "tok/s"  # for the human-readable detail only

    def __post_init__(self) -> None:
        def positive(name: str, value: float) -> None:
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")

        positive("season_s", self.season_s)
        positive("trend_window_s", self.trend_window_s)
        positive("score_horizon_s", self.score_horizon_s)
        if self.buckets < 1:
            raise ValueError(f"buckets must be ≥ 1, got {self.buckets}")
        if not (0.0 < self.profile_alpha <= 1.0):
            raise ValueError(f"profile_alpha must be in (0, 1], got {self.profile_alpha}")
        if not (0.0 < self.score_alpha <= 1.0):
            raise ValueError(f"score_alpha must be in (0, 1], got {self.score_alpha}")
        if not (math.isfinite(self.max_growth) and self.max_growth >= 1.0):
            raise ValueError(f"max_growth must be ≥ 1, got {self.max_growth}")
        if self.min_trend_points < 2:
            raise ValueError(f"min_trend_points must be ≥ 2 (a line needs two points), got {self.min_trend_points}")
        if self.max_history_points < self.min_trend_points:
            raise ValueError(
                f"max_history_points must be ≥ min_trend_points ({self.min_trend_points}), "
                f"got {self.max_history_points}"
            )
        if self.min_scored < 0:
            raise ValueError(f"min_scored must be ≥ 0, got {self.min_scored}")

    @property
    def bucket_s(self) -> float:
        return self.season_s / self.buckets


@dataclass(frozen=True, slots=True)
class ProfileBucket:
    """One bucket of the seasonal profile: its EWMA level, the level before the latest visit, and when."""

    index: int
    level: float
    prev_level: float  # level before the latest visit was folded in (= level after the first visit)
    visits: int  # visits folded in (≈ seasons seen for this bucket)
    last_slot: int  # absolute slot (⌊t / bucket_s⌋) of the latest visit folded in


@dataclass(frozen=True, slots=True)
class ForecastState:
    """Everything the forecaster remembers. Immutable; its size is bounded by ``buckets``, the trend
    window (``max_history_points``) and the score horizon.

    ``history`` holds ``(t_s, value)`` in time order; ``profile`` is sorted by bucket index; the open
    visit (``visit_slot`` / ``visit_sum`` / ``visit_count``) is the current bucket pass, not yet folded;
    ``pending`` holds the shadow forecasts ``(target_s, trend, seasonal or NO_VALUE)`` not yet scored.
    """

    history: tuple[tuple[float, float], ...] = ()
    profile: tuple[ProfileBucket, ...] = ()
    first_s: float | None = None  # when learning began
    visit_slot: int | None = None
    visit_sum: float = 0.0
    visit_count: int = 0
    pending: tuple[tuple[float, float, float], ...] = ()
    error_trend: float = 0.0  # EWMA of |trend forecast − actual| at score_horizon_s
    error_seasonal: float = 0.0  # EWMA of |seasonal forecast − actual| at score_horizon_s
    scored: int = 0

    def seasons_seen(self, now_s: float, params: ForecastParams) -> float:
        return 0.0 if self.first_s is None else max(0.0, now_s - self.first_s) / params.season_s


@dataclass(frozen=True, slots=True)
class Forecast:
    value: float  # the forecast for now_s + horizon_s, ≥ 0
    method: str  # "seasonal" | "trend" | "persistence"
    detail: str  # one human-readable line for the decision journal
    capped: bool = False  # the max_growth cap bit
    current: float | None = None  # the latest observation the forecast starts from (None: no history)


# --------------------------------------------------------------------------------------------- learning


def observe(state: ForecastState, now_s: float, value: float, params: ForecastParams) -> ForecastState:
    """Learn one observation at ``now_s``.

    NaN, infinite or negative values, and observations not after the latest one (out of order or
    repeated), are ignored: the state comes back unchanged.
    """
    if not (math.isfinite(value) and value >= 0.0 and math.isfinite(now_s)):
        return state
    if state.history and now_s <= state.history[-1][0]:
        return state
    oldest_s = now_s - params.trend_window_s
    history = (*[p for p in state.history if p[0] >= oldest_s], (now_s, value))[-params.max_history_points :]

    slot = math.floor(now_s / params.bucket_s)
    profile = state.profile
    if state.visit_slot is None or slot == state.visit_slot:
        visit_sum, visit_count = state.visit_sum + value, state.visit_count + 1
    else:
        if state.visit_count > 0:
            profile = _fold(profile, state.visit_slot, state.visit_sum / state.visit_count, params)
        visit_sum, visit_count = value, 1
    learned = replace(
        _score(state, now_s, value, params),
        history=history,
        profile=profile,
        first_s=now_s if state.first_s is None else state.first_s,
        visit_slot=slot,
        visit_sum=visit_sum,
        visit_count=visit_count,
    )
    if not (params.use_profile and params.gate_seasonal):
        return learned
    basis = _basis(learned, now_s, params.score_horizon_s, params)
    if basis is None:
        return learned
    seasonal = _seasonal(learned, basis, params)
    shadow = (
        now_s + params.score_horizon_s,
        _trend(basis, params).value,
        seasonal.value if isinstance(seasonal, Forecast) else NO_VALUE,
    )
    return replace(learned, pending=(*learned.pending, shadow)[-params.max_history_points :])


def _score(state: ForecastState, now_s: float, value: float, params: ForecastParams) -> ForecastState:
    """Score the pending shadow forecasts whose target has come (those more than one score horizon
    late are dropped unscored) and keep the rest."""
    error_trend, error_seasonal, scored = state.error_trend, state.error_seasonal, state.scored
    keep: list[tuple[float, float, float]] = []
    for target_s, trend, seasonal in state.pending:
        if target_s > now_s:
            keep.append((target_s, trend, seasonal))
            continue
        if seasonal == NO_VALUE or now_s - target_s > params.score_horizon_s:
            continue
        a = 1.0 if scored == 0 else params.score_alpha
        error_trend = (1.0 - a) * error_trend + a * abs(trend - value)
        error_seasonal = (1.0 - a) * error_seasonal + a * abs(seasonal - value)
        scored += 1
    return replace(state, pending=tuple(keep), error_trend=error_trend, error_seasonal=error_seasonal, scored=scored)


def _fold(
    profile: tuple[ProfileBucket, ...], slot: int, mean: float, params: ForecastParams
) -> tuple[ProfileBucket, ...]:
    """The profile with one visit's mean folded into its bucket by the EWMA (sorted by index)."""
    index = slot % params.buckets
    old = next((b for b in profile if b.index == index), None)
    if old is None:
        new = ProfileBucket(index=index, level=mean, prev_level=mean, visits=1, last_slot=slot)
    else:
        level = (1.0 - params.profile_alpha) * old.level + params.profile_alpha * mean
        new = ProfileBucket(index=index, level=level, prev_level=old.level, visits=old.visits + 1, last_slot=slot)
    return tuple(sorted([*(b for b in profile if b.index != index), new], key=lambda b: b.index))


# -------------------------------------------------------------------------------------------- forecasting


@dataclass(frozen=True, slots=True)
class _Basis:
    """What every method starts from: the latest point, the horizon, the history and its LS line."""

    t0: float
    y0: float
    h: float
    points: tuple[tuple[float, float], ...]
    level: float  # LS line at t0
    slope: float  # LS slope, value/s


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares ``a + b·(t − t̄)`` → ``(t̄, a, b)``; ``b = 0`` when all times coincide."""
    n = len(points)
    t_mean = sum(t for t, _ in points) / n
    y_mean = sum(y for _, y in points) / n
    sxx = sum((t - t_mean) ** 2 for t, _ in points)
    if sxx <= 0.0:
        return t_mean, y_mean, 0.0
    return t_mean, y_mean, sum((t - t_mean) * (y - y_mean) for t, y in points) / sxx


def _basis(state: ForecastState, now_s: float, horizon_s: float, params: ForecastParams) -> _Basis | None:
    """None when the history is too short for a trend."""
    if not state.history:
        return None
    t0, y0 = state.history[-1]
    points = tuple(p for p in state.history if p[0] >= t0 - params.trend_window_s)
    if len(points) < params.min_trend_points:
        return None
    t_mean, a, b = _fit(points)
    return _Basis(t0, y0, max(0.0, now_s + horizon_s - t0), points, a + b * (t0 - t_mean), b)


def _bucket_value(by_index: Mapping[int, ProfileBucket], slot: int, params: ForecastParams) -> tuple[float, int] | None:
    """(level, visits behind it) of ``slot``'s bucket as of one season before ``slot``; None: no data then."""
    bucket = by_index.get(slot % params.buckets)
    if bucket is None:
        return None
    if bucket.last_slot <= slot - params.buckets:  # its latest visit is at least a season old
        return bucket.level, bucket.visits
    if bucket.visits >= 2:  # visited again since: take the level from before that visit
        return bucket.prev_level, bucket.visits - 1
    return None


def _profile_at(by_index: Mapping[int, ProfileBucket], t_s: float, params: ForecastParams) -> tuple[float, int] | None:
    """P(t) interpolated between bucket centres ((slot + ½)·w), and the fewest visits behind it."""
    u = t_s / params.bucket_s - 0.5
    s0 = math.floor(u)
    v0 = _bucket_value(by_index, s0, params)
    v1 = _bucket_value(by_index, s0 + 1, params)
    if v0 is None or v1 is None:
        return None
    return v0[0] + (v1[0] - v0[0]) * (u - s0), min(v0[1], v1[1])


def _fmt(value: float) -> str:
    a = abs(value)
    if a >= 100.0:
        return f"{value:,.0f}"
    if a >= 1.0:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "−") + _fmt(abs(value))


def _slope_unit(unit: str) -> str:
    return unit + "²" if unit.endswith("/s") else unit + "/s"


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def _trend(basis: _Basis, params: ForecastParams) -> Forecast:
    value = basis.level + basis.slope * basis.h
    span_s = basis.points[-1][0] - basis.points[0][0]
    detail = (
        f"trend {_signed(basis.slope)} {_slope_unit(params.unit)} over {span_s:g} s from level {_fmt(basis.level)} "
        f"→ {_fmt(max(0.0, value))} {params.unit} at +{basis.h:g} s"
    )
    return _finish(value, "trend", detail, basis.y0, params)


def _seasonal(state: ForecastState, basis: _Basis, params: ForecastParams) -> Forecast | str:
    """The seasonal forecast, or why it cannot be made (the gate is not applied here)."""
    t0, h = basis.t0, basis.h
    if not params.use_profile:
        return "profile off"
    if state.seasons_seen(t0, params) < 1.0:
        return f"{state.seasons_seen(t0, params):.2f} of a season seen"
    if h + params.trend_window_s + 2.0 * params.bucket_s >= params.season_s:
        return "horizon too long for the season"
    by_index = {bk.index: bk for bk in state.profile}
    looked = [_profile_at(by_index, t, params) for t in (t0, t0 + h, *(t for t, _ in basis.points))]
    found = [v for v in looked if v is not None]
    if len(found) < len(looked):
        return "profile incomplete here"
    p_now, p_target, *p_hist = [v[0] for v in found]
    if p_now <= 0.0:
        return "profile is 0 here"
    ratio = p_target / p_now
    _, _, b_profile = _fit([(t, p) for (t, _), p in zip(basis.points, p_hist, strict=True)])
    residual = basis.slope - b_profile * basis.level / p_now
    value = basis.level * ratio + residual * h
    b_from = math.floor(t0 / params.bucket_s) % params.buckets
    b_to = math.floor((t0 + h) / params.bucket_s) % params.buckets
    detail = (
        f"seasonal ×{ratio:.3f} (bucket {b_from}→{b_to}, {_plural(min(v[1] for v in found), 'season')} seen) "
        f"of level {_fmt(basis.level)} + residual trend {_signed(residual)} {_slope_unit(params.unit)} "
        f"over {basis.points[-1][0] - basis.points[0][0]:g} s → {_fmt(max(0.0, value))} {params.unit} at +{h:g} s"
    )
    return _finish(value, "seasonal", detail, basis.y0, params)


def _gate(state: ForecastState, params: ForecastParams) -> str | None:
    """Why the seasonal gate is closed (None: open)."""
    if not params.gate_seasonal:
        return None
    scores = f"|error| at +{params.score_horizon_s:g} s"
    if state.scored < params.min_scored:
        return f"not yet scored ({state.scored}/{params.min_scored} samples)"
    if state.error_seasonal > state.error_trend:
        return (
            f"profile forecasts worse lately: {scores} {_fmt(state.error_seasonal)} vs trend "
            f"{_fmt(state.error_trend)} {params.unit}"
        )
    return None


def forecast(state: ForecastState, now_s: float, horizon_s: float, params: ForecastParams) -> Forecast:
    """The signal expected at ``now_s + horizon_s`` (see the module doc for the maths)."""
    if not state.history:
        return Forecast(0.0, "persistence", "persistence: no observations yet → 0")
    basis = _basis(state, now_s, horizon_s, params)
    if basis is None:
        t0, y0 = state.history[-1]
        n = sum(1 for t, _ in state.history if t >= t0 - params.trend_window_s)
        detail = (
            f"persistence ({_plural(n, 'point')} < {params.min_trend_points} for a trend) "
            f"→ {_fmt(y0)} {params.unit} at +{max(0.0, now_s + horizon_s - t0):g} s"
        )
        return _finish(y0, "persistence", detail, y0, params)
    trend = _trend(basis, params)
    seasonal = _seasonal(state, basis, params)
    why_not = seasonal if isinstance(seasonal, str) else _gate(state, params)
    if why_not is None and isinstance(seasonal, Forecast):
        if params.gate_seasonal:
            scores = f"{_fmt(state.error_seasonal)} vs trend {_fmt(state.error_trend)}"
            return replace(seasonal, detail=f"{seasonal.detail} [recent |error| {scores} {params.unit}]")
        return seasonal
    if not params.use_profile:
        return trend
    return replace(trend, detail=f"{trend.detail} (no seasonal: {why_not})")


def _finish(value: float, method: str, detail: str, current: float, params: ForecastParams) -> Forecast:
    """Clamp to [0, max_growth × current] and say so when the cap bit."""
    cap = params.max_growth * current
    if value > cap:
        detail = f"{detail}; capped at {params.max_growth:g}× current {_fmt(current)} → {_fmt(cap)} {params.unit}"
        return Forecast(cap, method, detail, capped=True, current=current)
    return Forecast(max(0.0, value), method, detail, current=current)
