"""SplitwiseSim's mixed pool in the request engine: a prompt lent to a decode instance, a decode lent
to a prefill instance's decode side (see :mod:`heteroscale.sim.request_engine`)."""

from __future__ import annotations

from heteroscale.domain.state import Lifecycle
from heteroscale.sim.request_decode import EV_LENT_DONE, DecodeSide
from heteroscale.sim.request_model import DecodeInst, Req, ServiceState


class MixedPool(DecodeSide):
    def _lend_prompt(self, sv: ServiceState, req: Req, now_s: float) -> None:
        """Run ``req``'s prompt on the decode instance with the fewest lent prompt tokens."""
        d = min(sv.d_routable, key=lambda x: (x.lent_tokens, x.resv / (x.cap_tokens + 1)))
        req.pinst = d
        req.lent = True
        req.t_pq = now_s
        d.lent_queue.append(req)
        d.lent_tokens += req.new
        if not d.lent_busy:
            self._start_lent(d, now_s)

    def _start_lent(self, d: DecodeInst, now_s: float) -> None:
        batch, tokens, attn, prefix = self._take_batch(self.services[d.svc], d.lent_queue, now_s)
        perf = d.perf
        dur = perf.prefill_time_s(tokens, attn, prefix)
        d.acc_kernel_s += perf.prefill_kernel_s(tokens, attn, prefix)
        d.acc_flops += perf.prefill_flops(tokens, attn, prefix)
        d.lent_tokens -= tokens
        d.lent_busy = True
        d.lent_batch = batch
        end = self._stall(d, now_s, dur)
        self._reschedule(d, now_s)
        self._push(end, EV_LENT_DONE, d)

    def _lent_done(self, d: DecodeInst, now_s: float) -> None:
        if d.lifecycle is Lifecycle.GONE:  # killed: its lent prompts failed with it
            return
        batch = d.lent_batch
        d.lent_batch = []
        d.lent_busy = False
        for req in batch:
            req.t_pe = now_s
            self._start_transfer(req, now_s)
        if d.lent_queue:
            self._start_lent(d, now_s)
        elif d.lifecycle is Lifecycle.DRAINING:
            self._maybe_gone(d, now_s)

    def _lend_decode(self, sv: ServiceState, req: Req, now_s: float) -> DecodeInst | None:
        """The decode side of the prefill instance with the most free KV that can take ``req`` now."""
        best: DecodeInst | None = None
        best_free = -1.0
        for p in sv.p_routable:
            sh = p.shadow
            if sh is None:
                cap = self.settings.kv_capacity_for(p.perf.kv_bytes_per_token, p.perf.kv_capacity_tokens)
                sh = DecodeInst(
                    p.id, p.svc, p.shape, p.dg, p.node, p.path, p.perf, p.nic_bytes_per_s, p.launched_at_s,
                    max_batch=sv.max_decode_batch, cap_tokens=cap,
                )  # fmt: skip
                sh.lifecycle = Lifecycle.READY
                sh.owner = p
                sh.t_last = now_s
                p.shadow = sh
            free = sh.cap_tokens - sh.resv
            if self._fits(sh, req) and free > best_free:
                best, best_free = sh, free
        return best
