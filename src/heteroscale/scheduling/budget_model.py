"""The values :mod:`heteroscale.scheduling.budget` solves with and
:mod:`heteroscale.scheduling.budget_reasons` explains: the budget, a cut, and the scopes, fleets,
bindings, services and ledger of one solve. Both modules import this one (never each other)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.scheduling.groups import ROLES, ServiceDemand, imbalance

LEAVING = (Lifecycle.DRAINING, Lifecycle.STUCK)  # hold their GPUs until gone, then come back


@dataclass(frozen=True, slots=True)
class GpuBudget:
    """GPUs all managed services may hold together: a total cap and/or caps per GPU SKU (canonical id).
    No cap at all (the default): nothing is cut."""

    total_gpus: int | None = None
    by_sku: tuple[tuple[str, int], ...] = ()  # (SKU id, GPUs)

    def __post_init__(self) -> None:
        if self.total_gpus is not None and self.total_gpus < 0:
            raise ValueError(f"GpuBudget.total_gpus must be ≥ 0, got {self.total_gpus}")
        seen: set[str] = set()
        for sku, cap in self.by_sku:
            if not sku:
                raise ValueError("GpuBudget.by_sku: a SKU id is empty")
            if sku in seen:
                raise ValueError(f"GpuBudget.by_sku lists {sku!r} twice")
            seen.add(sku)
            if cap < 0:
                raise ValueError(f"GpuBudget.by_sku[{sku!r}] must be ≥ 0, got {cap}")

    @property
    def bounded(self) -> bool:
        return self.total_gpus is not None or bool(self.by_sku)


@dataclass(frozen=True, slots=True)
class BudgetCut:
    """One service that gets less than it wants this cycle: ``steady_*`` is its steady-state grant
    (rule 2), ``granted_*`` what its demand is capped to now — below ``steady_*`` when its launches
    wait for GPUs to drain (rule 3). ``reason``: one line for the decision journal."""

    service: str
    priority: int
    wanted_prefill: int
    wanted_decode: int
    steady_prefill: int
    steady_decode: int
    granted_prefill: int
    granted_decode: int
    reason: str

    @property
    def deferred(self) -> bool:
        return (self.granted_prefill, self.granted_decode) != (self.steady_prefill, self.steady_decode)


# --- values used while solving ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """One cap: the total (``sku`` None: every SKU counts) or one SKU's."""

    sku: str | None
    cap_gpus: int

    def gpus(self, shape: InstanceShape | None) -> int:
        if shape is None:
            return 0
        return shape.gpus if self.sku is None or shape.sku == self.sku else 0

    @property
    def label(self) -> str:
        return f"the {self.sku or 'total'} budget of {self.cap_gpus} GPUs"


@dataclass(frozen=True, slots=True)
class Fleet:
    """Counts of one service: per role and, with a mix, per shape key (in the demand's order)."""

    prefill: int
    decode: int
    mix: tuple[tuple[str, int], ...] = ()

    def count(self, role: Role) -> int:
        return self.prefill if role is Role.PREFILL else self.decode

    @property
    def text(self) -> str:
        return f"{self.prefill}P:{self.decode}D"


@dataclass(frozen=True, slots=True)
class Binding:
    """Why one scope stopped a service: GPUs left for it there, what the next step needed, who is ahead."""

    scope: Scope
    left_gpus: int  # before any priority block
    needed_gpus: int
    next_fleet: Fleet  # the step that did not fit
    ahead: tuple[tuple[str, int], ...]  # (service label, GPUs granted or launched) ahead of it here
    blocked_by: tuple[str, ...]  # strictly higher-priority services cut (or deferred) by this scope


def fits(cost: int, avail: int) -> bool:
    return cost == 0 or cost <= avail


def scope_gpus(instances: Iterable[InstanceInfo], scope: Scope) -> int:
    return sum(scope.gpus(i.shape) for i in instances)


def scopes_of(budget: GpuBudget) -> list[Scope]:
    out = [] if budget.total_gpus is None else [Scope(None, budget.total_gpus)]
    return out + [Scope(sku, cap) for sku, cap in budget.by_sku]


