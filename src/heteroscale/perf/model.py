"""Per-instance performance model: prefill batch time and decode step time (the simulator's hot path).

:func:`build_instance_perf` turns roofline physics (:mod:`heteroscale.perf.roofline`) and a
:class:`~heteroscale.perf.calibrate.Calibration` into an :class:`InstancePerf` whose methods are
plain float arithmetic on precomputed coefficients (no numpy, no allocation beyond a tuple).

Prefill kernel time of one batch (``n`` new tokens, ``a`` attention units, ``p`` prefix units —
see :mod:`heteroscale.perf.roofline` for the pair count)::

    hops·hop_latency + layers·prefill_layer_latency + max(n·c_tok + (a + p)·c_attn, weight_read)
        + n·comm_tok(n)

— GEMMs at the SKU's compute efficiency and attention at its attention efficiency
(:meth:`Calibration.efficiency`), but never faster than streaming the weights once (a tiny chunk is
memory-bound); all-reduces are not overlapped with compute (as in vLLM / SGLang tensor
parallelism). ``comm_tok(n)`` is the link time per token at the calibration's link efficiency, or at
its large-message efficiency once the step's all-reduce message (``n·h·2`` bytes) reaches
``large_message_bytes``: the whole message runs slower, not only its bytes past the threshold (the
same for a decode step of ``b`` sequences). Without a large-message efficiency both are the same
number, so the branch changes nothing. Wall time adds the per-step host overhead, plus the
calibration's worker dispatch overhead when ``tp > 1`` (handing the step to the worker processes;
host time in both phases).

Decode step time (``b`` sequences, ``ctx`` total context tokens)::

    host_step [+ dispatch if tp > 1] + b·(host_seq + comm_seq) + hops·hop_latency + layers·layer_latency
        + max(b·c_gemm, weight_read) + ctx·kv_read

Only the KV read depends on the context, so for a fixed batch the step time is *exactly* affine in
the context: ``decode_linear(b) = (base_s, per_context_token_s)``. The roofline ``max`` is taken
between GEMM compute and weight streaming, both functions of the batch alone; decode attention
(reading the KV cache) is memory-bound on every catalog SKU (≈4 FLOPs per byte with GQA, far below
each ridge point) and sits outside the ``max`` as a pure bandwidth term. So the regime is chosen per
batch and no reference context is needed; ``decode_step_time_s`` and ``decode_linear`` share one
code path, which makes the identity exact in floating point.

SM occupancy: ``prefill_sm_occupancy`` / ``decode_sm_occupancy`` are copied from the calibration
(SM activity ≈ busy fraction × occupancy; prefill ≈0.85, decode ≈0.69, from the HeteroScale paper's
≈0.72 SM at ≈0.84 utilisation and ≈0.62 at ≈0.90).
"""

from __future__ import annotations

from dataclasses import dataclass

from heteroscale.domain.hardware import GpuSku, ModelSpec, Role
from heteroscale.perf.calibrate import Calibration
from heteroscale.perf.profiles import ProfileRow
from heteroscale.perf.roofline import roofline_terms


