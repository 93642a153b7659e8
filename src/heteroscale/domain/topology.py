"""Topology tree: VDC → physical cluster → logical cluster → S2 (big-pod) → S1 (mini-pod) → S0 → node.

A node's place is its path of domain names from the VDC down to itself. The closest level two
nodes share decides the KV-transfer bandwidth between instances on them (HETEROSCALE.md §3).
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


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    nodes: tuple[NodeSpec, ...]
    kv_bandwidth: KvBandwidthTable = field(default_factory=KvBandwidthTable)

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