class ServiceBudget:
    """One managed service during the cycle: its demand and instances, its chain, costs and launch path."""

    def __init__(self, demand: ServiceDemand, instances: Sequence[InstanceInfo]) -> None:
        spec = demand.spec
        self.demand, self.name, self.priority = demand, spec.name, spec.priority
        self.label = f"{spec.name} (priority {spec.priority})"
        self.ratio = demand.dg_ratio
        self.capacity = [i for i in instances if i.counts_as_capacity]
        self.draining = [i for i in instances if i.lifecycle in LEAVING]
        self.shapes = {shape.key: shape for role in ROLES for shape in spec.shapes(role)}
        self.preferred = {role: (spec.shapes(role) or (None,))[0] for role in ROLES}
        self.cur_by_shape = Counter(i.shape.key for i in self.capacity)
        self.cur_by_role = Counter(i.role for i in self.capacity)
        self.current = Fleet(self.cur_by_role[Role.PREFILL], self.cur_by_role[Role.DECODE])
        self.wanted = Fleet(demand.desired_prefill, demand.desired_decode, demand.shape_counts)
        self._order = {role: self._removal_order(role) for role in ROLES} if demand.has_mix else {}

    # rule 1: the chain and the cost of a fleet

    def chain(self) -> list[Fleet]:
        """Candidate fleets from the desired one down to 0P:0D, each at the demand's P/D ratio ±1."""
        big_p, big_d = self.wanted.prefill, self.wanted.decode
        total = big_p + big_d
        out: list[Fleet] = []
        for n in range(total, -1, -1):
            if big_p == 0 or big_d == 0:
                p = n if big_p else 0
            elif n == 1:
                continue
            else:
                p = 0 if n == 0 else min(max((2 * n * big_p + total) // (2 * total), 1), n - 1)
            out.append(self._split(p, n - p))
        return out

    def _split(self, prefill: int, decode: int) -> Fleet:
        if not self.demand.has_mix:
            return Fleet(prefill, decode)
        removed: Counter[str] = Counter()
        for role, keep in ((Role.PREFILL, prefill), (Role.DECODE, decode)):
            order = self._order[role]
            removed.update(order[: len(order) - keep])
        return Fleet(prefill, decode, tuple((key, n - removed[key]) for key, n in self.wanted.mix))

    def _removal_order(self, role: Role) -> list[str]:
        """The role's shape keys in the order a cut removes them: the largest share left first."""
        wanted = {key: n for key, n in self.wanted.mix if self.shapes[key].role is role and n > 0}
        left = dict(wanted)
        order: list[str] = []
        for _ in range(sum(wanted.values())):
            key = max(
                (k for k in wanted if left[k] > 0),
                key=lambda k: (Fraction(left[k], wanted[k]), self.shapes[k].gpus, k),
            )
            left[key] -= 1
            order.append(key)
        return order

    def cost(self, fleet: Fleet, scope: Scope) -> int:
        """GPUs ``fleet`` holds in ``scope`` once reached (without a mix: whichever instances scale-in keeps)."""
        if fleet.mix:
            return sum(n * scope.gpus(self.shapes[key]) for key, n in fleet.mix)
        total = 0
        for role in ROLES:
            kept = sorted((scope.gpus(i.shape) for i in self.capacity if i.role is role), reverse=True)
            n = fleet.count(role)
            total += sum(kept[:n]) + max(0, n - len(kept)) * scope.gpus(self.preferred[role])
        return total

    # rule 3: launches

    def launch_path(self, fleet: Fleet) -> tuple[Fleet, list[tuple[Fleet, InstanceShape | None]]]:
        """The fleet after scale-ins alone (per role, or per shape: the smaller of ``fleet`` and the
        current) and, one launch at a time, the fleets on the way to ``fleet`` with the shape launched."""
        have = {key: min(n, self.cur_by_shape[key]) for key, n in fleet.mix}
        need = {key: n - have[key] for key, n in fleet.mix}
        rank = {key: i for i, (key, _) in enumerate(fleet.mix)}
        if fleet.mix:
            counts = {role: sum(n for key, n in have.items() if self.shapes[key].role is role) for role in ROLES}
        else:
            counts = {role: min(fleet.count(role), self.cur_by_role[role]) for role in ROLES}
        start = Fleet(counts[Role.PREFILL], counts[Role.DECODE], tuple(have.items()))
        todo = {role: fleet.count(role) - counts[role] for role in ROLES}
        path: list[tuple[Fleet, InstanceShape | None]] = []
        while todo[Role.PREFILL] > 0 or todo[Role.DECODE] > 0:

            def rank_role(r: Role) -> tuple[float, int, int]:
                after = (counts[Role.PREFILL] + (r is Role.PREFILL), counts[Role.DECODE] + (r is Role.DECODE))
                return imbalance(*after, self.ratio), -todo[r], ROLES.index(r)

            role = min((r for r in ROLES if todo[r] > 0), key=rank_role)
            shape = self.preferred[role]
            if fleet.mix:
                key = max(
                    (k for k in need if need[k] > 0 and self.shapes[k].role is role), key=lambda k: (need[k], -rank[k])
                )
                need[key], have[key], shape = need[key] - 1, have[key] + 1, self.shapes[key]
            counts[role] += 1
            todo[role] -= 1
            path.append((Fleet(counts[Role.PREFILL], counts[Role.DECODE], tuple(have.items())), shape))
        return start, path

    def launch_gpus(self, fleet: Fleet, scope: Scope) -> int:
        return sum(scope.gpus(shape) for _, shape in self.launch_path(fleet)[1])

    def frees(self, fleet: Fleet, scope: Scope) -> bool:
        """Whether it has GPUs draining in ``scope`` or scales some in there to reach ``fleet``."""
        if scope_gpus(self.draining, scope) > 0:
            return True
        keep = dict(fleet.mix)
        return any(
            scope.gpus(i.shape) > 0
            and (
                self.cur_by_shape[i.shape.key] > keep.get(i.shape.key, 0)
                if fleet.mix
                else self.cur_by_role[i.role] > fleet.count(i.role)
            )
            for i in self.capacity
        )

    def capped(self, fleet: Fleet) -> ServiceDemand:
        if fleet == self.wanted:
            return self.demand
        return dataclasses.replace(
            self.demand, desired_prefill=fleet.prefill, desired_decode=fleet.decode, shape_counts=fleet.mix
        )


class Ledger:
    """Per scope: held, draining (managed; unmanaged) and unmanaged GPUs."""

    def __init__(
        self,
        scopes: list[Scope],
        services: list[ServiceBudget],
        live: list[InstanceInfo],
        unmanaged: list[InstanceInfo],
    ) -> None:
        self.scopes = scopes
        self.held = {s: scope_gpus(live, s) for s in scopes}
        self.draining = {s: sum(scope_gpus(svc.draining, s) for svc in services) for s in scopes}
        self.unmanaged = {s: scope_gpus(unmanaged, s) for s in scopes}
        gone_soon = [i for i in unmanaged if i.lifecycle in LEAVING]
        self.unmanaged_draining = {s: scope_gpus(gone_soon, s) for s in scopes}


Grants = dict[str, tuple[Fleet, list[Binding]]]
