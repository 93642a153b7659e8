"""One load source's own time axis: its rate curve, its length (span), the window it keeps, and the
transforms that follow (rate steps, then length scales).

The runner draws or replays a source, then calls :func:`load_window` and :func:`shape_source`; the
config layer calls :func:`check_load` to reject, at load time, a day or a window outside the load.
"""

from __future__ import annotations

import numpy as np

from heteroscale.errors import ConfigError
from heteroscale.sim.loadgen import RateCurve, read_rate_curve
from heteroscale.sim.scenario import LoadKind, LoadSpec
from heteroscale.sim.traces import RequestTrace, read_trace
from heteroscale.sim.transforms import apply_rate_steps, scale_lengths
from heteroscale.sim.windows import ResolvedWindow, resolve_window


def raw_curve(load: LoadSpec, name: str) -> RateCurve:
    """A Poisson load's rate curve, its day chosen, before smoothing."""
    if load.rate_curve_path is None:
        raise ConfigError(f"service {name}: load.kind poisson needs a rate_curve")
    curve = read_rate_curve(load.rate_curve_path, skip_bad_rows=load.skip_bad_rows)
    if load.rate_curve_day is not None:
        curve = curve.day(load.rate_curve_day)
    return curve


def smoothed_curve(curve: RateCurve, load: LoadSpec) -> RateCurve:
    return curve.smoothed(load.rate_curve_smoothing_s) if load.rate_curve_smoothing_s > 0 else curve


def load_span_s(load: LoadSpec, source: RequestTrace | None, curve: RateCurve | None) -> float:
    """How long the load lasts on its own axis: to the end of its curve (Poisson) or to its last
    arrival (a replay: compressed, copies shifted, ``start_s`` cut off)."""
    if load.kind is LoadKind.POISSON:
        if curve is None:
            raise ConfigError("a poisson load needs its rate curve")
        return curve.end_s / load.time_compression - load.start_s
    if source is None:
        raise ConfigError("a replayed load needs its trace")
    last = float(source.arrival_s[-1]) if len(source) else 0.0
    return last / load.time_compression + (load.copies - 1) * load.copy_shift_s - load.start_s


def load_window(load: LoadSpec, source: RequestTrace | None, curve: RateCurve | None) -> ResolvedWindow | None:
    """The interval of the load axis the service keeps (None: all of it). A Poisson load needs its raw
    ``curve``, a replayed one its ``source`` trace."""
    if load.window is None:
        return None
    span = load_span_s(load, source, curve)
    if span <= 0:
        raise ConfigError(f"window: the load is empty after start_s {load.start_s:g} s")
    return resolve_window(load.window, span, curve, load.time_compression, load.start_s)


def shape_source(trace: RequestTrace, load: LoadSpec, rng: np.random.Generator, offset_s: float = 0.0) -> RequestTrace:
    """Rate steps (on the load axis; the trace starts ``offset_s`` into it), then length scales.

    The steps draw from a child of ``rng`` (``spawn``), so a load without steps draws exactly what it
    did before steps existed, and adding a step leaves the other sources' draws alone."""
    if load.rate_steps:
        trace = apply_rate_steps(trace, load.rate_steps, rng.spawn(1)[0], offset_s)
    return scale_lengths(trace, load.lengths)


def check_day(load: LoadSpec) -> None:
    """Raise the ConfigError a run would raise for a ``rate_curve_day`` outside the curve."""
    if load.kind is LoadKind.POISSON and load.rate_curve_day is not None:
        raw_curve(load, "load")


def check_window(load: LoadSpec) -> None:
    """Raise the ConfigError a run would raise for a window outside the load (reads the curve, or
    the trace's arrivals, only when a window is set)."""
    if load.window is None:
        return
    if load.kind is LoadKind.POISSON and load.copies > 1:  # copies are shifted past the window's end
        raise ConfigError("window: a window of a poisson load with copies is ambiguous; scale it with rate_scale")
    if load.kind is LoadKind.POISSON:
        load_window(load, None, raw_curve(load, "load"))
    else:
        load_window(load, read_trace(load.trace_path, load.trace_format, skip_bad_rows=load.skip_bad_rows), None)
