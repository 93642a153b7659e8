"""The MetricSource Protocol: the simulator and Prometheus both answer it with Observations."""

from __future__ import annotations

from typing import Protocol

from heteroscale.domain.observation import Observation


class MetricSource(Protocol):
    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        """Signals of ``service`` over ``[now_s - window_s, now_s]``.

        Raises ``MetricsUnavailable`` when the source cannot answer at all.
        """
        ...
