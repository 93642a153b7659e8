"""SplitwiseSim's mixed pool in the request engine (``mixed_pool: true``; see
:mod:`heteroscale.sim.request_engine`), as its ``MixedPoolScheduler`` (scheduler.py, commit 8f99e7d)
decides, modelled on our prefill and decode instances.

Rules (SplitwiseSim's, per service; ties go to the first instance in a pool's list order):

- Pools: a *prompt* pool (prefill instances), a *token* pool (decode instances) and a *mixed* pool,
  initially empty. Both phases of a request are placed when it **arrives**.
- Books per instance, SplitwiseSim's ``sched_pending_tokens`` and ``sched_memory``: *pending* = the
  prompt tokens placed on it whose prefill has not ended, plus one per decode placed on it and not
  finished; *reserved* = KV tokens booked at arrival: a prompt's (prompt + 1) on its prompt's instance
  until its KV has landed, a decode's (prompt + output) on its decode's instance until it finishes.
- Prompt: the prompt-pool instance with the least pending, unless it is *long* (it has work waiting
  and pending + this prompt > ``mixed_pool_prompt_tokens``); then the mixed pool's least pending,
  unless long too. Decode: the token-pool instance with the least reserved, unless *full* (reserved +
  prompt + output ≥ its KV capacity); then the mixed pool's least reserved, unless full too.
- Lending: with no prompt instance, the token-pool instance with the least pending moves into the
  mixed pool and runs the prompt (a prompt lent to a decode instance); with no decode instance, the
  prompt-pool instance with the least reserved moves into the mixed pool and runs the decode (a
  decode lent to a prefill instance). With either still missing, both phases go to the instance with
  the least pending of all. One instance with both phases needs no KV transfer.
- An instance stays in the mixed pool, taking overflow prompts and decodes of either kind, until it
  is completely idle (nothing running, nothing waiting on it); then it goes back to its own pool, at
  the end of its list.

On our instances a lent prompt runs alone on the decode instance and stalls its decode batch, and a
lent decode runs on the prefill instance's decode side, stalled by each prefill batch (the prefill is
not slowed by it, a simplification). "Waiting" is a queued prompt or decode, or decodes stalled by a
prompt that leaves them no room in the iteration's token budget (SplitwiseSim preempts them). The
lent decode side of a prefill instance is not billed or counted in the TPS figures.
"""

from __future__ import annotations

import math

from heteroscale.domain.state import Lifecycle
from heteroscale.sim.request_decode import EV_LENT_DONE, DecodeSide
from heteroscale.sim.request_model import DecodeInst, Inst, MixedPools, PrefillInst, Req, ServiceState

_Pool = list[Inst] | list[PrefillInst] | list[DecodeInst]


def _in_flight(reqs: list[Req]) -> list[Req]:
    """Drop the requests whose KV has landed (t_xe is set then; NaN before)."""
    if any(not math.isnan(r.t_xe) for r in reqs):
        reqs[:] = [r for r in reqs if math.isnan(r.t_xe)]
    return reqs


