"""Cost-aware GPU mix in the reconcile cycle: the policy's counts → the cheapest instances per shape.

A policy sizes a role with several allowed shapes by capacity (:mod:`heteroscale.policy.sizing`): new
instances count as the preferred shape. When the service asks for a cost-aware mix and the policy
moves a role, that role's desired capacity in tokens/s is

    desired ≥ current:  C + (desired − current) · τ_pref      keep the fleet, add preferred capacity
    desired < current:  C · desired / current                  shrink in proportion

(``C`` = Σ count(shape)·τ(shape) over ready + starting instances, τ from the pressure-tested targets),
and the fleet changes make-before-break, never swapping one type for another in a decision:

- a growing role keeps every instance; :func:`heteroscale.scheduling.mix.solve_mix` picks the cheapest
  instances to *add* for the missing capacity (both growing roles in one MILP, as a SKU allowed in both
  couples them), given each SKU's cost, the free GPUs per SKU and a launch penalty of one cold start;
- a shrinking role removes the instances that cost most per token/s first, while what stays carries
  the demand;
- a held role keeps its instances.

So the fleet drifts to the cheap types over the load's cycles (they are added first and removed last)
without a swap ever leaving a deployment group one-sided. The result is one more step of the decision
(``gpu-mix``) with the solver's line, and per-shape counts for the scheduler.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from heteroscale.domain.decision import Reason, ScalingDecision, Step
from heteroscale.domain.hardware import GpuSku, Role
from heteroscale.domain.service import GpuMix, ServiceSpec
from heteroscale.domain.topology import Topology
from heteroscale.policy.context import ServiceCounts, Targets
from heteroscale.scheduling.groups import ROLES
from heteroscale.scheduling.mix import MixOption, MixProblem, MixResult, free_gpus_by_sku, solve_mix


@dataclass(frozen=True, slots=True)
class MixSettings:
    """A service's cost-aware mix: cost per GPU-hour by SKU, the solver's time budget, the launch penalty;
    ``node_limit`` bounds the solver by branch-and-bound nodes instead of time (the simulator's runs must
    repeat exactly, whatever the machine's load)."""

    cost_per_gpu_hour: tuple[tuple[str, float], ...]
    time_limit_s: float = 0.2
    launch_penalty_h: float = 120.0 / 3600.0  # one cold start of running cost
    node_limit: int | None = None

    def __post_init__(self) -> None:
        if self.time_limit_s <= 0:
            raise ValueError(f"the mix solver needs a time budget > 0 s, got {self.time_limit_s}")
        if self.node_limit is not None and self.node_limit < 1:
            raise ValueError(f"the mix solver's node limit must be ≥ 1, got {self.node_limit}")
        if self.launch_penalty_h < 0:
            raise ValueError(f"launch_penalty_h must be ≥ 0, got {self.launch_penalty_h}")


def mix_settings(
    spec: ServiceSpec, skus: Mapping[str, GpuSku], cold_start_s: float, *, node_limit: int | None = None
) -> MixSettings | None:
    """The service's mix settings when it asks for a cost-aware mix (``gpu_mix: cost``), else None; the
    launch penalty is one cold start of running cost; ``node_limit`` replaces the time budget."""
    if spec.gpu_mix is not GpuMix.COST:
        return None
    costs = {s.sku: skus[s.sku].cost_per_gpu_hour for role in ROLES for s in spec.shapes(role)}
    return MixSettings(tuple(sorted(costs.items())), spec.gpu_mix_time_limit_s, cold_start_s / 3600.0, node_limit)


@dataclass(frozen=True, slots=True)
class MixedDecision:
    decision: ScalingDecision  # the policy's, with the gpu-mix step appended and its counts
    shape_counts: tuple[tuple[str, int], ...]
    result: MixResult | None  # the MILP's answer for the roles that grow (None: no role grows)


def choose_mix(
    spec: ServiceSpec,
    decision: ScalingDecision,
    counts: ServiceCounts,
    targets: Targets,
    settings: MixSettings,
    topology: Topology,
    free_gpus: Mapping[str, int],
) -> MixedDecision | None:
    """The cheapest per-shape fleet for the policy's decision, or None when the mix does not apply
    (no role moves, every role has one shape only, or a shape has no target or no cost)."""
    desired = {Role.PREFILL: decision.desired_prefill, Role.DECODE: decision.desired_decode}
    current = {Role.PREFILL: decision.current_prefill, Role.DECODE: decision.current_decode}
    if desired == current or all(len(spec.shapes(role)) < 2 for role in ROLES):
        return None
    costs = dict(settings.cost_per_gpu_hour)
    tps = {key: value for role in ROLES for key, value in targets.tps_per_instance(role)}
    if any(s.key not in tps or s.sku not in costs for role in ROLES for s in spec.shapes(role)):
        return None
    have = {role: dict(counts.role(role).by_shape) for role in ROLES}
    capacity = {role: sum(have[role].get(s.key, 0) * tps[s.key] for s in spec.shapes(role)) for role in ROLES}
    demand: dict[Role, float] = {}
    for role in ROLES:
        preferred = tps[spec.preferred_shape(role).key]
        if desired[role] >= current[role]:
            demand[role] = capacity[role] + (desired[role] - current[role]) * preferred
        else:
            demand[role] = capacity[role] * desired[role] / current[role] if current[role] else 0.0
    by_shape = {s.key: have[role].get(s.key, 0) for role in ROLES for s in spec.shapes(role)}
    notes: list[str] = []
    result: MixResult | None = None
    growing = [role for role in ROLES if desired[role] > current[role]]
    if growing:  # one MILP for what the growing roles add (a SKU allowed in both couples them)
        options = tuple(
            MixOption(shape, tps[shape.key], costs[shape.sku] * shape.gpus, 0)
            for role in growing
            for shape in spec.shapes(role)
        )
        extra = {role: max(0.0, demand[role] - capacity[role]) if role in growing else 0.0 for role in ROLES}
        room = {Role.PREFILL: spec.max_prefill, Role.DECODE: spec.max_decode}
        problem = MixProblem(
            demand_tps=extra,
            options=options,
            free_gpus_by_sku=free_gpus_by_sku(topology, free_gpus),
            max_count={role: max(0, room[role] - current[role]) for role in ROLES},
            launch_penalty_h=settings.launch_penalty_h,
        )
        if settings.node_limit is None:
            result = solve_mix(problem, settings.time_limit_s)
        else:
            result = solve_mix(problem, math.inf, node_limit=settings.node_limit)
        for key, n in result.counts.items():
            by_shape[key] += n
        notes.append(result.detail)
    for role in ROLES:
        if desired[role] < current[role]:
            notes.append(_shed(spec, role, by_shape, tps, costs, demand[role]))
    totals = {role: sum(by_shape[s.key] for s in spec.shapes(role)) for role in ROLES}
    reason = Reason.GPU_MIX if result is None or result.feasible else Reason.GPU_MIX_SHORT
    demands = ", ".join(f"{role.value} {demand[role]:,.0f} tok/s" for role in ROLES if desired[role] != current[role])
    step = Step("gpu-mix", totals[Role.PREFILL], totals[Role.DECODE], reason, f"demand {demands}; {'; '.join(notes)}")
    mixed = dataclasses.replace(
        decision,
        desired_prefill=totals[Role.PREFILL],
        desired_decode=totals[Role.DECODE],
        steps=(*decision.steps, step),
    )
    return MixedDecision(mixed, tuple(sorted(by_shape.items())), result)


def _shed(
    spec: ServiceSpec,
    role: Role,
    by_shape: dict[str, int],
    tps: Mapping[str, float],
    costs: Mapping[str, float],
    demand_tps: float,
) -> str:
    """Scale-in: remove the instances that cost most per token/s first, while what stays carries the
    demand (and at least the role's minimum count stays). Updates ``by_shape``; returns a note."""
    floor = spec.min_prefill if role is Role.PREFILL else spec.min_decode
    shapes = sorted(spec.shapes(role), key=lambda s: (-costs[s.sku] * s.gpus / tps[s.key], s.key))
    capacity = sum(by_shape[s.key] * tps[s.key] for s in spec.shapes(role))
    count = sum(by_shape[s.key] for s in spec.shapes(role))
    removed: list[str] = []
    for shape in shapes:
        while by_shape[shape.key] > 0 and count > floor and capacity - tps[shape.key] >= demand_tps - 1e-6:
            by_shape[shape.key] -= 1
            capacity -= tps[shape.key]
            count -= 1
            removed.append(shape.key)
    if not removed:
        return f"{role.value}: nothing to remove without going below {demand_tps:,.0f} tok/s"
    taken = ", ".join(f"{key}×{removed.count(key)}" for key in dict.fromkeys(removed))
    return f"{role.value}: remove the dearest per token first: {taken}; {capacity:,.0f} tok/s stay"
