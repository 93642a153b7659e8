"""What one observation costs against a real Prometheus: queries sent and wall time of
``PrometheusSource.observe`` with the DCGM series joined to ``kube_pod_labels`` (the default) and without
the join (``gpu_join: null``), and the join query alone.

A real Prometheus (the Debian package) on 127.0.0.1 scrapes the test exporter, which serves ``--pods``
decode pods (and as many prefill pods) of one service, each with ``--ranks`` data-parallel ranks, one
DCGM series per pod and its ``kube_pod_labels`` series. After the window fills it times ``--repeat``
observations of each kind and prints one JSON line:

* ``queries_per_observe`` — PromQL queries one observation sends (the same with and without the join);
* ``observe_ms_join_p50`` / ``_p95`` and ``observe_ms_plain_p50`` / ``_p95`` — one observation;
* ``gpu_util_ms_join_p50`` / ``gpu_util_ms_plain_p50`` — the GPU-utilisation query alone (without the
  join the exporter's role-less DCGM series match nothing: that figure is the floor of one query).

    python benchmarks/observe_cost.py [--pods 200] [--ranks 2] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.engine_exporter import EngineExporter, RoleLoad, ServiceLoad  # noqa: E402
from tests.support.prometheus_server import PrometheusServer, prometheus_binary, wait_until  # noqa: E402

from heteroscale.clock import WallClock  # noqa: E402
from heteroscale.domain.hardware import Role  # noqa: E402
from heteroscale.metrics.prometheus import PrometheusSource  # noqa: E402
from heteroscale.metrics.promql import MetricMapping, Queries  # noqa: E402

WINDOW_S = 6.0
CLOCK = WallClock()


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return super().handle_request(request)


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if prometheus_binary() is None:
        print("prometheus is not on PATH (Debian: apt-get install prometheus)", file=sys.stderr)
        return 2
    load = ServiceLoad(
        "chat",
        prefill=RoleLoad(args.pods, 4000.0 * args.pods, 6000.0),
        decode=RoleLoad(args.pods, 1000.0 * args.pods, 1500.0),
        dp_ranks=args.ranks,
    )
    exporter = EngineExporter([load]).start()
    with tempfile.TemporaryDirectory() as tmp:
        prometheus = PrometheusServer(Path(tmp), [f"127.0.0.1:{exporter.port}"]).start()
        try:
            query = f'rate(vllm:generation_tokens_total{{service="chat"}}[{int(WINDOW_S)}s])'
            if not wait_until(lambda: prometheus.has_data(query), 60.0, 0.25):
                print("no data in 60 s", file=sys.stderr)
                return 1
            CLOCK.sleep_s(WINDOW_S)
            figures: dict[str, float | int] = {"pods_per_role": args.pods, "ranks": args.ranks}
            for name, mapping in (("join", MetricMapping()), ("plain", MetricMapping(gpu_join=None))):
                transport = CountingTransport()
                source = PrometheusSource(prometheus.url, mapping, timeout_s=10.0, clock=CLOCK, transport=transport)
                times, gpu_times = [], []
                for _ in range(args.repeat):
                    start = CLOCK.monotonic_s()
                    obs = source.observe("chat", CLOCK.now_s(), WINDOW_S)
                    times.append(CLOCK.monotonic_s() - start)
                    assert obs.decode.instances_ready == args.pods, obs.missing
                    start = CLOCK.monotonic_s()
                    source.query(Queries(mapping, "chat", WINDOW_S).gpu_util(Role.DECODE), CLOCK.now_s(), "gpu")
                    gpu_times.append(CLOCK.monotonic_s() - start)
                figures["queries_per_observe"] = (transport.requests - args.repeat) // args.repeat
                figures[f"observe_ms_{name}_p50"] = _ms(times, 0.5)
                figures[f"observe_ms_{name}_p95"] = _ms(times, 0.95)
                figures[f"gpu_util_ms_{name}_p50"] = round(1000.0 * statistics.median(gpu_times), 1)
                source.close()
            print(json.dumps(figures))
        finally:
            prometheus.stop()
            exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
