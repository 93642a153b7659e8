"""Advisory actuator (dry run): record every plan, apply nothing.

It reads the cluster through the ClusterStateSource it wraps (so decisions are made on the real state)
and answers each ``apply`` with an ActuationResult that launched and removed nothing and says why.
The plans are kept (bounded) for inspection; the controller's journal records them as usual.
"""

from __future__ import annotations

from collections import deque

from heteroscale.actuators.base import ClusterStateSource
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.state import ClusterState
from heteroscale.domain.topology import Topology

DRY_RUN_NOTE = "dry run: plan recorded, nothing applied"


class AdvisoryActuator:
    """ClusterStateSource (delegated) and Actuator that applies nothing."""

    def __init__(self, state: ClusterStateSource, keep: int = 1000) -> None:
        if keep < 1:
            raise ValueError(f"keep must be ≥ 1, got {keep}")
        self.state = state
        self.plans: deque[tuple[float, PlacementPlan]] = deque(maxlen=keep)

    def snapshot(self, now_s: float) -> ClusterState:
        return self.state.snapshot(now_s)

    def free_gpus(self) -> dict[str, int]:
        return self.state.free_gpus()

    def topology(self) -> Topology:
        return self.state.topology()

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        self.plans.append((now_s, plan))
        would = f"{DRY_RUN_NOTE} (would launch {len(plan.launches)}, remove {len(plan.removals)})"
        return ActuationResult(errors=(would,))

    def finish_drains(self, now_s: float) -> ActuationResult:
        return ActuationResult()
