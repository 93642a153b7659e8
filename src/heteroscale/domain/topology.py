"""Topology tree: VDC → physical cluster → logical cluster → S2 (big-pod) → S1 (mini-pod) → S0 → node.

A node's place is its path of domain names from the VDC down to itself. The closest level two
nodes share decides the KV-transfer bandwidth between instances on them (HETEROSCALE.md §3).
RDMA subgroups (pools of S1/S2 switches) carry a priority that says how valuable the pool is; the
derivation lives in :mod:`heteroscale.scheduling.subgroups`, the value types here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Level(IntEnum):
    """Depth in the tree; a larger value is a closer (smaller) domain."""

    VDC = 0
    PHYSICAL_CLUSTER = 1
    LOGICAL_CLUSTER = 2
    S2 = 3
    S1 = 4
    S0 = 5
    NODE = 6

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


PATH_LEVELS: tuple[Level, ...] = tuple(Level)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One machine. ``path`` names its domains: (vdc, physical, logical, s2, s1, s0, node)."""

    path: tuple[str, str, str, str, str, str, str]
    sku: str
    gpus_total: int
    gpus_free: int
    schedulable: bool = True
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.path[-1]

    def domain(self, level: Level) -> tuple[str, ...]:
        """The unique key of this node's domain at ``level`` (its path prefix)."""
        return self.path[: int(level) + 1]


def shared_level(a: tuple[str, ...], b: tuple[str, ...]) -> Level | None:
    """The closest level at which two paths share a domain, or None if not even the VDC."""
    shared: Level | None = None
    for level, (x, y) in zip(PATH_LEVELS, zip(a, b, strict=False), strict=False):
        if x != y:
            break
        shared = level
    return shared


@dataclass(frozen=True, slots=True)
class KvBandwidthTable:
    """KV-transfer bandwidth factor by the closest shared level, and the per-transfer setup time.

    Defaults are HeteroScale assumptions (HETEROSCALE.md §3): full NIC rate within one S1 (and on one
    node, over NVLink), 0.8× within one S2 (the paper's ≈20 % loss), 0.5× across S2 in one cluster.
    Across logical or physical clusters the default is 0.25× (assumption: no measurement exists).
    """

    same_node: float = 1.0
    same_s1: float = 1.0
    same_s2: float = 0.8
    same_cluster: float = 0.5
    cross_cluster: float = 0.25
    setup_s: float = 0.002

    def factor(self, level: Level | None) -> float:
        if level is None or level < Level.LOGICAL_CLUSTER:
            return self.cross_cluster
        if level >= Level.NODE:
            return self.same_node
        if level >= Level.S1:
            return self.same_s1
        if level >= Level.S2:
            return self.same_s2
        return self.same_cluster


class SubgroupPriority(IntEnum):
    """How valuable (scarce) an RDMA subgroup is; the scheduler spends the least valuable first."""

    LOW = 0  # an S2 whose GPUs are all one type
    MEDIUM = 1  # an S2 with several types, every S1 homogeneous
    HIGH = 2  # an S1 that joins different types

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class RdmaSubgroup:
    """A pool of S1 switches treated as one, with its priority and why it has that priority.

    ``domain`` is the path of the switch that names the pool (an S2 path for a whole big-pod or for
    the rest of one, an S1 path for a mini-pod split out of its big-pod); ``s1s`` are the member
    mini-pods' paths in topology order.
    """

    name: str
    domain: tuple[str, ...]
    s1s: tuple[tuple[str, ...], ...]
    priority: SubgroupPriority
    skus: tuple[str, ...]
    reason: str
    overridden: bool = False

    @property
    def s2(self) -> tuple[str, ...]:
        return self.domain[: int(Level.S2) + 1]


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    nodes: tuple[NodeSpec, ...]
    kv_bandwidth: KvBandwidthTable = field(default_factory=KvBandwidthTable)
    # Priority overrides by S2 path (the whole big-pod, one pool) or S1 path (that mini-pod, its own pool).
    subgroup_priority: tuple[tuple[tuple[str, ...], SubgroupPriority], ...] = ()

    def gpus_by_sku(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            out[node.sku] = out.get(node.sku, 0) + node.gpus_total
        return out

    def domains(self, level: Level) -> dict[tuple[str, ...], list[NodeSpec]]:
        out: dict[tuple[str, ...], list[NodeSpec]] = {}
        for node in self.nodes:
            out.setdefault(node.domain(level), []).append(node)
        return out
