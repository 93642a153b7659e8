"""Request-level discrete-event engine.

Per request: arrival → prefill queue → batched prefill under a token budget → KV transfer (the
uncached prompt's KV bytes over the bandwidth between the actual P and D locations) → decode
admission (continuous batching; waits while KV memory is full) → completion.

The event count grows with requests, not tokens: a decode batch is advanced analytically between
membership changes. For a fixed batch B the step time is affine in the batch's total context c,
t_step = base(B) + per(B)·c, and c grows by B per step, so the time for k steps is the integral
T(k) = (base + per·c0)·k + per·B·k²/2, inverted in closed form. Heap keys are (time_s, seq) with a
per-run counter, so runs are deterministic.

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
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.perf import InstancePerf
from heteroscale.sim.cluster import SimCluster, SimInstance
from heteroscale.sim.records import FailureCause, RecordWriter, ServiceStats
from heteroscale.sim.telemetry import RoleWindow, Telemetry, WindowRow, percentile

if TYPE_CHECKING:
    from heteroscale.sim.engine import ServiceLoad

_INF = math.inf
QUEUE_SAMPLE_S = 1.0  # queue and running counts are sampled this often for their window means
# event kinds
_EV_PREFILL_DONE = 0
_EV_XFER_DONE = 1
_EV_DECODE_NEXT = 2
_EV_READY = 3
_EV_DRAIN_DEADLINE = 4


class Req:
    __slots__ = (
        "arrival",
        "cached",
        "dinst",
        "fin_step",
        "inp",
        "local",
        "new",
        "out",
        "pinst",
        "rid",
        "sent_s",
        "svc",
        "t_first",
    )

    def __init__(self, rid: int, svc: int, arrival: float, inp: int, out: int, cached: int, local: int = -1) -> None:
        self.rid = rid
        self.local = local  # its row in the service's trace (-1: not from a trace)
        self.svc = svc
        self.arrival = arrival
        self.inp = inp
        self.out = out
        self.cached = cached
        self.new = inp - cached
        self.pinst: PrefillInst | None = None
        self.dinst: DecodeInst | None = None
        self.t_first = 0.0
        self.fin_step = 0.0
        self.sent_s = 0.0  # when its KV has left the prefill instance's NIC


class PrefillInst(SimInstance):
    __slots__ = (
        "acc_cached_tokens",
        "batch",
        "batch_end",
        "batch_kfrac",
        "busy",
        "killed",
        "killed_at_s",
        "kv_held",
        "nic_free_at",
        "queue",
        "queued_tokens",
        "sec_per_token",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.queue: deque[Req] = deque()
        self.queued_tokens = 0
        self.busy = False
        self.batch: list[Req] = []
        self.batch_end = 0.0
        self.batch_kfrac = 0.0
        self.nic_free_at = 0.0
        self.killed = False
        self.killed_at_s = _INF
        self.kv_held = 0  # prefilled requests whose KV waits here for a routable decode instance
        self.acc_cached_tokens = 0.0  # prompt tokens served from the prefix cache (acc_tokens: the rest)
        perf: InstancePerf = self.perf
        self.sec_per_token = perf.prefill_time_s(4096, 4096.0 * 4096.0) / 4096.0


class DecodeInst(SimInstance):
    __slots__ = (
        "b",
        "cap_tokens",
        "ctx",
        "inbound",
        "lin_base",
        "lin_per",
        "max_batch",
        "members",
        "resv",
        "steps",
        "t_last",
        "version",
        "waiting",
    )

    def __init__(self, *args: object, max_batch: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        perf: InstancePerf = self.perf
        self.max_batch = max_batch
        self.cap_tokens = perf.kv_capacity_tokens
        lin = [perf.decode_linear(b) if b > 0 else (0.0, 0.0) for b in range(max_batch + 1)]
        self.lin_base = [x[0] for x in lin]
        self.lin_per = [x[1] for x in lin]
        self.members: list[tuple[float, int, Req]] = []
        self.b = 0
        self.ctx = 0.0
        self.resv = 0
        self.steps = 0.0
        self.t_last = 0.0
        self.version = 0
        self.waiting: deque[Req] = deque()
        self.inbound = 0


class RequestEngine:
    """Discrete-event serving model of every service in a scenario."""

    def __init__(
        self,
        cluster: SimCluster,
        loads: list[ServiceLoad],
        perfs: dict[tuple[int, InstanceShape], InstancePerf],
        telemetry: Telemetry,
        records: RecordWriter,
        window_s: float,
    ) -> None:
        self.cluster = cluster
        self.loads = loads
        self.perfs = perfs
        self.telemetry = telemetry
        self.records = records
        self.window_s = window_s
        self.stats = [ServiceStats(ld.spec.slo.ttft_s, ld.spec.slo.tbt_s) for ld in loads]
        self.heap: list[tuple[float, int, int, object, int]] = []
        self.seq = itertools.count()
        self.now_s = 0.0
        self.events = 0
        self.p_routable: list[list[PrefillInst]] = [[] for _ in loads]
        self.d_routable: list[list[DecodeInst]] = [[] for _ in loads]
        self.p_all: list[list[PrefillInst]] = [[] for _ in loads]
        self.d_all: list[list[DecodeInst]] = [[] for _ in loads]
        self.pending_prefill: list[deque[Req]] = [deque() for _ in loads]
        self.pending_decode: list[deque[Req]] = [deque() for _ in loads]
        self.in_flight = 0
        self.next_window_s = window_s
        self.last_window_s = 0.0
        # queue and running counts sampled every QUEUE_SAMPLE_S for their window means, per service:
        # [prefill queue, prefill running, decode queue, decode running, samples]
        self.next_sample_s = QUEUE_SAMPLE_S
        self._counts_acc: list[list[float]] = [[0.0] * 5 for _ in loads]
        # merged arrivals of every service, in time order (stable)
        times = [ld.trace.arrival_s for ld in loads]
        svc_idx = [np.full(len(t), i, dtype=np.int64) for i, t in enumerate(times)]
        all_t = np.concatenate(times) if times else np.zeros(0)
        order = np.argsort(all_t, kind="stable")
        self._arr_t: list[float] = all_t[order].tolist()
        self._arr_svc: list[int] = np.concatenate(svc_idx)[order].tolist() if times else []
        local_idx = np.concatenate([np.arange(len(t)) for t in times]) if times else np.zeros(0, dtype=np.int64)
        self._arr_local: list[int] = local_idx[order].tolist()
        self._inp = [ld.trace.input_tokens.tolist() for ld in loads]
        self._out = [ld.trace.output_tokens.tolist() for ld in loads]
        self._cached = [ld.cached_tokens.tolist() for ld in loads]
        self._next_arrival = 0
        self._n_arrivals = len(self._arr_t)
        self._done = [np.zeros(len(ld.trace), dtype=bool) for ld in loads]  # completed, per request

    # ------------------------------------------------------------------ lifecycle
    def launch(self, svc: int, shape: InstanceShape, dg: str, node: str, now_s: float, warm: bool) -> str:
        cluster = self.cluster
        cluster.reserve(node, shape.gpus)
        perf = self.perfs[(svc, shape)]
        sku = cluster.skus[shape.sku]
        nic = sku.nic_gbit_per_gpu * 1e9 / 8.0 * shape.gpus
        inst_id = cluster.next_id(svc, shape.role)
        path = cluster.node_path[node]
        inst: PrefillInst | DecodeInst
        if shape.role is Role.PREFILL:
            inst = PrefillInst(inst_id, svc, shape, dg, node, path, perf, nic, now_s)
            self.p_all[svc].append(inst)
        else:
            inst = DecodeInst(
                inst_id,
                svc,
                shape,
                dg,
                node,
                path,
                perf,
                nic,
                now_s,
                max_batch=self.loads[svc].spec.max_decode_batch,
            )
            inst.t_last = now_s
            self.d_all[svc].append(inst)
        cluster.add(inst)
        if warm:
            self._ready(inst, now_s)
        else:
            heapq.heappush(self.heap, (now_s + self.loads[svc].cold_start_s, next(self.seq), _EV_READY, inst, 0))
        return inst_id

    def _ready(self, inst: SimInstance, now_s: float) -> None:
        if inst.lifecycle is not Lifecycle.STARTING:
            return
        inst.lifecycle = Lifecycle.READY
        inst.ready_at_s = now_s
        inst.in_discovery = True
        svc = inst.svc
        if isinstance(inst, PrefillInst):
            self.p_routable[svc].append(inst)
        elif isinstance(inst, DecodeInst):
            inst.t_last = now_s
            self.d_routable[svc].append(inst)
        self._route_pending(inst, now_s)

    def _route_pending(self, inst: SimInstance, now_s: float) -> None:
        """Route the requests that waited for an instance of ``inst``'s role, now routable."""
        svc = inst.svc
        if isinstance(inst, PrefillInst):
            pend_p = self.pending_prefill[svc]
            self.pending_prefill[svc] = deque()
            for req in pend_p:
                self._route_prefill(req, now_s)
        elif isinstance(inst, DecodeInst):
            pend_d = self.pending_decode[svc]
            self.pending_decode[svc] = deque()
            for req in pend_d:
                p = req.pinst
                assert p is not None
                p.kv_held -= 1
                self._start_transfer(req, now_s)

    def set_discovery(self, inst_id: str, in_discovery: bool) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle is not Lifecycle.READY or inst.in_discovery == in_discovery:
            return
        inst.in_discovery = in_discovery
        lst: list[PrefillInst] | list[DecodeInst]
        lst = self.p_routable[inst.svc] if isinstance(inst, PrefillInst) else self.d_routable[inst.svc]
        if in_discovery:
            lst.append(inst)  # type: ignore[arg-type]
            self._route_pending(inst, self.now_s)
        else:
            lst.remove(inst)  # type: ignore[arg-type]

    def remove(self, inst_id: str, mode: ScaleInMode, grace_s: float, now_s: float) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle in (Lifecycle.GONE, Lifecycle.DRAINING):
            if mode is ScaleInMode.KILL and inst.lifecycle is Lifecycle.DRAINING:
                self._kill(inst, now_s)
            return
        if inst.in_discovery:
            self.set_discovery(inst_id, False)
        if inst.lifecycle is Lifecycle.STARTING or (mode is ScaleInMode.KILL and grace_s <= 0.0):
            self._kill(inst, now_s)
            return
        # DRAIN: gone once empty, killed at the deadline. KILL with a grace period (a peer's SIGTERM then
        # SIGKILL): the same — no new work, in-flight work that outlives the grace fails.
        inst.lifecycle = Lifecycle.DRAINING
        if not self._maybe_gone(inst, now_s):
            heapq.heappush(self.heap, (now_s + grace_s, next(self.seq), _EV_DRAIN_DEADLINE, inst, 0))

    def _maybe_gone(self, inst: SimInstance, now_s: float) -> bool:
        if inst.lifecycle is not Lifecycle.DRAINING:
            return False
        if isinstance(inst, PrefillInst):
            if inst.busy or inst.queue or inst.kv_held or inst.nic_free_at > now_s + 1e-12:
                return False
            self.p_all[inst.svc].remove(inst)
        elif isinstance(inst, DecodeInst):
            if inst.b or inst.waiting or inst.inbound:
                return False
            self._advance(inst, now_s)
            self.d_all[inst.svc].remove(inst)
        self.cluster.mark_gone(inst, now_s)
        return True

    def _kill(self, inst: SimInstance, now_s: float) -> None:
        svc = inst.svc
        failed: list[Req] = []
        if isinstance(inst, PrefillInst):
            failed.extend(inst.queue)
            failed.extend(inst.batch)
            inst.queue.clear()
            inst.batch = []
            inst.busy = False
            inst.killed = True
            inst.killed_at_s = now_s
            if inst.kv_held:  # its KV cache dies with it
                pend = self.pending_decode[svc]
                failed.extend(r for r in pend if r.pinst is inst)
                self.pending_decode[svc] = deque(r for r in pend if r.pinst is not inst)
                inst.kv_held = 0
            if inst in self.p_routable[svc]:
                self.p_routable[svc].remove(inst)
            self.p_all[svc].remove(inst)
        elif isinstance(inst, DecodeInst):
            self._advance(inst, now_s)
            failed.extend(m[2] for m in inst.members)
            failed.extend(inst.waiting)
            inst.members = []
            inst.waiting.clear()
            inst.b = 0
            inst.version += 1
            if inst in self.d_routable[svc]:
                self.d_routable[svc].remove(inst)
            self.d_all[svc].remove(inst)
        for req in failed:
            self._fail(req, now_s, FailureCause.SCALE_IN)
        self.cluster.mark_gone(inst, now_s)

    def _fail(self, req: Req, now_s: float, cause: FailureCause) -> None:
        self.stats[req.svc].fail(cause)
        self.in_flight -= 1
        if self.records.enabled:
            self.records.write(
                f"{req.rid},{self.loads[req.svc].spec.name},{req.arrival:.6f},{req.inp},{req.out},"
                f"{req.cached},{req.pinst.id if req.pinst else ''},{req.dinst.id if req.dinst else ''},"
                f",,{now_s:.6f},failed:{cause.value}\n"
            )

    # ------------------------------------------------------------------ serving
    def _route_prefill(self, req: Req, now_s: float) -> None:
        insts = self.p_routable[req.svc]
        if not insts:
            self.pending_prefill[req.svc].append(req)
            return
        best = insts[0]
        if len(insts) > 1:
            best_load = _INF
            for p in insts:
                ld = p.queued_tokens * p.sec_per_token
                if p.busy and p.batch_end > now_s:
                    ld += p.batch_end - now_s
                if ld < best_load:
                    best, best_load = p, ld
        req.pinst = best
        best.queue.append(req)
        best.queued_tokens += req.new
        if not best.busy:
            self._start_prefill(best, now_s)

    def _start_prefill(self, p: PrefillInst, now_s: float) -> None:
        budget = self.loads[p.svc].spec.max_prefill_tokens
        queue = p.queue
        batch: list[Req] = []
        tokens = 0
        attn = 0.0
        prefix = 0.0
        while queue:
            req = queue[0]
            if batch and tokens + req.new > budget:
                break
            queue.popleft()
            batch.append(req)
            tokens += req.new
            attn += req.new * (req.cached + req.new)
            prefix += req.new * req.cached
        p.queued_tokens -= tokens
        perf = p.perf
        dur = perf.prefill_time_s(tokens, attn, prefix)
        kernel = perf.prefill_kernel_s(tokens, attn, prefix)
        p.busy = True
        p.batch = batch
        p.batch_end = now_s + dur
        p.batch_kfrac = kernel / dur if dur > 0 else 0.0
        p.acc_kernel_s += kernel
        p.acc_wall_s += dur
        p.acc_flops += perf.prefill_flops(tokens, attn, prefix)
        heapq.heappush(self.heap, (p.batch_end, next(self.seq), _EV_PREFILL_DONE, p, 0))

    def _prefill_done(self, p: PrefillInst, now_s: float) -> None:
        batch = p.batch
        p.batch = []
        p.busy = False
        for req in batch:
            p.acc_tokens += req.new
            p.acc_cached_tokens += req.cached
            self._start_transfer(req, now_s)
        if p.queue:
            self._start_prefill(p, now_s)
        elif p.lifecycle is Lifecycle.DRAINING:
            self._maybe_gone(p, now_s)

    def _pick_decode(self, svc: int, dg: str, need_tokens: int) -> DecodeInst | None:
        """The least-loaded routable decode instance whose KV cache can ever hold ``need_tokens``,
        in the prefill instance's DG when it has one."""
        best: DecodeInst | None = None
        best_load = _INF
        for d in self.d_routable[svc]:
            if need_tokens > d.cap_tokens:
                continue
            ld = (d.resv + 1) / (d.cap_tokens + 1) + len(d.waiting) + (0.0 if d.dg == dg else 1e6)
            if ld < best_load:
                best, best_load = d, ld
        return best

    def _start_transfer(self, req: Req, now_s: float) -> None:
        p = req.pinst
        assert p is not None
        if not self.d_routable[req.svc]:  # wait, KV held on the prefill instance, for a routable decode
            self.pending_decode[req.svc].append(req)
            p.kv_held += 1
            return
        d = self._pick_decode(req.svc, p.dg, req.inp + req.out)
        if d is None:  # it would never be admitted: reject it rather than block an admission queue
            self._fail(req, now_s, FailureCause.KV_CAPACITY)
            if p.lifecycle is Lifecycle.DRAINING:
                self._maybe_gone(p, now_s)
            return
        req.dinst = d
        d.inbound += 1
        bw = self.cluster.kv_bandwidth(p, d)
        xfer_s = req.new * p.perf.kv_bytes_per_token / bw
        start = p.nic_free_at if p.nic_free_at > now_s else now_s
        p.nic_free_at = start + xfer_s
        req.sent_s = p.nic_free_at
        done = start + xfer_s + self.cluster.topology.kv_bandwidth.setup_s
        heapq.heappush(self.heap, (done, next(self.seq), _EV_XFER_DONE, req, 0))

    def _xfer_done(self, req: Req, now_s: float) -> None:
        d = req.dinst
        p = req.pinst
        assert d is not None and p is not None
        if p.lifecycle is Lifecycle.DRAINING:
            self._maybe_gone(p, now_s)
        if d.lifecycle is Lifecycle.GONE:  # killed with the transfer inbound
            self._fail(req, now_s, FailureCause.SCALE_IN)
            return
        d.inbound -= 1
        if p.killed and req.sent_s > p.killed_at_s + 1e-12:  # the sender died before its KV had left
            self._fail(req, now_s, FailureCause.SCALE_IN)
        elif not d.waiting and d.b < d.max_batch and d.resv + req.inp + req.out <= d.cap_tokens:
            self._advance(d, now_s)
            self._admit(d, req, now_s)
            self._reschedule(d, now_s)
        else:
            d.waiting.append(req)
        if d.lifecycle is Lifecycle.DRAINING:  # e.g. the last inbound request had one output token
            self._maybe_gone(d, now_s)

    def _advance(self, d: DecodeInst, now_s: float) -> None:
        dt = now_s - d.t_last
        if dt > 0.0:
            b = d.b
            if b:
                per = d.lin_per[b]
                lin = d.lin_base[b] + per * d.ctx
                a = per * b * 0.5
                if a * dt < 1e-9 * lin * lin:
                    k = dt / lin
                else:
                    k = (math.sqrt(lin * lin + 4.0 * a * dt) - lin) / (2.0 * a)
                d.steps += k
                d.ctx += b * k
                d.acc_tokens += b * k
                d.acc_wall_s += dt
                d.acc_kernel_s += dt - k * d.perf.decode_host_s(b)
                d.acc_flops += k * d.perf.decode_flops(b, int(d.ctx - b * k * 0.5))
            d.t_last = now_s

    def _admit(self, d: DecodeInst, req: Req, now_s: float) -> None:
        req.t_first = now_s
        n = req.out - 1
        if n <= 0:
            self._complete(req, now_s, None)
            return
        req.fin_step = d.steps + n
        heapq.heappush(d.members, (req.fin_step, req.rid, req))
        d.b += 1
        d.ctx += req.inp
        d.resv += req.inp + req.out

    def _reschedule(self, d: DecodeInst, now_s: float) -> None:
        d.version += 1
        b = d.b
        if b:
            k = d.members[0][0] - d.steps
            k = max(k, 0.0)
            per = d.lin_per[b]
            dt = (d.lin_base[b] + per * d.ctx) * k + per * b * k * k * 0.5
            heapq.heappush(self.heap, (now_s + dt, next(self.seq), _EV_DECODE_NEXT, d, d.version))

    def _decode_next(self, d: DecodeInst, now_s: float) -> None:
        self._advance(d, now_s)
        members = d.members
        target = members[0][0]
        d.steps = max(d.steps, target)  # float round-off of the closed-form inversion
        limit = d.steps + 1e-6
        while members and members[0][0] <= limit:
            _, _, req = heapq.heappop(members)
            d.b -= 1
            d.ctx -= req.inp + req.out - 1
            d.resv -= req.inp + req.out
            self._complete(req, now_s, (now_s - req.t_first) / (req.out - 1))
        if d.ctx < 0.0 or not members:
            d.ctx = max(0.0, d.ctx) if members else 0.0
        waiting = d.waiting
        while waiting and d.b < d.max_batch and d.resv + waiting[0].inp + waiting[0].out <= d.cap_tokens:
            self._admit(d, waiting.popleft(), now_s)
        if d.lifecycle is Lifecycle.DRAINING:
            self._maybe_gone(d, now_s)
        self._reschedule(d, now_s)

    def _complete(self, req: Req, now_s: float, tbt_s: float | None) -> None:
        self.in_flight -= 1
        if req.local >= 0:
            self._done[req.svc][req.local] = True
        ttft = req.t_first - req.arrival
        self.stats[req.svc].complete(ttft, tbt_s, req.inp, req.out)
        if self.records.enabled:
            d = req.dinst
            self.records.write(
                f"{req.rid},{self.loads[req.svc].spec.name},{req.arrival:.6f},{req.inp},{req.out},"
                f"{req.cached},{req.pinst.id if req.pinst else ''},{d.id if d else ''},{ttft:.6f},"
                f"{'' if tbt_s is None else f'{tbt_s:.6f}'},{now_s:.6f},ok\n"
            )

    # ------------------------------------------------------------------ loop
    def run_until(self, t_end_s: float) -> None:
        """Process every event and arrival with time ≤ t_end_s, sampling telemetry windows."""
        while True:
            stop = min(t_end_s, self.next_window_s, self.next_sample_s)
            self._run_events(stop)
            sampled = False
            if stop >= self.next_sample_s - 1e-12 and self.next_sample_s <= t_end_s + 1e-12:
                self._sample_counts()
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
        n_arr = self._n_arrivals
        i = self._next_arrival
        events = 0
        while True:
            t_arr = arr_t[i] if i < n_arr else _INF
            t_ev = heap[0][0] if heap else _INF
            if t_arr <= t_ev:
                if t_arr > t_stop:
                    break
                svc = self._arr_svc[i]
                j = self._arr_local[i]
                inp = self._inp[svc][j]
                cached = self._cached[svc][j]
                req = Req(i, svc, t_arr, inp, self._out[svc][j], cached, j)
                i += 1
                self.stats[svc].arrivals += 1
                self.stats[svc].w_arrivals += 1
                self.in_flight += 1
                self._route_prefill(req, t_arr)
                events += 1
                continue
            if t_ev > t_stop:
                break
            t, _, kind, obj, ver = heappop(heap)
            events += 1
            if kind == _EV_DECODE_NEXT:
                d = obj
                assert isinstance(d, DecodeInst)
                if ver == d.version and d.lifecycle is not Lifecycle.GONE:
                    self._decode_next(d, t)
            elif kind == _EV_XFER_DONE:
                assert isinstance(obj, Req)
                self._xfer_done(obj, t)
            elif kind == _EV_PREFILL_DONE:
                assert isinstance(obj, PrefillInst)
                if obj.lifecycle is not Lifecycle.GONE:
                    self._prefill_done(obj, t)
            elif kind == _EV_READY:
                assert isinstance(obj, SimInstance)
                self._ready(obj, t)
            elif kind == _EV_DRAIN_DEADLINE:
                assert isinstance(obj, SimInstance)
                if obj.lifecycle is Lifecycle.DRAINING:
                    self._kill(obj, t)
        self._next_arrival = i
        self.events += events
        self.now_s = max(self.now_s, t_stop)

    def settle(self, now_s: float) -> None:
        """Bring every decode batch's accounting up to ``now_s`` between events, for a reader of the
        accumulators (the demo's metrics); no outcome changes, a batch advances exactly in pieces."""
        for insts in self.d_all:
            for d in insts:
                self._advance(d, now_s)

    def finalize(self, end_s: float) -> None:
        """Advance every decode batch to ``end_s`` and record requests still in flight as unfinished."""
        for insts in self.d_all:
            for d in insts:
                self._advance(d, end_s)
        if not self.records.enabled:
            return
        in_flight: list[Req] = []
        for svc in range(len(self.loads)):
            in_flight.extend(self.pending_prefill[svc])
            in_flight.extend(self.pending_decode[svc])
            for p in self.p_all[svc]:
                in_flight.extend(p.queue)
                in_flight.extend(p.batch)
            for d in self.d_all[svc]:
                in_flight.extend(m[2] for m in d.members)
                in_flight.extend(d.waiting)
        in_flight.extend(obj for _, _, kind, obj, _ in self.heap if kind == _EV_XFER_DONE and isinstance(obj, Req))
        for req in sorted(in_flight, key=lambda r: r.rid):
            self.records.write(
                f"{req.rid},{self.loads[req.svc].spec.name},{req.arrival:.6f},{req.inp},{req.out},"
                f"{req.cached},{req.pinst.id if req.pinst else ''},{req.dinst.id if req.dinst else ''},"
                f",,,unfinished\n"
            )

    @property
    def latency_estimated(self) -> bool:
        return False

    def completed_mask(self, svc: int) -> np.ndarray:
        """Which requests of service ``svc``'s trace completed (True), in trace order."""
        return self._done[svc]

    @property
    def arrivals_done(self) -> bool:
        return self._next_arrival >= self._n_arrivals

    @property
    def idle(self) -> bool:
        return self.arrivals_done and self.in_flight == 0

    def next_arrival_s(self) -> float:
        i = self._next_arrival
        return self._arr_t[i] if i < self._n_arrivals else _INF

    # ------------------------------------------------------------------ telemetry
    def _sample_counts(self) -> None:
        """Add the instantaneous queue and running counts of every service to the window's sums."""
        for svc, acc in enumerate(self._counts_acc):
            acc[0] += len(self.pending_prefill[svc])
            acc[2] += len(self.pending_decode[svc])
            for p in self.p_all[svc]:
                if p.lifecycle is not Lifecycle.STARTING:
                    acc[0] += len(p.queue)
                    acc[1] += len(p.batch)
            for d in self.d_all[svc]:
                if d.lifecycle is not Lifecycle.STARTING:
                    acc[2] += len(d.waiting)
                    acc[3] += d.b
            acc[4] += 1

    def _sample_window(self, t_s: float) -> None:
        span = t_s - self.last_window_s
        self.last_window_s = t_s
        if span <= 0:
            return
        for svc, ld in enumerate(self.loads):
            prefill = self._role_window(self.p_all[svc], t_s, span, Role.PREFILL, svc)
            decode = self._role_window(self.d_all[svc], t_s, span, Role.DECODE, svc)
            st = self.stats[svc]
            ttft = sorted(st.w_ttft)
            tbt = sorted(st.w_tbt)
            n = len(ttft)
            self.telemetry.add(
                WindowRow(
                    t_s=t_s,
                    window_s=span,
                    service=ld.spec.name,
                    prefill=prefill,
                    decode=decode,
                    arrivals_per_s=st.w_arrivals / span,
                    completions=n,
                    ttft_p50_s=percentile(ttft, 0.5),
                    ttft_p90_s=percentile(ttft, 0.9),
                    ttft_p99_s=percentile(ttft, 0.99),
                    tbt_p50_s=percentile(tbt, 0.5),
                    tbt_p90_s=percentile(tbt, 0.9),
                    tbt_p99_s=percentile(tbt, 0.99),
                    mean_input_tokens=st.w_inputs / n if n else None,
                    mean_output_tokens=st.w_outputs / n if n else None,
                    slo_met=st.w_met,
                    slo_missed=n - st.w_met + st.w_failed,
                )
            )
            st.reset_window()

    def _role_window(
        self, insts: list[PrefillInst] | list[DecodeInst], t_s: float, span: float, role: Role, svc: int
    ) -> RoleWindow:
        ready = starting = draining = held = 0
        tokens = kernel = flops = peak = 0.0
        occ_kernel = 0.0
        queue = running = 0.0
        kv_sum = 0.0
        kv_n = 0
        for inst in insts:
            lc = inst.lifecycle
            if lc is Lifecycle.STARTING:
                starting += 1
                continue
            if lc is Lifecycle.DRAINING:
                draining += 1
            elif inst.in_discovery:
                ready += 1
            else:
                held += 1
            if isinstance(inst, DecodeInst):
                self._advance(inst, t_s)
                acc_kernel = inst.acc_kernel_s
                running += inst.b
                queue += len(inst.waiting)
                if inst.cap_tokens > 0:
                    kv_sum += inst.ctx / inst.cap_tokens
                    kv_n += 1
                occ = inst.perf.decode_sm_occupancy
                acc_flops = inst.acc_flops
            else:
                assert isinstance(inst, PrefillInst)
                overhang = (inst.batch_end - t_s) if inst.busy and inst.batch_end > t_s else 0.0
                acc_kernel = inst.acc_kernel_s - overhang * inst.batch_kfrac
                running += len(inst.batch)
                queue += len(inst.queue)
                occ = inst.perf.prefill_sm_occupancy
                acc_flops = inst.acc_flops
            d_kernel = acc_kernel - inst.win_kernel_s
            inst.win_kernel_s = acc_kernel
            d_tokens = inst.acc_tokens - inst.win_tokens
            inst.win_tokens = inst.acc_tokens
            d_flops = acc_flops - inst.win_flops
            inst.win_flops = acc_flops
            kernel += d_kernel
            occ_kernel += d_kernel * occ
            tokens += d_tokens
            flops += d_flops
            peak += inst.perf.peak_flops * span
        if role is Role.PREFILL:
            queue += len(self.pending_prefill[svc])
        else:
            queue += len(self.pending_decode[svc])
        active = ready + draining + held
        acc = self._counts_acc[svc]
        first = 0 if role is Role.PREFILL else 2
        samples = acc[4]
        queue_mean = acc[first] / samples if samples else queue
        running_mean = acc[first + 1] / samples if samples else running
        if role is Role.DECODE:  # the decode role is the last of the service's window: start afresh
            self._counts_acc[svc] = [0.0] * 5
        return RoleWindow(
            instances_ready=ready,
            instances_starting=starting,
            instances_draining=draining,
            tps=tokens / span,
            gpu_util=min(1.0, kernel / (span * active)) if active else None,
            sm_activity=min(1.0, occ_kernel / (span * active)) if active else None,
            compute_efficiency=min(1.0, flops / peak) if peak > 0 else None,
            queue_len=queue,
            running=running,
            kv_usage=kv_sum / kv_n if kv_n else None,
            instances_held=held,
            queue_len_mean=queue_mean,
            running_mean=running_mean,
        )
