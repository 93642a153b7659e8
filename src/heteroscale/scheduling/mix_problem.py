"""The cost-aware mix's problem and answer types, and the independent evaluation of a mix (pure).

See :mod:`heteroscale.scheduling.mix` for the model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.topology import Topology
from heteroscale.scheduling.groups import ROLES

Method = Literal["milp", "greedy"]
REL_TOL = 1e-6  # demand counted as covered when short by less than this share (solver tolerances)
INT_TOL = 1e-5  # a MILP value this close to an integer is that integer
MIP_REL_GAP = 1e-6
MIN_BUDGET_S = 1e-3  # below this a further HiGHS call is not worth starting
SHARE_WEIGHT = 0.01  # weight of each role's own covered share next to the worst share, best effort


@dataclass(frozen=True, slots=True)
class MixOption:
    """One allowed shape: tokens/s one instance carries at the SLO, its cost per hour, how many run now."""

    shape: InstanceShape
    tps_per_instance: float
    cost_per_hour: float
    current: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tps_per_instance) and self.tps_per_instance > 0):
            raise ValueError(f"{self.shape.key}: tps_per_instance must be > 0, got {self.tps_per_instance}")
        if not (math.isfinite(self.cost_per_hour) and self.cost_per_hour >= 0):
            raise ValueError(f"{self.shape.key}: cost_per_hour must be ≥ 0, got {self.cost_per_hour}")
        if self.current < 0:
            raise ValueError(f"{self.shape.key}: current must be ≥ 0, got {self.current}")
        if self.shape.gpus < 1:
            raise ValueError(f"{self.shape.key}: an instance needs ≥ 1 GPU, got {self.shape.gpus}")

    @property
    def key(self) -> str:
        return self.shape.key

    @property
    def role(self) -> Role:
        return self.shape.role

    @property
    def gpus(self) -> int:
        return self.shape.gpus


@dataclass(frozen=True, slots=True)
class MixProblem:
    """One service's mix question. Roles missing from ``demand_tps`` / ``min_count`` want 0; missing from
    ``max_count``, no upper bound. A SKU missing from ``free_gpus_by_sku`` has no free GPU."""

    demand_tps: Mapping[Role, float]
    options: tuple[MixOption, ...]
    free_gpus_by_sku: Mapping[str, int]
    max_gpus: int | None = None
    min_count: Mapping[Role, int] = field(default_factory=dict)
    max_count: Mapping[Role, int] = field(default_factory=dict)
    launch_penalty_h: float = 0.0

    def __post_init__(self) -> None:
        keys = [o.key for o in self.options]
        if len(set(keys)) != len(keys):
            raise ValueError(f"mix options list a shape twice: {sorted(k for k in keys if keys.count(k) > 1)}")
        for role, tps in self.demand_tps.items():
            if not (math.isfinite(tps) and tps >= 0):
                raise ValueError(f"demand_tps[{role.value}] must be ≥ 0, got {tps}")
        if self.max_gpus is not None and self.max_gpus < 0:
            raise ValueError(f"max_gpus must be ≥ 0, got {self.max_gpus}")
        if not (math.isfinite(self.launch_penalty_h) and self.launch_penalty_h >= 0):
            raise ValueError(f"launch_penalty_h must be ≥ 0, got {self.launch_penalty_h}")
        for role in ROLES:
            low, high = self.bounds(role)
            if low < 0 or (high is not None and high < low):
                raise ValueError(f"{role.value} count bounds must satisfy 0 ≤ min ≤ max, got [{low}, {high}]")

    def demand(self, role: Role) -> float:
        return float(self.demand_tps.get(role, 0.0))

    def bounds(self, role: Role) -> tuple[int, int | None]:
        return int(self.min_count.get(role, 0)), self.max_count.get(role)

    def free(self, sku: str) -> int:
        return max(0, int(self.free_gpus_by_sku.get(sku, 0)))

    def penalty(self, option: MixOption) -> float:
        """The one-off cost of launching one instance of ``option``."""
        return self.launch_penalty_h * option.cost_per_hour


@dataclass(frozen=True, slots=True)
class MixResult:
    """The chosen mix. ``counts`` has every option's shape key; ``cost_per_hour`` is the running cost,
    ``launch_cost`` the one-off cost of the launches it implies (what the solver also minimised)."""

    counts: dict[str, int]
    cost_per_hour: float
    launch_cost: float
    method: Method
    status: str
    solve_s: float
    detail: str
    feasible: bool
    capacity_tps: dict[Role, float]
    shortfall_tps: dict[Role, float]

    @property
    def objective(self) -> float:
        return self.cost_per_hour + self.launch_cost

    def role_count(self, role: Role) -> int:
        return sum(n for key, n in self.counts.items() if _role_of_key(key) is role)

    def shape_counts(self) -> tuple[tuple[str, int], ...]:
        """``ServiceDemand.shape_counts`` for this mix (every option, in the problem's order)."""
        return tuple(self.counts.items())


def free_gpus_by_sku(topology: Topology, free_gpus: Mapping[str, int], granularity_gpus: int = 1) -> dict[str, int]:
    """Free GPUs per SKU over the topology's schedulable nodes (``free_gpus`` by node name, else the node's
    own ``gpus_free``; clamped to [0, gpus_total] as the scheduler's view does). With ``granularity_gpus``
    > 1 only whole multiples of it count per node (e.g. the smallest TP in use), a tighter bound.

    An upper bound on what the scheduler can place: affinity domains and fragmentation may allow less
    (what does not fit comes back in ``PlacementPlan.unplaced``)."""
    if granularity_gpus < 1:
        raise ValueError(f"granularity_gpus must be ≥ 1, got {granularity_gpus}")
    out: dict[str, int] = {}
    for node in topology.nodes:
        free = 0
        if node.schedulable:
            free = max(0, min(node.gpus_total, int(free_gpus.get(node.name, node.gpus_free))))
        out[node.sku] = out.get(node.sku, 0) + free // granularity_gpus * granularity_gpus
    return out


# --- evaluation and the journal line ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evaluation:
    cost_per_hour: float
    launch_cost: float
    capacity_tps: dict[Role, float]
    shortfall_tps: dict[Role, float]
    count_short: int  # instances missing to the roles' minimum counts
    worst_share: float  # the smallest covered share of a role's demand / minimum count (1 when all met)
    demand_share_sum: float  # Σ over roles with demand of min(1, capacity / demand)
    hard_ok: bool  # free GPUs per SKU, the GPU cap and the maximum counts hold

    @property
    def objective(self) -> float:
        return self.cost_per_hour + self.launch_cost

    @property
    def score(self) -> float:
        """z + 1 % of each role's share: the best-effort MILP's objective (the larger, the better)."""
        return self.worst_share + SHARE_WEIGHT * self.demand_share_sum

    @property
    def feasible(self) -> bool:
        return self.hard_ok and self.count_short == 0 and not any(self.shortfall_tps.values())


def evaluate(problem: MixProblem, counts: Sequence[int]) -> Evaluation:
    options = problem.options
    launches = [max(0, n - o.current) for n, o in zip(counts, options, strict=True)]
    cost = sum(n * o.cost_per_hour for n, o in zip(counts, options, strict=True))
    launch_cost = sum(a * problem.penalty(o) for a, o in zip(launches, options, strict=True))
    used: dict[str, int] = {}
    for a, o in zip(launches, options, strict=True):
        used[o.shape.sku] = used.get(o.shape.sku, 0) + a * o.gpus
    hard_ok = all(used[sku] <= problem.free(sku) for sku in used)
    if problem.max_gpus is not None:
        hard_ok &= sum(n * o.gpus for n, o in zip(counts, options, strict=True)) <= problem.max_gpus
    capacity: dict[Role, float] = {}
    shortfall: dict[Role, float] = {}
    shares: list[float] = []
    demand_shares = 0.0
    count_short = 0
    for role in ROLES:
        n_role = sum(n for n, o in zip(counts, options, strict=True) if o.role is role)
        capacity[role] = sum(n * o.tps_per_instance for n, o in zip(counts, options, strict=True) if o.role is role)
        demand = problem.demand(role)
        short = demand - capacity[role]
        shortfall[role] = short if short > REL_TOL * max(1.0, demand) else 0.0
        low, high = problem.bounds(role)
        if high is not None and n_role > high:
            hard_ok = False
        count_short += max(0, low - n_role)
        if demand > 0:
            shares.append(min(1.0, capacity[role] / demand) if shortfall[role] else 1.0)
            demand_shares += shares[-1]
        if low > 0:
            shares.append(min(1.0, n_role / low))
    return Evaluation(
        cost_per_hour=cost,
        launch_cost=launch_cost,
        capacity_tps=capacity,
        shortfall_tps=shortfall,
        count_short=count_short,
        worst_share=min(shares, default=1.0),
        demand_share_sum=demand_shares,
        hard_ok=hard_ok,
    )


def result_of(
    problem: MixProblem, counts: Sequence[int], method: Method, status: str, solve_s: float, *, timed: bool = True
) -> MixResult:
    """The result of ``counts``; its line shows the solve time only when ``timed`` (a wall-clock budget)."""
    ev = evaluate(problem, counts)
    return MixResult(
        counts={o.key: n for o, n in zip(problem.options, counts, strict=True)},
        cost_per_hour=ev.cost_per_hour,
        launch_cost=ev.launch_cost,
        method=method,
        status=status,
        solve_s=solve_s,
        detail=_detail(problem, counts, ev, method, status + (f"; {solve_s * 1e3:.1f} ms" if timed else "")),
        feasible=ev.feasible,
        capacity_tps=ev.capacity_tps,
        shortfall_tps=ev.shortfall_tps,
    )


def _detail(problem: MixProblem, counts: Sequence[int], ev: Evaluation, method: Method, status: str) -> str:
    """One line: how it was decided, the counts per shape (with the change), cost, and coverage."""
    shapes = []
    for opt, n in zip(problem.options, counts, strict=True):
        if n or opt.current:
            change = f" ({n - opt.current:+d})" if n != opt.current else ""
            shapes.append(f"{opt.key}={n}{change}")
    served_tps = sum(min(ev.capacity_tps[r], problem.demand(r)) for r in ROLES)
    per_1k = f"{ev.cost_per_hour / (served_tps * 3.6):.4g}" if served_tps > 0 else "n/a"
    cover = ", ".join(f"{r.value} {ev.capacity_tps[r]:.0f}/{problem.demand(r):.0f} tps" for r in ROLES)
    parts = [
        f"mix {method} ({status})",
        " ".join(shapes) or "no instances",
        f"{ev.cost_per_hour:.4g}/h + launches {ev.launch_cost:.3g}, {per_1k} per 1k tokens",
        cover,
    ]
    short = [f"{r.value} short {ev.shortfall_tps[r]:.0f} tps" for r in ROLES if ev.shortfall_tps[r]]
    if ev.count_short:
        short.append(f"{ev.count_short} instance(s) below the minimum counts")
    if not ev.hard_ok:  # only possible when nothing satisfies the limits (e.g. current counts over max)
        short.append("limits not met")
    if short:
        parts.append("INFEASIBLE: " + ", ".join(short))
    return "; ".join(parts)


def _role_of_key(key: str) -> Role:
    return Role(key.split(":", 1)[0])


def rank(problem: MixProblem, counts: Sequence[int]) -> tuple[float, float]:
    """Smaller is better: the coverage score (what the best-effort MILP maximises), then the cost."""
    ev = evaluate(problem, counts)
    return (-round(ev.score, 9), round(ev.objective, 9))
