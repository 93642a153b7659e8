"""Fluid (time-stepped, aggregate) engine for day-long and large runs.

Same performance model, same instances, lifecycle and billing as the request engine; requests are
flows, not objects. Per step and per service:

* prefill: arriving cache-missed tokens join a token backlog served by the ready prefill instances at
  their token rate for the load's length mix: Σ new / Σ solo prefill time while each instance has
  about one prompt waiting, faster as the backlog grows and prompts are prefilled in batches of up
  to the service's token budget (as the request engine does);
* decode: finished prefills join the decode population N (capped by KV reservation and max batch);
  the step time at the mean per-instance batch B = N / n gives decode tokens/s = N / t_step, and
  departures follow Little's law (mean generated tokens per request);
* latencies are **estimates**: TTFT = (solo prefill + KV transfer) drawn from the length mix, plus a
  wait: a backlog of more than a step's work waits for it to drain (FCFS); a shorter one stands for
  queueing within the step, an M/G/c wait (Erlang-C at the batched prefill rate, × (1 + cs²)/2 for
  the spread of prompt lengths, × (1 + ρ) for the batch a waiting prompt joins), each quantile of it
  at most a step (longer waits are the backlog's). TBT = the step time. Percentiles are taken over
  the mixture, weighted by completions. Which of these figures to trust at which load:
  :mod:`heteroscale.sim.fidelity`.

Failures, by cause (as the request engine counts them): scale-in — the in-flight requests of a
removed instance that outlive its grace period (a drained instance finishes its share of the rest at
once); kv-capacity — the share of the length mix whose prompt plus output exceeds every decode
shape's KV capacity, failed as it leaves prefill. Per telemetry window, ``slo_met`` / ``slo_missed``
are the increments of the rounded run totals, so they add up to the run's figures.
"""

from __future__ import annotations

import math

import numpy as np

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.perf import InstancePerf
from heteroscale.sim.cluster import SimCluster
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.fluid_latency import estimate_latency
from heteroscale.sim.fluid_mix import (
    LengthMix,
    erlang_c,
    length_mix,
    mixture_quantiles,
    mixture_quantiles_multi,
    weighted_quantiles,
)
from heteroscale.sim.fluid_state import FluidInst, FluidService, arrival_bins, arrivals_rng
from heteroscale.sim.records import FailureCause, ServiceStats
from heteroscale.sim.telemetry import RoleWindow, Telemetry, WindowRow

