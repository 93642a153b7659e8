"""GPU budget across services (scheduling.budget): steady-state cuts by priority, deferral of launches
while GPUs drain, per-SKU caps, GPU mixes, and the reasons written to the journal."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from heteroscale.domain.state import ClusterState, InstanceInfo
from heteroscale.domain.topology import NodeSpec, Topology
from heteroscale.scheduling.budget import GpuBudget, apply_budget
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.groups import ServiceDemand
from tests.unit.budget_builders import (
    BATCH,
    BIG,
    CHAT,
    DRAINING,
    GONE,
    MIN3,
    ON_H20,
    R3,
    SMALL,
    STARTING,
    counts,
    fleet,
    spec,
)
from tests.unit.scheduling_builders import demand

# --- tables ---------------------------------------------------------------------------------

# (case, budget, demands, instances, steady-state counts, counts now, services cut)
CASES: list[
    tuple[str, GpuBudget, list[ServiceDemand], list[InstanceInfo], dict[str, Any], dict[str, Any], list[str]]
] = [
    (
        "no budget set: nothing is cut",
        GpuBudget(),
        [demand(CHAT, 8, 8)],
        fleet("chat", 2, 2),
        {"chat": (8, 8)},
        {"chat": (8, 8)},
        [],
    ),
    (
        "budget does not bind",
        GpuBudget(total_gpus=100),
        [demand(CHAT, 4, 4), demand(BATCH, 2, 2)],
        fleet("chat", 2, 2) + fleet("batch", 2, 2),
        {"chat": (4, 4), "batch": (2, 2)},
        {"chat": (4, 4), "batch": (2, 2)},
        [],
    ),
    (
        "an exact fit does not bind",
        GpuBudget(total_gpus=32),
        [demand(CHAT, 4, 4)],
        fleet("chat", 4, 4),
        {"chat": (4, 4)},
        {"chat": (4, 4)},
        [],
    ),
    (
        "a cut keeps the demand's P/D ratio (6:2 at 20 GPUs → 4:1)",
        GpuBudget(total_gpus=20),
        [demand(R3, 6, 2)],
        [],
        {"r3": (4, 1)},
        {"r3": (4, 1)},
        ["r3"],
    ),
    (
        "never below 1P+1D when that fits",
        GpuBudget(total_gpus=8),
        [demand(CHAT, 4, 4)],
        [],
        {"chat": (1, 1)},
        {"chat": (1, 1)},
        ["chat"],
    ),
    (
        "1P+1D does not fit: nothing",
        GpuBudget(total_gpus=7),
        [demand(CHAT, 4, 4)],
        [],
        {"chat": (0, 0)},
        {"chat": (0, 0)},
        ["chat"],
    ),
    (
        "a budget of 0 scales everyone in, launches nothing",
        GpuBudget(total_gpus=0),
        [demand(CHAT, 4, 4), demand(BATCH, 1, 1)],
        fleet("chat", 2, 2) + fleet("batch", 1, 1),
        {"chat": (0, 0), "batch": (0, 0)},
        {"chat": (0, 0), "batch": (0, 0)},
        ["chat", "batch"],
    ),
    (
        "draining instances count as held: 4:4 once drained, 3:3 now (16 + 8 draining of 32)",
        GpuBudget(total_gpus=32),
        [demand(CHAT, 4, 4)],
        fleet("chat", 2, 2) + fleet("chat", 1, 1, lifecycle=DRAINING) + fleet("chat", 5, 5, lifecycle=GONE),
        {"chat": (4, 4)},
        {"chat": (3, 3)},
        ["chat"],
    ),
    (
        "unmanaged instances count as held",
        GpuBudget(total_gpus=32),
        [demand(CHAT, 4, 4)],
        fleet("chat", 2, 2) + fleet("other", 1, 1, lifecycle=STARTING),
        {"chat": (3, 3)},
        {"chat": (3, 3)},
        ["chat"],
    ),
    (
        "a per-SKU cap cuts only the services on that SKU",
        GpuBudget(by_sku=(("h800", 16),)),
        [demand(CHAT, 4, 4), demand(ON_H20, 4, 4)],
        [],
        {"chat": (2, 2), "batch": (4, 4)},
        {"chat": (2, 2), "batch": (4, 4)},
        ["chat"],
    ),
    (
        "a per-SKU cap binds a lower priority under a total that does not",
        GpuBudget(total_gpus=48, by_sku=(("h20", 16),)),
        [demand(CHAT, 4, 4), demand(ON_H20, 4, 4)],
        [],
        {"chat": (4, 4), "batch": (2, 2)},
        {"chat": (4, 4), "batch": (2, 2)},
        ["batch"],
    ),
    (
        "a lower priority gets nothing while a higher one is cut (even if 1P+1D would fit the rest)",
        GpuBudget(total_gpus=36),
        [demand(BIG, 3, 3), demand(SMALL, 1, 1)],
        [],
        {"big": (2, 2), "small": (0, 0)},
        {"big": (2, 2), "small": (0, 0)},
        ["big", "small"],
    ),
    (
        "equal priority: the rest goes by name",
        GpuBudget(total_gpus=36),
        [
            demand(spec("alpha", 5, (("h800", 8),), (("h800", 8),)), 3, 3),
            demand(spec("beta", 5, (("h800", 2),), (("h800", 2),)), 1, 1),
        ],
        [],
        {"alpha": (2, 2), "beta": (1, 1)},
        {"alpha": (2, 2), "beta": (1, 1)},
        ["alpha"],
    ),
    (
        "the budget wins over the service's minimum",
        GpuBudget(total_gpus=8),
        [demand(MIN3, 4, 4)],
        fleet("svc", 3, 3),
        {"svc": (1, 1)},
        {"svc": (1, 1)},
        ["svc"],
    ),
]


@pytest.mark.parametrize(
    ("budget", "demands", "instances", "steady", "now", "cut"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_budget_table(
    budget: GpuBudget,
    demands: list[ServiceDemand],
    instances: list[InstanceInfo],
    steady: dict[str, tuple[int, int]],
    now: dict[str, tuple[int, int]],
    cut: list[str],
) -> None:
    out = apply_budget(demands, instances, budget)
    assert counts(out.steady) == steady
    assert counts(out.demands) == now
    assert [c.service for c in out.cuts] == cut
    assert [d.spec.name for d in out.demands] == [d.spec.name for d in demands]
    if not cut:
        assert out.demands == tuple(demands)
        assert not out.binds
    for c in out.cuts:
        assert c.reason.startswith(f"{c.service} (priority ")
        assert "\n" not in c.reason


def test_budget_does_not_bind_returns_the_same_demands() -> None:
    demands = [demand(CHAT, 4, 4), demand(BATCH, 2, 2)]
    out = apply_budget(demands, fleet("chat", 2, 2) + fleet("batch", 2, 2), GpuBudget(total_gpus=100))
    assert out.demands == tuple(demands)
    assert out.cuts == ()
    assert (out.held_gpus, out.granted_gpus, out.launch_gpus) == (32, 48, 16)
    assert "does not bind" in out.detail


def test_high_priority_growth_cuts_the_low_priority_and_waits_for_its_gpus() -> None:
    """chat (priority 10) wants 8P:8D; batch (priority 1) holds 4P:4D. Budget 80 GPUs, 48 held: batch is
    cut to 2P:2D (below its current, so it scales in), chat gets 8P:8D in steady state but only the 32
    free GPUs now (6P:6D); the rest waits for batch's GPUs to drain."""
    out = apply_budget(
        [demand(BATCH, 4, 4), demand(CHAT, 8, 8)], fleet("chat", 2, 2) + fleet("batch", 4, 4), GpuBudget(80)
    )
    assert counts(out.steady) == {"batch": (2, 2), "chat": (8, 8)}
    assert counts(out.demands) == {"batch": (2, 2), "chat": (6, 6)}
    cuts = {c.service: c for c in out.cuts}
    batch, chat = cuts["batch"], cuts["chat"]
    assert not batch.deferred
    assert "chat (priority 10)" in batch.reason
    assert "steady-state" in batch.reason and "scales in" in batch.reason and "total budget" in batch.reason
    assert chat.deferred
    assert (chat.steady_prefill, chat.steady_decode, chat.granted_prefill, chat.granted_decode) == (8, 8, 6, 6)
    assert "batch (priority 1)" in chat.reason and "drain" in chat.reason and "deferral" in chat.reason
    assert (out.held_gpus, out.granted_gpus, out.launch_gpus) == (48, 80, 32)
    assert out.held_gpus + out.launch_gpus <= 80

    # the next cycle: batch's two pairs drain; batch is not cut again, chat still waits for them
    draining = fleet("chat", 6, 6) + fleet("batch", 2, 2) + fleet("batch", 2, 2, lifecycle=DRAINING)
    out2 = apply_budget([demand(BATCH, 4, 4), demand(CHAT, 8, 8)], draining, GpuBudget(80))
    assert counts(out2.steady) == {"batch": (2, 2), "chat": (8, 8)}
    assert counts(out2.demands) == {"batch": (2, 2), "chat": (6, 6)}
    assert "drain from batch (priority 1)" in {c.service: c for c in out2.cuts}["chat"].reason
    # ... and once they are gone it grows to its steady-state fleet
    drained = fleet("chat", 6, 6) + fleet("batch", 2, 2)
    out3 = apply_budget([demand(BATCH, 4, 4), demand(CHAT, 8, 8)], drained, GpuBudget(80))
    assert counts(out3.demands) == {"batch": (2, 2), "chat": (8, 8)}
    assert out3.held_gpus + out3.launch_gpus == 80


