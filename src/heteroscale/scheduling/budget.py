"""GPU budget across services: cap every service's demand so the managed fleet stays within a GPU budget.

The controller calls :func:`apply_budget` once per cycle, before placement, with a
:class:`~heteroscale.scheduling.groups.ServiceDemand` for *every* managed service (also those whose
desired counts equal their current capacity: they hold GPUs too) and the cluster's instances. It
returns the capped demands, one :class:`BudgetCut` per service that gets less than it wants (each
with one journal line saying why) and a summary. Pure and deterministic: no I/O, no clock.

Notation. A *scope* ``s`` is the total budget (every SKU) or one per-SKU cap, with cap ``B_s``;
``g_s(x)`` is the GPUs of shape ``x`` that ``s`` counts (``x.gpus`` for the total budget and for
shapes on the scope's SKU, else 0). Every scope applies the same rules below, a service is limited
by every scope at once, and a scope that counts none of a fleet's GPUs never limits it.

1. GPUs are *held* by every instance that is not GONE — pending, starting, ready **and draining**
   or stuck (a draining or stuck instance keeps its GPUs until it is gone; both count as draining).
   ``H_s`` = held GPUs in ``s``; ``U_s`` = those of instances of services with no demand (unmanaged:
   outside our control, but they use the budget, now and in steady state). The cost of a fleet ``F``
   of one service in ``s`` is ``C_s(F)``:

   - with a mix (``shape_counts``): ``Σ_k F_k · g_s(k)`` — exact;
   - without: per role, ``n`` ≤ ``N`` (its capacity instances) costs the ``n`` largest ``g_s`` among
     them (whichever the scheduler removes, no more is kept), ``n`` > ``N`` costs all of them plus
     ``(n − N) · g_s(preferred shape)`` — new instances get the role's preferred shape.

   Candidate fleets, largest first (the *chain*): for the demand ``P:D`` with ``f = P/(P+D)`` and
   ``n = P+D, …, 0``: ``p_n = clamp(⌊n·f + ½⌋, 1, n−1)``, ``d_n = n − p_n`` (``n = 1`` is skipped, so
   1P+1D is the last step before 0P:0D; a one-role demand shrinks that role alone). ``p_n`` and
   ``d_n`` never grow as ``n`` falls, and ``ratio_gap(p_n, d_n, P/D) ≤ 1``: every cut stays at the
   demand's P/D ratio ±1 instance. With a mix each role total ``m`` is split over the role's shapes by
   one fixed *proportional* removal order — repeatedly take one instance from the shape with the
   largest share left ``F_k / W_k`` (ties: more GPUs per instance, then shape key) — so
   ``F_k ≈ m·W_k/W``, the split never grows as ``m`` falls, and ``shape_counts`` keeps summing to the
   role totals.

2. Steady state, by priority. Walk the services by priority (highest first, then name) with
   ``A_s = B_s − U_s``. Draining GPUs of managed services are *not* subtracted here: they come back
   once drained, and rule 3 already keeps them out of this cycle's launches. (Subtracting them would
   cut a service again while the instances it gave up last cycle drain — 4P:4D → 2P:2D, then 0P:0D,
   then 2P:2D again once drained: a flap.) A service may use
   ``avail_s = A_s``, or ``min(A_s, 0)`` if a service of strictly higher priority was cut by ``s`` (a
   lower priority gets nothing there while a higher one is still cut). It is granted the first chain
   fleet ``F`` with ``C_s(F) = 0 or C_s(F) ≤ avail_s`` for every ``s`` (its desired fleet when that
   fits, else the largest that fits, never below 1P+1D if that fits), then ``A_s −= C_s(F)``; the
   scopes where the next larger chain fleet fails are the ones that *cut* it. The cut
   may go below the service's current capacity (it scales in; its GPUs come back once drained — that
   is how a lower priority yields to a higher one) and below its ``min_prefill``/``min_decode`` (the
   budget wins; the reason says so). Nobody gets more than it wants.
   ⇒ ``Σ C_s(F) + U_s ≤ B_s`` whenever ``U_s ≤ B_s``: once drained, the managed fleet fits.

3. Instantaneous limit: the budget is never exceeded, even during transitions. Launches add GPUs at
   once, scale-ins free them only after draining, so the launches of the cycle must fit in the
   headroom ``h_s = B_s − H_s``. Walk by priority again. A service's launch path goes from
   ``S = min(F, current)`` (per role, or per shape with a mix: its scale-ins) to its steady-state
   grant ``F``, one instance at a time: the role whose addition leaves the fleet nearest the ratio
   (``groups.imbalance``; ties: the role with more still to launch, then prefill); with a mix, the
   role's shape with the most still to launch (ties: the mix's order). It may stop where the fleet is balanced (±1), no
   further off the ratio than ``S``, or at ``F`` — so launches come in ratio pairs and never leave a
   lone prefill or decode. It takes the longest such prefix whose launch GPUs ``λ_s`` satisfy
   ``λ_s = 0 or λ_s ≤ avail_s`` (``avail_s = h_s``, or ``min(h_s, 0)`` if a strictly higher priority
   was deferred by ``s``), then ``h_s −= λ_s``. A service stopped short is *deferred*: its demand
   (``BudgetOutcome.demands``) becomes what can start now, its steady-state grant stays in
   ``BudgetOutcome.steady``, and its reason names the services whose GPUs it waits to drain.
   ⇒ ``H_s + Σ λ_s ≤ B_s`` whenever ``H_s ≤ B_s``.

Known approximation: without a mix, new instances are costed at the role's preferred shape. If the
scheduler falls back to another shape (more GPUs, or another SKU under a per-SKU cap), the plan can
exceed the budget; pass a mix (``shape_counts``) for an exact bound.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.scheduling.budget_reasons import budget_summary, cut_reason
from heteroscale.scheduling.groups import ROLES, ServiceDemand, balanced, imbalance

_LEAVING = (Lifecycle.DRAINING, Lifecycle.STUCK)  # hold their GPUs until gone, then come back


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


@dataclass(frozen=True, slots=True)
class BudgetOutcome:
    """``demands``: capped, what may start now (same order as given); ``steady``: the steady-state
    targets, reached once GPUs have drained (same order); ``cuts``: one per service that gets less than
    it wants. GPUs, every SKU counted: ``held_gpus`` — instances not GONE (draining and unmanaged
    included); ``draining_gpus`` — draining ones, managed or not; ``unmanaged_gpus`` — instances of
    services with no demand; ``granted_gpus`` — the steady-state grants (upper bound without a mix);
    ``launch_gpus`` — what the capped demands launch this cycle."""

    demands: tuple[ServiceDemand, ...]
    steady: tuple[ServiceDemand, ...]
    cuts: tuple[BudgetCut, ...]
    held_gpus: int
    draining_gpus: int
    unmanaged_gpus: int
    granted_gpus: int
    launch_gpus: int
    detail: str

    @property
    def binds(self) -> bool:
        return bool(self.cuts)


def apply_budget(
    demands: Sequence[ServiceDemand], instances: Sequence[InstanceInfo], budget: GpuBudget
) -> BudgetOutcome:
    """Cap ``demands`` (one per managed service) to ``budget`` given every instance of the cluster (pure)."""
    ordered = sorted(demands, key=lambda d: (-d.spec.priority, d.spec.name))
    for earlier, later in itertools.pairwise(ordered):
        if earlier.spec.name == later.spec.name:
            raise ValueError(f"service {earlier.spec.name!r} has two demands in one cycle")
    live = [i for i in instances if i.lifecycle is not Lifecycle.GONE]
    services = [_Service(d, [i for i in live if i.service == d.spec.name]) for d in ordered]
    managed = {svc.name for svc in services}
    ledger = _Ledger(_scopes(budget), services, live, [i for i in live if i.service not in managed])
    steady = _steady_state(services, ledger)
    final = _launches(services, steady, ledger)

    cuts: list[BudgetCut] = []
    for svc in services:
        (grant, why_cut), (now, why_deferred) = steady[svc.name], final[svc.name]
        if now != svc.wanted:
            reason = cut_reason(svc, grant, now, why_cut, why_deferred, services, final, ledger)
            wanted = svc.wanted
            counts = (wanted.prefill, wanted.decode, grant.prefill, grant.decode, now.prefill, now.decode)
            cuts.append(BudgetCut(svc.name, svc.priority, *counts, reason=reason))
    every = _Scope(None, 0)
    granted = sum(svc.cost(steady[svc.name][0], every) for svc in services)
    launches = sum(svc.launch_gpus(final[svc.name][0], every) for svc in services)
    held, draining = _gpus(live, every), _gpus((i for i in live if i.lifecycle in _LEAVING), every)
    unmanaged = _gpus((i for i in live if i.service not in managed), every)
    by_name = {svc.name: svc for svc in services}
    return BudgetOutcome(
        demands=tuple(by_name[d.spec.name].capped(final[d.spec.name][0]) for d in demands),
        steady=tuple(by_name[d.spec.name].capped(steady[d.spec.name][0]) for d in demands),
        cuts=tuple(cuts),
        held_gpus=held,
        draining_gpus=draining,
        unmanaged_gpus=unmanaged,
        granted_gpus=granted,
        launch_gpus=launches,
        detail=budget_summary(ledger.scopes, held, draining, unmanaged, granted, launches, cuts),
    )


# --- values used while solving ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
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
class _Fleet:
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
class _Binding:
    """Why one scope stopped a service: GPUs left for it there, what the next step needed, who is ahead."""

    scope: _Scope
    left_gpus: int  # before any priority block
    needed_gpus: int
    next_fleet: _Fleet  # the step that did not fit
    ahead: tuple[tuple[str, int], ...]  # (service label, GPUs granted or launched) ahead of it here
    blocked_by: tuple[str, ...]  # strictly higher-priority services cut (or deferred) by this scope


def _fits(cost: int, avail: int) -> bool:
    return cost == 0 or cost <= avail


def _gpus(instances: Iterable[InstanceInfo], scope: _Scope) -> int:
    return sum(scope.gpus(i.shape) for i in instances)


def _scopes(budget: GpuBudget) -> list[_Scope]:
    out = [] if budget.total_gpus is None else [_Scope(None, budget.total_gpus)]
    return out + [_Scope(sku, cap) for sku, cap in budget.by_sku]


class _Service:
    """One managed service during the cycle: its demand and instances, its chain, costs and launch path."""

    def __init__(self, demand: ServiceDemand, instances: Sequence[InstanceInfo]) -> None:
        spec = demand.spec
        self.demand, self.name, self.priority = demand, spec.name, spec.priority
        self.label = f"{spec.name} (priority {spec.priority})"
        self.ratio = demand.dg_ratio
        self.capacity = [i for i in instances if i.counts_as_capacity]
        self.draining = [i for i in instances if i.lifecycle in _LEAVING]
        self.shapes = {shape.key: shape for role in ROLES for shape in spec.shapes(role)}
        self.preferred = {role: (spec.shapes(role) or (None,))[0] for role in ROLES}
        self.cur_by_shape = Counter(i.shape.key for i in self.capacity)
        self.cur_by_role = Counter(i.role for i in self.capacity)
        self.current = _Fleet(self.cur_by_role[Role.PREFILL], self.cur_by_role[Role.DECODE])
        self.wanted = _Fleet(demand.desired_prefill, demand.desired_decode, demand.shape_counts)
        self._order = {role: self._removal_order(role) for role in ROLES} if demand.has_mix else {}

    # rule 1: the chain and the cost of a fleet

    def chain(self) -> list[_Fleet]:
        """Candidate fleets from the desired one down to 0P:0D, each at the demand's P/D ratio ±1."""
        big_p, big_d = self.wanted.prefill, self.wanted.decode
        total = big_p + big_d
        out: list[_Fleet] = []
        for n in range(total, -1, -1):
            if big_p == 0 or big_d == 0:
                p = n if big_p else 0
            elif n == 1:
                continue
            else:
                p = 0 if n == 0 else min(max((2 * n * big_p + total) // (2 * total), 1), n - 1)
            out.append(self._split(p, n - p))
        return out

    def _split(self, prefill: int, decode: int) -> _Fleet:
        if not self.demand.has_mix:
            return _Fleet(prefill, decode)
        removed: Counter[str] = Counter()
        for role, keep in ((Role.PREFILL, prefill), (Role.DECODE, decode)):
            order = self._order[role]
            removed.update(order[: len(order) - keep])
        return _Fleet(prefill, decode, tuple((key, n - removed[key]) for key, n in self.wanted.mix))

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

    def cost(self, fleet: _Fleet, scope: _Scope) -> int:
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

    def launch_path(self, fleet: _Fleet) -> tuple[_Fleet, list[tuple[_Fleet, InstanceShape | None]]]:
        """The fleet after scale-ins alone (per role, or per shape: the smaller of ``fleet`` and the
        current) and, one launch at a time, the fleets on the way to ``fleet`` with the shape launched."""
        have = {key: min(n, self.cur_by_shape[key]) for key, n in fleet.mix}
        need = {key: n - have[key] for key, n in fleet.mix}
        rank = {key: i for i, (key, _) in enumerate(fleet.mix)}
        if fleet.mix:
            counts = {role: sum(n for key, n in have.items() if self.shapes[key].role is role) for role in ROLES}
        else:
            counts = {role: min(fleet.count(role), self.cur_by_role[role]) for role in ROLES}
        start = _Fleet(counts[Role.PREFILL], counts[Role.DECODE], tuple(have.items()))
        todo = {role: fleet.count(role) - counts[role] for role in ROLES}
        path: list[tuple[_Fleet, InstanceShape | None]] = []
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
            path.append((_Fleet(counts[Role.PREFILL], counts[Role.DECODE], tuple(have.items())), shape))
        return start, path

    def launch_gpus(self, fleet: _Fleet, scope: _Scope) -> int:
        return sum(scope.gpus(shape) for _, shape in self.launch_path(fleet)[1])

    def frees(self, fleet: _Fleet, scope: _Scope) -> bool:
        """Whether it has GPUs draining in ``scope`` or scales some in there to reach ``fleet``."""
        if _gpus(self.draining, scope) > 0:
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

    def capped(self, fleet: _Fleet) -> ServiceDemand:
        if fleet == self.wanted:
            return self.demand
        return dataclasses.replace(
            self.demand, desired_prefill=fleet.prefill, desired_decode=fleet.decode, shape_counts=fleet.mix
        )


class _Ledger:
    """Per scope: held, draining (managed; unmanaged) and unmanaged GPUs."""

    def __init__(
        self, scopes: list[_Scope], services: list[_Service], live: list[InstanceInfo], unmanaged: list[InstanceInfo]
    ) -> None:
        self.scopes = scopes
        self.held = {s: _gpus(live, s) for s in scopes}
        self.draining = {s: sum(_gpus(svc.draining, s) for svc in services) for s in scopes}
        self.unmanaged = {s: _gpus(unmanaged, s) for s in scopes}
        gone_soon = [i for i in unmanaged if i.lifecycle in _LEAVING]
        self.unmanaged_draining = {s: _gpus(gone_soon, s) for s in scopes}


_Grants = dict[str, tuple[_Fleet, list[_Binding]]]


def _steady_state(services: list[_Service], ledger: _Ledger) -> _Grants:
    """Rule 2: every service's steady-state grant, by priority, and the scopes that cut it."""
    left = {s: s.cap_gpus - ledger.unmanaged[s] for s in ledger.scopes}
    ahead: dict[_Scope, list[tuple[str, int]]] = {s: [] for s in ledger.scopes}
    cut_by: dict[_Scope, list[tuple[int, str]]] = {s: [] for s in ledger.scopes}
    out: _Grants = {}
    for svc in services:
        blockers = {s: tuple(label for prio, label in cut_by[s] if prio > svc.priority) for s in ledger.scopes}
        avail = {s: min(left[s], 0) if blockers[s] else left[s] for s in ledger.scopes}
        chain = svc.chain()  # costs never grow along it, so the fleets that fit are a suffix
        idx = bisect.bisect_left(
            range(len(chain)), True, key=lambda i: all(_fits(svc.cost(chain[i], s), avail[s]) for s in ledger.scopes)
        )
        bindings: list[_Binding] = []
        if idx > 0:
            above = chain[idx - 1]
            for s in ledger.scopes:
                need = svc.cost(above, s)
                if not _fits(need, avail[s]):
                    bindings.append(_Binding(s, left[s], need, above, tuple(ahead[s]), blockers[s]))
                    cut_by[s].append((svc.priority, svc.label))
        for s in ledger.scopes:
            cost = svc.cost(chain[idx], s)
            left[s] -= cost
            if cost:
                ahead[s].append((svc.label, cost))
        out[svc.name] = (chain[idx], bindings)
    return out


def _launches(services: list[_Service], steady: _Grants, ledger: _Ledger) -> _Grants:
    """Rule 3: what each service can launch now within the headroom, by priority; the rest waits."""
    headroom = {s: s.cap_gpus - ledger.held[s] for s in ledger.scopes}
    ahead: dict[_Scope, list[tuple[str, int]]] = {s: [] for s in ledger.scopes}
    deferred_by: dict[_Scope, list[tuple[int, str]]] = {s: [] for s in ledger.scopes}
    out: _Grants = {}
    for svc in services:
        blockers = {s: tuple(label for prio, label in deferred_by[s] if prio > svc.priority) for s in ledger.scopes}
        avail = {s: min(headroom[s], 0) if blockers[s] else headroom[s] for s in ledger.scopes}
        start, path = svc.launch_path(steady[svc.name][0])
        start_off = imbalance(start.prefill, start.decode, svc.ratio)
        used = dict.fromkeys(ledger.scopes, 0)
        best, best_used = start, dict(used)
        bindings: list[_Binding] = []
        for i, (fleet, shape) in enumerate(path, 1):
            for s in ledger.scopes:
                used[s] += s.gpus(shape)
            short = [s for s in ledger.scopes if not _fits(used[s], avail[s])]
            for s in short:
                bindings.append(_Binding(s, headroom[s], used[s], fleet, tuple(ahead[s]), blockers[s]))
                deferred_by[s].append((svc.priority, svc.label))
            if short:
                break
            off = imbalance(fleet.prefill, fleet.decode, svc.ratio)
            if i == len(path) or balanced(fleet.prefill, fleet.decode, svc.ratio) or off <= start_off + 1e-9:
                best, best_used = fleet, dict(used)
        for s in ledger.scopes:
            headroom[s] -= best_used[s]
            if best_used[s]:
                ahead[s].append((svc.label, best_used[s]))
        out[svc.name] = (best, bindings)
    return out
