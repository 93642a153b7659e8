"""Fluid (time-stepped, aggregate) engine for day-long and large runs.

Same performance model, same instances, lifecycle and billing as the request engine; requests are
flows, not objects. Per step and per service:

* prefill: arriving cache-missed tokens join a token backlog served by the ready prefill instances at
  their measured token rate for the load's length mix (Σ new / Σ solo prefill time);
* decode: finished prefills join the decode population N (capped by KV reservation and max batch);
  the step time at the mean per-instance batch B = N / n gives decode tokens/s = N / t_step, and
  departures follow Little's law (mean generated tokens per request);
* latencies are **estimates**: TTFT = (solo prefill + KV transfer) drawn from the length mix, plus a
  backlog wait and an Erlang-C (M/M/c) queueing wait; TBT = the step time. Percentiles are taken
  over the mixture, weighted by completions.

Failures, by cause (as the request engine counts them): scale-in — the in-flight requests of a
removed instance that outlive its grace period (a drained instance finishes its share of the rest at
once); kv-capacity — the share of the length mix whose prompt plus output exceeds every decode
shape's KV capacity, failed as it leaves prefill. Per telemetry window, ``slo_met`` / ``slo_missed``
are the increments of the rounded run totals, so they add up to the run's figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.perf import InstancePerf
from heteroscale.sim.cluster import SimCluster, SimInstance
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.records import FailureCause, ServiceStats
from heteroscale.sim.telemetry import RoleWindow, Telemetry, WindowRow

_WAIT_QUANTILES = tuple(-math.log(1.0 - (k - 0.5) / 8) for k in range(1, 9))


def erlang_c(c: int, arrival_rps: float, service_s: float) -> tuple[float, float]:
    """M/M/c: (probability that a request waits, mean wait of those that wait).

    Returns (0, 0) when there is no server or the queue is unstable: the fluid backlog term then
    carries the wait instead.
    """
    if c <= 0 or arrival_rps <= 0 or service_s <= 0:
        return 0.0, 0.0
    a = arrival_rps * service_s
    rho = a / c
    if rho >= 1.0:
        return 0.0, 0.0
    b = 1.0  # Erlang-B by recursion, then Erlang-C
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    pc = b / (1.0 - rho + rho * b)
    return pc, service_s / (c * (1.0 - rho))


@dataclass(slots=True)
class _Mix:
    """Per-request length statistics of a service's load, for one prefill shape."""

    new: np.ndarray  # cache-missed prompt tokens per request
    solo_s: np.ndarray  # solo prefill wall time per request
    tok_per_s: float  # Σ new / Σ solo time
    kfrac: float  # kernel / wall
    flops_per_token: float
    mean_new: float
    mean_m: float  # mean decode steps per request (output - 1)
    mean_m_decoding: float  # mean decode steps per request that decodes (output > 1): Little's law
    ctx_member: float  # time-averaged context of one decode member
    resv_per_req: float  # KV reservation per request (input + output)
    frac_single: float  # share of requests with one output token (no TBT)
    steps: np.ndarray  # decode steps per request (output − 1)
    frac_over_kv: float = 0.0  # share of requests that no decode shape's KV cache can hold


def arrivals_rng(seed: int) -> np.random.Generator:
    """The generator a fluid run of ``seed`` draws its Poisson arrival counts from."""
    return np.random.default_rng([seed, 10_000])


