"""The demo's load: a ramp up, a plateau and a ramp down, as Poisson arrivals in simulated time.

The shape is given in fractions of the run so a short run (the CI test) and the default one see the
same story: a quiet start (0–10 %), a linear ramp to the peak (10–45 %), the peak (45–65 %), a ramp
down (65–85 %) and a quiet end. Request lengths are drawn from a bundled trace, as a scenario's
``kind: poisson`` load draws them; the arrival rate is piecewise constant per ``window_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heteroscale.domain.service import ServiceSpec
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.loadgen import RateCurve, generate_poisson
from heteroscale.sim.traces import RequestTrace

# (fraction of the run, fraction of the way from the base rate to the peak): linear in between
RAMP_SHAPE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.10, 0.0),
    (0.45, 1.0),
    (0.65, 1.0),
    (0.85, 0.0),
    (1.0, 0.0),
)


@dataclass(frozen=True, slots=True)
class Ramp:
    """Arrival rates in requests per simulated second."""

    base_rps: float
    peak_rps: float

    def __post_init__(self) -> None:
        if not 0 <= self.base_rps <= self.peak_rps or self.peak_rps <= 0:
            raise ValueError(f"the ramp needs 0 ≤ base ≤ peak and peak > 0, got {self.base_rps}, {self.peak_rps}")

    def rate_at(self, fraction: float) -> float:
        """The rate at ``fraction`` of the run (0–1), linear between the points of :data:`RAMP_SHAPE`."""
        xs = [x for x, _ in RAMP_SHAPE]
        ys = [y for _, y in RAMP_SHAPE]
        level = float(np.interp(min(max(fraction, 0.0), 1.0), xs, ys))
        return self.base_rps + (self.peak_rps - self.base_rps) * level


def ramp_curve(ramp: Ramp, duration_s: float, window_s: float) -> RateCurve:
    """The ramp over ``duration_s`` simulated seconds, one rate per window (its midpoint's)."""
    if duration_s <= 0 or window_s <= 0:
        raise ValueError(f"duration_s and window_s must be > 0, got {duration_s}, {window_s}")
    n = max(1, int(np.ceil(duration_s / window_s)))
    starts = np.arange(n, dtype=np.float64) * window_s
    rates = np.array([ramp.rate_at((s + window_s / 2) / duration_s) for s in starts], dtype=np.float64)
    return RateCurve(name="demo-ramp", window_start_s=starts, rate_rps=rates, window_s=window_s)


def ramp_load(
    spec: ServiceSpec,
    lengths: RequestTrace,
    ramp: Ramp,
    duration_s: float,
    cold_start_s: float,
    seed: int,
    window_s: float = 10.0,
) -> ServiceLoad:
    """One service's requests over the ramp (seeded), with their cached prefixes resolved."""
    curve = ramp_curve(ramp, duration_s, window_s)
    trace = generate_poisson(curve, lengths, np.random.default_rng(seed), duration_s=duration_s, name="demo-ramp")
    return ServiceLoad(spec, trace, ServiceLoad.resolve_cached(trace, spec.prefix_cache_hit_rate), cold_start_s)
