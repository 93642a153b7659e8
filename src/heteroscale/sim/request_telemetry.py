"""Telemetry of the request engine: queue and running counts sampled every second, and one window row
per service (instance counts, TPS, GPU utilisation, SM activity, queues, KV usage, latencies)."""

from __future__ import annotations

from collections.abc import Callable

from heteroscale.domain.hardware import Role
from heteroscale.domain.state import Lifecycle
from heteroscale.sim.request_model import DecodeInst, PrefillInst, ServiceState
from heteroscale.sim.telemetry import RoleWindow, WindowRow, percentile

QUEUE_SAMPLE_S = 1.0  # queue and running counts are sampled this often for their window means


def sample_counts(services: list[ServiceState]) -> None:
    """Add the instantaneous queue and running counts of every service to the window's sums."""
    starting = Lifecycle.STARTING
    for sv in services:
        # whole counts summed on locals first: the sums stay exact (far below 2^53), so the same values
        p_queue = len(sv.pending_prefill)
        p_running = 0
        for p in sv.p_all:
            if p.lifecycle is not starting:
                p_queue += len(p.queue)
                p_running += len(p.batch)
        d_queue = len(sv.pending_decode)
        d_running = 0
        for d in sv.d_all:
            if d.lifecycle is not starting:
                d_queue += len(d.waiting)
                d_running += d.b
        acc = sv.counts_acc
        acc[0] += p_queue
        acc[1] += p_running
        acc[2] += d_queue
        acc[3] += d_running
        acc[4] += 1


def window_row(sv: ServiceState, t_s: float, span: float, advance: Callable[[DecodeInst, float], None]) -> WindowRow:
    """The service's telemetry row of the window ending at ``t_s``; resets the window's tallies."""
    prefill = _role_window(sv, sv.p_all, t_s, span, Role.PREFILL, advance)
    decode = _role_window(sv, sv.d_all, t_s, span, Role.DECODE, advance)
    st = sv.stats
    ttft = sorted(st.w_ttft)
    tbt = sorted(st.w_tbt)
    n = len(ttft)
    row = WindowRow(
        t_s=t_s,
        window_s=span,
        service=sv.load.spec.name,
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
    st.reset_window()
    return row


def _role_window(
    sv: ServiceState,
    insts: list[PrefillInst] | list[DecodeInst],
    t_s: float,
    span: float,
    role: Role,
    advance: Callable[[DecodeInst, float], None],
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
            advance(inst, t_s)
            acc_kernel = inst.acc_kernel_s
            running += inst.b
            queue += len(inst.waiting)
            if inst.cap_tokens > 0:
                kv_sum += inst.ctx / inst.cap_tokens
                kv_n += 1
            occ = inst.perf.decode_sm_occupancy
            acc_flops = inst.acc_flops
        else:
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
        queue += len(sv.pending_prefill)
    else:
        queue += len(sv.pending_decode)
    active = ready + draining + held
    acc = sv.counts_acc
    first = 0 if role is Role.PREFILL else 2
    samples = acc[4]
    queue_mean = acc[first] / samples if samples else queue
    running_mean = acc[first + 1] / samples if samples else running
    if role is Role.DECODE:  # the decode role is the last of the service's window: start afresh
        sv.counts_acc = [0.0] * 5
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
