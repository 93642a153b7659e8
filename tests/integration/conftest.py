"""Fixtures for the integration tests: a test exporter, a real Prometheus, the Kubernetes API fake.

Every server listens on 127.0.0.1, is started with a bounded wait and stopped by its handle at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine_exporter import EngineExporter, RoleLoad, ServiceLoad
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import NAMESPACE, gpu_nodes
from tests.support.prometheus_server import PrometheusServer, prometheus_binary, wait_until

pytestmark = pytest.mark.integration


def chat_load() -> ServiceLoad:
    # 2800 generated tok/s → 3 decode instances at the 1000 tok/s target; 8000 prompt tok/s with 25 %
    # cache hits → 6000 cache-missed tok/s → 2 prefill instances at 3000 (the P/D ratio 1 then says 3)
    return ServiceLoad(
        "chat",
        prefill=RoleLoad(1, 8000.0, 6000.0),
        decode=RoleLoad(1, 2800.0, 1500.0),
        base_ttft_s=0.2,
        base_tbt_s=0.02,
    )


@pytest.fixture
def kube() -> Iterator[KubeFakeServer]:
    server = KubeFakeServer(gpu_nodes(), ready_after_s=0.3).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def exporter(kube: KubeFakeServer) -> Iterator[EngineExporter]:
    """The chat service's engines; their instance counts follow the fake cluster's Ready pods."""
    ex = EngineExporter([chat_load()], instances_source=lambda: kube.ready_counts(NAMESPACE)).start()
    try:
        yield ex
    finally:
        ex.stop()


@pytest.fixture
def prometheus(tmp_path: Path, exporter: EngineExporter) -> Iterator[PrometheusServer]:
    if prometheus_binary() is None:
        pytest.skip("prometheus not on PATH: `make test` installs Debian's package (make system-deps)")
    server = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{exporter.port}"]).start()
    try:
        yield server
    finally:
        server.stop()


def wait_for_series(prometheus: PrometheusServer, query: str, timeout_s: float = 30.0) -> None:
    assert wait_until(lambda: prometheus.has_data(query), timeout_s, 0.25), f"no data for {query} in {timeout_s} s"