def test_reason_names_the_binding_sku_and_the_minimum() -> None:
    out = apply_budget([demand(MIN3, 4, 4)], fleet("svc", 3, 3), GpuBudget(total_gpus=100, by_sku=(("h800", 8),)))
    (cut,) = out.cuts
    assert "h800 budget of 8 GPUs" in cut.reason
    assert "total budget" not in cut.reason
    assert "minimum 3P:3D" in cut.reason and "budget wins" in cut.reason


def test_blocked_lower_priority_reason_names_the_cut_service() -> None:
    out = apply_budget([demand(BIG, 3, 3), demand(SMALL, 1, 1)], [], GpuBudget(total_gpus=36))
    small = next(c for c in out.cuts if c.service == "small")
    assert "big (priority 10)" in small.reason and "still cut" in small.reason


def test_a_deferred_higher_priority_blocks_lower_priority_launches() -> None:
    """big (tp8) waits for its own GPUs to drain. The 4 free GPUs its next pod does not fit in would let
    small (tp2) grow, but a lower priority launches nothing while a higher one waits."""
    instances = fleet("big", 2, 2, tp=8) + fleet("big", 2, 2, tp=8, lifecycle=DRAINING) + fleet("small", 1, 1, tp=2)
    out = apply_budget([demand(BIG, 4, 4), demand(SMALL, 2, 2)], instances, GpuBudget(total_gpus=88))
    # steady: big 4:4 (64) + small 2:2 (8) ≤ 88; now: 68 held, 20 free → big 3:3 (16), 4 left unused
    assert counts(out.steady) == {"big": (4, 4), "small": (2, 2)}
    assert counts(out.demands) == {"big": (3, 3), "small": (1, 1)}
    assert out.launch_gpus == 16
    cuts = {c.service: c for c in out.cuts}
    assert "drain from its own instances" in cuts["big"].reason
    assert cuts["small"].deferred and "big (priority 10) waits" in cuts["small"].reason


