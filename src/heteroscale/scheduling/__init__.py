"""Placement: decisions + cluster snapshot + topology → PlacementPlan (pure).

- :func:`place` — the federated, topology-aware scheduler (Algorithm 4) for all services at once;
- :class:`ServiceDemand` — what one service wants this cycle;
- :func:`derive_subgroups` — RDMA subgroups and their priority (LOW / MEDIUM / HIGH);
- :func:`generate_fleet` — a seeded fleet for tests and benchmarks;
"""

from heteroscale.scheduling.federated import place
from heteroscale.scheduling.fleet import Fleet, generate_fleet
from heteroscale.scheduling.groups import ServiceDemand
from heteroscale.scheduling.subgroups import derive_subgroups

__all__ = ["Fleet", "ServiceDemand", "derive_subgroups", "generate_fleet", "place"]
