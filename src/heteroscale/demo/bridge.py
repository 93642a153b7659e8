"""The bridge: the Kubernetes API fake's pods are the simulator's instances, and the simulator's counters
are the pods' engine metrics.

Each tick (a fraction of a wall second) the bridge

1. advances the request-level simulation to ``t_sim = wall seconds since the start × speed-up``, with
   the instances it has (arrivals come from the demo's load; the simulator routes, batches, moves KV
   and decodes exactly as in ``heteroscale simulate``);
2. reads the demo service's pods from the fake and makes the simulator's instance set match it, the
   way ``sim.adapters.SimActuator`` applies a plan: a pod that turned Ready (the fake's stand-in kubelet
   makes it Ready after the cold start) is launched warm on the same node, DG and shape; a pod whose
   discovery label goes off (a drain, or gating) leaves the simulator's routing and finishes its work;
   a deleted pod is killed (the controller drained it before scaling its Deployment down);
3. renders every pod's metrics (``demo.exporter``) for the next scrape.

Nothing here decides anything: the live controller, in its own process, reads these metrics through a
real Prometheus and writes to the fake; the bridge only makes the fake's pods serve load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from heteroscale.actuators.kube.naming import DISCOVERY_ON, L_DG, L_DISCOVERY, L_ROLE, L_SERVICE, L_SKU, L_TP, dns_label
from heteroscale.clock import Clock
from heteroscale.demo.exporter import MetricsServer, PodMetrics, RequestSeries, render
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.sim.records import RecordWriter
from heteroscale.sim.request_engine import DecodeInst, PrefillInst, RequestEngine

log = logging.getLogger(__name__)

PodSource = Callable[[], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class PodView:
    """What the bridge needs of one pod of the demo's service."""

    name: str
    shape: InstanceShape
    dg: str
    node: str
    ready: bool
    in_discovery: bool


def pod_view(pod: Mapping[str, Any], spec: ServiceSpec) -> PodView | None:
    """The pod as an instance of ``spec``; None when it is not one (another service, an unknown shape)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(L_SERVICE) not in (spec.name, dns_label(spec.name)) or meta.get("deletionTimestamp"):
        return None
    try:
        role = Role(str(labels.get(L_ROLE)))
        tp = int(labels.get(L_TP, ""))
    except ValueError:
        return None
    shape = next((s for s in spec.shapes(role) if dns_label(s.sku) == labels.get(L_SKU) and s.tp == tp), None)
    if shape is None:
        return None
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return PodView(
        name=str(meta.get("name")),
        shape=shape,
        dg=str(labels.get(L_DG, "")),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        ready=ready,
        in_discovery=labels.get(L_DISCOVERY) == DISCOVERY_ON,
    )


class RequestTally(RecordWriter):
    """The engine's per-request records (``sim.records`` CSV lines), counted per instance as an engine
    counts them: TTFT and prompt length where the request was prefilled, TBT, output length and the
    finish where it was decoded. Failed and unfinished requests count nowhere (no engine reports them
    in these series)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.by_instance: dict[str, RequestSeries] = {}
        self.finished = 0

    @property
    def enabled(self) -> bool:
        return True

    def series(self, instance_id: str) -> RequestSeries:
        return self.by_instance.setdefault(instance_id, RequestSeries())

    def write(self, line: str) -> None:
        # request,service,arrival_s,input,output,cached,prefill_instance,decode_instance,ttft_s,tbt_s,finish_s,
        # <phase columns>,status (sim.records.RECORD_HEADER)
        parts = line.rstrip("\n").split(",")
        if len(parts) < 12 or parts[-1] != "ok":
            return
        inp, out = int(parts[3]), int(parts[4])
        prefill, decode = self.series(parts[6]), self.series(parts[7])
        prefill.ttft.observe(float(parts[8]))
        prefill.prompt_tokens.observe(float(inp))
        if parts[9]:
            decode.tbt.observe(float(parts[9]), weight=float(max(out - 1, 1)))
        decode.generation_tokens.observe(float(out))
        decode.finished += 1.0
        self.finished += 1


