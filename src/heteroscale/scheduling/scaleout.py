"""Scale-out of one service (Algorithm 4, the ``if scale-out`` branch), pod by pod with virtual allocation.

Each step places one pod (or, for a new DG, one prefill and one decode pod together) at the least
valuable pool that can take it:

1. growth options: every DG of the service × every role still wanted, if the pod keeps the DG
   balanced (or brings it closer to the ratio) and the DG's affinity domain has room. The cheapest
   is the one with the lowest pool priority (LOW < MEDIUM < HIGH), then the smallest ratio gap after
   it (so P and D alternate), then the preferred shape, then the oldest DG;
2. a new DG ("seed": 1 P + 1 D in one affinity domain without a DG of this service) is created only
   when it uses a strictly less valuable pool than the best growth option — growth wins ties, so a
   DG grows while that does not consume a more valuable pool. Candidate domains are the
   intersection of the slot indexes for one prefill and one decode shape; the lowest domain id that
   really fits both wins (first fit, deterministic).

Capacity only shrinks inside the cycle, so once no seed fits with pools up to priority t it never will
again; ``seed_floor`` remembers that and keeps the search cheap.

With a GPU mix (``shape_need``: shape key → pods of that shape still wanted) the shapes a role may use
are only those still wanted, in the spec's order; there is no fallback to another shape. The set
only shrinks as pods are placed, so ``seed_floor`` stays valid. A shape that cannot be placed is
reported in ``unplaced`` with the reason naming the wanted shape(s).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.plan import Launch, Unplaced
from heteroscale.domain.service import ServiceSpec
from heteroscale.scheduling.groups import RATIO_TOLERANCE_PODS, ROLES, Group, ratio_gap
from heteroscale.scheduling.reasons import unplaced_reasons
from heteroscale.scheduling.view import TIERS, TopologyView

_NO_TIER = len(TIERS)


@dataclass(slots=True)
class ScaleOut:
    spec: ServiceSpec
    view: TopologyView
    level: int
    groups: list[Group]
    ratio: float
    next_dg: int
    need: dict[Role, int]
    shape_need: dict[str, int] | None = None
    launches: list[Launch] = field(default_factory=list)
    seed_floor: int = 0

    def _shapes(self, role: Role) -> tuple[InstanceShape, ...]:
        """The shapes a pod of ``role`` may take now: all of the spec's, or with a mix those still wanted."""
        shapes = self.spec.shapes(role)
        if self.shape_need is None:
            return shapes
        wanted = self.shape_need
        return tuple(s for s in shapes if wanted.get(s.key, 0) > 0)

    def run(self) -> list[Unplaced]:
        """Place what is needed; return what could not be placed, with reasons."""
        while self.need[Role.PREFILL] > 0 or self.need[Role.DECODE] > 0:
            best = self._best_growth()
            tier = best[0] if best is not None else _NO_TIER
            if self.need[Role.PREFILL] > 0 and self.need[Role.DECODE] > 0 and self.seed_floor < tier:
                if self._seed(tier - 1):
                    continue
                self.seed_floor = tier
            if best is None:
                break
            _, _, shape_index, order, role_index = best
            self._grow(self.groups[order], ROLES[role_index], shape_index)
        if self.need[Role.PREFILL] <= 0 and self.need[Role.DECODE] <= 0:
            return []
        reasons = unplaced_reasons(self.view, self._wanted_spec(), self.level, self.groups, self.need, self.ratio)
        return [Unplaced(self.spec.name, role, self.need[role], why) for role, why in reasons.items()]

    def _wanted_spec(self) -> ServiceSpec:
        """The spec as the reasons should name it: with a mix, only the shapes still wanted per role."""
        if self.shape_need is None:
            return self.spec
        prefill = self._shapes(Role.PREFILL) or self.spec.prefill_shapes
        decode = self._shapes(Role.DECODE) or self.spec.decode_shapes
        return replace(self.spec, prefill_shapes=prefill, decode_shapes=decode)

    # --- growth ---------------------------------------------------------------------------------

    def _best_growth(self) -> tuple[int, float, int, int, int] | None:
        best: tuple[int, float, int, int, int] | None = None
        for group in self.groups:
            if group.domain is None:
                continue
            before = ratio_gap(group.prefill, group.decode, self.ratio)
            for role_index, role in enumerate(ROLES):
                if self.need[role] <= 0:
                    continue
                after = ratio_gap(*group.after(role, 1), self.ratio)
                if after > RATIO_TOLERANCE_PODS + 1e-9 and not after < before:
                    continue
                slot = self.view.cheapest_slot(self.level, group.domain, self._shapes(role))
                if slot is None:
                    continue
                key = (slot[0], after, slot[1], group.order, role_index)
                if best is None or key < best:
                    best = key
        return best

    def _grow(self, group: Group, role: Role, shape_index: int) -> None:
        shape = self._shapes(role)[shape_index]
        node = None if group.domain is None else self.view.allocate(self.level, group.domain, shape)
        if node is None:  # pragma: no cover - only DGs with a domain and room are growth options
            raise RuntimeError(f"view out of step growing {group.name} with {shape.key}")
        self._launch(group, role, shape, node)

    def _launch(self, group: Group, role: Role, shape: InstanceShape, node: int) -> None:
        group.add(role, 1)
        self.need[role] -= 1
        if self.shape_need is not None:
            self.shape_need[shape.key] -= 1
        self.launches.append(Launch(self.spec.name, role, shape, group.name, self.view.node_names[node]))

    # --- new DGs --------------------------------------------------------------------------------

    def _seed(self, max_tier: int) -> bool:
        """Create a new DG with 1 P + 1 D in the first domain that fits them with pools ≤ ``max_tier``."""
        taken = {g.domain for g in self.groups if g.domain is not None}
        prefill, decode = self._shapes(Role.PREFILL), self._shapes(Role.DECODE)
        combos = sorted(
            ((i, j) for i in range(len(prefill)) for j in range(len(decode))),
            key=lambda ij: (max(ij), sum(ij), ij),
        )
        for tier in range(self.seed_floor, max_tier + 1):
            rooms: dict[tuple[Role, int], set[int]] = {}
            for i, j in combos:
                p_room = rooms.get((Role.PREFILL, i))
                if p_room is None:
                    p_room = rooms[(Role.PREFILL, i)] = self.view.domains_with_room(self.level, prefill[i], tier)
                if not p_room:
                    continue
                d_room = rooms.get((Role.DECODE, j))
                if d_room is None:
                    d_room = rooms[(Role.DECODE, j)] = self.view.domains_with_room(self.level, decode[j], tier)
                candidates = (p_room & d_room) - taken
                while candidates:
                    dom = min(candidates)
                    candidates.discard(dom)
                    if self._try_seed(dom, prefill[i], decode[j], tier):
                        self.seed_floor = tier
                        return True
        return False

    def _try_seed(self, dom: int, prefill: InstanceShape, decode: InstanceShape, max_tier: int) -> bool:
        p_node = self.view.allocate(self.level, dom, prefill, max_tier)
        if p_node is None:
            return False
        d_node = self.view.allocate(self.level, dom, decode, max_tier)
        if d_node is None:  # both fit alone but not together (same SKU, one slot left)
            self.view.give_back(p_node, prefill.gpus)
            return False
        group = Group(name=f"{self.spec.name}-dg{self.next_dg}", domain=dom, order=len(self.groups), created=True)
        self.next_dg += 1
        self.groups.append(group)
        self._launch(group, Role.PREFILL, prefill, p_node)
        self._launch(group, Role.DECODE, decode, d_node)
        return True
