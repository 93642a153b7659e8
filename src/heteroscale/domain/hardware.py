"""GPU SKUs, model architectures and instance shapes (pure values)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass(frozen=True, slots=True)
class GpuSku:
    """One GPU type. Figures from GPUS.md (dense BF16, no sparsity)."""

    id: str
    name: str
    bf16_tflops: float
    mem_gb: float
    mem_bw_tbps: float
    interconnect_gbps: float  # GPU-GPU link per direction used by tensor parallelism, GB/s
    nic_gbit_per_gpu: float  # RDMA NIC per GPU, Gb/s
    tdp_w: float
    cost_per_gpu_hour: float  # relative cost units (A100 = 1.0)
    nvlink: bool = True
    note: str = ""

    @property
    def fp8_tflops(self) -> float:
        return self.bf16_tflops * 2.0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A dense decoder-only transformer.

    ``mlp_matrices`` is 3 for a gated MLP (SwiGLU: gate, up, down; Llama, Qwen) and 2 for a plain one
    (up, down with ReLU / GELU; OPT, BLOOM).
    """

    id: str
    hf_name: str
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    params_b: float  # parameters, billions
    bytes_per_param: float = 2.0  # 2 = BF16, 1 = FP8
    kv_bytes_per_elem: float = 2.0
    mlp_matrices: int = 3

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V for every layer of one token."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * self.kv_bytes_per_elem

    def with_precision(self, bytes_per_param: float, kv_bytes_per_elem: float | None = None) -> ModelSpec:
        from dataclasses import replace

        return replace(
            self,
            bytes_per_param=bytes_per_param,
            kv_bytes_per_elem=self.kv_bytes_per_elem if kv_bytes_per_elem is None else kv_bytes_per_elem,
        )


@dataclass(frozen=True, slots=True)
class InstanceShape:
    """What one serving instance of a role is: a SKU and a tensor-parallel degree."""

    role: Role
    sku: str
    tp: int

    @property
    def gpus(self) -> int:
        return self.tp

    @property
    def key(self) -> str:
        return f"{self.role.value}:{self.sku}:tp{self.tp}"
