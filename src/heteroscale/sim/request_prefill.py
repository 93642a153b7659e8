"""The prefill side of the request engine: routing a request to a prefill instance, batching its
prompt, and starting the KV transfer to a decode instance (its landing is the decode side's; see
:mod:`heteroscale.sim.request_engine` for the model)."""

from __future__ import annotations

import heapq
import math
from collections import deque

from heteroscale.domain.state import Lifecycle
from heteroscale.sim.records import FailureCause
from heteroscale.sim.request_decode import EV_PREFILL_DONE, EV_XFER_DONE
from heteroscale.sim.request_mixed import MixedPool
from heteroscale.sim.request_model import DecodeInst, PrefillInst, Req, ServiceState

_INF = math.inf
# module-level names for the hot path (a global lookup instead of an attribute lookup per event)
_DRAINING = Lifecycle.DRAINING
_heappush = heapq.heappush


class PrefillSide(MixedPool):
    """Prefill routing and batches, and KV transfers (the mixed pool lends from here)."""

    mixed: bool
    parallel_xfer: bool
    link_bytes_per_s: float | None
    setup_s: float

    # ------------------------------------------------------------------ prefill
    def _route_prefill(self, req: Req, now_s: float) -> None:
        sv = self.services[req.svc]
        if self.mixed:  # SplitwiseSim's scheduler places both phases now
            self._mixed_route(sv, req, now_s)
            return
        insts = sv.p_routable
        if not insts:
            sv.pending_prefill.append(req)
            return
        best = insts[0]
        if len(insts) > 1:
            best_load = _INF
            for p in insts:
                queued = p.queued_tokens
                ld = queued * p.sec_per_token if queued else 0.0  # 0 × s is 0.0: no int-by-float product
                if ld >= best_load:  # what is added below is ≥ 0: it cannot win (a float sum is monotone)
                    continue
                if p.busy and p.batch_end > now_s:
                    ld += p.batch_end - now_s
                if ld < best_load:
                    best, best_load = p, ld
                    if ld == 0.0:  # nothing is below an idle instance: the first idle one wins
                        break
        req.pinst = best
        req.t_pq = now_s
        if best.busy or best.queue or sv.chunk_tokens:
            best.queue.append(req)
            best.queued_tokens += req.new
            if not best.busy:
                self._start_prefill(best, now_s)
            return
        # an idle instance with nothing queued: the request is the whole batch (_start_prefill's loop
        # on one request, which adds its tokens to the queued ones and takes them back)
        new = req.new
        cached = req.cached
        req.t_ps = now_s
        req.done_tokens = new
        attn = 0.0 + new * (cached + new)  # floats, as the loop's sums from 0.0
        self._run_batch(best, [req], new, attn, 0.0 + new * cached, now_s)

    def _take_batch(self, sv: ServiceState, q: deque[Req], now_s: float) -> tuple[list[Req], int, float, float]:
        """Pop the next batch's requests from ``queue`` (a deque): whole prompts up to the budget (the
        first always gets in), or chunks of at most ``chunk_tokens``; returns (finished requests,
        tokens, attention units, prefix units). A partly prefilled request stays at the head."""
        budget = sv.prefill_budget
        chunk = sv.chunk_tokens
        batch: list[Req] = []
        tokens = 0
        attn = 0.0
        prefix = 0.0
        if chunk:
            budget = min(budget, chunk)
        while q:
            req = q[0]
            left = req.new - req.done_tokens
            if chunk:
                n = min(left, budget - tokens)
            elif batch and tokens + left > budget:
                break
            else:
                n = left
            c0 = req.cached + req.done_tokens
            if req.done_tokens == 0:
                req.t_ps = now_s
            tokens += n
            attn += n * (c0 + n)
            prefix += n * c0
            req.done_tokens += n
            if req.done_tokens < req.new:
                break  # the chunk is full; the rest of this prompt runs next
            q.popleft()
            batch.append(req)
            if chunk and tokens >= budget:
                break
        return batch, tokens, attn, prefix

    def _start_prefill(self, p: PrefillInst, now_s: float) -> None:
        sv = self.services[p.svc]
        q = p.queue
        if sv.chunk_tokens:
            batch, tokens, attn, prefix = self._take_batch(sv, q, now_s)
        else:  # the hot path: whole prompts, the first always gets in (as _take_batch, inlined)
            budget = sv.prefill_budget
            batch = []
            tokens = 0
            attn = prefix = 0.0
            while q:
                req = q[0]
                new = req.new
                if batch and tokens + new > budget:
                    break
                q.popleft()
                batch.append(req)
                req.t_ps = now_s
                req.done_tokens = new
                tokens += new
                attn += new * (req.cached + new)
                prefix += new * req.cached
        p.queued_tokens -= tokens
        self._run_batch(p, batch, tokens, attn, prefix, now_s)

    def _run_batch(
        self, p: PrefillInst, batch: list[Req], tokens: int, attn: float, prefix: float, now_s: float
    ) -> None:
        """Run ``batch`` (taken off the queue) on the idle ``p``: its time, tallies and done event."""
        perf = p.perf
        ftokens = float(tokens)  # what an int-by-float product converts it to, once
        # perf.prefill_kernel_s, inlined: the same arithmetic in the same order
        compute = ftokens * perf.prefill_s_per_token + (attn + prefix) * perf.prefill_s_per_attn_unit
        floor = perf.weight_read_s
        compute = floor if compute < floor else compute
        latency = perf.allreduce_latency_s + perf.prefill_layer_latency_s
        large = tokens >= perf.large_message_tokens  # an all-reduce message past the knee (perf.model)
        comm = perf.prefill_comm_large_s_per_token if large else perf.prefill_comm_s_per_token
        kernel = latency + compute + ftokens * comm
        dur = perf.prefill_host_overhead_s + kernel  # = perf.prefill_time_s(tokens, attn, prefix)
        p.busy = True
        p.batch = batch
        p.batch_end = end = now_s + dur
        p.batch_kfrac = kernel / dur if dur > 0 else 0.0
        p.acc_kernel_s += kernel
        p.acc_flops += ftokens * perf.prefill_flops_per_token + (attn + prefix) * perf.attn_flops_per_unit
        p.batch_tokens = tokens
        sh = p.shadow
        if sh is not None and sh.b:  # the decodes lent here wait for this prefill batch
            self._stall(sh, now_s, dur)
            self._reschedule(sh, now_s)
        _heappush(self.heap, (end, next(self.seq), EV_PREFILL_DONE, p, 0))

    def _prefill_done(self, p: PrefillInst, now_s: float) -> None:
        batch = p.batch
        p.batch = []
        p.busy = False
        p.acc_tokens += p.batch_tokens
        for req in batch:
            p.acc_cached_tokens += req.cached
            req.t_pe = now_s
            self._start_transfer(req, now_s)
        if p.queue:
            self._start_prefill(p, now_s)
        elif p.lifecycle is _DRAINING:
            self._maybe_gone(p, now_s)
        elif p.in_mixed_pool:
            self._release_if_idle(p)

    # ------------------------------------------------------------------ KV transfer
    def _start_transfer(self, req: Req, now_s: float) -> None:
        p = req.pinst
        assert p is not None
        sv = self.services[req.svc]
        if not sv.d_routable:  # wait, KV held on the prefill instance, for a routable decode
            sv.pending_decode.append(req)
            p.kv_held += 1
            return
        # the least-loaded routable decode instance whose KV cache can ever hold the request, in the
        # prefill instance's DG when it has one
        need_tokens = req.inp + req.out
        dg = p.dg
        d: DecodeInst | None = self._mixed_decode(req) if self.mixed else None  # placed when it arrived
        best_load = _INF
        for cand in sv.d_routable if d is None else ():
            ld = cand.load_frac
            if ld >= best_load or need_tokens > cand.cap_tokens:  # what is added below is ≥ 0: it cannot win
                continue
            waiting = cand.waiting
            if waiting:
                ld += len(waiting)
            if cand.dg != dg:
                ld += 1e6
            if ld < best_load:
                d, best_load = cand, ld
        if d is None:  # it would never be admitted: reject it rather than block an admission queue
            self._fail(req, now_s, FailureCause.KV_CAPACITY)
            if p.lifecycle is _DRAINING:
                self._maybe_gone(p, now_s)
            return
        req.dinst = d
        d.inbound += 1
        if d is p or d.owner is p:  # one instance holds both phases: no transfer
            req.t_xs = req.sent_s = now_s
            self._xfer_done(req, now_s)
            return
        bw = self.link_bytes_per_s or p.kv_bw.get(d)
        if not bw:
            bw = p.kv_bw[d] = self.cluster.kv_bandwidth(p, d)
        xfer_s = req.new * p.perf.kv_bytes_per_token / bw
        if self.parallel_xfer:
            start = now_s
            p.nic_free_at = max(p.nic_free_at, start + xfer_s)
            req.sent_s = start + xfer_s
        else:
            nic_free = p.nic_free_at
            start = nic_free if nic_free > now_s else now_s
            p.nic_free_at = req.sent_s = start + xfer_s
        req.t_xs = start
        _heappush(self.heap, (start + xfer_s + self.setup_s, next(self.seq), EV_XFER_DONE, req, 0))
