"""Roofline physics for one (model, GPU SKU, tensor-parallel degree): ideal times, no calibration.

Everything here is the 100 %-efficient bound computed from published specs; efficiency factors and
host overheads are applied by :mod:`heteroscale.perf.model` from a
:class:`~heteroscale.perf.calibrate.Calibration`.

Counting rules (dense decoder-only transformer, grouped-query or multi-head attention):

* Matmul parameters per layer: Q and O projections ``2·h·H·d``, K and V ``2·h·Hkv·d``, MLP
  ``mlp_matrices·h·I`` (3 for SwiGLU, 2 for a plain ReLU / GELU MLP). The input embedding is a
  lookup (no FLOPs, not streamed); the LM head ``V·h`` is a matmul. Prefill computes logits for the
  last token of a sequence only, so the prefill FLOPs per token leave the LM head out; every decode
  step computes it for each sequence.
* Prefill FLOPs: ``2·matmul_params`` per new token plus attention ``4·L·H·d`` per (query, key)
  pair. A prompt of ``new`` uncached tokens over ``cached`` cached ones has ``new·cached + new²/2``
  causal pairs. Callers pass ``attn_units = Σ new·(cached + new)`` and, where they know it,
  ``prefix_units = Σ new·cached``; the pair count is ``(attn_units + prefix_units) / 2``, so attention
  FLOPs are ``2·L·H·d·(attn_units + prefix_units)`` — exact for fresh and for cached prompts (the
  cached-prefix term). A caller that passes no ``prefix_units`` counts the cached pairs half (2x low
  on attention when ``cached ≫ new``).
* Decode step: the GPU streams the non-embedding weights once (``weight_read_s``) and the batch's
  KV cache (``kv_read_s_per_token`` per context token); GEMM FLOPs ``2·(matmul + LM head)`` per
  sequence. Decode attention reads ~2 bytes per 8 FLOPs (GQA), far below every ridge point, so it is
  counted as memory traffic only.
* Tensor parallelism: weights, FLOPs and KV heads split over ``tp`` GPUs (KV heads are replicated
  when ``tp > kv_heads``). Each layer does two all-reduces of the activations (``tokens·h`` BF16
  values); a ring all-reduce moves ``2·(tp-1)/tp`` of the message per GPU over the per-direction
  link bandwidth and takes ``2·(tp-1)`` latency-bound hops, plus a fixed cost per call (launch and
  synchronisation) that the calibration may charge. PCIe parts (32 GB/s) pay ~10x NVLink. One
  all-reduce's message is ``step tokens·h·2`` bytes (``allreduce_message_bytes_per_token`` a token);
  the calibration may give messages above a size their own link efficiency.
* ``layer_latency_s_per_byte = layers / one GPU's peak bandwidth`` lets the calibration express a
  fixed per-layer cost of a step (the chain of small, latency-bound kernels of one layer) in bytes,
  so that it scales with the SKU's memory system and does not shrink with TP (every GPU runs every
  layer).
* ``worker_dispatches_per_step`` is 1 when a step goes out to worker processes (``tp > 1``) and 0
  when one process drives one GPU; the calibration's ``worker_dispatch_overhead_s`` prices it.
* Precision: ``ModelSpec.bytes_per_param == 1`` (FP8) uses the SKU's FP8 peak (2x BF16) for the
  GEMMs and halves the weight bytes; attention math stays at the BF16 peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from heteroscale.domain.hardware import GpuSku, ModelSpec

ACTIVATION_BYTES = 2.0  # BF16 activations on the wire for tensor-parallel all-reduces
FP8_BYTES_PER_PARAM = 1.0


def matmul_params(model: ModelSpec) -> float:
    """Parameters of all transformer-layer matmuls (attention projections and the MLP)."""
    h = float(model.hidden_size)
    q_dim = float(model.heads * model.head_dim)
    kv_dim = float(model.kv_heads * model.head_dim)
    attention = 2.0 * h * q_dim + 2.0 * h * kv_dim
    mlp = float(model.mlp_matrices) * h * float(model.intermediate_size)
    return float(model.layers) * (attention + mlp)


def lm_head_params(model: ModelSpec) -> float:
    return float(model.vocab_size) * float(model.hidden_size)


def per_gpu_peak_flops(model: ModelSpec, sku: GpuSku) -> float:
    """Dense peak FLOP/s of one GPU at the model's weight precision (FP8 = 2x BF16)."""
    tflops = sku.fp8_tflops if model.bytes_per_param <= FP8_BYTES_PER_PARAM else sku.bf16_tflops
    return tflops * 1e12


def kv_replication(model: ModelSpec, tp: int) -> float:
    """How many times each KV head is stored across the TP group (1 unless ``tp > kv_heads``)."""
    return max(1.0, tp / model.kv_heads)


def kv_capacity_tokens(model: ModelSpec, sku: GpuSku, tp: int, activation_reserve: float) -> int:
    """Tokens of KV cache that fit next to the weights; never negative.

    ``(tp·mem − weights − activation_reserve·tp·mem) / (kv_bytes_per_token · replication)`` with
    ``mem = mem_gb·1e9`` (decimal GB, slightly conservative for parts sold in GiB). The activation
    reserve is a fraction of the TP group's memory set aside for activations, CUDA graphs and
    fragmentation (vLLM's ``gpu_memory_utilization=0.9`` corresponds to 0.1).
    """
    total_bytes = tp * sku.mem_gb * 1e9
    free_bytes = total_bytes * (1.0 - activation_reserve) - model.weight_bytes
    if free_bytes <= 0.0:
        return 0
    return int(free_bytes / (model.kv_bytes_per_token * kv_replication(model, tp)))


