"""Federated scheduler (Algorithm 4): RDMA subgroups, fill order, affinity, ratio, scale-in, virtual
allocation, type fallback, partial plans with reasons, determinism — on hand-built topologies."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from typing import Any

import pytest

from heteroscale.domain.hardware import InstanceShape
from heteroscale.domain.service import AffinityLevel
from heteroscale.domain.state import ClusterState, Lifecycle, ScaleInMode
from heteroscale.domain.topology import NodeSpec, SubgroupPriority
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.fleet import generate_fleet
from heteroscale.scheduling.groups import balanced, ratio_gap
from heteroscale.scheduling.subgroups import derive_subgroups, priority_counts
from tests.unit.scheduling_builders import (
    AFFINITY_DEPTH,
    HIGH,
    LOW,
    MEDIUM,
    D,
    P,
    demand,
    dg_counts,
    inst,
    pod,
    run,
    spec,
    tier_of,
    topo,
)

# --- RDMA subgroups -------------------------------------------------------------------------

SUBGROUP_CASES = [
    ("homogeneous big-pod is LOW", [pod("a", "a1", "h800", 2), pod("a", "a2", "h800", 2)], (), [("a", LOW)]),
    (
        "several types on homogeneous mini-pods is MEDIUM",
        [pod("a", "a1", "h800"), pod("a", "a2", "h20")],
        (),
        [("a", MEDIUM)],
    ),
    (
        "a mixed mini-pod is HIGH, the rest by the rules (one type: LOW)",
        [pod("a", "a1", ["h800", "h20"], 2), pod("a", "a2", "h800")],
        (),
        [("a/rest", LOW), ("a1", HIGH)],
    ),
    (
        "rest with several types is MEDIUM",
        [pod("a", "a1", ["h800", "h20"], 2), pod("a", "a2", "h800"), pod("a", "a3", "h20")],
        (),
        [("a/rest", MEDIUM), ("a1", HIGH)],
    ),
    ("only mixed mini-pods: no rest pool", [pod("a", "a1", ["h800", "h20"], 2)], (), [("a1", HIGH)]),
    (
        "override a big-pod: one pool, no split",
        [pod("a", "a1", ["h800", "h20"], 2), pod("a", "a2", "h800")],
        [(("vdc", "pc", "lc", "a"), LOW)],
        [("a", LOW)],
    ),
    (
        "override a homogeneous mini-pod: split out",
        [pod("a", "a1", "h800"), pod("a", "a2", "h800")],
        [(("vdc", "pc", "lc", "a", "a1"), HIGH)],
        [("a/rest", LOW), ("a1", HIGH)],
    ),
    (
        "big-pods are independent",
        [pod("a", "a1", "h20"), pod("b", "b1", "h800"), pod("b", "b2", "h20")],
        (),
        [("a", LOW), ("b", MEDIUM)],
    ),
]


@pytest.mark.parametrize(
    ("nodes", "overrides", "expected"), [c[1:] for c in SUBGROUP_CASES], ids=[c[0] for c in SUBGROUP_CASES]
)
def test_subgroup_priority_derivation(
    nodes: list[list[NodeSpec]], overrides: Any, expected: list[tuple[str, SubgroupPriority]]
) -> None:
    subgroups = derive_subgroups(topo(*nodes, overrides=overrides))
    assert [(sg.name, sg.priority) for sg in subgroups] == expected
    assert all(sg.reason for sg in subgroups)
    assert [sg.overridden for sg in subgroups].count(True) == len(list(overrides))
    # every mini-pod is in exactly one pool
    s1s = [s1 for sg in subgroups for s1 in sg.s1s]
    assert sorted(s1s) == sorted({n.path[:5] for g in nodes for n in g})


def test_priority_counts_has_every_priority() -> None:
    subgroups = derive_subgroups(topo(pod("a", "a1", "h800")))
    assert priority_counts(subgroups) == {LOW: 1, MEDIUM: 0, HIGH: 0}


# --- the P/D balance rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "d", "ratio", "ok"),
    [
        (0, 0, 1.0, True),
        (1, 1, 1.0, True),
        (2, 1, 1.0, True),
        (3, 1, 1.0, False),
        (1, 0, 1.0, False),  # one-sided: never balanced
        (1, 1, 3.0, True),  # 2/3 of a decode pod short
        (7, 1, 3.0, False),
        (1, 6, 1 / 3, True),
        (1, 7, 1 / 3, False),
    ],
)
def test_ratio_gap_is_within_one_pod(p: int, d: int, ratio: float, ok: bool) -> None:
    assert balanced(p, d, ratio) is ok
    assert math.isinf(ratio_gap(p, d, ratio)) == ((p == 0) != (d == 0))


# --- fill order and affinity ----------------------------------------------------------------


def three_pools(lc: str = "lc") -> list[list[NodeSpec]]:
    """One h800 node (room for one 4+4 pair) in a LOW, a MEDIUM and a HIGH pool, in reverse order."""
    return [
        pod("high", "h1", ["h800", "h20"], 2, lc=lc),
        pod("med", "m1", "h800", lc=lc) + pod("med", "m2", "h20", lc=lc),
        pod("low", "l1", "h800", lc=lc),
    ]


@pytest.mark.parametrize("affinity", [AffinityLevel.S2, AffinityLevel.CLUSTER])
@pytest.mark.parametrize(("pairs", "expected"), [(1, [LOW]), (2, [LOW, MEDIUM]), (3, [LOW, MEDIUM, HIGH])])
def test_fill_order_is_low_then_medium_then_high(
    affinity: AffinityLevel, pairs: int, expected: list[SubgroupPriority]
) -> None:
    t = topo(*three_pools())
    plan = run([demand(spec(affinity=affinity), pairs, pairs)], t)
    tiers = tier_of(t)
    used = [tiers[x.node] for x in plan.launches]
    assert used == sorted(used)
    assert sorted(set(used)) == expected
    assert not plan.unplaced


@pytest.mark.parametrize(
    ("affinity", "placed"),
    [
        (AffinityLevel.S1, False),  # no mini-pod has both h800 and h20 free enough
        (AffinityLevel.S2, True),  # the MEDIUM big-pod has them on two mini-pods
        (AffinityLevel.CLUSTER, True),
    ],
)
def test_affinity_level_decides_which_domains_qualify(affinity: AffinityLevel, placed: bool) -> None:
    t = topo(pod("a", "a1", "h800"), pod("a", "a2", "h20"))
    plan = run([demand(spec(decode=[("h20", 4)], affinity=affinity), 1, 1)], t)
    assert bool(plan.launches) is placed
    if not placed:
        assert {u.role for u in plan.unplaced} == {P, D}
        assert all("affinity s1" in u.reason and "h20 tp4" in u.reason for u in plan.unplaced)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("affinity", list(AffinityLevel))
def test_affinity_and_ratio_never_violated_on_generated_fleets(seed: int, affinity: AffinityLevel) -> None:
    fleet = generate_fleet(seed, logical_clusters=2, big_pods_per_cluster=6, nodes_per_mini_pod=4, services=40)
    demands = tuple(dataclasses.replace(d, spec=dataclasses.replace(d.spec, affinity=affinity)) for d in fleet.demands)
    # the existing DGs were laid out for the original affinity levels, so start from an empty cluster
    free = {n.name: n.gpus_total for n in fleet.topology.nodes}
    plan = place(demands, ClusterState(0.0, ()), fleet.topology, free)
    paths = {n.name: n.path for n in fleet.topology.nodes}
    domains: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    used: Counter[str] = Counter()
    for x in plan.launches:
        domains[x.dg].add(paths[x.node][: AFFINITY_DEPTH[affinity]])
        used[x.node] += x.shape.gpus
    assert plan.launches
    assert all(len(d) == 1 for d in domains.values())
    assert all(used[n] <= free[n] for n in used)
    ratios = {d.spec.name: d.dg_ratio for d in demands}
    for dg, (p, d) in dg_counts(plan).items():
        assert balanced(p, d, ratios[dg.rsplit("-dg", 1)[0]]), (dg, p, d)
    short = {(u.service, u.role): u.count for u in plan.unplaced}
    for d in demands:
        for role in (P, D):
            launched = sum(1 for x in plan.launches if x.service == d.spec.name and x.role is role)
            assert launched + short.get((d.spec.name, role), 0) == d.desired(role)


# --- growth versus new DGs, ratio per DG ----------------------------------------------------


def test_growth_wins_at_equal_priority_and_a_new_dg_wins_on_a_cheaper_pool() -> None:
    # svc's DG sits on a MEDIUM big-pod with room; a LOW big-pod has room too: a new DG goes there.
    t = topo(pod("med", "m1", "h800", 2), pod("med", "m2", "h20", 2), pod("low", "l1", "h20", 2))
    s = spec(prefill=[("h800", 4), ("h20", 4)], decode=[("h20", 4)])
    current = [inst("p0", P, "m1-n0", sku="h800"), inst("d0", D, "m2-n0", sku="h20")]
    plan = run([demand(s, 2, 2)], t, current)
    assert {x.dg for x in plan.launches} == {"svc-dg1"}
    assert {x.node for x in plan.launches} <= {"l1-n0", "l1-n1"}
    # with no cheaper pool, the existing DG grows
    t2 = topo(
        pod("med", "m1", "h800", 2), pod("med", "m2", "h20", 2), pod("med2", "x1", "h800"), pod("med2", "x2", "h20")
    )
    plan2 = run([demand(s, 2, 2)], t2, current)
    assert {x.dg for x in plan2.launches} == {"svc-dg0"}


def test_a_growing_dg_spills_into_a_valuable_pool_only_when_nothing_cheaper_is_left() -> None:
    # one big-pod: a LOW rest (h800) and a HIGH mini-pod; another LOW big-pod with room for one more pair
    t = topo(pod("a", "a1", "h800"), pod("a", "a2", ["h800", "h20"], 4), pod("b", "b1", "h800"))
    current = [inst("p0", P, "a1-n0"), inst("d0", D, "a1-n0")]
    plan = run([demand(spec(), 3, 3)], t, current)
    tiers = tier_of(t)
    by_dg = {dg: sorted({tiers[x.node] for x in plan.launches if x.dg == dg}) for dg in {x.dg for x in plan.launches}}
    assert by_dg == {"svc-dg1": [LOW], "svc-dg0": [HIGH]}
    first_high = next(i for i, x in enumerate(plan.launches) if tiers[x.node] is HIGH)
    assert all(x.dg == "svc-dg1" for x in plan.launches[:first_high])  # LOW first, in a new DG


@pytest.mark.parametrize(
    ("ratio", "desired"), [(1.0, (6, 6)), (0.5, (3, 6)), (1.5, (6, 4)), (3.0, (9, 3)), (2.0, (5, 2))]
)
@pytest.mark.parametrize("room_nodes", [1, 2, 8])
def test_every_dg_stays_at_the_ratio_even_when_room_runs_out(
    ratio: float, desired: tuple[int, int], room_nodes: int
) -> None:
    t = topo(pod("a", "a1", "h800", room_nodes), pod("b", "b1", "h800", room_nodes))
    s = spec(pd_ratio=ratio, prefill=[("h800", 2)], decode=[("h800", 2)])
    plan = run([demand(s, *desired)], t)
    for dg, (p, d) in dg_counts(plan).items():
        assert balanced(p, d, desired[0] / desired[1]), (dg, p, d)
    placed = len(plan.launches) + sum(u.count for u in plan.unplaced)
    assert placed == sum(desired)


def test_dg_ids_continue_after_the_highest_existing_one() -> None:
    t = topo(pod("a", "a1", "h800", 2), pod("b", "b1", "h800"))
    current = [
        inst("p0", P, "a1-n0", dg="svc-dg3"),
        inst("d0", D, "a1-n1", dg="svc-dg3"),
        inst("old", D, "a1-n0", dg="svc-dg5", lifecycle=Lifecycle.DRAINING),  # draining: no capacity, but its id counts
        inst("x", P, "a1-n1", service="other", dg="other-dg0"),
    ]
    plan = run([demand(spec(), 2, 2)], t, current)
    assert {x.dg for x in plan.launches} == {"svc-dg6"}  # svc-dg3's big-pod is full
    assert {x.node for x in plan.launches} == {"b1-n0"}


# --- scale-in ------------------------------------------------------------------------------


def test_scale_in_takes_pairs_from_the_most_valuable_pool_first() -> None:
    t = topo(pod("low", "l1", "h800", 2), pod("high", "h1", ["h800", "h20"], 4))
    current = [
        inst("lp0", P, "l1-n0", dg="svc-dg0"),
        inst("ld0", D, "l1-n0", dg="svc-dg0"),
        inst("hp0", P, "h1-n0", dg="svc-dg1"),
        inst("hd0", D, "h1-n0", dg="svc-dg1"),
        inst("hp1", P, "h1-n2", dg="svc-dg1", lifecycle=Lifecycle.STARTING),
        inst("hd1", D, "h1-n1", dg="svc-dg1", sku="h20"),
    ]
    s = spec(decode=[("h800", 4), ("h20", 4)], affinity=AffinityLevel.CLUSTER)
    plan = run([demand(s, 2, 2, scale_in_mode=ScaleInMode.KILL, drain_grace_s=5.0)], t, current)
    assert [r.instance_id for r in plan.removals] == ["hp1", "hd0"]  # the HIGH DG; starting first; then by id
    assert plan.removals[0].instance_id == "hp1"  # starting before ready
    assert all(r.mode is ScaleInMode.KILL and r.grace_s == 5.0 for r in plan.removals)
    assert not plan.launches


def test_scale_in_empties_a_whole_dg_on_the_valuable_pool() -> None:
    t = topo(pod("low", "l1", "h800", 2), pod("high", "h1", ["h800", "h20"], 2))
    current = [inst(f"l{r.value[0]}{i}", r, "l1-n0" if i < 1 else "l1-n1") for i in range(2) for r in (P, D)]
    current += [inst("hp", P, "h1-n0", dg="svc-dg1"), inst("hd", D, "h1-n0", dg="svc-dg1")]
    plan = run([demand(spec(affinity=AffinityLevel.CLUSTER), 2, 2)], t, current)
    assert {r.instance_id for r in plan.removals} == {"hp", "hd"}


@pytest.mark.parametrize(
    ("desired", "expected"),
    [
        ((4, 6), {"svc-dg0": [2, 3], "svc-dg1": [2, 3]}),  # -2 P: one from each DG, not both from one
        ((4, 4), {"svc-dg0": [1, 1], "svc-dg1": [3, 3]}),  # -2 pairs: P and D victims from one DG
        ((3, 3), {"svc-dg0": [0, 0], "svc-dg1": [3, 3]}),  # -3 pairs: a whole DG
        ((5, 3), {"svc-dg0": [2, 1], "svc-dg1": [3, 2]}),  # both stay within a pod of ratio 5/3
    ],
)
def test_scale_in_keeps_each_remaining_dg_balanced(desired: tuple[int, int], expected: dict[str, list[int]]) -> None:
    t = topo(pod("a", "a1", "h800", 3), pod("b", "b1", "h800", 3))
    current = [inst(f"a{r.value[0]}{i}", r, f"a1-n{i}") for i in range(3) for r in (P, D)]
    current += [inst(f"b{r.value[0]}{i}", r, f"b1-n{i}", dg="svc-dg1") for i in range(3) for r in (P, D)]
    plan = run([demand(spec(), *desired)], t, current)
    counts = dg_counts(plan, current)
    assert {dg: counts.get(dg, [0, 0]) for dg in expected} == expected
    for p, d in counts.values():
        assert balanced(p, d, desired[0] / desired[1])


def test_scale_in_victims_inside_a_dg_are_not_ready_first_then_newest() -> None:
    t = topo(pod("a", "a1", "h800", 4))
    current = [
        inst("old", P, "a1-n0", launched_at_s=1.0),
        inst("new", P, "a1-n1", launched_at_s=9.0),
        inst("starting", P, "a1-n2", launched_at_s=0.0, lifecycle=Lifecycle.STARTING),
        inst("draining", P, "a1-n3", launched_at_s=10.0, lifecycle=Lifecycle.DRAINING),
        inst("d0", D, "a1-n0"),
        inst("d1", D, "a1-n1"),
        inst("d2", D, "a1-n2"),
    ]
    plan = run([demand(spec(pd_ratio=1.0), 1, 3)], t, current)
    assert [r.instance_id for r in plan.removals] == ["starting", "new"]


def test_scale_in_never_leaves_a_dg_with_one_role() -> None:
    # two 2P:1D DGs at ratio 3 asked to become 3P:1D: a DG with prefill only could not serve, so it goes whole
    t = topo(pod("a", "a1", "h800", 2), pod("b", "b1", "h800", 2))
    current = [inst("ap0", P, "a1-n0"), inst("ap1", P, "a1-n0"), inst("ad0", D, "a1-n1")]
    current += [
        inst("bp0", P, "b1-n0", dg="svc-dg1"),
        inst("bp1", P, "b1-n0", dg="svc-dg1"),
        inst("bd0", D, "b1-n1", dg="svc-dg1"),
    ]
    plan = run([demand(spec(pd_ratio=3.0), 3, 1)], t, current)
    for p, d in dg_counts(plan, current).values():
        assert (p == 0) == (d == 0)


# --- virtual allocation, priorities, freed capacity -----------------------------------------


@pytest.mark.parametrize(("prio_a", "prio_b", "winner"), [(2, 1, "a"), (1, 2, "b"), (0, 0, "a")])
def test_two_services_compete_for_the_last_slots(prio_a: int, prio_b: int, winner: str) -> None:
    t = topo(pod("a", "a1", "h800"))  # one node: room for exactly one 4+4 pair
    plan = run([demand(spec("b", priority=prio_b), 1, 1), demand(spec("a", priority=prio_a), 1, 1)], t)
    assert {x.service for x in plan.launches} == {winner}
    loser = "b" if winner == "a" else "a"
    assert {(u.service, u.role, u.count) for u in plan.unplaced} == {(loser, P, 1), (loser, D, 1)}
    assert all("affinity s2" in u.reason and "h800 tp4" in u.reason for u in plan.unplaced)


def test_freed_capacity_is_not_reused_in_the_same_cycle() -> None:
    t = topo(pod("a", "a1", "h800"))
    current = [inst("p0", P, "a1-n0", service="old", dg="old-dg0"), inst("d0", D, "a1-n0", service="old", dg="old-dg0")]
    plan = run([demand(spec("old", priority=9), 0, 0), demand(spec("new"), 1, 1)], t, current)
    assert len(plan.removals) == 2
    assert not plan.launches
    assert {u.service for u in plan.unplaced} == {"new"}


def test_a_tentative_seed_that_does_not_fit_leaves_the_room_to_others() -> None:
    # one h800 node with 4 free GPUs: "pair" (h800 + h800) tries it and backs off; "mixed" (h800 + h20) fits
    t = topo(pod("a", "a1", "h800", free=4), pod("a", "a2", "h20"))
    plan = run([demand(spec("pair", priority=5), 1, 1), demand(spec("mixed", decode=[("h20", 4)]), 1, 1)], t)
    assert {(x.service, x.node) for x in plan.launches} == {("mixed", "a1-n0"), ("mixed", "a2-n0")}
    assert {u.service for u in plan.unplaced} == {"pair"}


# --- type fallback, partial plans, determinism ----------------------------------------------


@pytest.mark.parametrize(("h800_free", "expected_sku"), [(8, "h800"), (0, "h20")])
def test_type_fallback_in_preference_order(h800_free: int, expected_sku: str) -> None:
    t = topo(pod("a", "a1", "h800", free=h800_free), pod("a", "a2", "h20", 2))
    s = spec(prefill=[("h800", 4), ("h20", 4)], decode=[("h20", 4)])
    plan = run([demand(s, 1, 1)], t)
    assert [x.shape.sku for x in plan.launches if x.role is P] == [expected_sku]


def test_no_fallback_means_unplaced_with_the_sku_in_the_reason() -> None:
    t = topo(pod("a", "a1", "h20", 2))
    plan = run([demand(spec(), 1, 1)], t)
    assert not plan.launches
    assert all("h800 tp4" in u.reason and "affinity s2" in u.reason for u in plan.unplaced)


def test_partial_plan_places_what_fits_and_says_why_for_the_rest() -> None:
    t = topo(pod("a", "a1", "h800", 2))  # room for 2 pairs of tp4
    plan = run([demand(spec(), 4, 4)], t)
    assert Counter(x.role for x in plan.launches) == {P: 2, D: 2}
    assert {(u.role, u.count) for u in plan.unplaced} == {(P, 2), (D, 2)}
    for u in plan.unplaced:
        assert "no free" in u.reason and "svc-dg0" in u.reason and "affinity s2" in u.reason


def test_ratio_blocked_growth_is_named_in_the_reason() -> None:
    # the DG's big-pod has prefill room but no decode room: one more prefill is fine, two are not
    t = topo(pod("a", "a1", "h800", 2), pod("a", "a2", "h20", free=4))
    s = spec(decode=[("h20", 4)])
    current = [inst("p0", P, "a1-n0"), inst("d0", D, "a2-n0", sku="h20")]
    plan = run([demand(s, 3, 3)], t, current)
    assert Counter(x.role for x in plan.launches) == {P: 1}
    reasons = {u.role: u.reason for u in plan.unplaced}
    assert "off the P/D ratio" in reasons[P]
    assert "no free decode slot (h20 tp4)" in reasons[D]


def test_unschedulable_nodes_and_free_gpus_are_respected() -> None:
    nodes = pod("a", "a1", "h800", 2)
    t = topo([dataclasses.replace(nodes[0], schedulable=False), nodes[1]])
    plan = place([demand(spec(), 2, 2)], ClusterState(0.0, ()), t, {nodes[0].name: 8, nodes[1].name: 8})
    assert [x.node for x in plan.launches] == [nodes[1].name] * 2
    assert sum(u.count for u in plan.unplaced) == 2


def test_same_input_same_plan_whatever_the_demand_order() -> None:
    fleet = generate_fleet(3, logical_clusters=1, big_pods_per_cluster=8, services=60)
    first = place(fleet.demands, fleet.state, fleet.topology, fleet.free_gpus)
    again = place(tuple(reversed(fleet.demands)), fleet.state, fleet.topology, dict(fleet.free_gpus))
    assert first == again
    assert first.launches and first.removals


def test_give_back_rewinds_the_first_fit_cursor() -> None:
    from heteroscale.scheduling.view import TopologyView

    t = topo(pod("a", "a1", "h800", 2))
    view = TopologyView(t, {n.name: 8 for n in t.nodes}, [4, 8])
    tp4, tp8 = InstanceShape(P, "h800", 4), InstanceShape(P, "h800", 8)
    first = view.allocate(1, 0, tp4)  # node 0 keeps 4
    second = view.allocate(1, 0, tp8)  # the tp8 cursor moves past node 0 to node 1
    assert (first, second) == (0, 1)
    assert first is not None
    view.give_back(first, 4)  # node 0 has 8 again
    assert view.slot_count(1, 0, tp8) == 1
    assert view.allocate(1, 0, tp8) == 0
    assert view.allocate(1, 0, tp4) is None


def test_two_demands_for_one_service_are_refused() -> None:
    with pytest.raises(ValueError, match="two demands"):
        place([demand(spec(), 1, 1), demand(spec(), 2, 2)], ClusterState(0.0, ()), topo(pod("a", "a1", "h800")), {})


def test_generated_fleet_has_the_promised_shape() -> None:
    fleet = generate_fleet(0)
    nodes = fleet.topology.nodes
    gpus = sum(n.gpus_total for n in nodes)
    assert 12_000 <= len(nodes) <= 13_000 and 96_000 <= gpus <= 104_000
    assert len({n.path[:4] for n in nodes}) >= 200
    assert 0.55 <= 1 - sum(fleet.free_gpus.values()) / gpus <= 0.65
    counts = priority_counts(derive_subgroups(fleet.topology))
    assert all(counts[p] > 0 for p in SubgroupPriority)
    assert len(fleet.demands) == 1_000
    assert generate_fleet(0) == fleet


def test_negative_desired_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="≥ 0"):
        demand(spec(), -1, 1)


# --- a GPU mix per shape (ServiceDemand.shape_counts) ----------------------------------------
