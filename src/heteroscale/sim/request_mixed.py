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
lent decode side of a prefill instance is not billed or counted in the TPS figures. The books assume
a static cluster, as SplitwiseSim's: an instance that leaves routing leaves the pools and its books.
"""

from __future__ import annotations

from collections.abc import Callable

from heteroscale.domain.state import Lifecycle
from heteroscale.sim.request_decode import EV_LENT_DONE, DecodeSide
from heteroscale.sim.request_model import Books, DecodeInst, Inst, MixedPools, PrefillInst, Req, ServiceState

_Pool = list[Inst] | list[PrefillInst] | list[DecodeInst]


def _in_flight(reqs: list[Req]) -> list[Req]:
    """Drop the requests whose KV has landed (t_xe is set then; NaN before, and NaN != NaN)."""
    for r in reqs:
        if r.t_xe == r.t_xe:
            reqs[:] = [r for r in reqs if r.t_xe != r.t_xe]
            break
    return reqs


class MixedPool(DecodeSide):
    """Placement at arrival under the rules above, and the run of a prompt lent to a decode instance."""

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
                ps.books.pop(x, None)
                if isinstance(x, PrefillInst) and x.shadow is not None:
                    ps.books.pop(x.shadow, None)
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

    @staticmethod
    def _book(ps: MixedPools, x: Inst) -> Books:
        bk = ps.books.get(x)
        if bk is None:
            bk = ps.books[x] = Books()
        return bk

    @staticmethod
    def _pending(ps: MixedPools, x: Inst) -> int:
        """SplitwiseSim's pending tokens of ``x``: prompt tokens placed and not prefilled, plus one per
        decode placed and not finished."""
        books = ps.books
        bk = books.get(x)
        n = 0 if bk is None else bk.prompt_tokens
        d = x.shadow if isinstance(x, PrefillInst) else x
        if d is not None:
            n += d.b + len(d.waiting)
            bk = books.get(d)
            if bk is not None:
                n += bk.decodes + (len(_in_flight(bk.inbound)) if bk.inbound else 0)
        return n

    @staticmethod
    def _reserved(ps: MixedPools, x: Inst) -> int:
        """SplitwiseSim's booked KV tokens of ``x``: (prompt + 1) a prompt placed there until its KV has
        landed, (prompt + output) a decode placed there until it finishes."""
        books = ps.books
        bk = books.get(x)
        kv = 0
        if bk is not None:
            kv = bk.prompt_kv
            if bk.outbound:
                for r in _in_flight(bk.outbound):
                    kv += r.inp + 1
        d = x.shadow if isinstance(x, PrefillInst) else x
        if d is not None:
            kv += d.resv
            if d.waiting:
                kv += sum(r.inp + r.out for r in d.waiting)
            bk = books.get(d)
            if bk is not None:
                kv += bk.decode_kv
                if bk.inbound:
                    for r in _in_flight(bk.inbound):
                        kv += r.inp + r.out
        return kv

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
                c, pending = self._least(ps, pool, self._pending)
                if not (self._has_waiting(sv, c) and pending + req.new > limit):
                    ptgt = c
                    break
        dtgt: Inst | None = None
        need = req.inp + req.out
        dpools: tuple[_Pool, ...] = (ps.token, ps.mixed)
        for pool in dpools:
            if pool:
                c, reserved = self._least(ps, pool, self._reserved)
                if reserved + need < self._kv_cap(c):
                    dtgt = c
                    break
        if ptgt is None and ps.token:
            ptgt = self._least(ps, ps.token, self._pending)[0]
            self._to_mixed(ps, ptgt)
        if dtgt is None and ps.prompt:
            dtgt = self._least(ps, ps.prompt, self._reserved)[0]
            self._to_mixed(ps, dtgt)
        if ptgt is None or dtgt is None:
            every: list[Inst] = [*ps.prompt, *ps.mixed, *ps.token]
            if not every:  # nothing routable yet
                sv.pending_prefill.append(req)
                return
            ptgt = dtgt = self._least(ps, every, self._pending)[0]
        d = self._shadow(dtgt, now_s) if isinstance(dtgt, PrefillInst) else dtgt
        req.dinst = d
        bk = self._book(ps, ptgt)
        bk.prompt_tokens += req.new
        bk.prompt_kv += req.inp + 1
        bk = self._book(ps, d)
        bk.decodes += 1
        bk.decode_kv += req.inp + req.out
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

    @staticmethod
    def _least(ps: MixedPools, pool: _Pool, key: Callable[[MixedPools, Inst], int]) -> tuple[Inst, int]:
        """The first instance of ``pool`` with the least ``key`` (pending or reserved), and that value."""
        best = pool[0]
        best_v = key(ps, best)
        for x in pool[1:]:
            if best_v == 0:  # nothing is below an empty instance: the first empty one wins
                break
            v = key(ps, x)
            if v < best_v:
                best, best_v = x, v
        return best, best_v

    def _mixed_decode(self, req: Req) -> DecodeInst | None:
        """At the end of ``req``'s prompt: its books move to the KV in flight, and the decode side
        placed at arrival, when it can still take ``req`` (else None: the engine picks)."""
        sv = self.services[req.svc]
        ps = sv.pools
        d = req.dinst
        if ps is None or d is None:
            return None
        host = req.pinst
        bk = ps.books.get(host) if host is not None else None
        if bk is not None:
            bk.prompt_tokens -= req.new
            bk.prompt_kv -= req.inp + 1
            bk.outbound.append(req)
        ok = req.inp + req.out <= d.cap_tokens
        if ok:
            ok = d.owner in sv.p_routable if d.owner is not None else d in sv.d_routable
        bk = ps.books.get(d)
        if bk is not None:
            bk.decodes -= 1
            bk.decode_kv -= req.inp + req.out
            if ok:
                bk.inbound.append(req)
        return d if ok else None

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