@dataclass(frozen=True, slots=True)
class InstancePerf:
    """Timing of one serving instance (a model on ``tp`` GPUs of one SKU). Times in seconds.

    The first block of fields describes the instance; the second holds the precomputed
    coefficients the timing methods use (already divided by the efficiency factors). Build it
    with :func:`build_instance_perf`.
    """

    model_id: str
    sku_id: str
    tp: int
    prefill_host_overhead_s: float
    decode_host_overhead_s: float
    kv_bytes_per_token: float  # whole model, all layers, one token
    kv_capacity_tokens: int  # KV tokens that fit next to the weights (> 0 once built)
    peak_flops: float  # tp · per-GPU peak FLOP/s at the model precision
    prefill_sm_occupancy: float  # SM activity per unit of busy time (calibrated, see module doc)
    decode_sm_occupancy: float
    weight_bytes: float  # whole model at its precision
    # -- precomputed coefficients --
    decode_host_overhead_per_seq_s: float
    decode_layer_latency_s: float  # per-layer latency term summed over the layers, per decode step
    allreduce_latency_s: float  # all-reduce hop and call latency summed over one step (both phases)
    prefill_layer_latency_s: float  # per-layer latency term summed over the layers, per prefill step
    prefill_s_per_token: float  # GEMM compute per new token
    prefill_s_per_attn_unit: float  # attention compute per attention unit
    prefill_comm_s_per_token: float  # all-reduce bandwidth per new token
    prefill_comm_large_s_per_token: float  # the same in a step of at least large_message_tokens
    large_message_tokens: float  # step tokens from which an all-reduce message is large
    weight_read_s: float  # streaming the weights once at the calibrated bandwidth
    decode_gemm_s_per_seq: float
    decode_comm_s_per_seq: float
    decode_comm_large_s_per_seq: float
    decode_s_per_context_token: float
    prefill_flops_per_token: float
    attn_flops_per_unit: float
    decode_flops_per_seq: float
    decode_attn_flops_per_context_token: float

    def prefill_kernel_s(self, new_tokens: int, attn_units: float, prefix_units: float = 0.0) -> float:
        """GPU-busy time of one prefill batch (no host overhead)."""
        units = attn_units + prefix_units
        compute = new_tokens * self.prefill_s_per_token + units * self.prefill_s_per_attn_unit
        floor = self.weight_read_s
        compute = floor if compute < floor else compute  # roofline max, without a call
        latency = self.allreduce_latency_s + self.prefill_layer_latency_s
        large = new_tokens >= self.large_message_tokens
        comm = self.prefill_comm_large_s_per_token if large else self.prefill_comm_s_per_token
        return latency + compute + new_tokens * comm

    def prefill_time_s(self, new_tokens: int, attn_units: float, prefix_units: float = 0.0) -> float:
        """Wall time of one prefill batch: ``new_tokens`` = Σ uncached prompt tokens,
        ``attn_units`` = Σ new·(cached + new), ``prefix_units`` = Σ new·cached (the cached-prefix
        attention term; 0 counts cached pairs half). Includes the per-step host overhead."""
        return self.prefill_host_overhead_s + self.prefill_kernel_s(new_tokens, attn_units, prefix_units)

    def prefill_flops(self, new_tokens: int, attn_units: float, prefix_units: float = 0.0) -> float:
        return new_tokens * self.prefill_flops_per_token + (attn_units + prefix_units) * self.attn_flops_per_unit

    def _decode_base_s(self, batch: int) -> float:
        floor = self.weight_read_s
        gemm = batch * self.decode_gemm_s_per_seq
        gemm = floor if gemm < floor else gemm
        comm = self.decode_comm_large_s_per_seq if batch >= self.large_message_tokens else self.decode_comm_s_per_seq
        return (
            self.decode_host_overhead_s
            + batch * (self.decode_host_overhead_per_seq_s + comm)
            + self.allreduce_latency_s
            + self.decode_layer_latency_s
            + gemm
        )

    def decode_host_s(self, batch: int) -> float:
        """Host part of one decode step: per-step plus per-sequence overhead (GPU idle)."""
        return self.decode_host_overhead_s + batch * self.decode_host_overhead_per_seq_s

    def decode_kernel_s(self, batch: int, context_tokens: int) -> float:
        """GPU-busy part of one decode step: ``decode_step_time_s − decode_host_s`` (the per-layer
        latency and all-reduce latency count as GPU time)."""
        return self.decode_step_time_s(batch, context_tokens) - self.decode_host_s(batch)

    def decode_linear(self, batch: int) -> tuple[float, float]:
        """``(base_s, per_context_token_s)`` with
        ``decode_step_time_s(batch, ctx) == base_s + per_context_token_s * ctx`` exactly."""
        return self._decode_base_s(batch), self.decode_s_per_context_token

    def decode_step_time_s(self, batch: int, context_tokens: int) -> float:
        """One decode step for ``batch`` sequences whose KV totals ``context_tokens``; includes host
        overhead."""
        return self._decode_base_s(batch) + self.decode_s_per_context_token * context_tokens

    def decode_flops(self, batch: int, context_tokens: int) -> float:
        return batch * self.decode_flops_per_seq + context_tokens * self.decode_attn_flops_per_context_token