@dataclass(slots=True)
class _UtilMark:
    t_s: float
    kernel_s: float
    util: float


class SimBridge:
    """Pods → simulated instances → engine metrics (module doc). Called from one thread only."""

    def __init__(
        self,
        engine: RequestEngine,
        service_index: int,
        spec: ServiceSpec,
        namespace: str,
        pods: PodSource,
        speedup: float,
        tally: RequestTally,
        util_span_s: float,
    ) -> None:
        if speedup <= 0:
            raise ValueError(f"speedup must be > 0, got {speedup}")
        self.engine = engine
        self.svc = service_index
        self.spec = spec
        self.namespace = namespace
        self.pods = pods
        self.speedup = speedup
        self.tally = tally
        self.util_span_s = util_span_s  # GPU utilisation is measured over at least this (simulated) span
        self.mapped: dict[str, str] = {}  # pod name → simulated instance id
        self.views: dict[str, PodView] = {}
        self._util: dict[str, _UtilMark] = {}
        self.launch_errors = 0
        self.t_s = 0.0

    # --- one tick ------------------------------------------------------------------------------

    def step(self, t_s: float) -> str:
        """Advance to ``t_s`` (simulated), match the pods, and return the metrics text."""
        t_s = max(t_s, self.t_s)
        self.engine.run_until(t_s)
        self.t_s = t_s
        views = [v for v in (pod_view(p, self.spec) for p in self.pods()) if v is not None]
        self.sync(views, t_s)
        self.engine.settle(t_s)
        return render([self._metrics(name, t_s) for name in sorted(self.mapped)], self.speedup)

    def sync(self, views: Sequence[PodView], t_s: float) -> None:
        """Make the simulator's instances the Ready pods (module doc)."""
        present = {v.name: v for v in views}
        for name in [n for n in self.mapped if n not in present]:
            gone = self.mapped.pop(name)
            self.views.pop(name, None)
            self._util.pop(name, None)
            if self.engine.cluster.instances[gone].lifecycle is not Lifecycle.GONE:
                self.engine.remove(gone, ScaleInMode.KILL, 0.0, t_s)
        for view in views:
            inst_id = self.mapped.get(view.name)
            if inst_id is None:
                if not view.ready or not view.node:
                    continue
                try:
                    inst_id = self.engine.launch(self.svc, view.shape, view.dg, view.node, t_s, warm=True)
                except (ValueError, KeyError) as exc:  # e.g. the node's GPUs not yet free here: next tick
                    self.launch_errors += 1
                    log.warning("pod %s: not served yet: %s", view.name, exc)
                    continue
                self.mapped[view.name] = inst_id
            self.views[view.name] = view
            self.engine.set_discovery(inst_id, view.in_discovery)

    def _metrics(self, name: str, t_s: float) -> PodMetrics:
        view = self.views[name]
        inst = self.engine.cluster.instances[self.mapped[name]]
        perf = inst.perf
        if isinstance(inst, PrefillInst):
            overhang = (inst.batch_end - t_s) if inst.busy and inst.batch_end > t_s else 0.0
            kernel_s = inst.acc_kernel_s - overhang * inst.batch_kfrac
            occupancy = perf.prefill_sm_occupancy
            prompt, cached, generated = inst.acc_tokens + inst.acc_cached_tokens, inst.acc_cached_tokens, 0.0
            running, waiting = float(len(inst.batch)), float(len(inst.queue))
            held = sum(r.inp for r in inst.batch)
            kv = min(1.0, held / perf.kv_capacity_tokens) if perf.kv_capacity_tokens > 0 else 0.0
        elif isinstance(inst, DecodeInst):
            kernel_s = inst.acc_kernel_s
            occupancy = perf.decode_sm_occupancy
            prompt, cached, generated = 0.0, 0.0, inst.acc_tokens
            running, waiting = float(inst.b), float(len(inst.waiting))
            kv = min(1.0, inst.ctx / inst.cap_tokens) if inst.cap_tokens > 0 else 0.0
        else:  # the request engine only makes these two
            raise TypeError(f"unexpected instance type {type(inst).__name__}")
        util = self._utilisation(name, t_s, kernel_s)
        return PodMetrics(
            pod=name,
            service=self.spec.name,
            role=view.shape.role.value,
            namespace=self.namespace,
            model=self.spec.model,
            gpus=view.shape.gpus,
            prompt_tokens=prompt,
            cached_tokens=cached,
            generated_tokens=generated,
            running=running,
            waiting=waiting,
            kv_usage=kv,
            gpu_util=util,
            sm_active=util * occupancy,
            requests=self.tally.series(self.mapped[name]),
        )

    def _utilisation(self, name: str, t_s: float, kernel_s: float) -> float:
        """Kernel-busy fraction over the last ``util_span_s`` or more (DCGM's GPU_UTIL, as a fraction)."""
        mark = self._util.get(name)
        if mark is None:
            self._util[name] = _UtilMark(t_s, kernel_s, 0.0)
            return 0.0
        if t_s - mark.t_s >= self.util_span_s:
            mark.util = min(1.0, max(0.0, (kernel_s - mark.kernel_s) / (t_s - mark.t_s)))
            mark.t_s, mark.kernel_s = t_s, kernel_s
        return mark.util

    def ready_counts(self) -> tuple[int, int]:
        """(prefill, decode) instances the simulator serves with now (in discovery)."""
        p = sum(
            1 for n, v in self.views.items() if n in self.mapped and v.in_discovery and v.shape.role is Role.PREFILL
        )
        d = sum(1 for n, v in self.views.items() if n in self.mapped and v.in_discovery and v.shape.role is Role.DECODE)
        return p, d


