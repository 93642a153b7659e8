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
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from heteroscale.domain.state import InstanceInfo, Lifecycle
from heteroscale.scheduling.budget_model import (
    LEAVING,
    Binding,
    BudgetCut,
    GpuBudget,
    Grants,
    Ledger,
    Scope,
    ServiceBudget,
    fits,
    scope_gpus,
    scopes_of,
)
from heteroscale.scheduling.budget_reasons import budget_summary, cut_reason
from heteroscale.scheduling.groups import ServiceDemand, balanced, imbalance


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
    services = [ServiceBudget(d, [i for i in live if i.service == d.spec.name]) for d in ordered]
    managed = {svc.name for svc in services}
    ledger = Ledger(scopes_of(budget), services, live, [i for i in live if i.service not in managed])
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
    every = Scope(None, 0)
    granted = sum(svc.cost(steady[svc.name][0], every) for svc in services)
    launches = sum(svc.launch_gpus(final[svc.name][0], every) for svc in services)
    held, draining = scope_gpus(live, every), scope_gpus((i for i in live if i.lifecycle in LEAVING), every)
    unmanaged = scope_gpus((i for i in live if i.service not in managed), every)
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


def _steady_state(services: list[ServiceBudget], ledger: Ledger) -> Grants:
    """Rule 2: every service's steady-state grant, by priority, and the scopes that cut it."""
    left = {s: s.cap_gpus - ledger.unmanaged[s] for s in ledger.scopes}
    ahead: dict[Scope, list[tuple[str, int]]] = {s: [] for s in ledger.scopes}
    cut_by: dict[Scope, list[tuple[int, str]]] = {s: [] for s in ledger.scopes}
    out: Grants = {}
    for svc in services:
        blockers = {s: tuple(label for prio, label in cut_by[s] if prio > svc.priority) for s in ledger.scopes}
        avail = {s: min(left[s], 0) if blockers[s] else left[s] for s in ledger.scopes}
        chain = svc.chain()  # costs never grow along it, so the fleets that fit are a suffix
        idx = bisect.bisect_left(
            range(len(chain)), True, key=lambda i: all(fits(svc.cost(chain[i], s), avail[s]) for s in ledger.scopes)
        )
        bindings: list[Binding] = []
        if idx > 0:
            above = chain[idx - 1]
            for s in ledger.scopes:
                need = svc.cost(above, s)
                if not fits(need, avail[s]):
                    bindings.append(Binding(s, left[s], need, above, tuple(ahead[s]), blockers[s]))
                    cut_by[s].append((svc.priority, svc.label))
        for s in ledger.scopes:
            cost = svc.cost(chain[idx], s)
            left[s] -= cost
            if cost:
                ahead[s].append((svc.label, cost))
        out[svc.name] = (chain[idx], bindings)
    return out


def _launches(services: list[ServiceBudget], steady: Grants, ledger: Ledger) -> Grants:
    """Rule 3: what each service can launch now within the headroom, by priority; the rest waits."""
    headroom = {s: s.cap_gpus - ledger.held[s] for s in ledger.scopes}
    ahead: dict[Scope, list[tuple[str, int]]] = {s: [] for s in ledger.scopes}
    deferred_by: dict[Scope, list[tuple[int, str]]] = {s: [] for s in ledger.scopes}
    out: Grants = {}
    for svc in services:
        blockers = {s: tuple(label for prio, label in deferred_by[s] if prio > svc.priority) for s in ledger.scopes}
        avail = {s: min(headroom[s], 0) if blockers[s] else headroom[s] for s in ledger.scopes}
        start, path = svc.launch_path(steady[svc.name][0])
        start_off = imbalance(start.prefill, start.decode, svc.ratio)
        used = dict.fromkeys(ledger.scopes, 0)
        best, best_used = start, dict(used)
        bindings: list[Binding] = []
        for i, (fleet, shape) in enumerate(path, 1):
            for s in ledger.scopes:
                used[s] += s.gpus(shape)
            short = [s for s in ledger.scopes if not fits(used[s], avail[s])]
            for s in short:
                bindings.append(Binding(s, headroom[s], used[s], fleet, tuple(ahead[s]), blockers[s]))
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


__all__ = ["BudgetCut", "BudgetOutcome", "GpuBudget", "apply_budget"]
