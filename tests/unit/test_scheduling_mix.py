"""The scheduler with a GPU mix per shape (``ServiceDemand.shape_counts``): exactly the requested shapes
launched, surpluses removed (heteroscale.scheduling)."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

import pytest

from heteroscale.domain.service import AffinityLevel, ServiceSpec
from heteroscale.domain.state import InstanceInfo
from heteroscale.domain.topology import Topology
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.fleet import generate_fleet
from heteroscale.scheduling.groups import ServiceDemand, balanced
from tests.unit.scheduling_builders import (
    D,
    P,
    demand,
    dg_counts,
    inst,
    pod,
    run,
    spec,
    topo,
)


def mix_demand(s: ServiceSpec, counts: dict[str, int], **kw: Any) -> ServiceDemand:
    """A demand whose role totals are the mix's sums."""
    per_role = {role: sum(n for key, n in counts.items() if key.startswith(role.value + ":")) for role in (P, D)}
    return ServiceDemand(s, per_role[P], per_role[D], shape_counts=tuple(counts.items()), **kw)


TWO_DECODE_SKUS = {"decode": [("h800", 4), ("h20", 4)]}


@pytest.mark.parametrize(
    "counts",
    [
        {"prefill:h800:tp4": 3, "decode:h800:tp4": 1, "decode:h20:tp4": 3},
        {"prefill:h800:tp4": 2, "decode:h800:tp4": 0, "decode:h20:tp4": 2},  # only the fallback SKU
        {"prefill:h800:tp4": 2, "decode:h800:tp4": 2, "decode:h20:tp4": 0},
        {"prefill:h800:tp4": 4, "decode:h800:tp4": 2, "decode:h20:tp4": 2},
    ],
)
def test_a_mix_with_two_decode_skus_launches_exactly_the_requested_shapes(counts: dict[str, int]) -> None:
    t = topo(pod("a", "a1", "h800", 4), pod("a", "a2", "h20", 4))  # room for 8 h800 and 8 h20 tp4 pods
    plan = run([mix_demand(spec(**TWO_DECODE_SKUS), counts)], t)
    assert Counter(x.shape.key for x in plan.launches) == {k: n for k, n in counts.items() if n}
    assert not plan.unplaced and not plan.removals
    ratio = sum(n for k, n in counts.items() if k.startswith("prefill")) / sum(
        n for k, n in counts.items() if k.startswith("decode")
    )
    for p, d in dg_counts(plan).values():
        assert balanced(p, d, ratio)


def two_dgs_low_and_high() -> tuple[Topology, list[InstanceInfo]]:
    """svc-dg0 on a LOW big-pod (h800 only): 2 P + 2 D on h800. svc-dg1 on a HIGH mini-pod (h800 + h20):
    2 P on h800 + 2 D on h20."""
    t = topo(pod("low", "l1", "h800", 4), pod("high", "h1", ["h800", "h20"], 4))
    current = [inst(f"lp{i}", P, f"l1-n{i}") for i in range(2)] + [inst(f"ld{i}", D, f"l1-n{i}") for i in range(2)]
    current += [inst(f"hp{i}", P, "h1-n0", dg="svc-dg1") for i in range(2)]
    current += [inst(f"hd{i}", D, "h1-n1", dg="svc-dg1", sku="h20") for i in range(2)]
    return t, current


@pytest.mark.parametrize(
    ("counts", "removed"),
    [
        # no mix: −1 P −1 D come as a pair from the most valuable (HIGH) pool, whatever the shape
        (None, {"hp0", "hd0"}),
        # shrinking the h800 decode shape: its pod goes, and the prefill victim is its DG partner
        ({"prefill:h800:tp4": 3, "decode:h800:tp4": 1, "decode:h20:tp4": 2}, {"lp0", "ld0"}),
        ({"prefill:h800:tp4": 2, "decode:h800:tp4": 0, "decode:h20:tp4": 2}, {"lp0", "lp1", "ld0", "ld1"}),
        # only the h20 shape shrinks: it is in the HIGH DG anyway
        ({"prefill:h800:tp4": 3, "decode:h800:tp4": 2, "decode:h20:tp4": 1}, {"hp0", "hd0"}),
    ],
)
def test_a_mix_that_shrinks_a_shape_removes_that_shapes_pods_with_partners_from_the_same_dg(
    counts: dict[str, int] | None, removed: set[str]
) -> None:
    t, current = two_dgs_low_and_high()
    s = spec(**TWO_DECODE_SKUS, affinity=AffinityLevel.CLUSTER)
    d = demand(s, 3, 3) if counts is None else mix_demand(s, counts)
    plan = run([d], t, current)
    assert {r.instance_id for r in plan.removals} == removed
    assert not plan.launches and not plan.unplaced
    for p, dd in dg_counts(plan, current).values():
        assert (p == 0 and dd == 0) or balanced(p, dd, d.dg_ratio)


@pytest.mark.parametrize(
    ("counts", "removed"),
    [
        (None, {"p1", "d1"}),  # no mix: the newest decode goes, whatever its shape
        ({"prefill:h800:tp4": 1, "decode:h800:tp4": 0, "decode:h20:tp4": 1}, {"p1", "d0"}),
    ],
)
def test_inside_a_dg_the_victim_has_the_shrinking_shape(counts: dict[str, int] | None, removed: set[str]) -> None:
    t = topo(pod("a", "a1", ["h800", "h20"], 4))
    current = [inst("p0", P, "a1-n0", launched_at_s=1.0), inst("p1", P, "a1-n2", launched_at_s=5.0)]
    current += [inst("d0", D, "a1-n0", launched_at_s=1.0), inst("d1", D, "a1-n1", sku="h20", launched_at_s=9.0)]
    s = spec(**TWO_DECODE_SKUS)
    plan = run([demand(s, 1, 1) if counts is None else mix_demand(s, counts)], t, current)
    assert {r.instance_id for r in plan.removals} == removed
    assert not plan.launches


