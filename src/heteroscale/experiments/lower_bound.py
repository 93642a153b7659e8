"""The true lower bound (``lower-bound``): the least GPU-hours (and cost) any run of a load can bill.

It reads the future load, so it lives here and not among the policies. Per role and per window
(60 s by default), the bound is the GPU time the work arriving in that window takes at **saturation**
— each request's cache-missed prefill tokens and its generated tokens, on the cheapest allowed shape
for that request, at that shape's largest feasible batch, any latency (:mod:`heteroscale.sim.saturation`,
the simulator's own performance model). No P/D ratio, no cold start, no SLO, no margin, no rounding
up to whole instances, and nothing billed past the work: the total is exactly the sum over requests,
so the run's duration never pads it.

Why no run lands below it. An instance is billed from launch to gone and serves one batch (prefill)
or one step (decode) at a time, never faster than the performance model at its largest feasible
batch; so a run's GPU-seconds per role are at least the saturation cost of all it served. Work that
arrives in one window and is served in a later one (queues, requests that straddle windows, a lazy
policy that defers work) moves cost between windows but not out of the sum, which is why the bound is
cumulative: the per-window figures say *when* the work arrived, and only their sum is a bound.
Whole-instance counts per window would not be one — a run may hold an instance for part of a window
and carry work over — so the window figures are average GPUs busy at saturation, not instances.
With several allowed shapes per role each request goes to its cheapest shape (per GPU for GPU-hours,
per GPU × relative cost for cost), which no mix of shapes can beat, so each figure is the cheapest mix.

A run that completes every servable request (one whose prompt plus output fits some decode shape's KV
cache) bills at least this; a run that fails or leaves requests unfinished did less work, and the
simulator checks every run against the bound of the work it did complete (:mod:`heteroscale.sim.bound`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from heteroscale.domain.hardware import Role
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.saturation import RequestCosts

DEFAULT_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class BoundWindow:
    """One window: the saturation GPU-seconds (and cost-weighted GPU-seconds) of the work arriving in it."""

    start_s: float
    length_s: float
    prefill_gpu_s: float
    decode_gpu_s: float
    cost_gpu_s: float

    @property
    def gpus(self) -> float:
        """Average GPUs busy at saturation over the window (both roles)."""
        return (self.prefill_gpu_s + self.decode_gpu_s) / self.length_s if self.length_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LowerBound:
    service: str
    window_s: float
    windows: tuple[BoundWindow, ...]

    @property
    def gpu_hours(self) -> float:
        return sum(w.prefill_gpu_s + w.decode_gpu_s for w in self.windows) / 3600.0

    def gpu_hours_by_role(self) -> dict[str, float]:
        return {
            Role.PREFILL.value: sum(w.prefill_gpu_s for w in self.windows) / 3600.0,
            Role.DECODE.value: sum(w.decode_gpu_s for w in self.windows) / 3600.0,
        }

    @property
    def cost(self) -> float:
        return sum(w.cost_gpu_s for w in self.windows) / 3600.0

    @property
    def peak_gpus(self) -> float:
        return max((w.gpus for w in self.windows), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpu_hours": round(self.gpu_hours, 4),
            "gpu_hours_by_role": {k: round(v, 4) for k, v in self.gpu_hours_by_role().items()},
            "cost": round(self.cost, 4),
            "peak_gpus": round(self.peak_gpus, 3),
            "window_s": self.window_s,
        }


def lower_bound(
    load: ServiceLoad,
    costs: RequestCosts,
    horizon_s: float,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    curve_counts: tuple[np.ndarray, float] | None = None,
) -> LowerBound:
    """The bound of all of ``load`` (what a run of ``horizon_s`` is offered), per ``window_s`` window.

    A trace load's requests are priced one by one (``costs`` in trace order). A rate-curve load (fluid
    fidelity) has no request list: ``curve_counts`` = (arrivals per step, step length) — the very
    counts the fluid run draws — each arrival priced at the mix's mean servable cost."""
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    n = max(1, math.ceil(horizon_s / window_s - 1e-9))
    servable = costs.servable
    per_request = (
        np.where(servable, costs.prefill_gpu_s, 0.0),
        costs.decode_gpu_s,
        np.where(servable, costs.prefill_cost_s + costs.decode_cost_s, 0.0),
    )
    if curve_counts is not None:
        counts, step_s = curve_counts
        idx = np.minimum((np.arange(len(counts)) * step_s / window_s).astype(np.int64), n - 1)
        per_window = np.bincount(idx, weights=counts, minlength=n)
        sums: list[np.ndarray] = [per_window * (float(a.mean()) if len(a) else 0.0) for a in per_request]
    else:
        idx = np.minimum((load.trace.arrival_s / window_s).astype(np.int64), n - 1)
        sums = [np.bincount(idx, weights=a, minlength=n) for a in per_request]
    windows = tuple(
        BoundWindow(
            start_s=k * window_s,
            length_s=min(window_s, horizon_s - k * window_s) if horizon_s > k * window_s else window_s,
            prefill_gpu_s=float(sums[0][k]),
            decode_gpu_s=float(sums[1][k]),
            cost_gpu_s=float(sums[2][k]),
        )
        for k in range(n)
    )
    return LowerBound(load.spec.name, window_s, windows)
