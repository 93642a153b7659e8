"""Load transforms: reasoning-length outputs, longer prompts and step loads.

They are part of the load, not of the policy: the runner applies them to each source of a service's
load right after the source is drawn or replayed (and after a window picks a part of it), from the
load spec and the seed alone, so every policy serves the very same requests.

* :class:`LengthScale` multiplies each request's input and/or output tokens (rounded half up, at
  least 1, at most the cap). Cached prefix tokens scale with the input (at most input − 1).
* :class:`RateStep` multiplies the arrival rate from ``at_s`` on, reached linearly over ``ramp_s``
  (a ×2 step within a minute: ``factor: 2, ramp_s: 60``). Several steps multiply. Request ``j``
  at multiplier ``m`` stands for ``⌊m⌋`` or ``⌊m⌋ + 1`` requests (the latter with probability
  ``m − ⌊m⌋``); for ``m < 1`` that is 0 or 1, a thinning. The extra copies carry request ``j``'s
  lengths (and cached tokens) and arrive uniformly between it and the next arrival, so the count in
  any interval scales by ``m`` and the load keeps its own burst shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from heteroscale.errors import ConfigError
from heteroscale.sim.traces import RequestTrace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class LengthScale:
    """Token-length scales of a load; 1.0 and no cap leave the lengths as they are."""

    input_scale: float = 1.0
    input_cap_tokens: int | None = None
    output_scale: float = 1.0
    output_cap_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("input_scale", "output_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        for name in ("input_cap_tokens", "output_cap_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")

    @property
    def identity(self) -> bool:
        return (
            self.input_scale == 1.0
            and self.output_scale == 1.0
            and self.input_cap_tokens is None
            and self.output_cap_tokens is None
        )


@dataclass(frozen=True, slots=True)
class RateStep:
    """The arrival rate ×``factor`` from ``at_s + ramp_s`` on, linear from ×1 over ``[at_s, at_s + ramp_s]``.

    ``at_s`` is on the load's own time axis: after ``time_compression`` and ``start_s``, before any
    window (a step belongs to the load; a window picks a part of the load, steps included)."""

    at_s: float
    factor: float
    ramp_s: float = 60.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.at_s) and self.at_s >= 0):
            raise ConfigError(f"at_s must be a number ≥ 0, got {self.at_s}")
        if not (math.isfinite(self.factor) and self.factor > 0):
            raise ConfigError(f"factor must be a positive number, got {self.factor}")
        if not (math.isfinite(self.ramp_s) and self.ramp_s >= 0):
            raise ConfigError(f"ramp_s must be a number ≥ 0, got {self.ramp_s}")


def rate_multiplier(steps: Sequence[RateStep], t_s: FloatArray) -> FloatArray:
    """The product of every step's multiplier at times ``t_s`` (load axis)."""
    out = np.ones_like(t_s, dtype=np.float64)
    for step in steps:
        if step.ramp_s > 0:
            progress = np.clip((t_s - step.at_s) / step.ramp_s, 0.0, 1.0)
        else:
            progress = (t_s >= step.at_s).astype(np.float64)
        out *= 1.0 + (step.factor - 1.0) * progress
    return out


def apply_rate_steps(
    trace: RequestTrace, steps: Sequence[RateStep], rng: np.random.Generator, offset_s: float = 0.0
) -> RequestTrace:
    """The trace with its arrival rate multiplied by the steps (see the module docstring).

    ``offset_s`` is where the trace's time 0 lies on the load axis (the start of a window). Draw
    order: one uniform per request (how many it stands for), then one per extra copy (its time)."""
    n = len(trace)
    if not steps or n == 0:
        return trace
    arrival = trace.arrival_s
    multiplier = rate_multiplier(steps, arrival + offset_s)
    whole = np.floor(multiplier)
    copies = (whole + (rng.random(n) < multiplier - whole)).astype(np.int64)
    rows = np.repeat(np.arange(n), copies)
    first = np.zeros(rows.shape[0], dtype=bool)  # the request itself, at its own time
    starts = np.cumsum(copies) - copies
    first[starts[copies > 0]] = True
    gap = np.empty(n, dtype=np.float64)
    gap[:-1] = np.diff(arrival)
    gap[-1] = gap[-2] if n > 1 else 0.0  # the last request: its previous gap
    extra = ~first
    times = arrival[rows].copy()
    times[extra] += rng.random(int(extra.sum())) * gap[rows[extra]]
    order = np.argsort(times, kind="stable")
    rows = rows[order]
    return RequestTrace(
        name=trace.name,
        arrival_s=times[order],
        input_tokens=trace.input_tokens[rows],
        output_tokens=trace.output_tokens[rows],
        cached_tokens=None if trace.cached_tokens is None else trace.cached_tokens[rows],
        skipped_rows=trace.skipped_rows,
        failed_rows_excluded=trace.failed_rows_excluded,
    )


def _scaled(tokens: IntArray, scale: float, cap: int | None) -> IntArray:
    out = np.floor(tokens.astype(np.float64) * scale + 0.5)
    return np.clip(out, 1, cap if cap is not None else None).astype(np.int64)


def scale_lengths(trace: RequestTrace, scale: LengthScale) -> RequestTrace:
    """Each request's input and output tokens × their scales, rounded half up, within [1, cap]."""
    if scale.identity:
        return trace
    inputs = _scaled(trace.input_tokens, scale.input_scale, scale.input_cap_tokens)
    cached = trace.cached_tokens
    if cached is not None:
        cached = np.minimum(np.floor(cached.astype(np.float64) * scale.input_scale), inputs - 1).astype(np.int64)
    return RequestTrace(
        name=trace.name,
        arrival_s=trace.arrival_s,
        input_tokens=inputs,
        output_tokens=_scaled(trace.output_tokens, scale.output_scale, scale.output_cap_tokens),
        cached_tokens=cached,
        skipped_rows=trace.skipped_rows,
        failed_rows_excluded=trace.failed_rows_excluded,
    )
