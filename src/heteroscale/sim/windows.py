"""A part of a load (a window), for tuning on one part and scoring on another.

A window is an interval of the load's own time axis (after ``time_compression`` and ``start_s``;
a day of a curve is chosen before, with ``rate_curve_day``). The service then sees only the
requests of that interval, rebased so that the window starts at simulated time 0. Three forms:

* ``half`` ``first`` / ``second``: ``[0, span/2)`` / ``[span/2, span)``, where ``span`` is the load's
  length: the end of its rate curve for a Poisson load, the last arrival for a replayed trace;
* ``start_s`` / ``end_s``: that interval, which must lie within the load;
* ``steepest_s`` L: the length-L window of a Poisson load's rate curve, aligned to the curve's own
  windows (600 s in ServeGen), whose rates rise fastest: the largest Theil–Sen slope (the median
  of the slopes between any two of its windows), so a sustained rise wins and one spiky window —
  common in the ServeGen curves — does not; ties go to the earliest. Deterministic: it reads the
  curve (before smoothing), never the random draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from heteroscale.errors import ConfigError
from heteroscale.sim.loadgen import RateCurve


class WindowKind(StrEnum):
    FIRST_HALF = "first-half"
    SECOND_HALF = "second-half"
    RANGE = "range"
    STEEPEST = "steepest"


@dataclass(frozen=True, slots=True)
class LoadWindow:
    """Which part of the load; ``start_s``/``end_s`` for RANGE, ``length_s`` for STEEPEST."""

    kind: WindowKind
    start_s: float = 0.0
    end_s: float = 0.0
    length_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind is WindowKind.RANGE and not (
            math.isfinite(self.start_s) and math.isfinite(self.end_s) and 0 <= self.start_s < self.end_s
        ):
            raise ConfigError(f"window: need 0 ≤ start_s < end_s, got [{self.start_s:g}, {self.end_s:g})")
        if self.kind is WindowKind.STEEPEST and not (math.isfinite(self.length_s) and self.length_s > 0):
            raise ConfigError(f"window: steepest_s must be a positive number, got {self.length_s:g}")

    @property
    def label(self) -> str:
        if self.kind is WindowKind.RANGE:
            return f"{self.start_s:g}-{self.end_s:g}s"
        if self.kind is WindowKind.STEEPEST:
            return f"steepest {self.length_s:g}s"
        return self.kind.value


@dataclass(frozen=True, slots=True)
class ResolvedWindow:
    """The interval ``[start_s, end_s)`` of the load axis; ``end_s`` None: to the load's end."""

    start_s: float
    end_s: float | None

    @property
    def length_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.start_s


def steepest_start(curve: RateCurve, length_s: float, earliest_s: float = 0.0) -> float:
    """Start (curve axis) of the length-``length_s`` run of curve windows with the steepest Theil–Sen slope.

    Only runs starting at or after ``earliest_s`` and ending within the curve count."""
    count = max(2, round(length_s / curve.window_s))
    starts = curve.window_start_s
    eligible = np.flatnonzero((starts >= earliest_s - 1e-9) & (starts + count * curve.window_s <= curve.end_s + 1e-9))
    eligible = eligible[eligible + count <= len(curve)]
    if eligible.size == 0:
        raise ConfigError(
            f"window: steepest_s {length_s:g} s is longer than the load ({(curve.end_s - earliest_s):g} s of curve)"
        )
    runs = np.lib.stride_tricks.sliding_window_view(curve.rate_rps, count)[eligible]
    first, second = np.triu_indices(count, 1)
    slopes = np.median((runs[:, second] - runs[:, first]) / (second - first), axis=1)  # Theil–Sen
    return float(starts[eligible[int(np.argmax(slopes))]])


def resolve_window(
    window: LoadWindow,
    span_s: float,
    curve: RateCurve | None = None,
    time_compression: float = 1.0,
    start_s: float = 0.0,
) -> ResolvedWindow:
    """``window`` on a load of length ``span_s`` (load axis). A STEEPEST window needs the load's
    ``curve`` (before smoothing), with the load's ``time_compression`` and ``start_s``."""
    if window.kind is WindowKind.FIRST_HALF:
        return ResolvedWindow(0.0, span_s / 2.0)
    if window.kind is WindowKind.SECOND_HALF:
        return ResolvedWindow(span_s / 2.0, None)
    if window.kind is WindowKind.RANGE:
        if window.end_s > span_s * (1 + 1e-9):
            raise ConfigError(f"window: end_s {window.end_s:g} s is past the end of the load ({span_s:g} s)")
        return ResolvedWindow(window.start_s, window.end_s)
    if curve is None:
        raise ConfigError("window: steepest_s needs a rate curve (a load of kind poisson)")
    first = steepest_start(curve, window.length_s * time_compression, start_s * time_compression)
    begin = first / time_compression - start_s
    return ResolvedWindow(begin, begin + window.length_s)