@dataclass(frozen=True, slots=True)
class RooflineTerms:
    """Ideal (100 %-efficient) costs for one (model, SKU, TP); all times in seconds.

    ``*_flops`` are totals over the TP group; ``*_s`` are wall times with the work split evenly
    over the ``tp`` GPUs at peak compute / memory / link bandwidth.
    """

    model_id: str
    sku_id: str
    tp: int
    peak_flops: float  # tp · per-GPU peak at the model precision, FLOP/s
    attn_peak_flops: float  # tp · per-GPU BF16 peak, FLOP/s
    prefill_flops_per_token: float  # 2 · matmul params
    attn_flops_per_unit: float  # 2·L·H·d per attention or prefix unit (half of 4·L·H·d per pair)
    decode_flops_per_seq: float  # 2 · (matmul params + LM head)
    decode_attn_flops_per_context_token: float  # 4·L·H·d
    prefill_compute_s_per_token: float
    attn_compute_s_per_unit: float
    decode_compute_s_per_seq: float
    weight_read_s: float  # streaming the non-embedding weights once, per GPU, at peak bandwidth
    kv_read_s_per_token: float  # one context token's KV share per GPU, at peak bandwidth
    allreduce_hops_per_step: float  # 2·L all-reduces × 2·(tp−1) ring hops (0 for tp = 1)
    allreduce_calls_per_step: float  # 2·L all-reduce calls (0 for tp = 1)
    allreduce_s_per_token: float  # link time of one token's activations in all all-reduces
    allreduce_message_bytes_per_token: float  # one all-reduce's message grows by h · 2 bytes a token
    layer_latency_s_per_byte: float  # layers / one GPU's peak bandwidth (scales a per-layer floor)
    worker_dispatches_per_step: float  # 1 when a step goes out to other worker processes (tp > 1), else 0
    weight_bytes: float
    kv_bytes_per_token: float  # whole model, all layers, one token
    kv_capacity_tokens: int


def roofline_terms(model: ModelSpec, sku: GpuSku, tp: int, activation_reserve: float = 0.1) -> RooflineTerms:
    """Compute the ideal costs; raises ``ValueError`` for a non-positive TP degree or bad specs."""
    if tp < 1:
        raise ValueError(f"tensor-parallel degree must be >= 1, got tp={tp} for {model.id} on {sku.id}")
    if sku.bf16_tflops <= 0.0 or sku.mem_bw_tbps <= 0.0 or sku.mem_gb <= 0.0:
        raise ValueError(f"GPU SKU {sku.id!r} needs positive bf16_tflops, mem_bw_tbps and mem_gb")
    if tp > 1 and sku.interconnect_gbps <= 0.0:
        raise ValueError(f"GPU SKU {sku.id!r} has no interconnect bandwidth but tp={tp}")
    if not 0.0 <= activation_reserve < 1.0:
        raise ValueError(f"activation_reserve must be in [0, 1), got {activation_reserve}")

    mm = matmul_params(model)
    head = lm_head_params(model)
    attn_dim = float(model.layers * model.heads * model.head_dim)
    peak = tp * per_gpu_peak_flops(model, sku)
    attn_peak = tp * sku.bf16_tflops * 1e12
    group_bw = tp * sku.mem_bw_tbps * 1e12  # bytes/s over the TP group

    prefill_flops_per_token = 2.0 * mm
    attn_flops_per_unit = 2.0 * attn_dim
    decode_flops_per_seq = 2.0 * (mm + head)
    streamed_weight_bytes = (mm + head) * model.bytes_per_param
    kv_per_token_group = model.kv_bytes_per_token * kv_replication(model, tp)

    if tp > 1:
        hops = 2.0 * (tp - 1)
        allreduces = 2.0 * model.layers
        link_bytes_per_token = allreduces * model.hidden_size * ACTIVATION_BYTES * hops / tp
        allreduce_s_per_token = link_bytes_per_token / (sku.interconnect_gbps * 1e9)
        allreduce_hops = allreduces * hops
    else:
        allreduce_s_per_token = 0.0
        allreduce_hops = 0.0
        allreduces = 0.0

    return RooflineTerms(
        model_id=model.id,
        sku_id=sku.id,
        tp=tp,
        peak_flops=peak,
        attn_peak_flops=attn_peak,
        prefill_flops_per_token=prefill_flops_per_token,
        attn_flops_per_unit=attn_flops_per_unit,
        decode_flops_per_seq=decode_flops_per_seq,
        decode_attn_flops_per_context_token=2.0 * attn_flops_per_unit,
        prefill_compute_s_per_token=prefill_flops_per_token / peak,
        attn_compute_s_per_unit=attn_flops_per_unit / attn_peak,
        decode_compute_s_per_seq=decode_flops_per_seq / peak,
        weight_read_s=streamed_weight_bytes / group_bw,
        kv_read_s_per_token=kv_per_token_group / group_bw,
        allreduce_hops_per_step=allreduce_hops,
        allreduce_calls_per_step=allreduces,
        allreduce_s_per_token=allreduce_s_per_token,
        allreduce_message_bytes_per_token=model.hidden_size * ACTIVATION_BYTES,
        layer_latency_s_per_byte=model.layers / (sku.mem_bw_tbps * 1e12),
        worker_dispatches_per_step=1.0 if tp > 1 else 0.0,
        weight_bytes=model.weight_bytes,
        kv_bytes_per_token=model.kv_bytes_per_token,
        kv_capacity_tokens=kv_capacity_tokens(model, sku, tp, activation_reserve),
    )
