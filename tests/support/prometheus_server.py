"""A real Prometheus (the Debian package's binary) on 127.0.0.1 for integration tests.

The product's :class:`heteroscale.demo.prometheus.PrometheusProcess` with the tests' defaults (job
``engines``, a scrape every second, wall time) and ``has_data``. ``PrometheusServer(tmp_path,
targets).start()`` starts it on a free 127.0.0.1 port with its TSDB under ``tmp_path`` and waits
(bounded) until ``/-/ready`` answers; ``web_config`` / ``tls`` / ``client`` serve https or basic auth
(see the product class); ``stop()`` terminates it by its handle (bounded); ``start()`` again restarts
it on the same port and data directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from heteroscale.clock import WallClock
from heteroscale.demo.prometheus import PrometheusProcess, free_port, prometheus_binary

__all__ = ["PrometheusServer", "free_port", "prometheus_binary", "wait_until"]


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s`` passes; bounded in count and time."""
    if not callable(predicate):  # a value passed by mistake would otherwise just time out
        raise TypeError(f"wait_until needs a callable, got {predicate!r}")
    clock = WallClock()
    deadline = clock.monotonic_s() + timeout_s
    for _ in range(int(timeout_s / interval_s) + 2):
        if predicate():
            return True
        if clock.monotonic_s() >= deadline:
            return False
        clock.sleep_s(interval_s)
    return False


class PrometheusServer(PrometheusProcess):
    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        scrape_interval_s: float = 1.0,
        *,
        web_config: Path | None = None,
        tls: bool = False,
        client: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            workdir,
            targets,
            scrape_interval_s,
            WallClock(),
            job_name="engines",
            web_config=web_config,
            tls=tls,
            client=client,
        )

    def has_data(self, query: str) -> bool:
        try:
            body = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=2.0, **self.client).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(body.get("data", {}).get("result"))
