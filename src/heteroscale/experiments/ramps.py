"""SLO attainment during ramp-ups of the offered load, and how much of the reactive policy's ramp misses a
predictive policy removes.

A window is *in a ramp-up* when the offered load is about to rise by a margin (definition in
:func:`ramp_windows`). The offered load is ``arrivals_per_s``: for one load and seed it is the same
for every policy, so the ramp set is too and two runs are compared on the same windows (to be sure,
compute the ramps once and pass them to :func:`ramp_slo` for both runs).

Rows are one service's telemetry windows in time order; anything with the attributes of
:class:`RampRow` will do (``heteroscale.sim.telemetry.WindowRow`` once it carries ``slo_met`` /
``slo_missed``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RampRow", "RampSlo", "ramp_misses_removed", "ramp_slo", "ramp_windows", "smoothed_arrivals"]

# Defaults for a ~120 s cold start and 30 s ticks: a ramp is a ≥ 10 % rise of the 5-minute-smoothed
# load within 10 minutes — slow enough to be more than one window's noise (the smoothing spans 10
# ticks), fast enough that a reactive policy, which sees it only as it happens and then waits a cold
# start, falls behind it.
SMOOTH_S = 300.0
RISE = 0.10
LOOKAHEAD_S = 600.0


class RampRow(Protocol):
    """One telemetry window (read-only attributes, so frozen dataclasses fit)."""

    @property
    def t_s(self) -> float: ...  # end of the window

    @property
    def window_s(self) -> float: ...

    @property
    def arrivals_per_s(self) -> float: ...

    @property
    def slo_met(self) -> int: ...  # requests completed in the window that met both TTFT and TBT SLOs

    @property
    def slo_missed(self) -> int: ...  # completed in the window missing an SLO, plus failed in the window


def _check(smooth_s: float, rise: float, lookahead_s: float) -> None:
    if not (math.isfinite(smooth_s) and smooth_s >= 0):
        raise ValueError(f"smooth_s must be ≥ 0 s, got {smooth_s}")
    if not (math.isfinite(rise) and rise >= 0):
        raise ValueError(f"rise must be ≥ 0, got {rise}")
    if not (math.isfinite(lookahead_s) and lookahead_s > 0):
        raise ValueError(f"lookahead_s must be > 0 s, got {lookahead_s}")


def smoothed_arrivals(rows: Sequence[RampRow], smooth_s: float = SMOOTH_S) -> list[float]:
    """Centred moving average of ``arrivals_per_s``: for each window, the duration-weighted mean over
    the windows whose end lies within ``smooth_s / 2`` of its end (the window itself always counts)."""
    half = smooth_s / 2.0
    out: list[float] = []
    lo = hi = 0  # rows[lo:hi] are within ±half of the current row
    weighted = weight = 0.0
    for row in rows:
        while hi < len(rows) and rows[hi].t_s <= row.t_s + half + 1e-9:
            weighted += rows[hi].arrivals_per_s * rows[hi].window_s
            weight += rows[hi].window_s
            hi += 1
        while rows[lo].t_s < row.t_s - half - 1e-9:
            weighted -= rows[lo].arrivals_per_s * rows[lo].window_s
            weight -= rows[lo].window_s
            lo += 1
        if weight > 0:
            out.append(max(0.0, weighted / weight))
        else:  # zero-length windows only
            members = rows[lo:hi]
            out.append(sum(r.arrivals_per_s for r in members) / len(members))
    return out


def ramp_windows(
    rows: Sequence[RampRow],
    *,
    smooth_s: float = SMOOTH_S,
    rise: float = RISE,
    lookahead_s: float = LOOKAHEAD_S,
) -> list[bool]:
    """Which windows lie in a ramp-up of the offered load (one flag per row).

    ``s(t)`` is the centred moving average of ``arrivals_per_s`` over ``smooth_s`` (window ends within
    ±``smooth_s``/2; a one-window spike is diluted, not taken for a ramp). A window ending at ``t``
    *starts a ramp* when ``s(t + lookahead_s)`` — interpolated linearly between window ends — is at
    least ``(1 + rise)·s(t)`` and above ``s(t)`` (so a load of 0 staying 0 is no ramp). A window is *in
    a ramp-up* when its end lies in ``[t, t + lookahead_s]`` for some ``t`` that starts a ramp: the
    whole stretch over which capacity must be added. Windows less than ``lookahead_s`` before the last
    one cannot start a ramp (their future is not known). Rows must be in time order (ValueError if not).
    """
    _check(smooth_s, rise, lookahead_s)
    if any(b.t_s < a.t_s for a, b in itertools.pairwise(rows)):
        raise ValueError("rows must be in time order (one service's series)")
    if not rows:
        return []
    smooth = smoothed_arrivals(rows, smooth_s)
    times = [r.t_s for r in rows]
    marks = [False] * len(rows)
    j = 0  # first row with t ≥ the current row's t + lookahead
    mark_until = -math.inf
    for i, t in enumerate(times):
        target = t + lookahead_s
        while j < len(times) and times[j] < target - 1e-9:
            j += 1
        if j < len(times):
            if j == 0 or times[j] <= target + 1e-9 or times[j] == times[j - 1]:
                future = smooth[j]
            else:
                frac = (target - times[j - 1]) / (times[j] - times[j - 1])
                future = smooth[j - 1] + (smooth[j] - smooth[j - 1]) * frac
            if future > smooth[i] and future >= (1.0 + rise) * smooth[i]:
                mark_until = max(mark_until, target)
        if t <= mark_until + 1e-9:
            marks[i] = True
    return marks


@dataclass(frozen=True, slots=True)
class RampSlo:
    """SLO outcome of the requests that finished (or failed) in ramp-up windows."""

    windows: int  # all windows of the run
    ramp_windows: int  # windows in a ramp-up
    requests: int  # slo_met + slo_missed over the ramp windows
    missed: int  # slo_missed over the ramp windows
    attainment: float | None  # 1 − missed / requests; None when no request ended in a ramp window
    ramp_seconds: float  # total duration of the ramp windows

    def as_dict(self) -> dict[str, int | float | None]:
        return {
            "windows": self.windows,
            "ramp_windows": self.ramp_windows,
            "ramp_requests": self.requests,
            "ramp_missed": self.missed,
            "ramp_attainment": self.attainment,
            "ramp_seconds": self.ramp_seconds,
        }


def ramp_slo(
    rows: Sequence[RampRow],
    ramps: Sequence[bool] | None = None,
    *,
    smooth_s: float = SMOOTH_S,
    rise: float = RISE,
    lookahead_s: float = LOOKAHEAD_S,
) -> RampSlo:
    """Requests and SLO misses in the ramp-up windows. ``ramps`` (one flag per row) defaults to
    :func:`ramp_windows` of ``rows`` with the keyword arguments."""
    flags = (
        list(ramps) if ramps is not None else ramp_windows(rows, smooth_s=smooth_s, rise=rise, lookahead_s=lookahead_s)
    )
    if len(flags) != len(rows):
        raise ValueError(f"ramps has {len(flags)} flags for {len(rows)} rows")
    in_ramp = [row for row, flag in zip(rows, flags, strict=True) if flag]
    met = sum(row.slo_met for row in in_ramp)
    missed = sum(row.slo_missed for row in in_ramp)
    requests = met + missed
    return RampSlo(
        windows=len(rows),
        ramp_windows=len(in_ramp),
        requests=requests,
        missed=missed,
        attainment=1.0 - missed / requests if requests > 0 else None,
        ramp_seconds=sum(row.window_s for row in in_ramp),
    )


def ramp_misses_removed(reactive: RampSlo, predictive: RampSlo) -> float | None:
    """Fraction of the reactive run's ramp misses that the predictive run removed:
    ``1 − predictive.missed / reactive.missed`` (negative when the predictive run misses more); None
    when the reactive run missed nothing in its ramps."""
    if reactive.missed == 0:
        return None
    return 1.0 - predictive.missed / reactive.missed
