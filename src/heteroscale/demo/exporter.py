"""The simulated engines' metrics, with the names a vLLM engine and DCGM expose, on 127.0.0.1.

One scrape target stands for every pod of the demo's service: each series carries the pod's name
(``pod``) and, as a PodMonitor would relabel them from the pod's labels, ``service``, ``role`` and
``namespace``. The values come from the simulator (``demo.bridge``), per pod:

* counters ``vllm:prompt_tokens_total`` and ``vllm:prefix_cache_hits_total`` (prefill pods: every
  prompt token, and those served from the prefix cache), ``vllm:generation_tokens_total`` (decode
  pods), ``vllm:request_success_total`` (decode pods, per finished request);
* gauges ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (the batch and the queue),
  ``vllm:kv_cache_usage_perc`` (a fraction, as vLLM reports it);
* histograms ``vllm:time_to_first_token_seconds`` (on the prefill pod that served the request),
  ``vllm:inter_token_latency_seconds`` (on the decode pod; each request adds its mean gap once per
  output token after the first), ``vllm:request_prompt_tokens`` and ``vllm:request_generation_tokens``;
* ``DCGM_FI_DEV_GPU_UTIL`` (percent) and ``DCGM_FI_PROF_SM_ACTIVE`` (0–1), one series per GPU.

**Time.** With a speed-up of N, one wall second is N simulated seconds. Counters (and histogram
counts and sums) are divided by N, so a PromQL ``rate()`` over wall seconds reads per *simulated*
second: the controller's targets and SLOs keep their real meaning. Latencies and gauges are simulated
values as they are.

The text is rendered by the bridge after each of its ticks; the HTTP server only hands out the latest
(``start()`` binds a free port on 127.0.0.1; ``stop()`` shuts down and joins with a bounded wait).
The integration tests' engine exporter (``tests/support/engine_exporter.py``) serves through the same
:class:`MetricsServer`, rendering at each scrape, and writes its histograms with :func:`histogram_lines`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from heteroscale.metrics.promql import DCGM_GPU_UTIL, DCGM_SM_ACTIVE, ENGINE_NAMES, Engine, escape_label_value

TTFT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
TBT_BUCKETS_S = (0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)
LENGTH_BUCKETS = (16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0)
STOP_TIMEOUT_S = 5.0
NAMES = ENGINE_NAMES[Engine.VLLM]


@dataclass(slots=True)
class Histogram:
    """Non-cumulative bucket counts (the last is +Inf) and the sum, in simulated units."""

    bounds: tuple[float, ...]
    counts: list[float] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float, weight: float = 1.0) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += weight
                break
        else:
            self.counts[-1] += weight
        self.total += value * weight


@dataclass(slots=True)
class RequestSeries:
    """What one engine instance counted of finished requests."""

    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS_S))
    tbt: Histogram = field(default_factory=lambda: Histogram(TBT_BUCKETS_S))
    prompt_tokens: Histogram = field(default_factory=lambda: Histogram(LENGTH_BUCKETS))
    generation_tokens: Histogram = field(default_factory=lambda: Histogram(LENGTH_BUCKETS))
    finished: float = 0.0


@dataclass(frozen=True, slots=True)
class PodMetrics:
    """One pod's values at one moment (simulated units; the renderer divides counters by N)."""

    pod: str
    service: str
    role: str  # prefill | decode
    namespace: str
    model: str
    gpus: int
    prompt_tokens: float
    cached_tokens: float
    generated_tokens: float
    running: float
    waiting: float
    kv_usage: float
    gpu_util: float  # 0–1
    sm_active: float  # 0–1
    requests: RequestSeries


def _num(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else "NaN"


def _label_pairs(pod: PodMetrics) -> str:
    values = [("model_name", pod.model), ("namespace", pod.namespace), ("pod", pod.pod)]
    values += [("service", pod.service), ("role", pod.role)]
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in values)  # the exposition format escapes as PromQL


def _labels(pod: PodMetrics, extra: str = "") -> str:
    return "{" + _label_pairs(pod) + (f",{extra}" if extra else "") + "}"


def histogram_lines(name: str, labels: str, hist: Histogram, scale: float = 1.0) -> list[str]:
    """One series of histogram ``name``: its cumulative ``_bucket`` lines, ``_sum`` and ``_count``.

    ``labels``: the series' label pairs without braces; counts and the sum are multiplied by ``scale``.
    """
    lines: list[str] = []
    cumulative = 0.0
    for bound, count in zip((*hist.bounds, math.inf), hist.counts, strict=True):
        cumulative += count
        le = "+Inf" if math.isinf(bound) else repr(bound)
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {_num(cumulative * scale)}')
    lines.append(f"{name}_sum{{{labels}}} {_num(hist.total * scale)}")
    lines.append(f"{name}_count{{{labels}}} {_num(cumulative * scale)}")
    return lines


