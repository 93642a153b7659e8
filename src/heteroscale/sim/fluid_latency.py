"""The fluid engine's latency estimate per step: queueing (Erlang C with the Allen–Cunneen factor, or
a sustained backlog), admission wait and the solo latency of each length class, as a mixture."""

from __future__ import annotations

import math

import numpy as np

from heteroscale.sim.cluster import SimCluster
from heteroscale.sim.fluid_mix import WAIT_QUANTILES, erlang_c
from heteroscale.sim.fluid_state import FluidInst, FluidService


def estimate_latency(
    fs: FluidService,
    cluster: SimCluster,
    pre: list[FluidInst],
    dec: list[FluidInst],
    n_arr: float,
    cap_tok: float,
    admit: float,
    completions: float,
    dt: float,
) -> None:
    """Latency estimates for the requests finishing this step, into the run's and the window's mixture."""
    mix, slo, tbt = fs.mix, fs.load.spec.slo, fs.tbt_s
    update_latency_base(fs, cluster, pre, dec)
    rate = n_arr / dt
    fs.arr_rate_ewma += (rate - fs.arr_rate_ewma) * min(1.0, dt / 60.0)
    mean_solo = float(mix.solo_s.mean()) if len(mix.solo_s) else 0.0
    # those that wait are prefilled in batches, at the batched rate (the queue's service time)
    batched_s = mix.mean_new / mix.batch_rate(mix.budget_tokens)[0] if mix.mean_new > 0 else mean_solo
    pc, cond_wait = erlang_c(len(pre), fs.arr_rate_ewma, batched_s)
    # prompts of very different lengths wait longer than M/M/c says (Allen–Cunneen), and one that
    # waited shares its batch with those that arrived meanwhile (longer by about ρ); fluctuations
    # slower than a step are the backlog's (below)
    rho = min(1.0, fs.arr_rate_ewma * batched_s / len(pre)) if pre else 0.0
    cond_wait *= mix.queue_wait_factor() * (1.0 + rho)
    backlog_wait = fs.backlog_tokens / (cap_tok / dt) if cap_tok > 0 else (math.inf if fs.backlog_tokens > 0 else 0.0)
    adm_wait = fs.d_queue / (admit / dt) if admit > 0 else (math.inf if fs.d_queue > 0.5 else 0.0)
    # a backlog of less than one step's work is Poisson noise within the step, which the
    # Erlang-C term already accounts for; a longer one is a sustained overload: count it
    if fs.backlog_tokens <= cap_tok:
        backlog_wait = 0.0
    else:
        pc = 0.0
    fixed = min(backlog_wait, 1e5) + min(adm_wait, 1e5)
    if completions <= 0:
        return
    # the queueing wait as a mixture: no wait with 1 − Pc, else exponential (8 quantile points)
    pieces = [(fixed, 1.0)]
    if pc > 1e-3:
        # (waits longer than a step are the backlog's: a within-step wait is at most a step)
        pieces = [(fixed, 1.0 - pc)] + [(fixed + min(cond_wait * q, dt), pc / 8) for q in WAIT_QUANTILES]
    fs.completed_f += completions
    fs.w_completions += completions
    base_arr = fs.epochs[-1]
    n_base = max(1, len(base_arr))
    ok_ttft = sum(w * float(np.searchsorted(base_arr, slo.ttft_s - wait, side="right")) / n_base for wait, w in pieces)
    ok_tbt = 1.0 if tbt <= slo.tbt_s else mix.frac_single
    fs.met_f += completions * ok_ttft * ok_tbt
    epoch = len(fs.epochs) - 1
    for wait, w in pieces:
        fs.lat_rows.append((epoch, wait, tbt, completions * w))
        fs.w_lat.append((wait, tbt, completions * w))


def update_latency_base(fs: FluidService, cluster: SimCluster, pre: list[FluidInst], dec: list[FluidInst]) -> None:
    """A new sorted solo-latency base (prefill + KV transfer) when the fleet's shape changed."""
    key = (len(pre), len(dec), pre[0].perf.kv_bytes_per_token if pre else 0.0)
    if key == fs.arr_epoch_key and fs.epochs:
        return
    fs.arr_epoch_key = key
    mix = fs.mix
    if pre and dec:
        # requests go to a decode instance of the prefill instance's DG when it has one
        bws = []
        for p in pre[:32]:
            same = [d for d in dec if d.dg == p.dg] or dec
            bws += [cluster.kv_bandwidth(p, d) for d in same[:16]]
        bw = sum(bws) / len(bws)
        xfer = mix.new * pre[0].perf.kv_bytes_per_token / bw + cluster.topology.kv_bandwidth.setup_s
    else:
        xfer = np.zeros_like(mix.new)
    fs.epochs.append(np.sort(mix.solo_s + xfer))