class MixedPool(DecodeSide):
    # -- hooks the engine defines
    def _start_prefill(self, p: PrefillInst, now_s: float) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ books
    def _pools(self, sv: ServiceState) -> MixedPools:
        """The service's pools, brought in line with its routable instances (new ones join their own
        pool; one no longer routable leaves every pool and its books)."""
        ps = sv.pools
        if ps is None:
            ps = sv.pools = MixedPools()
        routable: set[Inst] = {*sv.p_routable, *sv.d_routable}
        if routable != ps.known:
            for x in ps.known - routable:
                for pool in (ps.prompt, ps.token, ps.mixed):
                    if x in pool:
                        pool.remove(x)  # type: ignore[arg-type]
                x.in_mixed_pool = False
                ps.prompts.pop(x, None)
                if isinstance(x, PrefillInst) and x.shadow is not None:
                    ps.decodes.pop(x.shadow, None)
                elif isinstance(x, DecodeInst):
                    ps.decodes.pop(x, None)
            ps.prompt.extend(p for p in sv.p_routable if p not in ps.known)
            ps.token.extend(d for d in sv.d_routable if d not in ps.known)
            ps.known = routable
        return ps

    def _shadow(self, p: PrefillInst, now_s: float) -> DecodeInst:
        """The decode side of prefill instance ``p`` (made on first use)."""
        sh = p.shadow
        if sh is None:
            sv = self.services[p.svc]
            cap = self.settings.kv_capacity_for(p.perf.kv_bytes_per_token, p.perf.kv_capacity_tokens)
            sh = DecodeInst(
                p.id, p.svc, p.shape, p.dg, p.node, p.path, p.perf, p.nic_bytes_per_s, p.launched_at_s,
                max_batch=sv.max_decode_batch, cap_tokens=cap,
            )  # fmt: skip
            sh.lifecycle = Lifecycle.READY
            sh.owner = p
            sh.t_last = now_s
            p.shadow = sh
        return sh

    def _decode_books(self, ps: MixedPools, d: DecodeInst | None) -> tuple[int, int]:
        """(decodes placed on decode side ``d`` and not finished, KV tokens reserved for them)."""
        if d is None:
            return 0, 0
        n = d.b + len(d.waiting)
        kv = d.resv + sum(r.inp + r.out for r in d.waiting)
        pre = ps.decodes.get(d)
        if pre:
            for r in _in_flight(pre):
                kv += r.inp + r.out
            n += len(pre)
        return n, kv

    def _books(self, ps: MixedPools, x: Inst) -> tuple[int, int]:
        """SplitwiseSim's (pending tokens, reserved KV tokens) of instance ``x``."""
        pending = 0
        kv = 0
        mine = ps.prompts.get(x)
        if mine:
            for r in _in_flight(mine):
                kv += r.inp + 1
                if math.isnan(r.t_pe):  # its prefill has not ended
                    pending += r.new
        n, dkv = self._decode_books(ps, x.shadow if isinstance(x, PrefillInst) else x)
        return pending + n, kv + dkv

    def _kv_cap(self, x: Inst) -> int:
        if isinstance(x, DecodeInst):
            return x.cap_tokens
        return self.settings.kv_capacity_for(x.perf.kv_bytes_per_token, x.perf.kv_capacity_tokens)

    def _has_waiting(self, sv: ServiceState, x: Inst) -> bool:
        """Work waiting on ``x``: a queued prompt or decode, or decodes a running prompt leaves no room
        for in the iteration's token budget."""
        if isinstance(x, PrefillInst):
            sh = x.shadow
            if x.queue:
                return True
            if sh is None:
                return False
            return bool(sh.waiting) or (x.busy and sh.b > 0 and x.batch_tokens + sh.b > sv.prefill_budget)
        if x.lent_queue or x.waiting:
            return True
        return x.lent_busy and x.b > 0 and sum(r.new for r in x.lent_batch) + x.b > sv.prefill_budget

    def _idle(self, x: Inst) -> bool:
        if isinstance(x, PrefillInst):
            sh = x.shadow
            return not x.busy and not x.queue and (sh is None or (not sh.b and not sh.waiting))
        return not x.b and not x.waiting and not x.lent_busy and not x.lent_queue

    def _release_if_idle(self, x: Inst) -> None:
        """A mixed-pool instance that is completely idle goes back to the end of its own pool."""
        if not self._idle(x):
            return
        ps = self.services[x.svc].pools
        x.in_mixed_pool = False
        if ps is None or x not in ps.mixed:
            return
        ps.mixed.remove(x)
        if isinstance(x, PrefillInst):
            ps.prompt.append(x)
        else:
            ps.token.append(x)

    def _maybe_done(self, d: DecodeInst, now_s: float) -> None:
        super()._maybe_done(d, now_s)
        host = d.owner or d
        if host.in_mixed_pool:
            self._release_if_idle(host)

    @staticmethod
    def _to_mixed(ps: MixedPools, x: Inst) -> None:
        if isinstance(x, PrefillInst):
            ps.prompt.remove(x)
        else:
            ps.token.remove(x)
        ps.mixed.append(x)
        x.in_mixed_pool = True

    # ------------------------------------------------------------------ placement at arrival
    def _mixed_route(self, sv: ServiceState, req: Req, now_s: float) -> None:
        """Place both phases of an arriving request (the rules above)."""
        ps = self._pools(sv)
        limit = self.settings.mixed_pool_prompt_tokens
        ptgt: Inst | None = None
        ppools: tuple[_Pool, ...] = (ps.prompt, ps.mixed)
        for pool in ppools:
            if pool:
                c, pending = self._least(ps, pool, 0)
                if not (self._has_waiting(sv, c) and pending + req.new > limit):
                    ptgt = c
                    break
        dtgt: Inst | None = None
        need = req.inp + req.out
        dpools: tuple[_Pool, ...] = (ps.token, ps.mixed)
        for pool in dpools:
            if pool:
                c, reserved = self._least(ps, pool, 1)
                if reserved + need < self._kv_cap(c):
                    dtgt = c
                    break
        if ptgt is None and ps.token:
            ptgt = self._least(ps, ps.token, 0)[0]
            self._to_mixed(ps, ptgt)
        if dtgt is None and ps.prompt:
            dtgt = self._least(ps, ps.prompt, 1)[0]
            self._to_mixed(ps, dtgt)
        if ptgt is None or dtgt is None:
            every: list[Inst] = [*ps.prompt, *ps.mixed, *ps.token]
            if not every:  # nothing routable yet
                sv.pending_prefill.append(req)
                return
            ptgt = dtgt = self._least(ps, every, 0)[0]
        d = self._shadow(dtgt, now_s) if isinstance(dtgt, PrefillInst) else dtgt
        req.dinst = d
        ps.decodes.setdefault(d, []).append(req)
        ps.prompts.setdefault(ptgt, []).append(req)
        req.lent = isinstance(ptgt, DecodeInst) or d.owner is not None
        ps.prompts_lent += isinstance(ptgt, DecodeInst)
        ps.decodes_lent += d.owner is not None
        ps.colocated += ptgt is dtgt
        req.t_pq = now_s
        if isinstance(ptgt, DecodeInst):
            self._lend_prompt(ptgt, req, now_s)
            return
        req.pinst = ptgt
        ptgt.queue.append(req)
        ptgt.queued_tokens += req.new
        if not ptgt.busy:
            self._start_prefill(ptgt, now_s)

    def _least(self, ps: MixedPools, pool: _Pool, which: int) -> tuple[Inst, int]:
        """The first instance of ``pool`` with the least pending (``which`` 0) or reserved (1), and it."""
        best = pool[0]
        best_v = self._books(ps, best)[which]
        for x in pool[1:]:
            v = self._books(ps, x)[which]
            if v < best_v:
                best, best_v = x, v
        return best, best_v

    def _mixed_decode(self, req: Req) -> DecodeInst | None:
        """The decode side placed at arrival, when it can still take ``req`` (else the engine picks)."""
        d = req.dinst
        sv = self.services[req.svc]
        ok = d is not None and req.inp + req.out <= d.cap_tokens
        if ok and d is not None:
            ok = d.owner in sv.p_routable if d.owner is not None else d in sv.d_routable
        if not ok:
            ps = sv.pools
            if ps is not None and d is not None and req in ps.decodes.get(d, ()):
                ps.decodes[d].remove(req)
            return None
        return d

    # ------------------------------------------------------------------ a prompt on a decode instance
    def _lend_prompt(self, d: DecodeInst, req: Req, now_s: float) -> None:
        """Run ``req``'s prompt on decode instance ``d`` (alone, stalling its decode batch)."""
        req.pinst = d
        d.lent_queue.append(req)
        d.lent_tokens += req.new
        if not d.lent_busy:
            self._start_lent(d, now_s)

    def _start_lent(self, d: DecodeInst, now_s: float) -> None:
        batch, tokens, attn, prefix = self._take_batch(self.services[d.svc], d.lent_queue, now_s)
        perf = d.perf
        dur = perf.prefill_time_s(tokens, attn, prefix)
        d.acc_kernel_s += perf.prefill_kernel_s(tokens, attn, prefix)
        d.acc_wall_s += dur
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
        elif d.in_mixed_pool:
            self._release_if_idle(d)
