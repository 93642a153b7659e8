"""Calibration of the roofline: efficiency factors and engine overheads (the values; fitting is in
:mod:`heteroscale.perf.fit`).

The model (:mod:`heteroscale.perf.model`) is the roofline of :mod:`heteroscale.perf.roofline` with
a handful of parameters:

* physics — per SKU (:class:`SkuEfficiency`, with shared fall-backs ``prefill_compute_eff``,
  ``attention_eff``, ``decode_bw_eff`` for SKUs without an entry): the fraction of peak FLOP/s that
  GEMMs reach, the fraction attention math reaches, and the fraction of peak memory bandwidth reached
  when streaming weights and KV cache; ``comm_bw_eff`` (fraction of the per-direction link bandwidth
  reached by ring all-reduces — what the engine's all-reduces reach, so the fitted engine profiles
  fit it; the prior 0.7 is NCCL on NVLink with large messages) and ``large_message_comm_bw_eff``,
  the fraction an all-reduce message of at least ``large_message_bytes`` reaches (``None``: the
  same, no knee; only ``measured-2023`` fits one: see "Why a large-message efficiency" below);
* engine — ``allreduce_hop_latency_s`` (one ring hop) and ``allreduce_call_latency_s`` (one
  all-reduce call: launch and synchronisation, whatever the ring length),
  ``prefill_step_overhead_s`` / ``decode_step_overhead_s`` (host time per step: scheduling, input
  preparation, sampling), ``decode_seq_overhead_s`` (host time per running sequence per decode
  step) and ``decode_layer_latency_bytes`` / ``prefill_layer_latency_bytes`` (a fixed per-layer cost
  of a step — the chain of small, latency-bound kernels of one layer — expressed as the bytes one GPU
  could have streamed in that time, so it scales with the SKU's memory system: ``layers · bytes /
  mem_bw`` per step, independent of TP), and ``worker_dispatch_overhead_s`` (host time per step of
  an engine with TP > 1 for handing the step's inputs to its worker processes and collecting their
  results; 0 at TP 1, where the worker runs in the engine's process). The per-layer terms are GPU
  time; the step, sequence and dispatch overheads are host time (the GPU idles).

Efficiency factors follow the specs and transfer across models; the engine terms belong to a
software generation. The Splitwise rows are a 2023 vLLM-era engine (eager PyTorch, Ray workers, no
CUDA graphs): fitted on them the engine terms are large (≈12 ms per 80-layer decode step on H100,
≈20 ms on A100; ≈18 ms per prefill step; ≈6 µs per ring hop). A 2025 engine (CUDA graphs, fused
kernels, custom all-reduce, overlapped scheduling) has far smaller ones;
:meth:`Calibration.with_engine_of` keeps fitted physics with another engine's terms, e.g.
``fit_calibration(...).with_engine_of(Calibration.default())`` to simulate a current engine. The
named combinations are the engine profiles of :mod:`heteroscale.perf.engines`.

Why a dispatch term: in the vLLM DistServe profiled (late 2023) every worker of a TP > 1 engine was
a Ray actor and each step's inputs were serialised to them over Ray; at TP 1 the worker ran in the
engine's process (vLLM PR #2221, January 2024, replaced the per-step Ray messages with an NCCL
broadcast from an in-process driver worker, citing their serialisation cost). Its decode step at
batch 1 is ≈8–10 ms above weight streaming (at 80–90 % of the HBM bandwidth) at TP 1 and ≈17–22 ms
at every TP from 2 to 8, for OPT-13B (40 layers) and OPT-66B (64 layers) alike: a fixed cost per
step at TP > 1, not per layer or per ring hop. Fitted, it is ≈7.6 ms per step; on DistServe's own engine it fits to 0.

Why a large-message efficiency: the 2023 engine Splitwise measured costs 20–45 % more per prefill
token once a step carries ≥ 4,096 tokens, at TP4/TP8 (llama2-70b) and TP8 (bloom-176b), about
constant per token above that point; whether 4,096 tokens come as one prompt or as 8 × 512 does not
matter (so it is not attention), and the excess grows with TP (so it is not the GEMMs). All-reduce
messages of a step are ``tokens · hidden · 2`` bytes: 58.7 MB (bloom, 2,048 tokens) runs at the
small-message speed and 67.1 MB (llama2-70b, 4,096 tokens) does not, which is where NCCL changes its
algorithm/protocol regime. Fitted with the rest of the profile's terms on those rows, the large
messages reach 18 % of the link against the 70 % prior of the small ones, and every configuration's
rows imply 15–19 % (A100: 10–19 %). The rows cannot tell a byte threshold from a token one (both
models switch between 2,048 and 4,096 tokens); the byte one is the mechanism. ``measured-2023`` fits
it; the other profiles have no rows that show a knee, so theirs is the small-message efficiency.

Why the per-layer decode term scales with memory bandwidth: the measured decode step at batch 1 is
nearly flat from TP4 to TP8 (so it is not weight streaming) yet A100 is ≈1.5x slower than H100 at
every TP (so it is not a fixed host time either). A per-layer latency proportional to
``1 / mem_bw`` reproduces both (decode medians 1–5 % instead of 10–15 % with a fixed host time)
and, as a side effect, leaves a plausible ≈0.9 weight-streaming efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

LARGE_MESSAGE_BYTES = 64e6
"""Where an all-reduce message (a step's tokens × hidden size × 2 bytes) turns large: the Splitwise
rows show 58.7 MB messages at the small-message speed (bloom-176b, 2,048 tokens) and 67.1 MB ones
slow (llama2-70b, 4,096 tokens), and no row lies between, so any threshold in (58.7, 67.1] MB fits
them alike; not fitted."""


@dataclass(frozen=True, slots=True)
class SkuEfficiency:
    """Fractions of one SKU's peaks that an engine reaches: GEMMs (``compute``), attention math
    (``attention``) and memory streaming (``hbm``: weights and KV cache)."""

    sku_id: str
    compute: float
    attention: float
    hbm: float

    def __post_init__(self) -> None:
        for name in ("compute", "attention", "hbm"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"SkuEfficiency({self.sku_id}).{name} must be in (0, 1], got {value}")


@dataclass(frozen=True, slots=True)
class Calibration:
    """Efficiency factors and overheads shared by every (model, SKU, TP); see the module docstring.

    ``prefill_sm_occupancy`` / ``decode_sm_occupancy`` convert GPU busy fraction into SM activity
    (``DCGM_FI_PROF_SM_ACTIVE`` ≈ busy fraction × occupancy). They are not fitted: the HeteroScale
    paper reports prefill instances at ≈0.72 SM activity for ≈0.84 GPU utilisation (0.72 / 0.84 ≈
    0.86) and decode at ≈0.62 for ≈0.90 (≈0.69); we use 0.85 and 0.69.
    """

    prefill_compute_eff: float
    decode_bw_eff: float
    comm_bw_eff: float
    allreduce_hop_latency_s: float
    prefill_step_overhead_s: float
    decode_step_overhead_s: float
    decode_seq_overhead_s: float
    decode_layer_latency_bytes: float = 0.0
    prefill_sm_occupancy: float = 0.85
    decode_sm_occupancy: float = 0.69
    label: str = "default"
    allreduce_call_latency_s: float = 0.0  # per all-reduce call (launch, sync), on top of the hops
    attention_eff: float | None = None  # prefill attention math; None: same as prefill_compute_eff
    prefill_layer_latency_bytes: float = 0.0  # per-layer cost of a prefill step, as for decode
    sku_efficiencies: tuple[SkuEfficiency, ...] = ()  # per-SKU overrides of the three efficiencies
    worker_dispatch_overhead_s: float = 0.0  # host time per step handed to TP worker processes (TP > 1)
    large_message_comm_bw_eff: float | None = None  # all-reduces of >= large_message_bytes; None: comm_bw_eff
    large_message_bytes: float = LARGE_MESSAGE_BYTES

    def __post_init__(self) -> None:
        for name in ("prefill_compute_eff", "decode_bw_eff", "comm_bw_eff"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"Calibration.{name} must be in (0, 1], got {value}")
        large = self.large_message_comm_bw_eff
        if large is not None and not 0.0 < large <= 1.0:
            raise ValueError(f"Calibration.large_message_comm_bw_eff must be in (0, 1], got {large}")
        if not self.large_message_bytes > 0.0:
            raise ValueError(f"Calibration.large_message_bytes must be > 0, got {self.large_message_bytes}")
        if self.attention_eff is not None and not 0.0 < self.attention_eff <= 1.0:
            raise ValueError(f"Calibration.attention_eff must be in (0, 1], got {self.attention_eff}")
        for name in ENGINE_TERMS:
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"Calibration.{name} must be >= 0, got {value}")
        for name in ("prefill_sm_occupancy", "decode_sm_occupancy"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"Calibration.{name} must be in (0, 1], got {value}")

    @classmethod
    def default(cls) -> Calibration:
        """Priors for a 2025-class engine (not fitted, not taken from any profile table).

        Physics: prefill GEMMs at 60 % of peak and decode streaming at 80 % of peak bandwidth
        (GPUS.md roofline sanity: 60–80 % and ≈80 %), ring all-reduce at 70 % of the link.
        Engine: CUDA-graph decode with overlapped scheduling leaves ~1.5 ms of exposed time per
        decode step (the per-layer latency term is folded into it: ``decode_layer_latency_bytes``
        = 0) and ~10 µs per running sequence; a prefill step ~3 ms (launch of a few hundred
        un-graphed kernels, input preparation); a ring hop ~2 µs (NVLink/PCIe latency plus launch);
        no per-step worker dispatch (the driver is worker 0 and broadcasts a step's inputs).
        These are order-of-magnitude assumptions, fixed before the model was compared with any
        profile table, to be replaced by a fit to the engine at hand.
        """
        return cls(
            prefill_compute_eff=0.6,
            decode_bw_eff=0.8,
            comm_bw_eff=0.7,
            allreduce_hop_latency_s=2e-6,
            prefill_step_overhead_s=3e-3,
            decode_step_overhead_s=1.5e-3,
            decode_seq_overhead_s=1e-5,
            label="default-2025-engine-priors",
        )

    @property
    def large_comm_bw_eff(self) -> float:
        """Link efficiency of an all-reduce message of at least ``large_message_bytes``."""
        large = self.large_message_comm_bw_eff
        return self.comm_bw_eff if large is None else large

    def with_engine_of(self, other: Calibration) -> Calibration:
        """These physics (efficiencies, occupancies) with ``other``'s engine overheads and latency."""
        terms = {name: getattr(other, name) for name in ENGINE_TERMS}
        return replace(self, **terms, label=f"{self.label}+engine:{other.label}")

    def efficiency(self, sku_id: str) -> SkuEfficiency:
        """The efficiencies used for ``sku_id``: its own entry, else the shared factors."""
        for entry in self.sku_efficiencies:
            if entry.sku_id == sku_id:
                return entry
        attention = self.prefill_compute_eff if self.attention_eff is None else self.attention_eff
        return SkuEfficiency(sku_id, self.prefill_compute_eff, attention, self.decode_bw_eff)


ENGINE_TERMS: tuple[str, ...] = (
    "allreduce_hop_latency_s",
    "prefill_step_overhead_s",
    "decode_step_overhead_s",
    "decode_seq_overhead_s",
    "decode_layer_latency_bytes",
    "prefill_layer_latency_bytes",
    "allreduce_call_latency_s",
    "worker_dispatch_overhead_s",
)
"""Calibration fields that belong to an engine (software generation), not to the GPU's physics."""