__all__ = ["FluidEngine", "arrival_bins", "arrivals_rng", "erlang_c"]


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
        bins = arrival_bins(loads, step_s, rng)
        self.stats = [ServiceStats(ld.spec.slo.ttft_s, ld.spec.slo.tbt_s) for ld in loads]
        self.now_s = 0.0
        self.events = 0
        self.services = [
            FluidService(load, self._mix(i, load), counts, tokens)
            for i, (load, (counts, tokens)) in enumerate(zip(loads, bins, strict=True))
        ]
        self._n_steps_load = max((len(b[0]) for b in bins), default=0)
        self.next_window_s = window_s
        self.last_window_s = 0.0
        self._next_ready_s = math.inf

    # ------------------------------------------------------------------ setup
    def _mix(self, svc: int, load: ServiceLoad) -> LengthMix:
        perf = self.perfs[(svc, load.spec.preferred_shape(Role.PREFILL))]
        kv_caps = [self.perfs[(svc, sh)].kv_capacity_tokens for sh in load.spec.shapes(Role.DECODE)]
        return length_mix(load, perf, kv_caps)

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
        fs = self.services[svc]
        self._flush(fs)
        cluster.add(inst)
        fs.insts.append(inst)
        fs.dirty = True
        if warm:
            inst.lifecycle = Lifecycle.READY
            inst.ready_at_s = now_s
            inst.in_discovery = True
        else:
            inst.ready_at_s = now_s + fs.load.cold_start_s  # becomes READY when time reaches it
            self._next_ready_s = min(self._next_ready_s, inst.ready_at_s)
        return inst.id

    def set_discovery(self, inst_id: str, in_discovery: bool) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle is Lifecycle.READY:
            fs = self.services[inst.svc]
            self._flush(fs)
            inst.in_discovery = in_discovery
            fs.dirty = True

    def remove(self, inst_id: str, mode: ScaleInMode, grace_s: float, now_s: float) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle is Lifecycle.GONE:
            return
        fs = self.services[inst.svc]
        self._flush(fs)
        fs.dirty = True
        if inst.lifecycle is Lifecycle.READY and inst.in_discovery:
            # in-flight requests on the removed instance that outlive the grace period fail (an
            # instance out of discovery carries no share of the pooled work)
            share = 1.0 / max(1, len(self._ready_lists(fs)[inst.role]))
            if inst.role is Role.DECODE:
                lost = fs.dec_n * share * self._outlive_fraction(fs, grace_s)
                fs.dec_n -= lost
            else:
                # its share of the prefill backlog, less what it prefills within the grace period
                lost_tokens = max(0.0, fs.backlog_tokens * share - fs.mix.tok_per_s * grace_s)
                fs.backlog_tokens -= lost_tokens
                lost = lost_tokens / max(1.0, fs.mix.mean_new)
            fs.failed_f[FailureCause.SCALE_IN] += lost
        # a drained instance in the fluid model finishes its share of in-flight work at once
        fs.insts.remove(inst)  # type: ignore[arg-type]
        fs.dirty = True  # counting the share above rebuilt the ready lists with this instance in them
        self.cluster.mark_gone(inst, now_s)

    @staticmethod
    def _outlive_fraction(fs: FluidService, grace_s: float) -> float:
        """Share of in-flight decode requests whose remaining time exceeds ``grace_s``.

        A request of m steps is in flight m·τ seconds with a uniform residual, so, time-weighted,
        P(residual > g) = Σ m·max(0, 1 − g/(m·τ)) / Σ m.
        """
        tau = fs.tbt_s
        if grace_s <= 0.0 or tau <= 0.0:
            return 1.0
        m = fs.mix.steps
        total = float(m.sum())
        if total <= 0:
            return 0.0
        return float((m * np.clip(1.0 - grace_s / (np.maximum(m, 1e-9) * tau), 0.0, 1.0)).sum()) / total

    @staticmethod
    def _ready_lists(fs: FluidService) -> dict[Role, list[FluidInst]]:
        if fs.dirty:
            lists: dict[Role, list[FluidInst]] = {r: [] for r in Role}
            for inst in fs.insts:
                if inst.lifecycle is Lifecycle.READY and inst.in_discovery:
                    lists[inst.role].append(inst)
            fs.ready = lists
            fs.dirty = False
        return fs.ready

    def _flush(self, fs: FluidService) -> None:
        """Hand the work accumulated since the last flush to the ready instances, equally."""
        lists = self._ready_lists(fs)
        for role in Role:
            acc = fs.pending[role]
            insts = lists[role]
            if insts and (acc[0] or acc[2]):
                n = len(insts)
                kern, tok, fl = acc[1] / n, acc[2] / n, acc[3] / n
                for inst in insts:
                    inst.acc_kernel_s += kern
                    inst.acc_tokens += tok
                    inst.acc_flops += fl
            acc[0] = acc[1] = acc[2] = acc[3] = 0.0

    def _promote_ready(self, t: float) -> None:
        nxt = math.inf
        for fs in self.services:
            for inst in fs.insts:
                if inst.lifecycle is Lifecycle.STARTING and inst.ready_at_s is not None:
                    if inst.ready_at_s <= t + 1e-9:
                        self._flush(fs)
                        inst.lifecycle = Lifecycle.READY
                        inst.in_discovery = True
                        fs.dirty = True
                    else:
                        nxt = min(nxt, inst.ready_at_s)
        self._next_ready_s = nxt

    @property
    def arrivals_done(self) -> bool:
        return self.now_s >= self._n_steps_load * self.step_s

    @property
    def idle(self) -> bool:
        return self.arrivals_done and all(
            s.backlog_tokens < 1.0 and s.dec_n < 0.5 and s.d_queue < 0.5 for s in self.services
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
        for fs in self.services:
            n_arr = float(fs.arrivals[k]) if k < len(fs.arrivals) else 0.0
            a_tok = float(fs.arrival_tokens[k]) if k < len(fs.arrival_tokens) else 0.0
            fs.arrivals_f += n_arr
            fs.w_arrivals += n_arr
            lists = self._ready_lists(fs)
            pre, dec = lists[Role.PREFILL], lists[Role.DECODE]
            cap_tok, admit, completions = self._serve(fs, pre, dec, a_tok, dt)
            estimate_latency(fs, self.cluster, pre, dec, n_arr, cap_tok, admit, completions, dt)

    def _serve(
        self, fs: FluidService, pre: list[FluidInst], dec: list[FluidInst], a_tok: float, dt: float
    ) -> tuple[float, float, float]:
        """One step of the flows: prefill the backlog, admit to decode, decode. Returns the step's
        prefill capacity (tokens), its decode admissions and its completions (requests)."""
        mix, spec, pend = fs.mix, fs.load.spec, fs.pending
        # ---- prefill: a queue longer than one prompt per instance is served in batches (faster per token)
        fs.backlog_tokens += a_tok
        tok_per_s, kfrac = mix.batch_rate(mix.batch_tokens(fs.backlog_tokens / len(pre))) if pre else (1.0, 0.0)
        cap_tok = tok_per_s * len(pre) * dt
        done_tok = min(fs.backlog_tokens, cap_tok)
        fs.backlog_tokens -= done_tok
        if pre and done_tok > 0:
            acc = pend[Role.PREFILL]
            busy = done_tok / tok_per_s
            acc[0] += busy
            acc[1] += busy * kfrac
            acc[2] += done_tok
            acc[3] += done_tok * mix.flops_per_token
        prefilled = done_tok / mix.mean_new if mix.mean_new > 0 else 0.0
        if mix.frac_over_kv > 0.0:
            over = prefilled * mix.frac_over_kv
            prefilled -= over
            fs.failed_f[FailureCause.KV_CAPACITY] += over
        # ---- decode admission under KV reservation and batch limits
        fs.d_queue += prefilled
        n_dec = len(dec)
        if n_dec:
            perf = dec[0].perf
            cap_req = min(
                spec.max_decode_batch * n_dec,
                perf.kv_capacity_tokens * n_dec / max(1.0, mix.resv_per_req),
            )
            admit = min(fs.d_queue, max(0.0, cap_req - fs.dec_n))
        else:
            admit = 0.0
        fs.d_queue -= admit
        single = admit * mix.frac_single
        fs.dec_n += admit - single
        completions = single
        tbt = fs.tbt_s
        if n_dec and fs.dec_n > 1e-9:
            perf = dec[0].perf
            b = fs.dec_n / n_dec
            b_int = max(1, round(b))
            base, per = perf.decode_linear(b_int)
            step = base + per * b * mix.ctx_member
            tok = fs.dec_n / step * dt  # tokens generated this step (all instances)
            tbt = step
            # one-token requests never enter the decode population: departures divide by the mean
            # of those that decode
            leaving = min(fs.dec_n, tok / mix.mean_m_decoding if mix.mean_m_decoding > 0 else fs.dec_n)
            fs.dec_n -= leaving
            completions += leaving
            busy = 1.0 - math.exp(-b) if b < 4 else 1.0
            acc = pend[Role.DECODE]
            acc[0] += busy * dt * n_dec
            acc[1] += busy * dt * (1.0 - perf.decode_host_s(b_int) / step) * n_dec
            acc[2] += tok
            acc[3] += perf.decode_flops(b_int, int(b * mix.ctx_member)) * (busy * dt / step) * n_dec
        fs.tbt_s = tbt
        return cap_tok, admit, completions

    # ------------------------------------------------------------------ telemetry and stats
    def _sample_window(self, t_s: float) -> None:
        span = t_s - self.last_window_s
        self.last_window_s = t_s
        for fs in self.services:
            self._flush(fs)
            roles = {role: self._role_window(fs, role, span) for role in Role}
            lat = fs.w_lat
            base = fs.epochs[-1] if fs.epochs else np.zeros(0)
            ttft = mixture_quantiles(base, [(w, c) for w, _, c in lat], (0.5, 0.9, 0.99))
            tbt = weighted_quantiles([(b, c) for _, b, c in lat], (0.5, 0.9, 0.99))
            comp = fs.w_completions
            met_total = int(round(fs.met_f))
            missed_total = int(round(fs.completed_f - fs.met_f + sum(fs.failed_f.values())))
            met_prev, missed_prev = fs.w_slo_prev
            fs.w_slo_prev = (met_total, missed_total)
            self.telemetry.add(
                WindowRow(
                    t_s=t_s,
                    window_s=span,
                    service=fs.load.spec.name,
                    prefill=roles[Role.PREFILL],
                    decode=roles[Role.DECODE],
                    arrivals_per_s=fs.w_arrivals / span,
                    completions=int(round(comp)),
                    ttft_p50_s=ttft[0],
                    ttft_p90_s=ttft[1],
                    ttft_p99_s=ttft[2],
                    tbt_p50_s=tbt[0],
                    tbt_p90_s=tbt[1],
                    tbt_p99_s=tbt[2],
                    mean_input_tokens=float(fs.load.trace.input_tokens.mean()) if comp > 0 else None,
                    mean_output_tokens=fs.mix.mean_m + 1.0 if comp > 0 else None,
                    estimated_latency=True,
                    slo_met=max(0, met_total - met_prev),
                    slo_missed=max(0, missed_total - missed_prev),
                )
            )
            fs.w_lat = []
            fs.w_arrivals = 0.0
            fs.w_completions = 0.0
        self._sync_stats()

    def _role_window(self, fs: FluidService, role: Role, span: float) -> RoleWindow:
        ready = starting = draining = held = 0
        kernel = occ_kernel = tokens = flops = peak = 0.0
        for inst in fs.insts:
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
        n_dec = max(1, ready)
        queue = (fs.backlog_tokens / max(1.0, fs.mix.mean_new)) if role is Role.PREFILL else fs.d_queue
        running = 0.0 if role is Role.PREFILL else fs.dec_n
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
            kv_usage=(fs.dec_n / n_dec * fs.mix.ctx_member / max(1, self._kv_cap(fs))) if role is Role.DECODE else None,
            instances_held=held,
            queue_len_mean=queue,  # the fluid state moves smoothly: its window-end value stands for the mean
            running_mean=running,
        )

    @staticmethod
    def _kv_cap(fs: FluidService) -> int:
        for inst in fs.insts:
            if inst.role is Role.DECODE:
                return inst.perf.kv_capacity_tokens
        return 0

    def completed_mask(self, svc: int) -> None:
        """Requests are flows here: which ones completed is not known (see :mod:`heteroscale.sim.bound`)."""
        return None

    def finalize(self, end_s: float) -> None:
        for fs in self.services:
            self._flush(fs)
        self._sync_stats()

    def _sync_stats(self) -> None:
        for fs, s in zip(self.services, self.stats, strict=True):
            s.arrivals = int(round(fs.arrivals_f))
            s.completed = min(s.arrivals, int(round(fs.completed_f)))
            failed = fs.failed_f
            s.failed = min(s.arrivals - s.completed, int(round(sum(failed.values()))))
            s.failed_scale_in = min(s.failed, int(round(failed[FailureCause.SCALE_IN])))
            s.failed_kv_capacity = s.failed - s.failed_scale_in
            s.met_slo = min(s.completed, int(round(fs.met_f)))

    def latency_quantiles(
        self, svc: int | None, qs: tuple[float, ...]
    ) -> tuple[list[float | None], list[float | None]]:
        """Run-wide estimated TTFT and TBT quantiles (completion-weighted); ``None`` = all services."""
        services = self.services if svc is None else [self.services[svc]]
        parts: list[tuple[np.ndarray, list[tuple[float, float]]]] = []
        tbt_pairs: list[tuple[float, float]] = []
        for fs in services:
            groups: dict[int, list[tuple[float, float]]] = {}
            for e, w, b, c in fs.lat_rows:
                groups.setdefault(e, []).append((w, c))
                tbt_pairs.append((b, c))
            parts.extend((fs.epochs[e], g) for e, g in groups.items())
        return mixture_quantiles_multi(parts, qs), weighted_quantiles(tbt_pairs, qs)
