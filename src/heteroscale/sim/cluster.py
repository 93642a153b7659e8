"""Simulated cluster: nodes and their free GPUs, instances with their lifecycle, GPU-time billing.

Both fidelities keep their instances here, so placement, lifecycle and billing are identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from heteroscale.domain.hardware import GpuSku, InstanceShape, Role
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle
from heteroscale.domain.topology import Topology, shared_level
from heteroscale.perf import InstancePerf


class SimInstance:
    """One simulated serving instance. Engines subclass it with their serving state."""

    __slots__ = (
        "acc_flops",
        "acc_kernel_s",
        "acc_tokens",
        "dg",
        "gone_at_s",
        "gpus",
        "id",
        "in_discovery",
        "launched_at_s",
        "lifecycle",
        "nic_bytes_per_s",
        "node",
        "path",
        "perf",
        "ready_at_s",
        "role",
        "shape",
        "svc",
        "win_flops",
        "win_kernel_s",
        "win_tokens",
    )

    def __init__(
        self,
        inst_id: str,
        svc: int,
        shape: InstanceShape,
        dg: str,
        node: str,
        path: tuple[str, ...],
        perf: InstancePerf,
        nic_bytes_per_s: float,
        launched_at_s: float,
    ) -> None:
        self.id = inst_id
        self.svc = svc
        self.role = shape.role
        self.shape = shape
        self.gpus = shape.gpus
        self.dg = dg
        self.node = node
        self.path = path
        self.perf = perf
        self.nic_bytes_per_s = nic_bytes_per_s
        self.launched_at_s = launched_at_s
        self.ready_at_s: float | None = None
        self.gone_at_s: float | None = None
        self.lifecycle = Lifecycle.STARTING
        self.in_discovery = False
        # cumulative accounting (kernel-busy seconds, tokens, FLOPs)
        self.acc_kernel_s = 0.0
        self.acc_tokens = 0.0
        self.acc_flops = 0.0
        # values of the accumulators at the last telemetry sample
        self.win_kernel_s = 0.0
        self.win_tokens = 0.0
        self.win_flops = 0.0

    @property
    def routable(self) -> bool:
        return self.lifecycle is Lifecycle.READY and self.in_discovery


@dataclass(slots=True)
class Billing:
    gpu_s_by_role: dict[str, float]
    gpu_s_by_sku: dict[str, float]
    cost_gpu_s: float  # GPU-seconds weighted by relative cost
    launches: int = 0
    removals: int = 0
    gpu_s_by_service_role: dict[tuple[int, str], float] = field(default_factory=dict)  # (service index, role)


class SimCluster:
    """Nodes, free GPUs, instances and billing. Instance ids are deterministic per run."""

    def __init__(self, topology: Topology, skus: dict[str, GpuSku], service_names: list[str]) -> None:
        self.topology = topology
        self.skus = skus
        self.service_names = service_names
        self.node_free: dict[str, int] = {n.name: n.gpus_free for n in topology.nodes}
        self.node_sku: dict[str, str] = {n.name: n.sku for n in topology.nodes}
        self.node_path: dict[str, tuple[str, ...]] = {n.name: n.path for n in topology.nodes}
        self.node_order: list[str] = [n.name for n in topology.nodes if n.schedulable]
        self.instances: dict[str, SimInstance] = {}
        self.live: list[SimInstance] = []
        self._counter: dict[tuple[int, Role], int] = {}
        self.billing = Billing({r.value: 0.0 for r in Role}, {}, 0.0)
        self._bw_cache: dict[tuple[str, str], float] = {}

    # ---- ids and placement bookkeeping
    def next_id(self, svc: int, role: Role) -> str:
        n = self._counter.get((svc, role), 0)
        self._counter[(svc, role)] = n + 1
        return f"{self.service_names[svc]}-{role.value[0]}{n}"

    def reserve(self, node: str, gpus: int) -> None:
        free = self.node_free.get(node)
        if free is None:
            raise ValueError(f"unknown node {node!r}")
        if free < gpus:
            raise ValueError(f"node {node!r} has {free} free GPUs, {gpus} requested")
        self.node_free[node] = free - gpus

    def add(self, inst: SimInstance) -> None:
        self.instances[inst.id] = inst
        self.live.append(inst)
        self.billing.launches += 1

    def gpus_held(self) -> int:
        """GPUs held now by instances that are not gone (pending, starting, ready and draining)."""
        return sum(i.gpus for i in self.live if i.lifecycle is not Lifecycle.GONE)

    def mark_gone(self, inst: SimInstance, now_s: float) -> None:
        if inst.lifecycle is Lifecycle.GONE:
            return
        inst.lifecycle = Lifecycle.GONE
        inst.in_discovery = False
        inst.gone_at_s = now_s
        self.node_free[inst.node] += inst.gpus
        self._bill(inst, now_s - inst.launched_at_s)
        self.live.remove(inst)
        self.billing.removals += 1

    def _bill(self, inst: SimInstance, seconds: float) -> None:
        gpu_s = inst.gpus * max(0.0, seconds)
        b = self.billing
        b.gpu_s_by_role[inst.role.value] += gpu_s
        b.gpu_s_by_sku[inst.shape.sku] = b.gpu_s_by_sku.get(inst.shape.sku, 0.0) + gpu_s
        key = (inst.svc, inst.role.value)
        b.gpu_s_by_service_role[key] = b.gpu_s_by_service_role.get(key, 0.0) + gpu_s
        b.cost_gpu_s += gpu_s * self.skus[inst.shape.sku].cost_per_gpu_hour

    def close_billing(self, now_s: float) -> Billing:
        """Billing with every live instance charged up to ``now_s`` (does not change state)."""
        out = Billing(
            dict(self.billing.gpu_s_by_role),
            dict(self.billing.gpu_s_by_sku),
            self.billing.cost_gpu_s,
            self.billing.launches,
            self.billing.removals,
            dict(self.billing.gpu_s_by_service_role),
        )
        for inst in self.live:
            gpu_s = inst.gpus * max(0.0, now_s - inst.launched_at_s)
            out.gpu_s_by_role[inst.role.value] += gpu_s
            out.gpu_s_by_sku[inst.shape.sku] = out.gpu_s_by_sku.get(inst.shape.sku, 0.0) + gpu_s
            key = (inst.svc, inst.role.value)
            out.gpu_s_by_service_role[key] = out.gpu_s_by_service_role.get(key, 0.0) + gpu_s
            out.cost_gpu_s += gpu_s * self.skus[inst.shape.sku].cost_per_gpu_hour
        return out

    # ---- KV transfer bandwidth between two instances (bytes/s), by the closest shared level
    def kv_bandwidth(self, p: SimInstance, d: SimInstance) -> float:
        key = (p.id, d.id)
        bw = self._bw_cache.get(key)
        if bw is None:
            factor = self.topology.kv_bandwidth.factor(shared_level(p.path, d.path))
            bw = min(p.nic_bytes_per_s, d.nic_bytes_per_s) * factor
            self._bw_cache[key] = bw
        return bw

    def snapshot(self, now_s: float) -> ClusterState:
        infos = tuple(
            InstanceInfo(
                id=i.id,
                service=self.service_names[i.svc],
                role=i.role,
                shape=i.shape,
                dg=i.dg,
                node=i.node,
                lifecycle=i.lifecycle,
                in_discovery=i.in_discovery,
                launched_at_s=i.launched_at_s,
                ready_at_s=i.ready_at_s,
            )
            for i in self.live
        )
        return ClusterState(at_s=now_s, instances=infos)
