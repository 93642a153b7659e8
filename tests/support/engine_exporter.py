"""A test exporter on 127.0.0.1 that serves real vLLM / SGLang / DCGM metric names in the classic text format.

It stands in for a fleet of engine pods behind one scrape target. A simple load model drives the values:
each role of each service has a number of instances and a demand in tokens/s; at every scrape the
counters grow by demand × elapsed seconds (spread over the instances), the gauges follow the load
per instance, and the TTFT / TBT histograms gain observations whose latency rises with the load.
The classic format (``text/plain; version=0.0.4``) keeps the ``vllm:`` colon; ``spelling="underscore"``
serves ``vllm_x`` instead, as an engine on prometheus_client 0.26 appears after an OpenMetrics scrape.

Faults for tests: ``freeze()`` keeps serving the last values with the timestamps of the freeze moment
(Prometheus then holds samples that grow old: stale), ``nan=True`` serves NaN gauges and counters,
``serve_only(service, role, n)`` serves the series of only the first ``n`` instances of a role while the
load stays spread over all of them (a partial scrape: pods whose targets are down).
``ServiceLoad.dp_ranks`` > 1 serves each instance as that many data-parallel ranks (one series per rank,
label ``engine="<rank>"``, the instance's counters split between them), as vLLM's DP engines do;
``EngineExporter(rank=r)`` serves only rank ``r`` of each instance, so one exporter per rank stands for
engines whose ranks each have their own port (one scrape target per rank, one pod).

Real label sets: engine series carry ``namespace`` and ``pod`` (as a PodMonitor's target labels) and the
``service`` / ``role`` labels the default mapping relabels from the pods' labels. DCGM series carry only
what dcgm-exporter's Kubernetes mapping gives them (``gpu``, ``UUID``, ``modelName``, ``Hostname``,
``namespace``, ``pod``, ``container``; ``exported_namespace`` / ``exported_pod`` with
``dcgm_exported_labels=True``), never a role, and ``kube_pod_labels`` (kube-state-metrics) carries each
pod's ``heteroscale.io/service`` and ``heteroscale.io/role`` labels as ``label_heteroscale_io_*``.
Engine quirks: SGLang's token counters grow only when a request finishes (``ServiceLoad.finish_every_s``:
the generated-tokens counter jumps once per that many seconds) while ``sglang:gen_throughput`` follows the load;
``ServiceLoad.legacy_prefix_metric`` serves vLLM ≤ v0.9.0's ``vllm:gpu_prefix_cache_hits_total`` instead
of ``vllm:prefix_cache_hits_total``.

Served by the product's exporter (:class:`heteroscale.demo.exporter.MetricsServer`, rendering at each
scrape), started and stopped by its handle: ``start()`` binds a free port on 127.0.0.1, ``stop()``
shuts the server down and joins its thread with a bounded wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from heteroscale.clock import WallClock
from heteroscale.demo.exporter import Histogram, MetricsServer, histogram_lines

TTFT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
TBT_BUCKETS_S = (0.01, 0.02, 0.04, 0.06, 0.1, 0.2, 0.5)


@dataclass(slots=True)
class RoleLoad:
    instances: int
    tps: float  # prefill: prompt tokens/s (before cache hits); decode: generated tokens/s
    capacity_tps_per_instance: float  # the load per instance at which latency doubles


@dataclass(slots=True)
class ServiceLoad:
    name: str
    engine: str = "vllm"  # "vllm" | "sglang"
    prefill: RoleLoad = field(default_factory=lambda: RoleLoad(1, 2000.0, 4000.0))
    decode: RoleLoad = field(default_factory=lambda: RoleLoad(1, 500.0, 1000.0))
    cache_hit_fraction: float = 0.25
    requests_per_s: float = 2.0
    base_ttft_s: float = 0.2
    base_tbt_s: float = 0.03
    dp_ranks: int = 1  # series per instance (data-parallel ranks), the instance's values split between them
    finish_every_s: float = 0.0  # sglang: the generated-tokens counter moves only as requests finish
    legacy_prefix_metric: bool = False  # vllm: prefix-cache hits under the pre-v0.9.1 name only
    stack: str = "heteroscale"  # whose labels the series and pods carry (STACK_LABELS)


Labels = tuple[tuple[str, str], ...]


def _stack(
    service_key: str, role_key: str, roles: dict[str, str] | None = None
) -> Callable[[str, str], tuple[Labels, Labels]]:
    """The labels of one stack: on the engine series as the PodMonitor copies them (``podTargetLabels``,
    sanitised keys), and on the pod as kube_pod_labels shows them (``label_`` + sanitised key)."""

    def labels(service: str, role: str) -> tuple[Labels, Labels]:
        on_pod = ((service_key, service), (role_key, role))
        return ((service_key, service), (role_key, (roles or {}).get(role, role))), on_pod

    return labels


def _dynamo(service: str, role: str) -> tuple[Labels, Labels]:
    # workers label their own series (dynamo_component: prefill, or backend for decode); the operator the pods
    series = (("dynamo_namespace", service), ("dynamo_component", "backend" if role == "decode" else "prefill"))
    return series, (("nvidia_com_dynamo_namespace", service), ("nvidia_com_dynamo_sub_component_type", role))


STACK_LABELS: dict[str, Callable[[str, str], tuple[Labels, Labels]]] = {
    "heteroscale": lambda s, r: (
        (("service", s), ("role", r)),
        (("heteroscale_io_service", s), ("heteroscale_io_role", r)),
    ),
    "llm-d": _stack("llm_d_ai_model", "llm_d_ai_role"),
    "aibrix": _stack("storm_service_name", "role_name"),
    "kthena": _stack("modelserving_volcano_sh_name", "modelserving_volcano_sh_role"),
    "dynamo": _dynamo,
}


@dataclass(slots=True)
class _Counters:
    prompt: float = 0.0
    cached: float = 0.0
    generated: float = 0.0
    requests: float = 0.0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS_S))
    tbt: Histogram = field(default_factory=lambda: Histogram(TBT_BUCKETS_S))


class EngineExporter:
    """The load model and its HTTP server. Thread-safe: tests change the load while Prometheus scrapes."""

    def __init__(
        self,
        services: list[ServiceLoad],
        spelling: str = "colon",
        explicit_timestamps: bool = False,
        instances_source: Callable[[], dict[str, tuple[int, int]]] | None = None,
        *,
        rank: int | None = None,
        namespace: str = "llm",
        dcgm_exported_labels: bool = False,
    ) -> None:
        self.services = {s.name: s for s in services}
        self.rank = rank  # None: every rank's series; else only this rank's (one scrape target per rank)
        self.namespace = namespace
        self.dcgm_exported_labels = dcgm_exported_labels
        # called at each scrape: service → (ready prefill, ready decode), e.g. from the Kubernetes fake's pods
        self.instances_source = instances_source
        self.spelling = spelling
        # With explicit timestamps Prometheus writes no staleness markers for the series, so a frozen
        # exporter leaves samples that grow old (stale) instead of series that vanish.
        self.explicit_timestamps = explicit_timestamps
        self.nan = False
        self._clock = WallClock()
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str, int], _Counters] = {}
        self._last_s: float | None = None
        self._started_s = self._clock.now_s()
        self._frozen_text: str | None = None
        self._served: dict[tuple[str, str], int] = {}  # (service, role) → instances whose series are served
        self._http = MetricsServer(self.render, thread_name="test-engine-metrics")

    # --- control -----------------------------------------------------------------------------

    def set_load(self, service: str, *, prefill_tps: float | None = None, decode_tps: float | None = None) -> None:
        with self._lock:
            svc = self.services[service]
            if prefill_tps is not None:
                svc.prefill.tps = prefill_tps
            if decode_tps is not None:
                svc.decode.tps = decode_tps

    def set_instances(self, service: str, prefill: int, decode: int) -> None:
        with self._lock:
            self.services[service].prefill.instances = prefill
            self.services[service].decode.instances = decode

    def serve_only(self, service: str, role: str, instances: int | None) -> None:
        """Serve the series of the first ``instances`` instances of ``role`` only (None: all of them)."""
        with self._lock:
            if instances is None:
                self._served.pop((service, role), None)
            else:
                self._served[(service, role)] = instances

    def freeze(self) -> None:
        """From now on serve the current values with the current timestamp, unchanged."""
        text = self._render_live(stamp=True)
        with self._lock:
            self._frozen_text = text

    def thaw(self) -> None:
        with self._lock:
            self._frozen_text = None

    # --- the model -----------------------------------------------------------------------------

    def _advance(self, now_s: float) -> None:
        elapsed_s = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        for svc in self.services.values():
            for role_name, load in (("prefill", svc.prefill), ("decode", svc.decode)):
                n = max(load.instances, 0)
                if n == 0:
                    continue
                per_tps = load.tps / n
                pressure = per_tps / max(load.capacity_tps_per_instance, 1e-9)
                requests = svc.requests_per_s * elapsed_s / n
                for i in range(n):
                    c = self._counters.setdefault((svc.name, role_name, i), _Counters())
                    c.requests += requests
                    if role_name == "prefill":
                        c.prompt += per_tps * elapsed_s
                        c.cached += per_tps * elapsed_s * svc.cache_hit_fraction
                        c.ttft.observe(svc.base_ttft_s * (1 + pressure**2), requests)
                    else:
                        c.generated += per_tps * elapsed_s
                        c.tbt.observe(svc.base_tbt_s * (1 + pressure**2), requests * 100)

    def render(self) -> str:
        """The exposition text for the current moment (advances the counters)."""
        with self._lock:
            if self._frozen_text is not None:
                return self._frozen_text
        return self._render_live(stamp=self.explicit_timestamps)

    def _render_live(self, stamp: bool) -> str:
        if self.instances_source is not None:
            for name, (prefill, decode) in self.instances_source().items():
                if name in self.services:
                    self.set_instances(name, prefill, decode)
        with self._lock:
            now_s = self._clock.now_s()
            self._advance(now_s)
            out: list[str] = []
            for svc in self.services.values():
                out.extend(self._service_lines(svc))
        if stamp:
            stamp_ms = int(now_s * 1000)
            out = [f"{line} {stamp_ms}" for line in out]
        return "\n".join(out) + "\n"

    def _name(self, engine: str, base: str) -> str:
        return f"{engine}:{base}" if self.spelling == "colon" else f"{engine}_{base}"

    def _service_lines(self, svc: ServiceLoad) -> list[str]:
        lines: list[str] = []
        vllm = svc.engine == "vllm"
        names = {
            "prompt": "prompt_tokens_total",
            "cached": ("gpu_prefix_cache_hits_total" if svc.legacy_prefix_metric else "prefix_cache_hits_total")
            if vllm
            else "cached_tokens_total",
            "generated": "generation_tokens_total",
            "running": "num_requests_running" if vllm else "num_running_reqs",
            "waiting": "num_requests_waiting" if vllm else "num_queue_reqs",
            "kv": "kv_cache_usage_perc" if vllm else "token_usage",
            "requests": "request_success_total" if vllm else "num_requests_total",
            "ttft": "time_to_first_token_seconds",
            "tbt": "inter_token_latency_seconds",
        }
        ranks = max(1, svc.dp_ranks)
        served_ranks = range(ranks) if self.rank is None else [r for r in range(ranks) if r == self.rank]
        ns = self.namespace
        for role_name, load in (("prefill", svc.prefill), ("decode", svc.decode)):
            n = max(load.instances, 0)
            per_tps = load.tps / n if n else 0.0
            pressure = per_tps / max(load.capacity_tps_per_instance, 1e-9)
            for i in range(min(n, self._served.get((svc.name, role_name), n))):
                c = self._counters.get((svc.name, role_name, i), _Counters())
                pod_name = f"{svc.name}-{role_name}-{i}"
                pod = f'namespace="{ns}",pod="{pod_name}",model_name="{svc.name}"'
                series_labels, pod_labels = STACK_LABELS[svc.stack](svc.name, role_name)
                pod += "," + ",".join(f'{k}="{v}"' for k, v in series_labels)

                def value(v: float) -> str:
                    return "NaN" if self.nan else repr(float(v))

                generated, prompt, cached = c.generated, c.prompt, c.cached
                if svc.finish_every_s > 0:  # a decode request's tokens count when it finishes: in jumps
                    elapsed_s = max(0.0, (self._last_s or 0.0) - self._started_s)
                    generated *= (elapsed_s // svc.finish_every_s) * svc.finish_every_s / max(elapsed_s, 1e-9)
                for rank in served_ranks:
                    labels = pod if ranks == 1 else f'{pod},engine="{rank}"'

                    def emit(base: str, v: float, labels: str = labels) -> None:
                        lines.append(f"{self._name(svc.engine, base)}{{{labels}}} {value(v / ranks)}")

                    emit(names["prompt"], prompt)
                    emit(names["cached"], cached)
                    emit(names["generated"], generated)
                    emit(names["requests"], c.requests)
                    emit(names["running"], min(256.0, 8.0 * pressure))
                    emit(names["waiting"], max(0.0, 4.0 * (pressure - 1.0)))
                    emit(names["kv"], ranks * min(1.0, 0.8 * pressure))  # a fraction: each rank has the same
                    if svc.engine == "sglang" and role_name == "decode":
                        emit("gen_throughput", per_tps)  # tokens/s of the last decode steps
                    hist, histogram = (names["ttft"], c.ttft) if role_name == "prefill" else (names["tbt"], c.tbt)
                    lines.extend(histogram_lines(self._name(svc.engine, hist), labels, histogram, 1.0 / ranks))
                if self.rank not in (None, 0):
                    continue  # the pod's GPUs and labels are served once, with rank 0
                util = min(100.0, 100.0 * pressure)
                where = "exported_" if self.dcgm_exported_labels else ""
                dcgm_labels = (
                    f'gpu="0",UUID="GPU-{pod_name}",modelName="NVIDIA H20",Hostname="node-{i}",'
                    f'{where}namespace="{ns}",{where}pod="{pod_name}",{where}container="engine"'
                )
                lines.append(f"DCGM_FI_DEV_GPU_UTIL{{{dcgm_labels}}} {value(util)}")
                lines.append(f"DCGM_FI_PROF_SM_ACTIVE{{{dcgm_labels}}} {value(util / 100.0 * 0.8)}")
                lines.append(
                    f'kube_pod_labels{{namespace="{ns}",pod="{pod_name}",uid="uid-{pod_name}",'
                    + ",".join(f'label_{k}="{v}"' for k, v in pod_labels)
                    + "} 1"
                )
        return lines

    # --- the server ----------------------------------------------------------------------------

    @property
    def scrapes(self) -> int:
        return self._http.scrapes

    @property
    def port(self) -> int:
        return self._http.port

    def start(self) -> EngineExporter:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()
