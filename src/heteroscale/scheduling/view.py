"""The topological resource view of one scheduling cycle: free GPUs per node, per affinity domain
(S1 / S2 / logical cluster), per RDMA-subgroup priority and per SKU — rebuilt from scratch each call.

Everything is interned to small integers. Two indexes answer the scheduler's questions without
scanning nodes:

- ``slots[(level, tier, sku, tp)]``: domain id → how many instances of ``tp`` GPUs fit on that
  domain's nodes of ``sku`` whose pool has priority ``tier`` (Σ ⌊free / tp⌋ over the nodes); only
  domains with room are keys, so the keys are the candidate domains.
- per (level, domain, tier, sku): the nodes in topology order with a first-fit cursor per ``tp``.
  Capacity only shrinks inside a cycle (freed GPUs return at the next rebuild), so a cursor never
  has to look back — except after :meth:`TopologyView.give_back`, which rewinds it.

The view is mutable by design (virtual allocation inside one cycle) and private to one ``place`` call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.topology import Level, SubgroupPriority, Topology
from heteroscale.scheduling.subgroups import derive_subgroups, subgroup_of_s1

# Affinity domain levels, indexed 0, 1, 2 in the view.
LEVELS: tuple[Level, ...] = (Level.S1, Level.S2, Level.LOGICAL_CLUSTER)
LEVEL_OF: dict[AffinityLevel, int] = {AffinityLevel.S1: 0, AffinityLevel.S2: 1, AffinityLevel.CLUSTER: 2}
TIERS: tuple[int, ...] = tuple(int(p) for p in SubgroupPriority)
_DEPTH = tuple(int(level) + 1 for level in LEVELS)


class TopologyView:
    def __init__(self, topology: Topology, free_gpus: Mapping[str, int], tps: Iterable[int]) -> None:
        self.topology = topology
        self.subgroups = derive_subgroups(topology)
        sg_of = subgroup_of_s1(self.subgroups)
        self.tps: tuple[int, ...] = tuple(sorted({int(t) for t in tps if t > 0}))
        self.sku_ids: dict[str, int] = {}
        self.sku_names: list[str] = []
        self.dom_ids: tuple[dict[tuple[str, ...], int], ...] = ({}, {}, {})
        self.dom_paths: tuple[list[tuple[str, ...]], ...] = ([], [], [])
        self.node_index: dict[str, int] = {}
        self.node_names: list[str] = []
        self.free: list[int] = []
        self.node_sku: list[int] = []
        self.node_tier: list[int] = []
        self.node_dom: tuple[list[int], list[int], list[int]] = ([], [], [])
        self.s1_tier: list[int] = []
        self.s1_subgroup: list[str] = []
        self.children: tuple[list[list[int]], list[list[int]]] = ([], [])  # S2 / LC id → member S1 ids
        self.slots: dict[tuple[int, int, int, int], dict[int, int]] = {}
        self._lists: dict[tuple[int, int, int, int], list[int]] = {}
        self._cursors: dict[tuple[int, int, int, int, int], int] = {}
        s1_nodes: dict[tuple[int, int], list[int]] = {}  # (s1, sku) → nodes, for the S1-level lists
        for node in topology.nodes:
            i = len(self.node_names)
            self.node_index[node.name] = i
            self.node_names.append(node.name)
            sku = self.sku_ids.get(node.sku)
            if sku is None:
                sku = self.sku_ids[node.sku] = len(self.sku_names)
                self.sku_names.append(node.sku)
            doms = [self._intern(lvl, node.path[: _DEPTH[lvl]]) for lvl in range(3)]
            s1 = doms[0]
            if s1 == len(self.s1_tier):  # a new S1
                sg = sg_of[node.path[: _DEPTH[0]]]
                self.s1_tier.append(int(sg.priority))
                self.s1_subgroup.append(sg.name)
                self.children[0][doms[1]].append(s1)
                self.children[1][doms[2]].append(s1)
            free = (
                max(0, min(node.gpus_total, int(free_gpus.get(node.name, node.gpus_free)))) if node.schedulable else 0
            )
            self.free.append(free)
            self.node_sku.append(sku)
            self.node_tier.append(self.s1_tier[s1])
            for lvl in range(3):
                self.node_dom[lvl].append(doms[lvl])
            s1_nodes.setdefault((s1, sku), []).append(i)
        self._index(s1_nodes)

    def _intern(self, level: int, path: tuple[str, ...]) -> int:
        ids = self.dom_ids[level]
        found = ids.get(path)
        if found is None:
            found = ids[path] = len(self.dom_paths[level])
            self.dom_paths[level].append(path)
            if level > 0:
                self.children[level - 1].append([])
        return found

    def _index(self, s1_nodes: dict[tuple[int, int], list[int]]) -> None:
        parents = (self.node_dom[1], self.node_dom[2])
        for (s1, sku), nodes in s1_nodes.items():
            tier = self.s1_tier[s1]
            self._lists[(0, s1, tier, sku)] = nodes
            first = nodes[0]
            for tp in self.tps:
                count = sum(self.free[n] // tp for n in nodes)
                if not count:
                    continue
                for level, dom in ((0, s1), (1, parents[0][first]), (2, parents[1][first])):
                    slot = self.slots.setdefault((level, tier, sku, tp), {})
                    slot[dom] = slot.get(dom, 0) + count

    # --- questions ------------------------------------------------------------------------------

    def sku(self, name: str) -> int | None:
        return self.sku_ids.get(name)

    def slot_count(self, level: int, dom: int, shape: InstanceShape, max_tier: int = 2) -> int:
        """Instances of ``shape`` that fit in domain ``dom`` using pools of priority ≤ ``max_tier``."""
        sku = self.sku_ids.get(shape.sku)
        if sku is None:
            return 0
        total = 0
        for tier in range(max_tier + 1):
            slot = self.slots.get((level, tier, sku, shape.tp))
            if slot:
                total += slot.get(dom, 0)
        return total

    def cheapest_slot(
        self, level: int, dom: int, shapes: Sequence[InstanceShape], max_tier: int = 2
    ) -> tuple[int, int] | None:
        """``(tier, shape index)`` of the least valuable pool with room in ``dom``, preferred shape first."""
        for tier in range(max_tier + 1):
            for index, shape in enumerate(shapes):
                sku = self.sku_ids.get(shape.sku)
                if sku is None:
                    continue
                slot = self.slots.get((level, tier, sku, shape.tp))
                if slot and dom in slot:
                    return tier, index
        return None

    def domains_with_room(self, level: int, shape: InstanceShape, max_tier: int = 2) -> set[int]:
        """Domains of ``level`` with room for one ``shape`` in pools of priority ≤ ``max_tier``."""
        sku = self.sku_ids.get(shape.sku)
        out: set[int] = set()
        if sku is None:
            return out
        for tier in range(max_tier + 1):
            slot = self.slots.get((level, tier, sku, shape.tp))
            if slot:
                out.update(slot)
        return out

    def domain_name(self, level: int, dom: int) -> str:
        """``lc/s2`` or ``lc/s2/s1`` (or the logical cluster's name): short and unique."""
        path = self.dom_paths[level][dom]
        return "/".join(path[2:])

    # --- virtual allocation ---------------------------------------------------------------------

    def allocate(self, level: int, dom: int, shape: InstanceShape, max_tier: int = 2) -> int | None:
        """Reserve one ``shape`` in ``dom`` on the least valuable pool with room (first fit); the node id."""
        sku = self.sku_ids.get(shape.sku)
        if sku is None:
            return None
        tp = shape.tp
        for tier in range(max_tier + 1):
            slot = self.slots.get((level, tier, sku, tp))
            if not slot or dom not in slot:
                continue
            node = self._first_fit(level, dom, tier, sku, tp)
            if node is None:  # pragma: no cover - the slot index and the node lists always agree
                raise RuntimeError(f"view out of step: no node in {self.domain_name(level, dom)} for {shape.key}")
            self._change(node, -tp)
            return node
        return None

    def give_back(self, node: int, gpus: int) -> None:
        """Undo a reservation made earlier in this cycle (a tentative one that did not work out)."""
        self._change(node, gpus)
        tier, sku, free = self.node_tier[node], self.node_sku[node], self.free[node]
        for level in range(3):
            key = (level, self.node_dom[level][node], tier, sku)
            nodes = self._lists.get(key)
            if nodes is None:
                continue
            pos = nodes.index(node)
            for tp in self.tps:
                ckey = (*key, tp)
                if tp <= free and self._cursors.get(ckey, 0) > pos:
                    self._cursors[ckey] = pos

    def _first_fit(self, level: int, dom: int, tier: int, sku: int, tp: int) -> int | None:
        key = (level, dom, tier, sku)
        nodes = self._lists.get(key)
        if nodes is None:
            nodes = self._lists[key] = self._member_nodes(level, dom, tier, sku)
        ckey = (level, dom, tier, sku, tp)
        i = self._cursors.get(ckey, 0)
        free = self.free
        while i < len(nodes) and free[nodes[i]] < tp:
            i += 1
        self._cursors[ckey] = i
        return nodes[i] if i < len(nodes) else None

    def _member_nodes(self, level: int, dom: int, tier: int, sku: int) -> list[int]:
        out: list[int] = []
        if level == 0:
            return out
        for s1 in self.children[level - 1][dom]:
            if self.s1_tier[s1] == tier:
                out.extend(self._lists.get((0, s1, tier, sku), ()))
        return out

    def _change(self, node: int, delta: int) -> None:
        before = self.free[node]
        after = before + delta
        self.free[node] = after
        tier, sku = self.node_tier[node], self.node_sku[node]
        for tp in self.tps:
            diff = after // tp - before // tp
            if not diff:
                continue
            for level in range(3):
                slot = self.slots.setdefault((level, tier, sku, tp), {})
                dom = self.node_dom[level][node]
                value = slot.get(dom, 0) + diff
                if value:
                    slot[dom] = value
                else:
                    del slot[dom]
