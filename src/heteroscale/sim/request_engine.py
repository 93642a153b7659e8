"""Request-level discrete-event engine.

Per request: arrival → prefill queue → batched prefill under a token budget → KV transfer (the
uncached prompt's KV bytes over the bandwidth between the actual P and D locations) → decode
admission (continuous batching; waits while KV memory is full) → completion.

The event count grows with requests, not tokens: a decode batch is advanced analytically between
membership changes. For a fixed batch B the step time is affine in the batch's total context c,
t_step = base(B) + per(B)·c, and c grows by B per step, so the time for k steps is the integral
T(k) = (base + per·c0)·k + per·B·k²/2, inverted in closed form. Heap keys are (time_s, seq) with a
per-run counter, so runs are deterministic.

Engine behaviours (``EngineSettings``; the defaults are the engine as it always ran):

- ``kv_reservation``: ``admission`` reserves prompt + whole output when a request joins a decode
  batch, so KV never runs out; ``grow`` admits on the prompt and lets the KV grow a token a step.
  When it is full the most recently admitted member is preempted (``preemption``): ``recompute``
  drops its KV and prefills its context again on readmission, ``swap`` copies it to host memory and
  back at ``swap_gbyte_per_s``; either way the batch stalls for that work, and the victim waits at
  the head of the admission queue with its progress kept.
- ``prefill_chunk_tokens``: chunked prefill — a batch takes at most that many prompt tokens, cutting
  a long prompt across batches (without it the first prompt always gets in whole, however long).
- ``max_batched_tokens``: a cap on tokens per iteration on any instance (a decode counts one).
- ``kv_transfer``: ``queued`` sends a prefill instance's transfers one after another over its NIC;
  ``parallel`` runs each at the full link bandwidth at once (SplitwiseSim's link).
- ``mixed_pool`` (SplitwiseSim's scheduler, :mod:`heteroscale.sim.request_mixed`): both phases are
  placed at arrival on SplitwiseSim's books (pending tokens, KV booked at arrival); under overload a
  prompt is lent to a decode instance, where it runs alone and stalls the decode batch, and a decode
  to a prefill instance, where it decodes beside the prefill batches (each stalls those decodes); an
  instance lent out stays in the mixed pool, taking overflow of either kind, until it is idle. A
  prompt and decode on one instance need no transfer. The lent decode side of a prefill instance is
  not billed or counted in the TPS figures.
- ``kv_capacity_tokens`` / ``kv_capacity_gib``, ``kv_link_gbyte_per_s``, ``kv_link_latency_s``: direct
  KV settings in place of the memory left by the weights and the NIC × topology bandwidth.

Scale-in (``remove``): DRAIN takes the instance out of routing and lets its in-flight work finish —
a prefill instance its queue, batch and outbound KV transfers (and the KV it holds for requests that
wait for a routable decode instance), a decode instance its waiting requests, batch and inbound
transfers — and it is gone once empty, or killed at the drain deadline. KILL with a grace period is
the same with a short deadline. Every failed request has a cause (FailureCause): scale-in when its
instance was killed or its KV was lost in flight; kv-capacity when its prompt plus output can never
fit any routable decode instance's KV cache (it would block that instance's admission queue).
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.state import Lifecycle
from heteroscale.perf import InstancePerf
from heteroscale.sim.cluster import SimCluster, SimInstance
from heteroscale.sim.records import FailureCause, RecordWriter, ServiceStats
from heteroscale.sim.request_decode import (
    EV_DECODE_NEXT,
    EV_DRAIN_DEADLINE,
    EV_LENT_DONE,
    EV_PREFILL_DONE,
    EV_READY,
    EV_XFER_DONE,
)
from heteroscale.sim.request_lifecycle import InstanceLifecycle
from heteroscale.sim.request_model import DecodeInst, PrefillInst, Req, ServiceState
from heteroscale.sim.request_prefill import PrefillSide
from heteroscale.sim.request_telemetry import QUEUE_SAMPLE_S, sample_counts, window_row
from heteroscale.sim.scenario import EngineSettings, KvReservation, KvTransfer
from heteroscale.sim.telemetry import Telemetry

if TYPE_CHECKING:
    from heteroscale.sim.engine import ServiceLoad

__all__ = ["QUEUE_SAMPLE_S", "DecodeInst", "PrefillInst", "Req", "RequestEngine", "ServiceState"]

_INF = math.inf
# module-level names for the hot path (a global lookup instead of an attribute lookup per event)
_DRAINING = Lifecycle.DRAINING
_GONE = Lifecycle.GONE
_heappush = heapq.heappush


def _t(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6f}"  # NaN: the phase did not happen


class RequestEngine(InstanceLifecycle, PrefillSide):
    """Discrete-event serving model of every service in a scenario."""

    def __init__(
        self,
        cluster: SimCluster,
        loads: list[ServiceLoad],
        perfs: dict[tuple[int, InstanceShape], InstancePerf],
        telemetry: Telemetry,
        records: RecordWriter,
        window_s: float,
        settings: EngineSettings | None = None,
    ) -> None:
        self.cluster = cluster
        self.loads = loads
        self.perfs = perfs
        self.telemetry = telemetry
        self.records = records
        self.window_s = window_s
        self.settings = st = settings or EngineSettings()
        self.grow = st.kv_reservation is KvReservation.GROW
        self.parallel_xfer = st.kv_transfer is KvTransfer.PARALLEL
        self.mixed = st.mixed_pool
        link = st.kv_link_gbyte_per_s
        self.link_bytes_per_s = None if link is None else link * 1e9
        self.setup_s = cluster.topology.kv_bandwidth.setup_s if st.kv_link_latency_s is None else st.kv_link_latency_s
        cap = st.max_batched_tokens
        self.services: list[ServiceState] = []
        for ld in loads:
            spec = ld.spec
            self.services.append(
                ServiceState(
                    load=ld,
                    stats=ServiceStats(spec.slo.ttft_s, spec.slo.tbt_s),
                    prefill_budget=min(spec.max_prefill_tokens, cap or spec.max_prefill_tokens),
                    chunk_tokens=st.prefill_chunk_tokens or 0,
                    max_decode_batch=min(spec.max_decode_batch, cap or spec.max_decode_batch),
                    inp=ld.trace.input_tokens.tolist(),
                    out=ld.trace.output_tokens.tolist(),
                    cached=ld.cached_tokens.tolist(),
                    done=bytearray(len(ld.trace)),
                )
            )
        self.stats = [sv.stats for sv in self.services]
        self.heap: list[tuple[float, int, int, object, int]] = []
        self.seq = itertools.count()
        self.adm_seq = itertools.count()  # admission order: the preemption victim is the latest
        self.now_s = 0.0
        self.events = 0
        self.in_flight = 0
        self.next_window_s = window_s
        self.last_window_s = 0.0
        self.next_sample_s = QUEUE_SAMPLE_S
        # merged arrivals of every service, in time order (stable)
        times = [ld.trace.arrival_s for ld in loads]
        svc_idx = [np.full(len(t), i, dtype=np.int64) for i, t in enumerate(times)]
        all_t = np.concatenate(times) if times else np.zeros(0)
        order = np.argsort(all_t, kind="stable")
        self._arr_t: list[float] = [*all_t[order].tolist(), _INF]  # an end sentinel: no bounds check per event
        self._arr_svc: list[int] = np.concatenate(svc_idx)[order].tolist() if times else []
        local_idx = np.concatenate([np.arange(len(t)) for t in times]) if times else np.zeros(0, dtype=np.int64)
        self._arr_local: list[int] = local_idx[order].tolist()
        self._next_arrival = 0
        self._n_arrivals = len(self._arr_t) - 1

    @property
    def records(self) -> RecordWriter:
        return self._records

    @records.setter
    def records(self, records: RecordWriter) -> None:
        self._records = records
        self.records_on = records.enabled  # a plain bool on the hot path

    def _record(self, req: Req, now_s: float, ttft: str, tbt: str, tbt_sw: str, status: str) -> None:
        d = req.dinst
        self.records.write(
            f"{req.rid},{self.loads[req.svc].spec.name},{req.arrival:.6f},{req.inp},{req.out},"
            f"{req.cached},{req.pinst.id if req.pinst else ''},{d.id if d else ''},{ttft},{tbt},{_t(now_s)},"
            f"{_t(req.t_pq)},{_t(req.t_ps)},{_t(req.t_pe)},{_t(req.t_xs)},{_t(req.t_xe)},{_t(req.t_admit)},"
            f"{_t(req.t_admit)},{tbt_sw},{req.preemptions},{int(req.lent)},{status}\n"
        )

    def _fail(self, req: Req, now_s: float, cause: FailureCause) -> None:
        self.stats[req.svc].fail(cause)
        self.in_flight -= 1
        if self.records.enabled:
            self._record(req, now_s, "", "", "", f"failed:{cause.value}")

    def _complete(self, req: Req, now_s: float, tbt_s: float | None) -> None:
        self.in_flight -= 1
        sv = self.services[req.svc]
        if req.local >= 0:
            sv.done[req.local] = 1
        ttft = req.t_admit - req.arrival
        tbt_sw = (now_s - req.t_pe) / req.out
        st = sv.stats
        st.complete(ttft, tbt_s, req.inp, req.out)
        st.w_e2e.append(now_s - req.arrival)  # request fidelity only
        st.w_queue.append(req.t_ps - req.arrival)
        st.w_xfer.append(req.t_xe - req.t_pe)
        st.w_ttft_splitwise.append(req.t_pe - req.arrival)
        st.w_tbt_splitwise.append(tbt_sw)
        if self.records_on:
            self._record(req, now_s, f"{ttft:.6f}", "" if tbt_s is None else f"{tbt_s:.6f}", f"{tbt_sw:.6f}", "ok")

    # ------------------------------------------------------------------ loop
    def run_until(self, t_end_s: float) -> None:
        """Process every event and arrival with time ≤ t_end_s, sampling telemetry windows."""
        while True:
            stop = min(t_end_s, self.next_window_s, self.next_sample_s)
            self._run_events(stop)
            sampled = False
            if stop >= self.next_sample_s - 1e-12 and self.next_sample_s <= t_end_s + 1e-12:
                sample_counts(self.services)
                self.next_sample_s += QUEUE_SAMPLE_S
                sampled = True
            if stop >= self.next_window_s - 1e-12 and self.next_window_s <= t_end_s + 1e-12:
                self._sample_window(self.next_window_s)
                self.next_window_s += self.window_s
                continue
            if sampled:
                continue
            break
        self.now_s = max(self.now_s, t_end_s)

    def _run_events(self, t_stop: float) -> None:
        heap = self.heap
        heappop = heapq.heappop
        arr_t = self._arr_t
        arr_svc = self._arr_svc
        arr_local = self._arr_local
        services = self.services
        i = i0 = self._next_arrival
        events = 0  # heap events; the arrivals are i − i0
        route = self._route_prefill
        decode_next = self._decode_next
        xfer_done = self._xfer_done
        prefill_done = self._prefill_done
        gone = _GONE
        t_arr = arr_t[i]
        while True:
            t_ev = heap[0][0] if heap else _INF
            if t_arr <= t_ev:
                if t_arr > t_stop:
                    break
                svc = arr_svc[i]
                j = arr_local[i]
                sv = services[svc]
                req = Req(i, svc, t_arr, sv.inp[j], sv.out[j], sv.cached[j], j)
                i += 1
                st = sv.stats
                st.arrivals += 1
                st.w_arrivals += 1
                self.in_flight += 1
                route(req, t_arr)
                t_arr = arr_t[i]
                continue
            if t_ev > t_stop:
                break
            t, _, kind, obj, ver = heappop(heap)
            events += 1
            if kind == EV_DECODE_NEXT:
                if ver == obj.version and obj.lifecycle is not gone:  # type: ignore[attr-defined]
                    decode_next(obj, t)  # type: ignore[arg-type]
            elif kind == EV_XFER_DONE:
                xfer_done(obj, t)  # type: ignore[arg-type]
            elif kind == EV_PREFILL_DONE:
                if obj.lifecycle is not gone:  # type: ignore[attr-defined]
                    prefill_done(obj, t)  # type: ignore[arg-type]
            elif kind == EV_LENT_DONE:
                self._lent_done(obj, t)  # type: ignore[arg-type]
            elif kind == EV_READY:
                assert isinstance(obj, SimInstance)
                self._ready(obj, t)
            elif kind == EV_DRAIN_DEADLINE:
                assert isinstance(obj, SimInstance)
                if obj.lifecycle is _DRAINING:
                    self._kill(obj, t)
        self._next_arrival = i
        self.events += events + i - i0
        self.now_s = max(self.now_s, t_stop)

    def _all_decodes(self) -> list[DecodeInst]:
        out: list[DecodeInst] = []
        for sv in self.services:
            out.extend(sv.d_all)
            out.extend(p.shadow for p in sv.p_all if p.shadow is not None)
        return out

    def settle(self, now_s: float) -> None:
        """Bring every decode batch's accounting up to ``now_s`` between events, for a reader of the
        accumulators (the demo's metrics); no outcome changes, a batch advances exactly in pieces."""
        for d in self._all_decodes():
            self._advance(d, now_s)

    def finalize(self, end_s: float) -> None:
        """Advance every decode batch to ``end_s`` and record requests still in flight as unfinished."""
        decodes = self._all_decodes()
        for d in decodes:
            self._advance(d, end_s)
        if not self.records.enabled:
            return
        in_flight: list[Req] = []
        for sv in self.services:
            in_flight.extend(sv.pending_prefill)
            in_flight.extend(sv.pending_decode)
            for p in sv.p_all:
                in_flight.extend(p.queue)
                in_flight.extend(p.batch)
        for d in decodes:
            in_flight.extend(m[2] for m in d.members)
            in_flight.extend(d.waiting)
            in_flight.extend(d.lent_queue)
            in_flight.extend(d.lent_batch)
        in_flight.extend(obj for _, _, kind, obj, _ in self.heap if kind == EV_XFER_DONE and isinstance(obj, Req))
        for req in sorted(in_flight, key=lambda r: r.rid):
            self._record(req, math.nan, "", "", "", "unfinished")

    @property
    def latency_estimated(self) -> bool:
        return False

    def completed_mask(self, svc: int) -> np.ndarray:
        """Which requests of service ``svc``'s trace completed (True), in trace order."""
        return np.frombuffer(self.services[svc].done, dtype=bool)

    @property
    def arrivals_done(self) -> bool:
        return self._next_arrival >= self._n_arrivals

    @property
    def idle(self) -> bool:
        return self.arrivals_done and self.in_flight == 0

    def next_arrival_s(self) -> float:
        i = self._next_arrival
        return self._arr_t[i] if i < self._n_arrivals else _INF

    def _sample_window(self, t_s: float) -> None:
        span = t_s - self.last_window_s
        self.last_window_s = t_s
        if span <= 0:
            return
        for sv in self.services:
            self.telemetry.add(window_row(sv, t_s, span, self._advance))