def test_budget_zero_with_mixes_and_draining_raises_nothing() -> None:
    s = spec("svc", prefill=(("h800", 4), ("h20", 8)))
    mix = (("prefill:h800:tp4", 1), ("prefill:h20:tp8", 2), ("decode:h800:tp4", 2))
    out = apply_budget(
        [demand(s, 3, 2, shape_counts=mix), demand(BATCH, 1, 1)],
        fleet("svc", 1, 1) + fleet("batch", 1, 1, lifecycle=DRAINING),
        GpuBudget(total_gpus=0, by_sku=(("h20", 0),)),
    )
    assert out.launch_gpus == 0
    assert counts(out.demands) == {"svc": (0, 0), "batch": (0, 0)}
    assert all(c.reason for c in out.cuts)
    assert out.demands[0].shape_counts == tuple((k, 0) for k, _ in mix)


# --- GPU mixes ------------------------------------------------------------------------------

MIXED = spec("mixed", prefill=(("h800", 4), ("h20", 8)), decode=(("h800", 4),))
MIX_4_4 = (("prefill:h800:tp4", 2), ("prefill:h20:tp8", 2), ("decode:h800:tp4", 4))


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (GpuBudget(total_gpus=40), MIX_4_4),
        # the largest share left goes first; ties: more GPUs per instance (h20 tp8) first
        (GpuBudget(total_gpus=32), (("prefill:h800:tp4", 2), ("prefill:h20:tp8", 1), ("decode:h800:tp4", 3))),
        (GpuBudget(by_sku=(("h20", 8),)), (("prefill:h800:tp4", 2), ("prefill:h20:tp8", 1), ("decode:h800:tp4", 3))),
        (GpuBudget(total_gpus=20), (("prefill:h800:tp4", 1), ("prefill:h20:tp8", 1), ("decode:h800:tp4", 2))),
        (GpuBudget(total_gpus=8), (("prefill:h800:tp4", 1), ("prefill:h20:tp8", 0), ("decode:h800:tp4", 1))),
    ],
)
def test_mix_is_cut_proportionally_and_stays_consistent(
    budget: GpuBudget, expected: tuple[tuple[str, int], ...]
) -> None:
    out = apply_budget([demand(MIXED, 4, 4, shape_counts=MIX_4_4)], [], budget)
    (capped,) = out.demands
    assert capped.shape_counts == expected
    by_role = Counter(k.split(":")[0] for k, n in expected for _ in range(n))
    assert (capped.desired_prefill, capped.desired_decode) == (by_role["prefill"], by_role["decode"])