def test_a_mix_swaps_shapes_at_a_constant_count() -> None:
    # svc-dg0 has 1 P + 2 D on h800; the mix wants one of those decodes on h20 instead
    t = topo(pod("a", "a1", "h800", 2), pod("a", "a2", "h20", 2))
    current = [inst("p0", P, "a1-n0"), inst("d0", D, "a1-n0", launched_at_s=1.0), inst("d1", D, "a1-n1")]
    counts = {"prefill:h800:tp4": 1, "decode:h800:tp4": 1, "decode:h20:tp4": 1}
    plan = run([mix_demand(spec(**TWO_DECODE_SKUS, pd_ratio=0.5), counts)], t, current)
    assert [r.instance_id for r in plan.removals] == ["d0"]  # the newest h800 decode
    assert [(x.shape.key, x.dg) for x in plan.launches] == [("decode:h20:tp4", "svc-dg0")]


def test_a_wanted_shape_that_does_not_fit_is_unplaced_not_substituted() -> None:
    t = topo(pod("a", "a1", "h800", free=0), pod("a", "a2", "h20", 2))  # no free h800
    s = spec(prefill=[("h20", 4)], **TWO_DECODE_SKUS)
    default = run([demand(s, 1, 1)], t)  # the default falls back to h20 for decode
    assert Counter(x.shape.key for x in default.launches) == {"prefill:h20:tp4": 1, "decode:h20:tp4": 1}
    pinned = run([mix_demand(s, {"prefill:h20:tp4": 1, "decode:h800:tp4": 1})], t)
    assert not pinned.launches
    assert {(u.role, u.count) for u in pinned.unplaced} == {(P, 1), (D, 1)}
    assert all("1 decode (h800 tp4)" in u.reason for u in pinned.unplaced)


def test_a_mix_of_preferred_shapes_gives_the_default_plan() -> None:
    t = topo(pod("low", "l1", "h800", 1), pod("med", "m1", "h800", 2), pod("med", "m2", "h20", 2))
    s = spec(prefill=[("h800", 4), ("h20", 4)], decode=[("h800", 4), ("h20", 4)])
    current = [inst("p0", P, "m1-n0"), inst("d0", D, "m1-n0")]
    default = run([demand(s, 3, 3)], t, current)  # a new DG on the LOW pool, then growth on the MEDIUM one
    pinned = run([mix_demand(s, {"prefill:h800:tp4": 3, "decode:h800:tp4": 3})], t, current)
    assert pinned == default
    assert default.launches and all(x.shape.sku == "h800" for x in default.launches)
    assert demand(s, 3, 3).desired_by_shape() == {}


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        (
            (("prefill:h800:tp4", 2), ("decode:h800:tp4", 1)),
            "svc: shape_counts for decode sum to 1, but desired_decode is 2",
        ),
        ((("prefill:h800:tp4", 2), ("decode:l20:tp4", 2)), "svc: shape_counts names 'decode:l20:tp4'"),
        ((("prefill:h800:tp4", 2), ("decode:h800:tp4", 3), ("decode:h20:tp4", -1)), "svc: .* must be ≥ 0"),
        ((("prefill:h800:tp4", 2), ("decode:h800:tp4", 1), ("decode:h800:tp4", 1)), "svc: .* twice"),
    ],
)
def test_shape_counts_are_validated(counts: tuple[tuple[str, int], ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ServiceDemand(spec(**TWO_DECODE_SKUS), 2, 2, shape_counts=counts)


@pytest.mark.parametrize("seed", range(3))
def test_random_mixes_on_a_generated_fleet_remove_surpluses_and_launch_only_deficits(seed: int) -> None:
    fleet = generate_fleet(seed, logical_clusters=1, big_pods_per_cluster=8, nodes_per_mini_pod=4, services=40)
    rng = random.Random(seed)
    current: Counter[tuple[str, str]] = Counter(
        (i.service, i.shape.key) for i in fleet.state.instances if i.counts_as_capacity
    )
    demands, wanted = [], {}
    for d in fleet.demands:
        counts: Counter[str] = Counter()
        for role in (P, D):
            shapes = d.spec.shapes(role)
            for _ in range(d.desired(role)):
                counts[rng.choice(shapes).key] += 1
        wanted[d.spec.name] = counts
        demands.append(dataclasses.replace(d, shape_counts=tuple(sorted(counts.items()))))
    plan = place(demands, fleet.state, fleet.topology, fleet.free_gpus)
    by_id = {i.id: i for i in fleet.state.instances}
    removed = Counter((by_id[r.instance_id].service, by_id[r.instance_id].shape.key) for r in plan.removals)
    launched = Counter((x.service, x.shape.key) for x in plan.launches)
    short = {(u.service, u.role): u.count for u in plan.unplaced}
    assert plan.launches and plan.removals
    for d in demands:
        name = d.spec.name
        for role in (P, D):
            keys = [s.key for s in d.spec.shapes(role)]
            deficit = {k: max(0, wanted[name][k] - current[(name, k)]) for k in keys}
            for k in keys:
                assert launched[(name, k)] <= deficit[k]
                # every surplus goes (a DG left one-sided may lose more: those pods cannot serve)
                assert removed[(name, k)] >= current[(name, k)] - wanted[name][k]
            assert sum(launched[(name, k)] for k in keys) + short.get((name, role), 0) == sum(deficit.values())