def build_instance_perf(
    model: ModelSpec,
    sku: GpuSku,
    tp: int,
    calibration: Calibration,
    activation_reserve: float = 0.1,
) -> InstancePerf:
    """Precompute the timing coefficients of ``model`` on ``tp`` GPUs of ``sku``.

    Raises ``ValueError`` (naming model, SKU and TP) when the weights leave no room for KV cache —
    ``kv_capacity_tokens`` would be 0 — or when ``tp`` / the specs are invalid.
    """
    terms = roofline_terms(model, sku, tp, activation_reserve)
    if terms.kv_capacity_tokens <= 0:
        need_gb = model.weight_bytes / 1e9
        have_gb = tp * sku.mem_gb * (1.0 - activation_reserve)
        raise ValueError(
            f"model {model.id} does not fit on {sku.id} with tp={tp}: weights need {need_gb:.1f} GB, "
            f"{have_gb:.1f} GB usable after a {activation_reserve:.0%} activation reserve"
        )
    cal = calibration
    eff = cal.efficiency(sku.id)
    dispatch_s = terms.worker_dispatches_per_step * cal.worker_dispatch_overhead_s  # host time, TP > 1 only
    return InstancePerf(
        model_id=model.id,
        sku_id=sku.id,
        tp=tp,
        prefill_host_overhead_s=cal.prefill_step_overhead_s + dispatch_s,
        decode_host_overhead_s=cal.decode_step_overhead_s + dispatch_s,
        kv_bytes_per_token=terms.kv_bytes_per_token,
        kv_capacity_tokens=terms.kv_capacity_tokens,
        peak_flops=terms.peak_flops,
        prefill_sm_occupancy=cal.prefill_sm_occupancy,
        decode_sm_occupancy=cal.decode_sm_occupancy,
        weight_bytes=terms.weight_bytes,
        decode_host_overhead_per_seq_s=cal.decode_seq_overhead_s,
        decode_layer_latency_s=cal.decode_layer_latency_bytes * terms.layer_latency_s_per_byte,
        allreduce_latency_s=terms.allreduce_hops_per_step * cal.allreduce_hop_latency_s
        + terms.allreduce_calls_per_step * cal.allreduce_call_latency_s,
        prefill_layer_latency_s=cal.prefill_layer_latency_bytes * terms.layer_latency_s_per_byte,
        prefill_s_per_token=terms.prefill_compute_s_per_token / eff.compute,
        prefill_s_per_attn_unit=terms.attn_compute_s_per_unit / eff.attention,
        prefill_comm_s_per_token=terms.allreduce_s_per_token / cal.comm_bw_eff,
        prefill_comm_large_s_per_token=terms.allreduce_s_per_token / cal.large_comm_bw_eff,
        large_message_tokens=cal.large_message_bytes / terms.allreduce_message_bytes_per_token,
        weight_read_s=terms.weight_read_s / eff.hbm,
        decode_gemm_s_per_seq=terms.decode_compute_s_per_seq / eff.compute,
        decode_comm_s_per_seq=terms.allreduce_s_per_token / cal.comm_bw_eff,
        decode_comm_large_s_per_seq=terms.allreduce_s_per_token / cal.large_comm_bw_eff,
        decode_s_per_context_token=terms.kv_read_s_per_token / eff.hbm,
        prefill_flops_per_token=terms.prefill_flops_per_token,
        attn_flops_per_unit=terms.attn_flops_per_unit,
        decode_flops_per_seq=terms.decode_flops_per_seq,
        decode_attn_flops_per_context_token=terms.decode_attn_flops_per_context_token,
    )


def predict_row_time_s(perf: InstancePerf, row: ProfileRow) -> float:
    """Model time of a profile row on ``perf`` (which must be the row's model/SKU/TP): GPU kernel
    time for a ``kernel_only`` row, wall time (host overhead included) otherwise."""
    if row.phase is Role.PREFILL:
        if row.kernel_only:
            return perf.prefill_kernel_s(row.new_tokens, row.attn_units, row.prefix_units)
        return perf.prefill_time_s(row.new_tokens, row.attn_units, row.prefix_units)
    if row.kernel_only:
        return perf.decode_kernel_s(row.batch, row.context_tokens)
    return perf.decode_step_time_s(row.batch, row.context_tokens)
