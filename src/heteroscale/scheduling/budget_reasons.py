"""The journal text of :mod:`heteroscale.scheduling.budget`: one line per cut service, one summary.

Each line says which budget bound (the total or a SKU's cap), the GPUs held, draining and granted
ahead of the service (naming those services and their priorities), and whether it is a steady-state
cut or a deferral while GPUs drain."""

from __future__ import annotations

from collections.abc import Sequence

from heteroscale.domain.hardware import Role
from heteroscale.scheduling.budget_model import Binding, BudgetCut, Fleet, Grants, Ledger, Scope, ServiceBudget
from heteroscale.scheduling.groups import ROLES


def ahead_text(ahead: Sequence[tuple[str, int]], verb: str) -> str:
    if not ahead:
        return f"none {verb} ahead of it"
    if len(ahead) == 1:
        return f"{ahead[0][1]} {verb} ahead of it to {ahead[0][0]}"
    listed = ", ".join(f"{label}: {gpus}" for label, gpus in ahead)
    return f"{sum(g for _, g in ahead)} {verb} ahead of it to {listed}"


def cut_reason(
    svc: ServiceBudget,
    grant: Fleet,
    now: Fleet,
    why_cut: list[Binding],
    why_deferred: list[Binding],
    services: list[ServiceBudget],
    final: Grants,
    ledger: Ledger,
) -> str:
    spec = svc.demand.spec
    parts: list[str] = []
    if grant != svc.wanted:
        for b in why_cut:
            s = b.scope
            text = (
                f"steady-state cut from {svc.wanted.text} to {grant.text} by {s.label}: "
                f"{ledger.unmanaged[s]} held by unmanaged services, {ahead_text(b.ahead, 'granted')}, "
                f"{max(b.left_gpus, 0)} left, {b.next_fleet.text} would need {b.needed_gpus}"
            )
            if b.blocked_by:
                text += f", and a lower priority gets nothing while {', '.join(b.blocked_by)} is still cut"
            parts.append(text)
        if any(grant.count(role) < svc.current.count(role) for role in ROLES):
            parts.append(f"below its current {svc.current.text}, so it scales in and the GPUs return once drained")
        mins = {Role.PREFILL: spec.min_prefill, Role.DECODE: spec.min_decode}
        if any(mins[r] > grant.count(r) < svc.wanted.count(r) for r in ROLES):
            parts.append(f"below its minimum {spec.min_prefill}P:{spec.min_decode}D — the budget wins")
    if now != grant:
        for b in why_deferred:
            s = b.scope
            freeing = [
                "its own instances" if other is svc else other.label
                for other in services
                if other.frees(final[other.name][0], s)
            ]
            if ledger.unmanaged_draining[s]:
                freeing.append(f"unmanaged services ({ledger.unmanaged_draining[s]} GPUs)")
            draining = ledger.draining[s] + ledger.unmanaged_draining[s]
            text = (
                f"deferral: of the steady-state {grant.text} only {now.text} can start now under {s.label}: "
                f"{ledger.held[s]} held now ({draining} draining), {ahead_text(b.ahead, 'launching')}, "
                f"{max(b.left_gpus, 0)} free for launches, launching up to {b.next_fleet.text} would take "
                f"{b.needed_gpus}; "
                + (f"waits for GPUs to drain from {', '.join(freeing)}" if freeing else "no GPUs are draining yet")
            )
            if b.blocked_by:
                text += f"; a lower priority launches nothing while {', '.join(b.blocked_by)} waits"
            parts.append(text)
    return f"{svc.label}: " + "; ".join(parts)


def budget_summary(
    scopes: list[Scope], held: int, draining: int, unmanaged: int, granted: int, launches: int, cuts: list[BudgetCut]
) -> str:
    gpus = f"held {held} GPUs ({draining} draining, {unmanaged} unmanaged)"
    if not scopes:
        return f"no GPU budget: {gpus}, launches {launches}"
    caps = ", ".join(f"{s.sku or 'total'} {s.cap_gpus}" for s in scopes)
    head = f"GPU budget ({caps}): {gpus}, steady-state grant {granted}, launches {launches}"
    if not cuts:
        return head + "; does not bind"
    items = []
    for c in cuts:
        text = f"{c.service} {c.wanted_prefill}P:{c.wanted_decode}D"
        if (c.steady_prefill, c.steady_decode) != (c.wanted_prefill, c.wanted_decode):
            text += f"→{c.steady_prefill}P:{c.steady_decode}D"
        items.append(text + (f" (now {c.granted_prefill}P:{c.granted_decode}D)" if c.deferred else ""))
    return head + "; cut " + ", ".join(items)
