"""Properties of the GPU budget on generated fleets: never exceeded, grants within wants, priority
monotone, deterministic."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.state import InstanceInfo
from heteroscale.scheduling.budget import BudgetOutcome, GpuBudget, apply_budget
from heteroscale.scheduling.groups import ServiceDemand, balanced, imbalance, ratio_gap
from tests.unit.budget_builders import (
    DRAINING,
    GONE,
    PENDING,
    READY,
    STARTING,
    D,
    P,
    counts,
    fleet,
    spec,
)
from tests.unit.scheduling_builders import demand

# --- properties -----------------------------------------------------------------------------

SKUS = ("h800", "h20")
SHAPE = st.tuples(st.sampled_from(SKUS), st.sampled_from((1, 2, 4, 8)))
LIFECYCLES = (PENDING, STARTING, READY, READY, DRAINING, GONE)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[ServiceDemand], list[InstanceInfo], GpuBudget]:
    demands: list[ServiceDemand] = []
    instances: list[InstanceInfo] = []
    for k in range(draw(st.integers(1, 3))):
        name = f"s{k}"
        shapes = {role: draw(st.lists(SHAPE, min_size=1, max_size=2, unique=True)) for role in (P, D)}
        s = spec(name, draw(st.integers(0, 2)), shapes[P], shapes[D], pd_ratio=draw(st.sampled_from((0.5, 1.0, 3.0))))
        for role in (P, D):
            for i in range(draw(st.integers(0, 4))):
                sku, tp = draw(st.sampled_from(shapes[role]))
                (inst,) = fleet(name, int(role is P), int(role is D), sku, tp, draw(st.sampled_from(LIFECYCLES)))
                instances.append(dataclasses.replace(inst, id=f"{inst.id}-{i}"))
        wanted = {role: draw(st.integers(0, 8)) for role in (P, D)}
        mix: tuple[tuple[str, int], ...] = ()
        if draw(st.booleans()):
            for role in (P, D):
                keys = [InstanceShape(role, sku, tp).key for sku, tp in shapes[role]]
                first = draw(st.integers(0, wanted[role])) if len(keys) == 2 else wanted[role]
                mix += ((keys[0], first),) + (((keys[1], wanted[role] - first),) if len(keys) == 2 else ())
        demands.append(demand(s, wanted[P], wanted[D], shape_counts=mix))
    for i in range(draw(st.integers(0, 3))):
        sku, tp = draw(SHAPE)
        (inst,) = fleet("ext", 1, 0, sku, tp, draw(st.sampled_from(LIFECYCLES)))
        instances.append(dataclasses.replace(inst, id=f"ext-{i}"))
    total = draw(st.none() | st.integers(0, 150))
    by_sku = draw(st.lists(st.tuples(st.sampled_from(SKUS), st.integers(0, 80)), max_size=2, unique_by=lambda t: t[0]))
    return demands, instances, GpuBudget(total, tuple(by_sku))


def _scopes(budget: GpuBudget) -> list[tuple[str | None, int]]:
    return ([] if budget.total_gpus is None else [(None, budget.total_gpus)]) + list(budget.by_sku)


def _g(scope: str | None, shape: InstanceShape) -> int:
    return shape.gpus if scope is None or shape.sku == scope else 0


def _capacity(instances: Sequence[InstanceInfo], service: str) -> list[InstanceInfo]:
    return [i for i in instances if i.service == service and i.counts_as_capacity]


def _launch_gpus(d: ServiceDemand, instances: Sequence[InstanceInfo], scope: str | None) -> int:
    """What the scheduler launches for ``d`` (preferred shape without a mix), counted by ``scope``."""
    cap = _capacity(instances, d.spec.name)
    if d.has_mix:
        shapes = {s.key: s for role in (P, D) for s in d.spec.shapes(role)}
        have = Counter(i.shape.key for i in cap)
        return sum(max(0, n - have[k]) * _g(scope, shapes[k]) for k, n in d.shape_counts)
    have_r = Counter(i.role for i in cap)
    return sum(max(0, d.desired(r) - have_r[r]) * _g(scope, d.spec.preferred_shape(r)) for r in (P, D))


def _fleet_gpus(d: ServiceDemand, instances: Sequence[InstanceInfo], scope: str | None) -> int:
    """GPUs ``d``'s fleet holds once reached: exact with a mix, else the worst case of scale-in's choice."""
    if d.has_mix:
        shapes = {s.key: s for role in (P, D) for s in d.spec.shapes(role)}
        return sum(n * _g(scope, shapes[k]) for k, n in d.shape_counts)
    total = 0
    for role in (P, D):
        kept = sorted((_g(scope, i.shape) for i in _capacity(instances, d.spec.name) if i.role is role), reverse=True)
        n = d.desired(role)
        total += sum(kept[:n]) + max(0, n - len(kept)) * _g(scope, d.spec.preferred_shape(role))
    return total


def _held(instances: Sequence[InstanceInfo], scope: str | None, pick: Any = lambda i: True) -> int:
    return sum(_g(scope, i.shape) for i in instances if i.lifecycle is not GONE and pick(i))


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(worlds())
def test_budget_is_never_exceeded(world: tuple[list[ServiceDemand], list[InstanceInfo], GpuBudget]) -> None:
    demands, instances, budget = world
    out = apply_budget(demands, instances, budget)
    managed = {d.spec.name for d in demands}
    for scope, cap in _scopes(budget):
        held = _held(instances, scope)
        launches = sum(_launch_gpus(d, instances, scope) for d in out.demands)
        if held <= cap:
            assert held + launches <= cap, (scope, held, launches)
        fixed = _held(instances, scope, lambda i: i.service not in managed)
        if fixed <= cap:
            assert fixed + sum(_fleet_gpus(d, instances, scope) for d in out.steady) <= cap, scope
    assert out.launch_gpus == sum(_launch_gpus(d, instances, None) for d in out.demands)


@PROPERTY
@given(worlds())
def test_grants_never_exceed_wants_and_cuts_explain_themselves(
    world: tuple[list[ServiceDemand], list[InstanceInfo], GpuBudget],
) -> None:
    demands, instances, budget = world
    out = apply_budget(demands, instances, budget)
    for want, steady, now in zip(demands, out.steady, out.demands, strict=True):
        for role in (P, D):
            assert now.desired(role) <= steady.desired(role) <= want.desired(role)
        if want.has_mix:
            for (key, w), (_, s), (_, n) in zip(want.shape_counts, steady.shape_counts, now.shape_counts, strict=True):
                assert n <= s <= w, key
        if steady.desired_prefill and steady.desired_decode and want.desired_prefill and want.desired_decode:
            assert ratio_gap(steady.desired_prefill, steady.desired_decode, want.dg_ratio) <= 1 + 1e-9
        elif want.desired_prefill and want.desired_decode:
            assert (steady.desired_prefill, steady.desired_decode) == (0, 0)
        _assert_launches_in_pairs(want, steady, now, instances)
    cut = {c.service: c for c in out.cuts}
    assert set(cut) == {w.spec.name for w, n in zip(demands, out.demands, strict=True) if n != w}
    for c in out.cuts:
        assert c.reason.startswith(f"{c.service} (priority {c.priority}): ") and "\n" not in c.reason
    if not budget.bounded:
        assert out.demands == tuple(demands)


def _assert_launches_in_pairs(
    want: ServiceDemand, steady: ServiceDemand, now: ServiceDemand, instances: Sequence[InstanceInfo]
) -> None:
    """A deferred fleet is balanced, or no further off the ratio than what scale-ins alone leave."""
    if now == steady:
        return
    cap = _capacity(instances, want.spec.name)
    if steady.has_mix:
        have = Counter(i.shape.key for i in cap)
        start = {r: sum(min(n, have[k]) for k, n in steady.shape_counts if k.startswith(r.value)) for r in (P, D)}
    else:
        have_r = Counter(i.role for i in cap)
        start = {r: min(steady.desired(r), have_r[r]) for r in (P, D)}
    p, d = now.desired_prefill, now.desired_decode
    ratio = want.dg_ratio
    assert balanced(p, d, ratio) or imbalance(p, d, ratio) <= imbalance(start[P], start[D], ratio) + 1e-9


@PROPERTY
@given(worlds())
def test_priority_is_monotone_under_a_total_budget(
    world: tuple[list[ServiceDemand], list[InstanceInfo], GpuBudget],
) -> None:
    demands, instances, budget = world
    budget = GpuBudget(total_gpus=budget.total_gpus if budget.total_gpus is not None else 40)
    out = apply_budget(demands, instances, budget)
    rows = list(zip(demands, out.steady, out.demands, strict=True))
    for (hw, hs, hn), (lw, ls, ln) in itertools.permutations(rows, 2):
        if hw.spec.priority <= lw.spec.priority:
            continue
        if hs != hw:  # a higher priority cut in steady state: the lower one gets nothing
            assert (ls.desired_prefill, ls.desired_decode) == (0, 0)
        if hn != hs:  # a higher priority waiting for GPUs: the lower one launches nothing
            assert _launch_gpus(ln, instances, None) == 0


@PROPERTY
@given(worlds(), st.randoms(use_true_random=False))
def test_deterministic_and_independent_of_input_order(
    world: tuple[list[ServiceDemand], list[InstanceInfo], GpuBudget], rnd: Any
) -> None:
    demands, instances, budget = world
    out = apply_budget(demands, instances, budget)
    assert apply_budget(demands, instances, budget) == out
    shuffled_d, shuffled_i = list(demands), list(instances)
    rnd.shuffle(shuffled_d)
    rnd.shuffle(shuffled_i)
    again: BudgetOutcome = apply_budget(shuffled_d, shuffled_i, budget)
    assert counts(again.demands) == counts(out.demands)
    assert {d.spec.name: d.shape_counts for d in again.demands} == {d.spec.name: d.shape_counts for d in out.demands}
    assert sorted(again.cuts, key=lambda c: c.service) == sorted(out.cuts, key=lambda c: c.service)
