"""What both fidelities share: the per-service load they serve and the Engine Protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import ScaleInMode
from heteroscale.sim.cluster import SimCluster
from heteroscale.sim.records import ServiceStats
from heteroscale.sim.telemetry import Telemetry
from heteroscale.sim.traces import RateCurve, RequestTrace


@dataclass(frozen=True, slots=True)
class ServiceLoad:
    """One service's requests, with the cached-prefix tokens of each already resolved.

    With ``rate_curve`` set (fluid fidelity on a Poisson load), ``trace`` is only the length mix and
    arrivals come from the curve (× ``rate_scale``, time ÷ ``time_compression``), so a day at
    hundreds of requests per second never materialises as a request list.
    """

    spec: ServiceSpec
    trace: RequestTrace
    cached_tokens: np.ndarray  # int64 per request, 0 ≤ cached < input
    cold_start_s: float
    rate_curve: RateCurve | None = None
    rate_scale: float = 1.0
    time_compression: float = 1.0
    duration_s: float | None = None
    curve_start_s: float = 0.0  # simulated time 0 is this far into the (compressed) curve

    def rate_at(self, t_s: float) -> float:
        """Arrival rate (requests/s) at simulated time ``t_s`` for a curve load (piecewise constant)."""
        curve = self.rate_curve
        if curve is None:
            return 0.0
        t_curve = (t_s + self.curve_start_s) * self.time_compression
        idx = int(np.searchsorted(curve.window_start_s, t_curve, side="right")) - 1
        if idx < 0 or t_curve >= float(curve.window_start_s[-1]) + curve.window_s:
            return 0.0
        return float(curve.rate_rps[idx]) * self.rate_scale * self.time_compression

    def load_end_s(self) -> float:
        if self.rate_curve is not None:
            end = (float(self.rate_curve.window_start_s[-1]) + self.rate_curve.window_s) / self.time_compression
            end -= self.curve_start_s
            return min(end, self.duration_s) if self.duration_s is not None else end
        return float(self.trace.arrival_s[-1]) if len(self.trace) else 0.0

    @staticmethod
    def resolve_cached(trace: RequestTrace, hit_rate: float) -> np.ndarray:
        """Cached prefix per request: from the trace where it says, else ⌊hit_rate · input⌋.

        At least one prompt token is always computed.
        """
        if trace.cached_tokens is not None:
            cached = trace.cached_tokens.astype(np.int64)
        else:
            cached = np.floor(trace.input_tokens.astype(np.float64) * hit_rate).astype(np.int64)
        return np.minimum(cached, trace.input_tokens.astype(np.int64) - 1).clip(min=0)


class Engine(Protocol):
    cluster: SimCluster
    telemetry: Telemetry
    stats: list[ServiceStats]
    now_s: float
    events: int

    def run_until(self, t_end_s: float) -> None: ...

    def launch(self, svc: int, shape: InstanceShape, dg: str, node: str, now_s: float, warm: bool) -> str: ...

    def remove(self, inst_id: str, mode: ScaleInMode, grace_s: float, now_s: float) -> None: ...

    def set_discovery(self, inst_id: str, in_discovery: bool) -> None: ...

    def finalize(self, end_s: float) -> None:
        """Bring every accumulator up to ``end_s`` before the summary is read."""
        ...

    @property
    def arrivals_done(self) -> bool: ...

    @property
    def idle(self) -> bool: ...

    @property
    def latency_estimated(self) -> bool: ...

    def completed_mask(self, svc: int) -> np.ndarray | None:
        """Which requests of service ``svc``'s trace completed, in trace order; None when the engine
        serves flows rather than requests."""
        ...
