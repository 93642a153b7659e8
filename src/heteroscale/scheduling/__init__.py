"""Placement: decisions + cluster snapshot + topology → PlacementPlan (pure).

- :func:`place` — the federated, topology-aware scheduler (Algorithm 4) for all services at once;
- :class:`ServiceDemand` — what one service wants this cycle (optionally a GPU mix per shape);
- :func:`apply_budget` — caps every service's demand to a :class:`GpuBudget` by priority, deferring
  launches while GPUs drain; who was cut and why in :class:`BudgetOutcome` / :class:`BudgetCut`;
- :func:`solve_mix` — the cheapest instances per shape covering a service's demand in tokens/s
  (MILP with HiGHS within a time budget, greedy fallback: :func:`greedy_mix`);
- :func:`derive_subgroups` — RDMA subgroups and their priority (LOW / MEDIUM / HIGH);
- :func:`generate_fleet` — a seeded fleet for tests and benchmarks;
"""

from heteroscale.scheduling.budget import BudgetCut, BudgetOutcome, GpuBudget, apply_budget
from heteroscale.scheduling.federated import place
from heteroscale.scheduling.fleet import Fleet, generate_fleet
from heteroscale.scheduling.groups import ServiceDemand
from heteroscale.scheduling.mix import MixOption, MixProblem, MixResult, free_gpus_by_sku, greedy_mix, solve_mix
from heteroscale.scheduling.subgroups import derive_subgroups

__all__ = [
    "BudgetCut",
    "BudgetOutcome",
    "Fleet",
    "GpuBudget",
    "MixOption",
    "MixProblem",
    "MixResult",
    "ServiceDemand",
    "apply_budget",
    "derive_subgroups",
    "free_gpus_by_sku",
    "generate_fleet",
    "greedy_mix",
    "place",
    "solve_mix",
]