def arrival_bins(
    loads: list[ServiceLoad], step_s: float, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Arrivals per step of every load, in order: (requests, cache-missed tokens). A rate-curve load
    draws Poisson counts from ``rng`` (one load after the other); a trace load bins its arrivals."""
    bins: list[tuple[np.ndarray, np.ndarray]] = []
    for load in loads:
        if load.rate_curve is not None:
            n = int(math.ceil(load.load_end_s() / step_s))
            lam = np.array([load.rate_at((k + 0.5) * step_s) * step_s for k in range(n)])
            counts = rng.poisson(lam).astype(np.float64)
            new = (load.trace.input_tokens - load.cached_tokens).astype(np.float64)
            mean_new = float(new.mean()) if len(new) else 0.0
            bins.append((counts, counts * mean_new))
            continue
        t = load.trace.arrival_s
        if len(t) == 0:
            bins.append((np.zeros(0), np.zeros(0)))
            continue
        idx = np.floor(t / step_s).astype(np.int64)
        n = int(idx[-1]) + 1
        new = (load.trace.input_tokens - load.cached_tokens).astype(np.float64)
        bins.append((np.bincount(idx, minlength=n).astype(np.float64), np.bincount(idx, weights=new, minlength=n)))
    return bins


class FluidInst(SimInstance):
    __slots__ = ()


class _SvcState:
    __slots__ = (
        "arr_epoch_key",
        "arr_rate_ewma",
        "backlog_tokens",
        "d_queue",
        "dec_n",
        "latency_base",
        "mix",
        "tbt_s",
        "wait_s",
    )

    def __init__(self, mix: _Mix) -> None:
        self.mix = mix
        self.backlog_tokens = 0.0
        self.d_queue = 0.0  # requests waiting for decode admission
        self.dec_n = 0.0  # requests in decode batches
        self.arr_rate_ewma = 0.0
        self.arr_epoch_key: tuple[int, int, float] | None = None
        self.latency_base = np.zeros(0)  # sorted solo prefill + transfer per request of the mix
        self.wait_s = 0.0
        self.tbt_s = 0.0


class FluidEngine:
    latency_estimated = True

    def __init__(
        self,
        cluster: SimCluster,
        loads: list[ServiceLoad],
        perfs: dict[tuple[int, InstanceShape], InstancePerf],
        telemetry: Telemetry,
        window_s: float,
        step_s: float,
        rng: np.random.Generator,
    ) -> None:
        self.cluster = cluster
        self.loads = loads
        self.perfs = perfs
        self.telemetry = telemetry
        self.window_s = window_s
        self.step_s = step_s
        self.rng = rng
        self._bins = arrival_bins(loads, step_s, rng)
        self.stats = [ServiceStats(ld.spec.slo.ttft_s, ld.spec.slo.tbt_s) for ld in loads]
        self.now_s = 0.0
        self.events = 0
        self.insts: list[list[FluidInst]] = [[] for _ in loads]
        self.states = [_SvcState(self._mix(i, ld)) for i, ld in enumerate(loads)]
        self._n_steps_load = max((len(b[0]) for b in self._bins), default=0)
        self.next_window_s = window_s
        self.last_window_s = 0.0
        # latency mixture: per service, lists of (base array id, wait, tbt, weight)
        self._epochs: list[list[np.ndarray]] = [[] for _ in loads]
        self._lat_rows: list[list[tuple[int, float, float, float]]] = [[] for _ in loads]
        self._w_tokens: list[dict[Role, float]] = [{r: 0.0 for r in Role} for _ in loads]
        self._w_lat: list[list[tuple[float, float, float]]] = [[] for _ in loads]
        self._w_arrivals = [0.0 for _ in loads]
        self._w_completions = [0.0 for _ in loads]
        self._arrivals_f = [0.0 for _ in loads]
        self._completed_f = [0.0 for _ in loads]
        self._met_f = [0.0 for _ in loads]
        self._failed_f: list[dict[FailureCause, float]] = [{c: 0.0 for c in FailureCause} for _ in loads]
        # run totals (rounded) at the last telemetry window: slo_met, slo_missed
        self._w_slo_prev: list[tuple[int, int]] = [(0, 0) for _ in loads]
        # ready, in-discovery instances per service and role, rebuilt only when membership changes
        self._ready: list[dict[Role, list[FluidInst]]] = [{r: [] for r in Role} for _ in loads]
        self._dirty = [True for _ in loads]
        self._next_ready_s = math.inf
        # work done since the last flush, per service and role: [wall, kernel, tokens, flops]
        self._pending: list[dict[Role, list[float]]] = [{r: [0.0, 0.0, 0.0, 0.0] for r in Role} for _ in loads]

    # ------------------------------------------------------------------ setup
    def _mix(self, svc: int, load: ServiceLoad) -> _Mix:
        tr = load.trace
        inp = tr.input_tokens.astype(np.float64)
        out = tr.output_tokens.astype(np.float64)
        cached = load.cached_tokens.astype(np.float64)
        new = inp - cached
        shape = load.spec.preferred_shape(Role.PREFILL)
        perf = self.perfs[(svc, shape)]
        pairs = list(zip(new, cached, strict=True))
        solo = np.array([perf.prefill_time_s(int(n), float(n * (c + n)), float(n * c)) for n, c in pairs])
        kern = np.array([perf.prefill_kernel_s(int(n), float(n * (c + n)), float(n * c)) for n, c in pairs])
        flops = sum(perf.prefill_flops(int(n), float(n * (c + n)), float(n * c)) for n, c in pairs[:2000])
        m = np.maximum(out - 1.0, 0.0)
        sum_m = float(m.sum())
        kv_caps = [self.perfs[(svc, sh)].kv_capacity_tokens for sh in load.spec.shapes(Role.DECODE)]
        n_over = int(((inp + out) > max(kv_caps)).sum()) if kv_caps and len(inp) else 0
        ctx_member = float((inp * m + m * m / 2.0).sum() / sum_m) if sum_m > 0 else float(inp.mean() if len(inp) else 0)
        n_req = max(1, len(new))
        return _Mix(
            new=new,
            solo_s=solo,
            tok_per_s=float(new.sum() / solo.sum()) if solo.sum() > 0 else 1.0,
            kfrac=float(kern.sum() / solo.sum()) if solo.sum() > 0 else 0.0,
            flops_per_token=flops / max(1.0, float(new[:2000].sum())),
            mean_new=float(new.mean()) if len(new) else 1.0,
            mean_m=sum_m / n_req,
            mean_m_decoding=sum_m / max(1, int((m > 0).sum())),
            ctx_member=ctx_member,
            resv_per_req=float((inp + out).mean()) if len(inp) else 1.0,
            frac_single=float((m == 0).sum() / n_req),
            steps=m,
            frac_over_kv=n_over / n_req,
        )

    # ------------------------------------------------------------------ lifecycle
    def launch(self, svc: int, shape: InstanceShape, dg: str, node: str, now_s: float, warm: bool) -> str:
        cluster = self.cluster
        cluster.reserve(node, shape.gpus)
        sku = cluster.skus[shape.sku]
        inst = FluidInst(
            cluster.next_id(svc, shape.role),
            svc,
            shape,
            dg,
            node,
            cluster.node_path[node],
            self.perfs[(svc, shape)],
            sku.nic_gbit_per_gpu * 1e9 / 8.0 * shape.gpus,
            now_s,
        )
        self._flush(svc)
        cluster.add(inst)
        self.insts[svc].append(inst)
        self._dirty[svc] = True
        if warm:
            inst.lifecycle = Lifecycle.READY
            inst.ready_at_s = now_s
            inst.in_discovery = True
        else:
            inst.ready_at_s = now_s + self.loads[svc].cold_start_s  # becomes READY when time reaches it
            self._next_ready_s = min(self._next_ready_s, inst.ready_at_s)
        return inst.id

    def set_discovery(self, inst_id: str, in_discovery: bool) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle is Lifecycle.READY:
            self._flush(inst.svc)
            inst.in_discovery = in_discovery
            self._dirty[inst.svc] = True

    def remove(self, inst_id: str, mode: ScaleInMode, grace_s: float, now_s: float) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle is Lifecycle.GONE:
            return
        svc = inst.svc
        st = self.states[svc]
        self._flush(svc)
        self._dirty[svc] = True
        if inst.lifecycle is Lifecycle.READY and inst.in_discovery:
            # in-flight requests on the removed instance that outlive the grace period fail (an
            # instance out of discovery carries no share of the pooled work)
            share = 1.0 / max(1, self._count(svc, inst.role))
            if inst.role is Role.DECODE:
                lost = st.dec_n * share * self._outlive_fraction(st, grace_s)
                st.dec_n -= lost
            else:
                # its share of the prefill backlog, less what it prefills within the grace period
                lost_tokens = max(0.0, st.backlog_tokens * share - st.mix.tok_per_s * grace_s)
                st.backlog_tokens -= lost_tokens
                lost = lost_tokens / max(1.0, st.mix.mean_new)
            self._failed_f[svc][FailureCause.SCALE_IN] += lost
        # a drained instance in the fluid model finishes its share of in-flight work at once
        self.insts[svc].remove(inst)  # type: ignore[arg-type]
        self.cluster.mark_gone(inst, now_s)

    @staticmethod
    def _outlive_fraction(st: _SvcState, grace_s: float) -> float:
        """Share of in-flight decode requests whose remaining time exceeds ``grace_s``.

        A request of m steps is in flight m·τ seconds with a uniform residual, so, time-weighted,
        P(residual > g) = Σ m·max(0, 1 − g/(m·τ)) / Σ m.
        """
        tau = st.tbt_s
        if grace_s <= 0.0 or tau <= 0.0:
            return 1.0
        m = st.mix.steps
        total = float(m.sum())
        if total <= 0:
            return 0.0
        return float((m * np.clip(1.0 - grace_s / (np.maximum(m, 1e-9) * tau), 0.0, 1.0)).sum()) / total

    def _count(self, svc: int, role: Role) -> int:
        return len(self._ready_lists(svc)[role])

    def _ready_lists(self, svc: int) -> dict[Role, list[FluidInst]]:
        if self._dirty[svc]:
            lists: dict[Role, list[FluidInst]] = {r: [] for r in Role}
            for inst in self.insts[svc]:
                if inst.lifecycle is Lifecycle.READY and inst.in_discovery:
                    lists[inst.role].append(inst)
            self._ready[svc] = lists
            self._dirty[svc] = False
        return self._ready[svc]

    def _flush(self, svc: int) -> None:
        """Hand the work accumulated since the last flush to the ready instances, equally."""
        lists = self._ready[svc] if not self._dirty[svc] else self._ready_lists(svc)
        for role in Role:
            acc = self._pending[svc][role]
            insts = lists[role]
            if insts and (acc[0] or acc[2]):
                n = len(insts)
                wall, kern, tok, fl = acc[0] / n, acc[1] / n, acc[2] / n, acc[3] / n
                for inst in insts:
                    inst.acc_wall_s += wall
                    inst.acc_kernel_s += kern
                    inst.acc_tokens += tok
                    inst.acc_flops += fl
            acc[0] = acc[1] = acc[2] = acc[3] = 0.0

    def _promote_ready(self, t: float) -> None:
        nxt = math.inf
        for svc, insts in enumerate(self.insts):
            for inst in insts:
                if inst.lifecycle is Lifecycle.STARTING and inst.ready_at_s is not None:
                    if inst.ready_at_s <= t + 1e-9:
                        self._flush(svc)
                        inst.lifecycle = Lifecycle.READY
                        inst.in_discovery = True
                        self._dirty[svc] = True
                    else:
                        nxt = min(nxt, inst.ready_at_s)
        self._next_ready_s = nxt

    @property
    def arrivals_done(self) -> bool:
        return self.now_s >= self._n_steps_load * self.step_s

    @property
    def idle(self) -> bool:
        return self.arrivals_done and all(
            s.backlog_tokens < 1.0 and s.dec_n < 0.5 and s.d_queue < 0.5 for s in self.states
        )

    # ------------------------------------------------------------------ stepping
    def run_until(self, t_end_s: float) -> None:
        dt = self.step_s
        while self.now_s + dt <= t_end_s + 1e-9:
            self._step(self.now_s, dt)
            self.now_s += dt
            self.events += 1
            if self.now_s >= self.next_window_s - 1e-9:
                self._sample_window(self.next_window_s)
                self.next_window_s += self.window_s
        self.now_s = max(self.now_s, t_end_s) if t_end_s - self.now_s < 1e-9 else self.now_s

    def _step(self, t: float, dt: float) -> None:
        k = int(round(t / dt))
        if t + 1e-9 >= self._next_ready_s:
            self._promote_ready(t)
        for svc, load in enumerate(self.loads):
            st = self.states[svc]
            mix = st.mix
            counts, tokens = self._bins[svc]
            n_arr = float(counts[k]) if k < len(counts) else 0.0
            a_tok = float(tokens[k]) if k < len(tokens) else 0.0
            self._arrivals_f[svc] += n_arr
            self._w_arrivals[svc] += n_arr
            lists = self._ready_lists(svc)
            pre = lists[Role.PREFILL]
            dec = lists[Role.DECODE]
            pend = self._pending[svc]
            # ---- prefill
            st.backlog_tokens += a_tok
            cap_tok = mix.tok_per_s * len(pre) * dt
            done_tok = min(st.backlog_tokens, cap_tok)
            st.backlog_tokens -= done_tok
            if pre and done_tok > 0:
                acc = pend[Role.PREFILL]
                busy = done_tok / mix.tok_per_s
                acc[0] += busy
                acc[1] += busy * mix.kfrac
                acc[2] += done_tok
                acc[3] += done_tok * mix.flops_per_token
            prefilled = done_tok / mix.mean_new if mix.mean_new > 0 else 0.0
            if mix.frac_over_kv > 0.0:
                over = prefilled * mix.frac_over_kv
                prefilled -= over
                self._failed_f[svc][FailureCause.KV_CAPACITY] += over
            # ---- decode admission under KV reservation and batch limits
            st.d_queue += prefilled
            n_dec = len(dec)
            if n_dec:
                perf = dec[0].perf
                cap_req = min(
                    load.spec.max_decode_batch * n_dec,
                    perf.kv_capacity_tokens * n_dec / max(1.0, mix.resv_per_req),
                )
                admit = min(st.d_queue, max(0.0, cap_req - st.dec_n))
            else:
                admit = 0.0
            st.d_queue -= admit
            single = admit * mix.frac_single
            st.dec_n += admit - single
            completions = single
            tbt = st.tbt_s
            if n_dec and st.dec_n > 1e-9:
                perf = dec[0].perf
                b = st.dec_n / n_dec
                b_int = max(1, round(b))
                base, per = perf.decode_linear(b_int)
                step = base + per * b * mix.ctx_member
                tok = st.dec_n / step * dt  # tokens generated this step (all instances)
                tbt = step
                # one-token requests never enter the decode population: departures divide by the mean
                # of those that decode
                leaving = min(st.dec_n, tok / mix.mean_m_decoding if mix.mean_m_decoding > 0 else st.dec_n)
                st.dec_n -= leaving
                completions += leaving
                busy = 1.0 - math.exp(-b) if b < 4 else 1.0
                acc = pend[Role.DECODE]
                acc[0] += busy * dt * n_dec
                acc[1] += busy * dt * (1.0 - perf.decode_host_s(b_int) / step) * n_dec
                acc[2] += tok
                acc[3] += perf.decode_flops(b_int, int(b * mix.ctx_member)) * (busy * dt / step) * n_dec
            st.tbt_s = tbt
            # ---- latency estimates for requests finishing now
            self._update_latency_base(svc, pre, dec)
            rate = n_arr / dt
            st.arr_rate_ewma += (rate - st.arr_rate_ewma) * min(1.0, dt / 60.0)
            mean_solo = float(mix.solo_s.mean()) if len(mix.solo_s) else 0.0
            pc, cond_wait = erlang_c(len(pre), st.arr_rate_ewma, mean_solo)
            backlog_wait = (
                st.backlog_tokens / (cap_tok / dt) if cap_tok > 0 else (math.inf if st.backlog_tokens > 0 else 0.0)
            )
            adm_wait = st.d_queue / (admit / dt) if admit > 0 else (math.inf if st.d_queue > 0.5 else 0.0)
            # a backlog of less than one step's work is Poisson noise within the step, which the
            # Erlang-C term already accounts for; a longer one is a sustained overload: count it
            if st.backlog_tokens <= cap_tok:
                backlog_wait = 0.0
            else:
                pc = 0.0
            fixed = min(backlog_wait, 1e5) + min(adm_wait, 1e5)
            st.wait_s = fixed + pc * cond_wait
            if completions > 0:
                # the queueing wait as a mixture: no wait with 1 − Pc, else exponential (8 quantile points)
                pieces = [(fixed, 1.0)]
                if pc > 1e-3:
                    pieces = [(fixed, 1.0 - pc)] + [(fixed + cond_wait * q, pc / 8) for q in _WAIT_QUANTILES]
                self._completed_f[svc] += completions
                self._w_completions[svc] += completions
                base_arr = self._epochs[svc][-1]
                n_base = max(1, len(base_arr))
                slo_ttft = load.spec.slo.ttft_s
                ok_ttft = sum(
                    w * float(np.searchsorted(base_arr, slo_ttft - wait, side="right")) / n_base for wait, w in pieces
                )
                ok_tbt = 1.0 if tbt <= load.spec.slo.tbt_s else mix.frac_single
                self._met_f[svc] += completions * ok_ttft * ok_tbt
                epoch = len(self._epochs[svc]) - 1
                for wait, w in pieces:
                    self._lat_rows[svc].append((epoch, wait, tbt, completions * w))
                    self._w_lat[svc].append((wait, tbt, completions * w))

    def _update_latency_base(self, svc: int, pre: list[FluidInst], dec: list[FluidInst]) -> None:
        st = self.states[svc]
        key = (len(pre), len(dec), pre[0].perf.kv_bytes_per_token if pre else 0.0)
        if key == st.arr_epoch_key and self._epochs[svc]:
            return
        st.arr_epoch_key = key
        mix = st.mix
        if pre and dec:
            # requests go to a decode instance of the prefill instance's DG when it has one
            bws = []
            for p in pre[:32]:
                same = [d for d in dec if d.dg == p.dg] or dec
                bws += [self.cluster.kv_bandwidth(p, d) for d in same[:16]]
            bw = sum(bws) / len(bws)
            xfer = mix.new * pre[0].perf.kv_bytes_per_token / bw + self.cluster.topology.kv_bandwidth.setup_s
        else:
            xfer = np.zeros_like(mix.new)
        base = np.sort(mix.solo_s + xfer)
        self._epochs[svc].append(base)

    # ------------------------------------------------------------------ telemetry and stats
    def _sample_window(self, t_s: float) -> None:
        span = t_s - self.last_window_s
        self.last_window_s = t_s
        for svc, load in enumerate(self.loads):
            self._flush(svc)
            roles = {}
            for role in Role:
                roles[role] = self._role_window(svc, role, span)
            lat = self._w_lat[svc]
            base = self._epochs[svc][-1] if self._epochs[svc] else np.zeros(0)
            ttft = _mixture_quantiles(base, [(w, c) for w, _, c in lat], (0.5, 0.9, 0.99))
            tbt = _weighted_quantiles([(b, c) for _, b, c in lat], (0.5, 0.9, 0.99))
            comp = self._w_completions[svc]
            mix = self.states[svc].mix
            met_total = int(round(self._met_f[svc]))
            missed_total = int(round(self._completed_f[svc] - self._met_f[svc] + sum(self._failed_f[svc].values())))
            met_prev, missed_prev = self._w_slo_prev[svc]
            self._w_slo_prev[svc] = (met_total, missed_total)
            self.telemetry.add(
                WindowRow(
                    t_s=t_s,
                    window_s=span,
                    service=load.spec.name,
                    prefill=roles[Role.PREFILL],
                    decode=roles[Role.DECODE],
                    arrivals_per_s=self._w_arrivals[svc] / span,
                    completions=int(round(comp)),
                    ttft_p50_s=ttft[0],
                    ttft_p90_s=ttft[1],
                    ttft_p99_s=ttft[2],
                    tbt_p50_s=tbt[0],
                    tbt_p90_s=tbt[1],
                    tbt_p99_s=tbt[2],
                    mean_input_tokens=float(load.trace.input_tokens.mean()) if comp > 0 else None,
                    mean_output_tokens=mix.mean_m + 1.0 if comp > 0 else None,
                    estimated_latency=True,
                    slo_met=max(0, met_total - met_prev),
                    slo_missed=max(0, missed_total - missed_prev),
                )
            )
            self._w_lat[svc] = []
            self._w_arrivals[svc] = 0.0
            self._w_completions[svc] = 0.0
        self._sync_stats()

    def _role_window(self, svc: int, role: Role, span: float) -> RoleWindow:
        ready = starting = draining = held = 0
        kernel = occ_kernel = tokens = flops = peak = 0.0
        for inst in self.insts[svc]:
            if inst.role is not role:
                continue
            if inst.lifecycle is Lifecycle.STARTING:
                starting += 1
                continue
            if inst.in_discovery:
                ready += 1
            else:
                held += 1
            occ = inst.perf.prefill_sm_occupancy if role is Role.PREFILL else inst.perf.decode_sm_occupancy
            dk = inst.acc_kernel_s - inst.win_kernel_s
            inst.win_kernel_s = inst.acc_kernel_s
            dtok = inst.acc_tokens - inst.win_tokens
            inst.win_tokens = inst.acc_tokens
            dfl = inst.acc_flops - inst.win_flops
            inst.win_flops = inst.acc_flops
            kernel += dk
            occ_kernel += dk * occ
            tokens += dtok
            flops += dfl
            peak += inst.perf.peak_flops * span
        st = self.states[svc]
        n_dec = max(1, ready)
        queue = (st.backlog_tokens / max(1.0, st.mix.mean_new)) if role is Role.PREFILL else st.d_queue
        running = 0.0 if role is Role.PREFILL else st.dec_n
        active = ready + draining + held
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
            kv_usage=(st.dec_n / n_dec * st.mix.ctx_member / max(1, self._kv_cap(svc)))
            if role is Role.DECODE
            else None,
            instances_held=held,
            queue_len_mean=queue,  # the fluid state moves smoothly: its window-end value stands for the mean
            running_mean=running,
        )

    def _kv_cap(self, svc: int) -> int:
        for inst in self.insts[svc]:
            if inst.role is Role.DECODE:
                return inst.perf.kv_capacity_tokens
        return 0

    def completed_mask(self, svc: int) -> None:
        """Requests are flows here: which ones completed is not known (see :mod:`heteroscale.sim.bound`)."""
        return None

    def finalize(self, end_s: float) -> None:
        for svc in range(len(self.loads)):
            self._flush(svc)
        self._sync_stats()

    def _sync_stats(self) -> None:
        for svc, s in enumerate(self.stats):
            s.arrivals = int(round(self._arrivals_f[svc]))
            s.completed = min(s.arrivals, int(round(self._completed_f[svc])))
            failed = self._failed_f[svc]
            s.failed = min(s.arrivals - s.completed, int(round(sum(failed.values()))))
            s.failed_scale_in = min(s.failed, int(round(failed[FailureCause.SCALE_IN])))
            s.failed_kv_capacity = s.failed - s.failed_scale_in
            s.met_slo = min(s.completed, int(round(self._met_f[svc])))

    def latency_quantiles(
        self, svc: int | None, qs: tuple[float, ...]
    ) -> tuple[list[float | None], list[float | None]]:
        """Run-wide estimated TTFT and TBT quantiles (completion-weighted); ``None`` = all services."""
        services = range(len(self.loads)) if svc is None else [svc]
        parts: list[tuple[np.ndarray, list[tuple[float, float]]]] = []
        tbt_pairs: list[tuple[float, float]] = []
        for s_i in services:
            groups: dict[int, list[tuple[float, float]]] = {}
            for e, w, b, c in self._lat_rows[s_i]:
                groups.setdefault(e, []).append((w, c))
                tbt_pairs.append((b, c))
            parts.extend((self._epochs[s_i][e], g) for e, g in groups.items())
        return _mixture_quantiles_multi(parts, qs), _weighted_quantiles(tbt_pairs, qs)


def _weighted_quantiles(pairs: list[tuple[float, float]], qs: tuple[float, ...]) -> list[float | None]:
    pairs = [(v, w) for v, w in pairs if w > 0 and math.isfinite(v)]
    if not pairs:
        return [None] * len(qs)
    vals = np.array([v for v, _ in pairs])
    wts = np.array([w for _, w in pairs])
    order = np.argsort(vals, kind="stable")
    vals, wts = vals[order], wts[order]
    cum = np.cumsum(wts) / wts.sum()
    return [float(vals[min(len(vals) - 1, int(np.searchsorted(cum, q)))]) for q in qs]


def _mixture_quantiles(
    base: np.ndarray, shifts: list[tuple[float, float]], qs: tuple[float, ...]
) -> list[float | None]:
    if len(base) == 0:
        return [None] * len(qs)
    return _mixture_quantiles_multi([(base, shifts)], qs)


def _mixture_quantiles_multi(
    parts: list[tuple[np.ndarray, list[tuple[float, float]]]], qs: tuple[float, ...]
) -> list[float | None]:
    """Quantiles of a mixture of shifted copies of sorted base samples (weights per shift)."""
    parts = [(b, [(w, c) for w, c in s if c > 0]) for b, s in parts if len(b)]
    parts = [(b, s) for b, s in parts if s]
    if not parts:
        return [None] * len(qs)
    arrays = [(b, np.array([w for w, _ in s]), np.array([c for _, c in s])) for b, s in parts]
    total = sum(float(c.sum()) for _, _, c in arrays)
    lo = min(float(b[0] + w.min()) for b, w, _ in arrays)
    hi = max(float(b[-1] + w.max()) for b, w, _ in arrays)

    def cdf(x: float) -> float:
        acc = 0.0
        for b, w, c in arrays:
            acc += float((np.searchsorted(b, x - w, side="right") * c).sum()) / len(b)
        return acc / total

    out: list[float | None] = []
    for q in qs:
        a, z = lo, hi
        for _ in range(50):
            mid = 0.5 * (a + z)
            if cdf(mid) < q:
                a = mid
            else:
                z = mid
            if z - a < 1e-6 * max(1.0, abs(z)):
                break
        out.append(z)
    return out
