"""The ratio-oracle: a clairvoyant reference at the SLO knee (it reads the future load, so it lives here).

Per window (10 min by default) it takes the minimum (P, D) at the service's P/D ratio whose capacity —
from the same per-instance targets (capacity table and margin) the policies use — covers the window's
mean load, with no cold start, billed for the part of the window inside the run. ``static-peak`` holds
its maximum all day; every other policy starts warm at :attr:`OraclePlan.warm_start`, the larger of the
first window's counts and those for the load of the run's first minute.

It is **not** a lower bound: it sizes at the fixed ratio with the targets' margin, and a window's mean
hides its peaks, so a policy may run under it (hotter, or off the ratio). The bound no run can beat
is :mod:`heteroscale.experiments.lower_bound`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heteroscale.domain.hardware import Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.policy.context import Targets
from heteroscale.sim.engine import ServiceLoad


@dataclass(frozen=True, slots=True)
class OracleWindow:
    start_s: float
    decode_demand_tps: float
    prefill_demand_tps: float
    prefill: int
    decode: int


@dataclass(frozen=True, slots=True)
class OraclePlan:
    service: str
    window_s: float
    windows: tuple[OracleWindow, ...]
    gpus_per_prefill: int
    gpus_per_decode: int
    horizon_s: float  # the run's length: the last window is billed only up to it
    # (P, D) for the load of the first OPENING_S of the run: a part that opens on a burst (a day cut
    # at a busy hour) would otherwise start every policy at a first-window mean far below it
    opening: tuple[int, int] = (0, 0)

    @property
    def gpu_hours(self) -> float:
        gpu_s = sum(
            (w.prefill * self.gpus_per_prefill + w.decode * self.gpus_per_decode)
            * max(0.0, min(self.window_s, self.horizon_s - w.start_s))
            for w in self.windows
        )
        return gpu_s / 3600.0

    @property
    def warm_start(self) -> tuple[int, int]:
        """Where every policy but static-peak starts: the first window's counts, raised to the opening's."""
        first = self.windows[0]
        return max(first.prefill, self.opening[0]), max(first.decode, self.opening[1])

    @property
    def peak(self) -> tuple[int, int]:
        """(P, D) of the window with the most GPUs."""
        best = max(self.windows, key=lambda w: w.prefill * self.gpus_per_prefill + w.decode * self.gpus_per_decode)
        return best.prefill, best.decode

    @property
    def peak_instances(self) -> int:
        return max(w.prefill + w.decode for w in self.windows)


def counts_for_demand(spec: ServiceSpec, targets: Targets, decode_tps: float, prefill_tps: float) -> tuple[int, int]:
    """Minimum (P, D) at the ratio covering both demands with the preferred shapes' targets."""
    m_d = targets.decode_tps(spec.preferred_shape(Role.DECODE).key)
    m_p = targets.prefill_tps(spec.preferred_shape(Role.PREFILL).key)
    r = spec.pd_ratio
    d = max(spec.min_decode, math.ceil(decode_tps / m_d - 1e-9))
    p_need = max(spec.min_prefill, math.ceil(prefill_tps / m_p - 1e-9), 1)
    while max(1, round(d * r)) < p_need and d < spec.max_decode:
        d += 1
    d = min(d, spec.max_decode)
    p = min(spec.max_prefill, max(spec.min_prefill, 1, round(d * r), p_need))
    return p, d


def _window_demands(
    load: ServiceLoad, window_s: float, horizon_s: float, first_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(decode, cache-missed prefill) demand in tokens/s per window; ``first_only``: the first window alone
    (arrivals after it are left out, not folded into it as late arrivals are into the last window)."""
    n = 1 if first_only else max(1, math.ceil(horizon_s / window_s))
    if load.rate_curve is not None:
        new = (load.trace.input_tokens - load.cached_tokens).astype(np.float64)
        mean_new = float(new.mean()) if len(new) else 0.0
        mean_out = float(load.trace.output_tokens.mean()) if len(load.trace) else 0.0
        # the curve is piecewise constant: average its rate over each window on a 10 s grid
        rates = np.array(
            [np.mean([load.rate_at(k * window_s + j) for j in np.arange(5.0, window_s, 10.0)]) for k in range(n)]
        )
        return rates * mean_out, rates * mean_new
    t = load.trace.arrival_s
    keep = t < window_s if first_only else np.ones(len(t), dtype=bool)
    idx = np.minimum((t[keep] / window_s).astype(np.int64), n - 1)
    out_tokens = load.trace.output_tokens[keep].astype(np.float64)
    new_tokens = (load.trace.input_tokens - load.cached_tokens)[keep].astype(np.float64)
    out = np.bincount(idx, weights=out_tokens, minlength=n) / window_s
    return out, np.bincount(idx, weights=new_tokens, minlength=n) / window_s


OPENING_S = 60.0  # the controller's observation window: what a running cluster has just been sized on


def oracle_plan(load: ServiceLoad, targets: Targets, horizon_s: float, window_s: float = 600.0) -> OraclePlan:
    spec = load.spec
    decode_demand, prefill_demand = _window_demands(load, window_s, horizon_s)
    opening_d, opening_p = _window_demands(load, OPENING_S, horizon_s, first_only=True)
    opening = counts_for_demand(spec, targets, float(opening_d[0]), float(opening_p[0]))
    windows = []
    for k, (dd, pd) in enumerate(zip(decode_demand, prefill_demand, strict=True)):
        p, d = counts_for_demand(spec, targets, float(dd), float(pd))
        windows.append(OracleWindow(k * window_s, float(dd), float(pd), p, d))
    return OraclePlan(
        service=spec.name,
        window_s=window_s,
        windows=tuple(windows),
        gpus_per_prefill=spec.preferred_shape(Role.PREFILL).gpus,
        gpus_per_decode=spec.preferred_shape(Role.DECODE).gpus,
        horizon_s=horizon_s,
        opening=opening,
    )
