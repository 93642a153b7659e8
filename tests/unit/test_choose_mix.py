"""The cost-aware GPU mix on its own (heteroscale.controller.mixing): dearest per token out first, cheapest in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from heteroscale.controller.mixing import MixSettings, choose_mix
from heteroscale.domain.decision import Reason, ScalingDecision, Step
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import GpuMix, ServiceSpec
from heteroscale.domain.topology import Topology
from heteroscale.policy.context import RoleCounts, ServiceCounts, Targets
from tests.support.builders import node
from tests.unit import policy_builders as pb

# --- choose_mix on its own ----------------------------------------------------------------------

P, D = Role.PREFILL, Role.DECODE
H100_D, H20_D = pb.D_SHAPE, pb.D_SHAPE_2  # decode: H100 TP4 1000 tok/s, H20 TP8 500 tok/s
H100_P, H20_P = pb.P_SHAPE, InstanceShape(P, "h20", 8)


def mix_topology(h100_nodes: int = 8, h20_nodes: int = 8) -> Topology:
    nodes = [node("s2a", "s1a", f"h100-{i}", "h100-sxm") for i in range(h100_nodes)]
    nodes += [node("s2a", "s1b", f"h20-{i}", "h20") for i in range(h20_nodes)]
    return Topology(name="mix", nodes=tuple(nodes))


def mix_spec(**overrides: Any) -> ServiceSpec:
    base: dict[str, Any] = {"decode_shapes": (H100_D, H20_D), "gpu_mix": GpuMix.COST}
    return pb.spec(**(base | overrides))


def mix_targets() -> Targets:
    return pb.targets(prefill_tps_per_instance=((H100_P.key, 10_000.0), (H20_P.key, 4_000.0)))


def role_counts(by_shape: Mapping[InstanceShape, int]) -> RoleCounts:
    return RoleCounts(ready=sum(by_shape.values()), by_shape=tuple(sorted((s.key, n) for s, n in by_shape.items())))


def mix_decision(current: tuple[int, int], wanted: tuple[int, int]) -> ScalingDecision:
    policy = Step("policy", *wanted, Reason.PROPORTIONAL)
    return ScalingDecision("svc", *current, *wanted, (policy,))


def costs(**per_gpu_hour: float) -> MixSettings:
    return MixSettings(tuple((sku.replace("_", "-"), c) for sku, c in per_gpu_hour.items()), time_limit_s=5.0)


@pytest.mark.parametrize(
    ("h100_cost", "h20_cost", "kept"),
    [
        # H100: 8/h per 1000 tok/s; H20: 8/h per 500 → the H20s go first; 2 H100s carry the 1500 tok/s
        (2.0, 1.0, {H100_D.key: 2, H20_D.key: 0}),
        # H100: 40/h per 1000 tok/s; H20: 8/h per 500 → an H100 goes first; 1 H100 + 1 H20 carry 1500
        (10.0, 1.0, {H100_D.key: 1, H20_D.key: 1}),
    ],
    ids=["h20-dearest", "h100-dearest"],
)
def test_shrinking_removes_the_dearest_per_token_first(h100_cost: float, h20_cost: float, kept: dict[str, int]) -> None:
    # decode 2 H100 + 2 H20 = 3000 tok/s; 4 → 2 instances: keep ≥ 3000 · 2/4 = 1500 tok/s
    counts = ServiceCounts(role_counts({H100_P: 2}), role_counts({H100_D: 2, H20_D: 2}))
    decision = mix_decision((2, 4), (2, 2))
    out = choose_mix(
        mix_spec(), decision, counts, mix_targets(), costs(h100_sxm=h100_cost, h20=h20_cost), mix_topology(), {}
    )
    assert out is not None
    assert out.result is None  # nothing grows: no MILP
    shape_counts = dict(out.shape_counts)
    assert {k: shape_counts[k] for k in kept} == kept
    assert shape_counts[H100_P.key] == 2
    (step,) = [s for s in out.decision.steps if s.name == "gpu-mix"]
    assert out.decision.steps[-1] is step and step.reason is Reason.GPU_MIX
    assert (out.decision.desired_prefill, out.decision.desired_decode) == (step.prefill, step.decode)
    assert (step.prefill, step.decode) == (2, sum(kept.values()))
    assert "remove the dearest per token first" in step.detail
    assert out.decision.steps[:-1] == decision.steps


@pytest.mark.parametrize(
    ("h20_nodes", "added"),
    [
        (8, {H100_D.key: 0, H20_D.key: 4}),  # 2000 tok/s more: 4 H20 (16/h) beat 2 H100 (24/h)
        (2, {H100_D.key: 1, H20_D.key: 2}),  # only 16 H20 GPUs free: 2 H20 + 1 H100
    ],
    ids=["h20-plenty", "h20-scarce"],
)
def test_growing_adds_the_cheapest_and_a_held_role_keeps_its_shapes(h20_nodes: int, added: dict[str, int]) -> None:
    # prefill held at 1 H100 + 2 H20 (two shapes: the mix applies to it, and it must not move)
    spec = mix_spec(prefill_shapes=(H100_P, H20_P))
    counts = ServiceCounts(role_counts({H100_P: 1, H20_P: 2}), role_counts({H100_D: 2}))
    decision = mix_decision((3, 2), (3, 4))
    topo = mix_topology(h20_nodes=h20_nodes)
    free = {n.name: n.gpus_total for n in topo.nodes}
    out = choose_mix(spec, decision, counts, mix_targets(), costs(h100_sxm=3.0, h20=0.5), topo, free)
    assert out is not None and out.result is not None and out.result.feasible
    shape_counts = dict(out.shape_counts)
    assert shape_counts[H100_P.key] == 1 and shape_counts[H20_P.key] == 2  # held
    assert shape_counts[H100_D.key] == 2 + added[H100_D.key] and shape_counts[H20_D.key] == added[H20_D.key]
    (step,) = [s for s in out.decision.steps if s.name == "gpu-mix"]
    assert "mix milp" in step.detail or "greedy" in step.detail
    assert (out.decision.desired_prefill, out.decision.desired_decode) == (step.prefill, step.decode)
    assert (step.prefill, step.decode) == (3, 2 + sum(added.values()))


@pytest.mark.parametrize(
    ("spec_kw", "current", "wanted"),
    [
        ({"decode_shapes": (H100_D,)}, (2, 4), (2, 4)),  # one shape per role, holds
        ({"decode_shapes": (H100_D,)}, (2, 4), (2, 6)),  # one shape per role, grows
        ({}, (2, 4), (2, 4)),  # two decode shapes, holds
    ],
    ids=["one-shape-holds", "one-shape-grows", "two-shapes-hold"],
)
def test_nothing_to_mix_returns_none(
    spec_kw: dict[str, Any], current: tuple[int, int], wanted: tuple[int, int]
) -> None:
    counts = ServiceCounts(role_counts({H100_P: 2}), role_counts({H100_D: 4}))
    out = choose_mix(
        mix_spec(**spec_kw), mix_decision(current, wanted), counts, mix_targets(), costs(h100_sxm=2.0, h20=1.0),
        mix_topology(), {},
    )  # fmt: skip
    assert out is None
