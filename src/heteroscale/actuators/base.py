"""Protocols the controller acts through: where the cluster stands, and how to change it."""

from __future__ import annotations

from typing import Protocol

from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.state import ClusterState
from heteroscale.domain.topology import Topology


class ClusterStateSource(Protocol):
    def snapshot(self, now_s: float) -> ClusterState: ...

    def free_gpus(self) -> dict[str, int]:
        """Free GPUs per node name, as the cluster sees them now."""
        ...

    def topology(self) -> Topology: ...


class Actuator(Protocol):
    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult: ...
