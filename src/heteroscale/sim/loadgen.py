"""Synthetic load: day-scale rate curves, Poisson arrivals drawn from them, and trace superposition.

A :class:`RateCurve` is piecewise constant: window ``i`` covers
``[window_start_s[i], window_start_s[i] + window_s)`` at ``rate_rps[i]``; time outside every window
has rate 0. :func:`generate_poisson` draws a non-homogeneous Poisson process from it exactly (per
window: a Poisson count, then that many uniform times), vectorised with numpy, and attaches request
lengths resampled from a request trace.

``heteroscale.sim.traces`` re-exports this module's API (``from heteroscale.sim.traces import
generate_poisson`` works); this module imports only the trace type and the row parsers, never
``traces`` itself, so the two form no cycle.

Errors: bad data → :class:`~heteroscale.errors.TraceError` (``"<file>:<line>: <problem>"``); bad
arguments → :class:`~heteroscale.errors.ConfigError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from heteroscale.errors import ConfigError, TraceError
from heteroscale.sim import trace_rows as tr
from heteroscale.sim.request_trace import RequestTrace

FloatArray = npt.NDArray[np.float64]

__all__ = ["RateCurve", "generate_poisson", "read_rate_curve", "superpose"]

DAY_S = 86_400.0
RATE_COLUMNS = ("window_start_s", "total_rate_rps")  # then optionally active_clients
MAX_RATE_RPS = 1e7  # a higher rate in a file is a corrupt row, not a load anyone replays


@dataclass(frozen=True, slots=True, eq=False)
class RateCurve:
    """Arrival rate per fixed window (piecewise constant). ``eq=False``: identity equality."""

    name: str
    window_start_s: FloatArray  # float64, strictly increasing, ≥ window_s apart
    rate_rps: FloatArray  # float64 ≥ 0
    window_s: float

    def __post_init__(self) -> None:
        start = np.ascontiguousarray(self.window_start_s, dtype=np.float64)
        rate = np.ascontiguousarray(self.rate_rps, dtype=np.float64)
        object.__setattr__(self, "window_start_s", start)
        object.__setattr__(self, "rate_rps", rate)
        if start.ndim != 1 or rate.shape != start.shape:
            raise TraceError(f"{self.name}: window_start_s and rate_rps must be 1-D and of equal length")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise TraceError(f"{self.name}: window_s must be positive, got {self.window_s}")
        if not (bool(np.isfinite(start).all()) and bool(np.isfinite(rate).all())):
            raise TraceError(f"{self.name}: non-finite window start or rate")
        if rate.size and float(rate.min()) < 0:
            raise TraceError(f"{self.name}: rates must be ≥ 0")
        if start.size > 1 and float(np.diff(start).min()) < self.window_s * (1 - 1e-9):
            raise TraceError(f"{self.name}: windows overlap (starts closer than window_s={self.window_s:g})")

    def __len__(self) -> int:
        return int(self.window_start_s.shape[0])

    @property
    def end_s(self) -> float:
        return float(self.window_start_s[-1]) + self.window_s if len(self) else 0.0

    @property
    def peak_rps(self) -> float:
        return float(self.rate_rps.max()) if len(self) else 0.0

    @property
    def expected_requests(self) -> float:
        """∫ rate dt over the whole curve."""
        return float(self.rate_rps.sum()) * self.window_s

    def day(self, index: int) -> RateCurve:
        """The windows starting in ``[index·86400, (index+1)·86400)``, rebased to start at 0."""
        first_s = index * DAY_S
        keep = (self.window_start_s >= first_s) & (self.window_start_s < first_s + DAY_S)
        if index < 0 or not bool(keep.any()):
            days = math.ceil(self.end_s / DAY_S)
            raise ConfigError(f"{self.name}: day {index} is outside the curve (days 0..{days - 1})")
        return RateCurve(
            name=f"{self.name}[day {index}]",
            window_start_s=self.window_start_s[keep] - first_s,
            rate_rps=self.rate_rps[keep],
            window_s=self.window_s,
        )

    def smoothed(self, step_s: float = 60.0) -> RateCurve:
        """The curve linearly interpolated between window centres, on ``step_s`` windows.

        Source curves are per-window averages (600 s in ServeGen); replayed as steps they jump at every
        boundary, which real traffic does not. Interpolating between the centres keeps each window's
        level and removes the artificial steps; the first and last half-windows hold their value.
        """
        if step_s <= 0 or step_s >= self.window_s or len(self.rate_rps) < 2:
            return self
        centres = self.window_start_s + self.window_s / 2.0
        start = float(self.window_start_s[0])
        end = float(self.window_start_s[-1]) + self.window_s
        grid = np.arange(start, end, step_s)
        rates = np.interp(grid + step_s / 2.0, centres, self.rate_rps)
        return RateCurve(
            name=f"{self.name}[smoothed {step_s:g}s]", window_start_s=grid, rate_rps=rates, window_s=step_s
        )

    def peak_to_trough(self, drop_zero: bool = True) -> float:
        """max / min of the window rates; ``drop_zero`` ignores all-zero windows (collection gaps).

        ``inf`` when the trough is 0 and zeros are kept.
        """
        rates = self.rate_rps[self.rate_rps > 0] if drop_zero else self.rate_rps
        if rates.size == 0:
            raise TraceError(f"{self.name}: no {'non-zero ' if drop_zero else ''}windows")
        trough = float(rates.min())
        return float(rates.max()) / trough if trough > 0 else math.inf


def read_rate_curve(
    path: str | os.PathLike[str],
    *,
    skip_bad_rows: bool = False,
    window_s: float | None = None,
    name: str | None = None,
) -> RateCurve:
    """CSV ``window_start_s,total_rate_rps[,active_clients]`` → :class:`RateCurve`.

    ``window_s`` defaults to the smallest gap between window starts (600 s in the ServeGen data);
    pass it for a one-window file. ``active_clients`` is checked (integer ≥ 0) but not kept.
    """
    file = os.fspath(path)
    lines = tr.read_lines(file, skip_bad_rows)
    tally = tr.BadRowTally(file, skip_bad_rows)
    start = tr.first_content_line(lines)
    head = lines[start] if start < len(lines) else None
    columns = [cell.strip().lower() for cell in (head or "").split(",")]
    if tuple(columns[:2]) != RATE_COLUMNS or columns[2:] not in ([], ["active_clients"]):
        raise TraceError(
            f"{file}:{start + 1}: missing header 'window_start_s,total_rate_rps,active_clients'; {tr.NOT_HEADER}"
        )
    starts: list[float] = []
    rates: list[float] = []

    def parse_row(line: str) -> tuple[float, float]:
        cells = tr.split_cells(line, len(columns))
        window_start = tr.parse_number(cells[0], "window_start_s")
        rate = tr.parse_number(cells[1], "total_rate_rps", maximum=MAX_RATE_RPS)
        if len(cells) == 3:
            tr.parse_count(cells[2], "active_clients", minimum=0)
        if starts and window_start <= starts[-1]:  # the rows kept so far: parse_rows is lazy
            raise tr.RowProblem(f"window_start_s {window_start:g} is not after the previous {starts[-1]:g}")
        return window_start, rate

    for window_start, rate in tr.parse_rows(lines, start + 1, tally, parse_row):
        starts.append(window_start)
        rates.append(rate)
    if not starts:
        raise TraceError(f"{file}: no windows (bad rows skipped: {tally.skipped})")
    tally.report()
    gap_s = float(np.diff(np.asarray(starts)).min()) if len(starts) > 1 else math.inf
    if window_s is None:
        if len(starts) < 2:
            raise TraceError(f"{file}: one window only; pass window_s to say how long it is")
        window_s = gap_s
    elif gap_s < window_s * (1 - 1e-9):  # said here, with the file, rather than by RateCurve with its name
        raise TraceError(f"{file}: windows overlap: starts {gap_s:g} s apart, closer than window_s={window_s:g}")
    return RateCurve(
        name=name if name is not None else os.path.splitext(os.path.basename(file))[0],
        window_start_s=np.asarray(starts, dtype=np.float64),
        rate_rps=np.asarray(rates, dtype=np.float64),
        window_s=window_s,
    )


def generate_poisson(
    curve: RateCurve,
    lengths: RequestTrace,
    rng: np.random.Generator,
    *,
    rate_scale: float = 1.0,
    time_compression: float = 1.0,
    start_s: float = 0.0,
    duration_s: float | None = None,
    name: str | None = None,
) -> RequestTrace:
    """Non-homogeneous Poisson arrivals from a piecewise-constant rate curve.

    Rates are multiplied by ``rate_scale``; the time axis is divided by ``time_compression`` (the
    same requests in less time: the rate seen is ``rate × rate_scale × time_compression``).
    ``start_s`` and ``duration_s`` are on the compressed axis: arrivals in
    ``[start_s, start_s + duration_s)`` are kept and shifted so that ``start_s`` becomes 0
    (``duration_s=None``: to the end of the curve). Each request's input, output and cached tokens
    are one row of ``lengths`` drawn uniformly with replacement (the row's recorded cache hits are
    copied, not recomputed). Draw order, for reproducibility: window counts, arrival offsets, rows.
    """
    if not (math.isfinite(rate_scale) and rate_scale >= 0):
        raise ConfigError(f"rate_scale must be a number ≥ 0, got {rate_scale}")
    if not (math.isfinite(time_compression) and time_compression > 0):
        raise ConfigError(f"time_compression must be a positive number, got {time_compression}")
    if not math.isfinite(start_s):
        raise ConfigError(f"start_s must be finite, got {start_s}")
    if duration_s is not None and not (duration_s >= 0):
        raise ConfigError(f"duration_s must be ≥ 0, got {duration_s}")
    if len(lengths) == 0:
        raise ConfigError(f"{lengths.name}: no requests to take lengths from")
    lo_s = start_s * time_compression  # the kept interval on the curve's own axis
    hi_s = math.inf if duration_s is None else (start_s + duration_s) * time_compression
    begin = np.clip(curve.window_start_s, lo_s, hi_s)
    span = np.clip(curve.window_start_s + curve.window_s, lo_s, hi_s) - begin
    counts = rng.poisson(curve.rate_rps * rate_scale * span)
    arrival = np.repeat(span, counts)
    arrival *= rng.random(arrival.shape[0])
    arrival += np.repeat(begin, counts)
    arrival.sort()  # windows are disjoint and ascending, so this only orders each window's draws
    arrival /= time_compression
    arrival -= start_s
    np.maximum(arrival, 0.0, out=arrival)  # start_s·c/c can round an ulp below start_s
    rows = rng.integers(0, len(lengths), size=arrival.shape[0])
    return RequestTrace(
        name=name
        if name is not None
        else f"poisson({curve.name}, x{rate_scale:g}, /{time_compression:g}, lengths={lengths.name})",
        arrival_s=arrival,
        input_tokens=lengths.input_tokens[rows],
        output_tokens=lengths.output_tokens[rows],
        cached_tokens=None if lengths.cached_tokens is None else lengths.cached_tokens[rows],
    )


def superpose(trace: RequestTrace, copies: int, shift_s: float, name: str | None = None) -> RequestTrace:
    """``copies`` of the trace, copy k shifted by ``k·shift_s``, merged with a stable sort.

    Ties keep copy order (copy 0 first). Cache hits are copied per request, not recomputed across
    copies. ``skipped_rows`` / ``failed_rows_excluded`` are the source's (rows of one file).
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ConfigError(f"copies must be a positive integer, got {copies!r}")
    if not math.isfinite(shift_s):
        raise ConfigError(f"shift_s must be finite, got {shift_s}")
    shifts = np.arange(copies, dtype=np.float64) * shift_s
    arrival = (trace.arrival_s[np.newaxis, :] + shifts[:, np.newaxis]).ravel()
    order = np.argsort(arrival, kind="stable")
    rows = np.tile(np.arange(len(trace)), copies)[order]
    return RequestTrace(
        name=name if name is not None else f"{trace.name}x{copies}",
        arrival_s=arrival[order],
        input_tokens=trace.input_tokens[rows],
        output_tokens=trace.output_tokens[rows],
        cached_tokens=None if trace.cached_tokens is None else trace.cached_tokens[rows],
        skipped_rows=trace.skipped_rows,
        failed_rows_excluded=trace.failed_rows_excluded,
    )


def merge(traces: Sequence[RequestTrace], name: str) -> RequestTrace:
    """Several request lists served as one (a service whose request mix is several sources), merged by
    arrival with a stable sort (ties keep source order). Cache hits stay per request; a source without
    them counts 0 cached tokens when another source has them."""
    if not traces:
        raise ConfigError(f"{name}: nothing to merge")
    if len(traces) == 1:
        return traces[0]
    arrival = np.concatenate([t.arrival_s for t in traces])
    order = np.argsort(arrival, kind="stable")
    cached = None
    if any(t.cached_tokens is not None for t in traces):
        cached = np.concatenate(
            [t.cached_tokens if t.cached_tokens is not None else np.zeros(len(t), np.int64) for t in traces]
        )[order]
    return RequestTrace(
        name=name,
        arrival_s=arrival[order],
        input_tokens=np.concatenate([t.input_tokens for t in traces])[order],
        output_tokens=np.concatenate([t.output_tokens for t in traces])[order],
        cached_tokens=cached,
        skipped_rows=sum(t.skipped_rows for t in traces),
        failed_rows_excluded=sum(t.failed_rows_excluded for t in traces),
    )