def test_mix_shape_swap_waits_for_its_own_gpus() -> None:
    """Prefill moves from h800 tp4 to h20 tp8: the new pods need GPUs the old ones free only once drained."""
    mix = (("prefill:h800:tp4", 0), ("prefill:h20:tp8", 2), ("decode:h800:tp4", 2))
    out = apply_budget([demand(MIXED, 2, 2, shape_counts=mix)], fleet("mixed", 2, 2), GpuBudget(total_gpus=24))
    (capped,) = out.demands
    assert out.steady[0].shape_counts == mix
    assert capped.shape_counts == (("prefill:h800:tp4", 0), ("prefill:h20:tp8", 1), ("decode:h800:tp4", 2))
    (cut,) = out.cuts
    assert cut.deferred and "drain from its own instances" in cut.reason
    assert out.held_gpus + out.launch_gpus <= 24


# --- validation and determinism -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"total_gpus": -1}, r"GpuBudget\.total_gpus must be ≥ 0, got -1"),
        ({"by_sku": (("h800", -8),)}, r"GpuBudget\.by_sku\['h800'\] must be ≥ 0"),
        ({"by_sku": (("h800", 8), ("h800", 16))}, r"GpuBudget\.by_sku lists 'h800' twice"),
        ({"by_sku": (("", 8),)}, r"GpuBudget\.by_sku: a SKU id is empty"),
    ],
)
def test_budget_validation_names_the_field(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GpuBudget(**kwargs)


def test_two_demands_for_one_service_are_refused() -> None:
    with pytest.raises(ValueError, match="'chat' has two demands"):
        apply_budget([demand(CHAT, 1, 1), demand(CHAT, 2, 2)], [], GpuBudget(total_gpus=8))


def test_capped_demands_place_within_the_budget() -> None:
    """The scheduler, given the capped demands, launches no more GPUs than the budget's headroom."""
    nodes = tuple(
        NodeSpec(path=("vdc", "pc", "lc", "s2", "s1", "s0", f"n{i}"), sku="h800", gpus_total=8, gpus_free=8)
        for i in range(16)
    )
    two_per_node = fleet("chat", 2, 2) + fleet("batch", 4, 4)
    instances = [dataclasses.replace(i, node=f"n{k // 2}") for k, i in enumerate(two_per_node)]
    free = {n.name: n.gpus_free for n in nodes}
    for inst in instances:
        free[inst.node] -= inst.shape.gpus
    out = apply_budget([demand(BATCH, 4, 4), demand(CHAT, 8, 8)], instances, GpuBudget(total_gpus=80))
    plan = place(out.demands, ClusterState(at_s=0.0, instances=tuple(instances)), Topology("t", nodes), free)
    launched = sum(launch.shape.gpus for launch in plan.launches)
    assert launched == out.launch_gpus == 32
    assert {r.instance_id.split("-")[0] for r in plan.removals} == {"batch"}
