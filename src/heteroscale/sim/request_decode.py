"""The decode side of the request engine: a landed KV transfer, admission, the analytic batch
advance, stalls, preemption and rescheduling (see :mod:`heteroscale.sim.request_engine` for the model).

:class:`DecodeSide` is the base of the engine's parts: it declares the state they share and the
hooks the engine itself defines.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque

from heteroscale.domain.state import Lifecycle
from heteroscale.sim.cluster import SimCluster, SimInstance
from heteroscale.sim.records import FailureCause
from heteroscale.sim.request_model import DecodeInst, Req, ServiceState
from heteroscale.sim.scenario import EngineSettings, Preemption

_DRAINING = Lifecycle.DRAINING
_GONE = Lifecycle.GONE
_heappush = heapq.heappush
_heappop = heapq.heappop
_sqrt = math.sqrt

# event kinds
EV_PREFILL_DONE = 0
EV_XFER_DONE = 1
EV_DECODE_NEXT = 2
EV_READY = 3
EV_DRAIN_DEADLINE = 4
EV_LENT_DONE = 5


class DecodeSide:
    """Decode batches; the state every part of the engine shares."""

    cluster: SimCluster
    settings: EngineSettings
    services: list[ServiceState]
    heap: list[tuple[float, int, int, object, int]]
    seq: itertools.count[int]
    adm_seq: itertools.count[int]
    grow: bool
    now_s: float
    in_flight: int
    records_on: bool

    # -- hooks the engine defines
    def _complete(self, req: Req, now_s: float, tbt_s: float | None) -> None:
        raise NotImplementedError

    def _record(self, req: Req, now_s: float, ttft: str, tbt: str, tbt_sw: str, status: str) -> None:
        raise NotImplementedError

    def _fail(self, req: Req, now_s: float, cause: FailureCause) -> None:
        raise NotImplementedError

    def _maybe_gone(self, inst: SimInstance, now_s: float) -> bool:
        raise NotImplementedError

    def _route_prefill(self, req: Req, now_s: float) -> None:
        raise NotImplementedError

    def _start_transfer(self, req: Req, now_s: float) -> None:
        raise NotImplementedError

    def _take_batch(self, sv: ServiceState, q: deque[Req], now_s: float) -> tuple[list[Req], int, float, float]:
        raise NotImplementedError

    def _push(self, t_s: float, kind: int, obj: object, ver: int = 0) -> None:
        heapq.heappush(self.heap, (t_s, next(self.seq), kind, obj, ver))

    def _maybe_done(self, d: DecodeInst, now_s: float) -> None:
        if d.owner is not None:
            if d.owner.lifecycle is _DRAINING:
                self._maybe_gone(d.owner, now_s)
        elif d.lifecycle is _DRAINING:
            self._maybe_gone(d, now_s)

    # ------------------------------------------------------------------ decode
    def _fits(self, d: DecodeInst, req: Req) -> bool:
        """Whether ``d`` can admit ``req`` now (batch size and KV)."""
        if d.b >= d.max_batch:
            return False
        if self.grow:  # its context now plus one more step of the whole batch
            return d.ctx + req.inp + (req.out - 1 - req.remaining) + d.b + 1 <= d.cap_tokens
        return d.resv + req.inp + req.out <= d.cap_tokens

    def _advance(self, d: DecodeInst, now_s: float) -> None:
        dt = now_s - d.t_last
        if dt > 0.0:
            b = d.b
            if b:
                per = d.lin_per[b]
                lin = d.lin_base[b] + per * d.ctx
                a = d.per_b[b] * 0.5
                if a * dt < 1e-9 * lin * lin:
                    k = dt / lin
                else:
                    k = (_sqrt(lin * lin + 4.0 * a * dt) - lin) / (2.0 * a)
                d.steps += k
                bk = b * k
                d.ctx += bk
                d.acc_tokens += bk
                d.acc_kernel_s += dt - k * d.host[b]
                # perf.decode_flops(b, ctx), inlined
                d.acc_flops += k * (d.flops_b[b] + int(d.ctx - bk * 0.5) * d.flops_per_context_token)
            d.t_last = now_s

    def _stall(self, d: DecodeInst, now_s: float, dur_s: float) -> float:
        """The batch makes no progress for ``dur_s`` (after any stall already running); the caller
        reschedules. Returns when the stall ends."""
        self._advance(d, now_s)
        end = (d.t_last if d.t_last > now_s else now_s) + dur_s
        d.t_last = end
        return end

    def _admit(self, d: DecodeInst, req: Req, now_s: float) -> None:
        if req.preemptions and self.grow:
            self._readmit_cost(d, req, now_s)
        if math.isnan(req.t_admit):  # first admission: its first token
            req.t_admit = now_s
        n = req.remaining
        if n <= 0:
            self._complete(req, now_s, None)
            return
        if self.grow:  # only preemption reads the admission order
            req.adm_order = next(self.adm_seq)
        _heappush(d.members, (d.steps + n, req.rid, req))
        d.b += 1
        d.ctx += req.inp + (req.out - 1 - n)
        d.resv += req.inp + req.out
        d.load_frac = (d.resv + 1) / (d.cap_tokens + 1)

    def _xfer_done(self, req: Req, now_s: float) -> None:
        """A KV transfer has landed: ``req`` joins its decode instance's batch or waits for room. The
        common case (a first admission that fits) is ``_advance``, ``_admit`` and ``_reschedule`` in one
        pass on locals, their arithmetic in their order, so the results are the same."""
        d = req.dinst
        p = req.pinst
        assert d is not None and p is not None
        req.t_xe = now_s
        if p.lifecycle is _DRAINING:
            self._maybe_gone(p, now_s)
        if d.lifecycle is _GONE:  # killed with the transfer inbound
            self._fail(req, now_s, FailureCause.SCALE_IN)
            return
        d.inbound -= 1
        n = req.remaining
        inp = req.inp
        out = req.out
        cap = d.cap_tokens
        grow = self.grow
        b = d.b
        if p.killed and req.sent_s > p.killed_at_s + 1e-12:  # the sender died before its KV had left
            self._fail(req, now_s, FailureCause.SCALE_IN)
        elif d.waiting or not (
            b < d.max_batch and (d.ctx + inp + (out - 1 - n) + b + 1 <= cap if grow else d.resv + inp + out <= cap)
        ):  # not _fits, inlined
            d.waiting.append(req)
        elif req.preemptions or n <= 0 or req.t_admit == req.t_admit:  # a readmission or no decode step
            self._advance(d, now_s)
            self._admit(d, req, now_s)
            self._reschedule(d, now_s)
        else:  # joins the batch now
            ctx = d.ctx
            steps = d.steps
            lin_per = d.lin_per
            lin_base = d.lin_base
            dt = now_s - d.t_last
            if dt > 0.0:
                if b:  # _advance
                    per = lin_per[b]
                    lin = lin_base[b] + per * ctx
                    a = d.per_b[b] * 0.5
                    if a * dt < 1e-9 * lin * lin:
                        k = dt / lin
                    else:
                        k = (_sqrt(lin * lin + 4.0 * a * dt) - lin) / (2.0 * a)
                    d.steps = steps = steps + k
                    bk = b * k
                    ctx += bk
                    d.acc_tokens += bk
                    d.acc_kernel_s += dt - k * d.host[b]
                    d.acc_flops += k * (d.flops_b[b] + int(ctx - bk * 0.5) * d.flops_per_context_token)
                d.t_last = now_s
            req.t_admit = now_s  # _admit: its first token
            if grow:  # only preemption reads the admission order
                req.adm_order = next(self.adm_seq)
            members = d.members
            _heappush(members, (steps + n, req.rid, req))
            d.b = b = b + 1
            ctx += inp + (out - 1 - n)
            d.ctx = ctx
            d.resv = resv = d.resv + (inp + out)
            d.load_frac = (resv + 1) / (cap + 1)
            d.version = version = d.version + 1  # _reschedule
            k = members[0][0] - steps
            k = 0.0 if k < 0.0 else k
            if grow and b > 1:
                k_full = (cap - ctx) / b
                if k_full < k:
                    k = max(k_full, 0.0)
            per = lin_per[b]
            dt = (lin_base[b] + per * ctx) * k + d.per_b[b] * k * k * 0.5
            base = d.t_last
            base = base if base > now_s else now_s
            _heappush(self.heap, (base + dt, next(self.seq), EV_DECODE_NEXT, d, version))
        # e.g. the last inbound had one output token
        if d.owner is not None or d.lifecycle is _DRAINING or d.in_mixed_pool:
            self._maybe_done(d, now_s)

    def _readmit_cost(self, d: DecodeInst, req: Req, now_s: float) -> None:
        ctx = req.inp + (req.out - 1 - req.remaining)
        if self.settings.preemption is Preemption.SWAP:
            dur = ctx * d.perf.kv_bytes_per_token / (self.settings.swap_gbyte_per_s * 1e9)
        else:
            dur = d.perf.prefill_time_s(int(ctx), float(ctx) * ctx)
        self._stall(d, now_s, dur)

    def _preempt(self, d: DecodeInst, now_s: float) -> None:
        """Free KV for one more step of the batch: preempt the latest admitted members."""
        swap = self.settings.preemption is Preemption.SWAP
        while d.b > 1 and d.ctx + d.b > d.cap_tokens + 1e-6:
            entry = max(d.members, key=lambda m: m[2].adm_order)
            d.members.remove(entry)
            heapq.heapify(d.members)
            req = entry[2]
            req.remaining = max(1.0, entry[0] - d.steps)
            req.preemptions += 1
            held = req.inp + (req.out - 1 - req.remaining)
            d.b -= 1
            d.ctx -= held
            d.resv -= req.inp + req.out
            d.load_frac = (d.resv + 1) / (d.cap_tokens + 1)
            d.waiting.appendleft(req)
            if swap:
                self._stall(d, now_s, held * d.perf.kv_bytes_per_token / (self.settings.swap_gbyte_per_s * 1e9))

    def _reschedule(self, d: DecodeInst, now_s: float) -> None:
        d.version = version = d.version + 1
        b = d.b
        if b:
            k = d.members[0][0] - d.steps
            k = 0.0 if k < 0.0 else k  # max(k, 0.0) without a call (the same value, -0.0 and NaN included)
            ctx = d.ctx
            if self.grow and b > 1:  # the KV fills after (cap − ctx) / b steps: preempt then
                k_full = (d.cap_tokens - ctx) / b
                if k_full < k:
                    k = max(k_full, 0.0)
            per = d.lin_per[b]
            dt = (d.lin_base[b] + per * ctx) * k + d.per_b[b] * k * k * 0.5
            base = d.t_last
            base = base if base > now_s else now_s
            _heappush(self.heap, (base + dt, next(self.seq), EV_DECODE_NEXT, d, version))

    def _decode_next(self, d: DecodeInst, now_s: float) -> None:
        # the hot path (one per completion): _advance, the completions and _reschedule inlined where the
        # common case needs no more; the arithmetic and its order are theirs, so results are the same
        dt = now_s - d.t_last
        b = d.b
        ctx = d.ctx
        steps = d.steps
        if dt > 0.0:
            if b:
                per = d.lin_per[b]
                lin = d.lin_base[b] + per * ctx
                a = d.per_b[b] * 0.5
                if a * dt < 1e-9 * lin * lin:
                    k = dt / lin
                else:
                    k = (_sqrt(lin * lin + 4.0 * a * dt) - lin) / (2.0 * a)
                steps += k
                bk = b * k
                ctx += bk
                d.acc_tokens += bk
                d.acc_kernel_s += dt - k * d.host[b]
                d.acc_flops += k * (d.flops_b[b] + int(ctx - bk * 0.5) * d.flops_per_context_token)
            d.t_last = now_s
        members = d.members
        target = members[0][0]
        grow = self.grow
        if (not grow or steps >= target - 1e-6) and target > steps:
            steps = target  # float round-off of the closed-form inversion
        d.steps = steps
        limit = steps + 1e-6
        resv = d.resv
        if members and members[0][0] <= limit:
            # the members that have reached their last step complete: _complete and
            # ServiceStats.complete inlined, the run's tallies summed once (a step finishes about one)
            sv = self.services[d.svc]
            done = sv.done
            st = sv.stats
            ttft_slo = st.ttft_slo_s
            tbt_slo = st.tbt_slo_s
            n = met = 0
            while members and members[0][0] <= limit:
                req = _heappop(members)[2]
                b -= 1
                inp = req.inp
                out = req.out
                inp_out = inp + out
                ctx -= inp_out - 1
                resv -= inp_out
                n += 1
                if req.local >= 0:
                    done[req.local] = 1
                arrival = req.arrival
                t_first = req.t_admit
                t_pe = req.t_pe
                ttft = t_first - arrival
                tbt = (now_s - t_first) / (out - 1)
                tbt_sw = (now_s - t_pe) / out
                st.w_ttft.append(ttft)
                st.w_tbt.append(tbt)
                if ttft <= ttft_slo and tbt <= tbt_slo:
                    met += 1
                st.w_inputs += inp
                st.w_outputs += out
                st.w_e2e.append(now_s - arrival)
                st.w_queue.append(req.t_ps - arrival)
                st.w_xfer.append(req.t_xe - t_pe)
                st.w_ttft_splitwise.append(t_pe - arrival)
                st.w_tbt_splitwise.append(tbt_sw)
                if self.records_on:
                    self._record(req, now_s, f"{ttft:.6f}", f"{tbt:.6f}", f"{tbt_sw:.6f}", "ok")
            self.in_flight -= n
            st.completed += n
            st.met_slo += met
            st.w_met += met
        d.b = b
        d.resv = resv
        d.load_frac = (resv + 1) / (d.cap_tokens + 1)
        if ctx < 0.0 or not members:
            ctx = max(0.0, ctx) if members else 0.0
        d.ctx = ctx
        waiting = d.waiting
        if grow or waiting or d.owner is not None or d.lifecycle is _DRAINING or d.in_mixed_pool:
            if grow:
                self._preempt(d, now_s)
            if waiting:
                while waiting and self._fits(d, waiting[0]):
                    self._admit(d, waiting.popleft(), now_s)
            if d.owner is not None or d.lifecycle is _DRAINING or d.in_mixed_pool:
                self._maybe_done(d, now_s)
            self._reschedule(d, now_s)
            return
        # _reschedule, inlined: no preemption or admission moved the batch off these locals
        d.version = version = d.version + 1
        if b:
            k = members[0][0] - steps
            k = 0.0 if k < 0.0 else k
            per = d.lin_per[b]
            dt = (d.lin_base[b] + per * ctx) * k + d.per_b[b] * k * k * 0.5
            base = d.t_last
            base = base if base > now_s else now_s
            _heappush(self.heap, (base + dt, next(self.seq), EV_DECODE_NEXT, d, version))