class BridgeThread:
    """Runs :meth:`SimBridge.step` every ``tick_s`` wall seconds from its own thread, publishing the text;
    simulated time is ``speedup ×`` the wall time since :meth:`start`, capped at ``horizon_s``.
    ``stop()`` is bounded; an error in a tick ends the thread and is kept in ``error``."""

    STOP_TIMEOUT_S = 10.0

    def __init__(self, bridge: SimBridge, server: MetricsServer, clock: Clock, tick_s: float, horizon_s: float) -> None:
        self.bridge = bridge
        self.server = server
        self.clock = clock
        self.tick_s = tick_s
        self.horizon_s = horizon_s
        self.error: str | None = None
        self.ticks = 0
        self.started_mono_s = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one tick at a time; readers take it for a consistent view
        self._thread: threading.Thread | None = None

    def sim_time_s(self) -> float:
        elapsed_s = self.clock.monotonic_s() - self.started_mono_s
        return min(self.horizon_s, max(0.0, elapsed_s * self.bridge.speedup))

    def tick(self) -> None:
        with self._lock:
            text = self.bridge.step(self.sim_time_s())
            self.ticks += 1
        self.server.publish(text)

    def read(self, fn: Callable[[SimBridge], Any]) -> Any:
        """``fn(bridge)`` between ticks (from another thread)."""
        with self._lock:
            return fn(self.bridge)

    def start(self) -> BridgeThread:
        self.started_mono_s = self.clock.monotonic_s()
        self.tick()  # the Ready pods serve from t = 0
        self._thread = threading.Thread(target=self._loop, name="demo-bridge", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception as exc:  # a thread boundary: keep the cause for the main thread, stop ticking
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("the simulation bridge stopped: %s", self.error)
                return

    def stop(self) -> bool:
        """Stop ticking (bounded wait); True if the thread has ended."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout=self.STOP_TIMEOUT_S)
        return not thread.is_alive()