def render(pods: Sequence[PodMetrics], speedup: float) -> str:
    """The exposition text (format 0.0.4, families grouped) of ``pods``; counters ÷ ``speedup``."""
    per = 1.0 / speedup
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, lines: list[str]) -> None:
        if lines:
            out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines])

    prefill = [p for p in pods if p.role == "prefill"]
    decode = [p for p in pods if p.role == "decode"]
    v = "vllm:"
    # (metric name, kind, help, the pods that export it, the value of one pod); counters scaled by ``per``
    engine: tuple[tuple[str, str, str, Sequence[PodMetrics], Callable[[PodMetrics], float]], ...] = (
        (NAMES.prompt_tokens, "counter", "Prompt tokens processed.", prefill, lambda p: p.prompt_tokens * per),
        (
            NAMES.cached_prompt_tokens,
            "counter",
            "Prompt tokens served from the prefix cache.",
            prefill,
            lambda p: p.cached_tokens * per,
        ),
        (NAMES.generation_tokens, "counter", "Generated tokens.", decode, lambda p: p.generated_tokens * per),
        (NAMES.requests, "counter", "Finished requests.", decode, lambda p: p.requests.finished * per),
        (NAMES.running, "gauge", "Requests in the running batch.", pods, lambda p: p.running),
        (NAMES.waiting, "gauge", "Requests waiting.", pods, lambda p: p.waiting),
        (NAMES.kv_usage[0], "gauge", "KV-cache usage (1 = full).", pods, lambda p: p.kv_usage),
    )
    for name, kind, help_text, exporting, value in engine:
        family(v + name, kind, help_text, [f"{v}{name}{_labels(p)} {_num(value(p))}" for p in exporting])
    _histogram(out, v + NAMES.ttft_histogram[0], "Time to first token.", [(p, p.requests.ttft) for p in prefill], per)
    _histogram(
        out, v + NAMES.tbt_histogram[0], "Time between output tokens.", [(p, p.requests.tbt) for p in decode], per
    )
    if NAMES.prompt_length_histogram is not None:
        rows = [(p, p.requests.prompt_tokens) for p in prefill]
        _histogram(out, v + NAMES.prompt_length_histogram, "Prompt length of finished requests.", rows, per)
    if NAMES.output_length_histogram is not None:
        rows = [(p, p.requests.generation_tokens) for p in decode]
        _histogram(out, v + NAMES.output_length_histogram, "Output length of finished requests.", rows, per)
    util, sm = [], []
    for p in pods:
        for gpu in range(p.gpus):
            labels = _labels(p, f'gpu="{gpu}"')
            util.append(f"{DCGM_GPU_UTIL}{labels} {_num(100.0 * p.gpu_util)}")
            sm.append(f"{DCGM_SM_ACTIVE}{labels} {_num(p.sm_active)}")
    family(DCGM_GPU_UTIL, "gauge", "GPU utilisation (%).", util)
    family(DCGM_SM_ACTIVE, "gauge", "Fraction of time SMs have a warp resident.", sm)
    return "\n".join(out) + "\n"


def _histogram(out: list[str], name: str, help_text: str, rows: list[tuple[PodMetrics, Histogram]], per: float) -> None:
    if not rows:
        return
    out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} histogram"])
    for pod, hist in rows:
        out.extend(histogram_lines(name, _label_pairs(pod), hist, per))


class MetricsServer:
    """Serves the latest exposition text at ``/metrics`` on 127.0.0.1 from a daemon thread.

    The text is what was last published, or, given ``render``, what ``render()`` returns at each scrape
    (the integration tests' engine exporter renders its load model so).
    """

    def __init__(self, render: Callable[[], str] | None = None, *, thread_name: str = "demo-engine-metrics") -> None:
        self._render = render
        self._thread_name = thread_name
        self._text = b""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scrapes = 0

    def publish(self, text: str) -> None:
        body = text.encode("utf-8")
        with self._lock:
            self._text = body

    def body(self) -> bytes:
        rendered = None if self._render is None else self._render().encode("utf-8")
        with self._lock:
            self.scrapes += 1
            return self._text if rendered is None else rendered

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics server is not running")
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = owner.body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=self._thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None
