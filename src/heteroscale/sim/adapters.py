"""The simulator as a drop-in metric source, cluster-state source and actuator.

There is no simulated clock: the run passes virtual time to the controller as ``now_s``.
"""

from __future__ import annotations

from heteroscale.domain.observation import Observation
from heteroscale.domain.plan import ActuationResult, PlacementPlan
from heteroscale.domain.state import ClusterState
from heteroscale.domain.topology import Topology
from heteroscale.sim.engine import Engine


class SimMetricSource:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        return self._engine.telemetry.observe(service, now_s, window_s)


class SimActuator:
    """Applies PlacementPlans to the simulated cluster and reports its state."""

    def __init__(self, engine: Engine, service_index: dict[str, int]) -> None:
        self._engine = engine
        self._svc = service_index

    def snapshot(self, now_s: float) -> ClusterState:
        return self._engine.cluster.snapshot(now_s)

    def free_gpus(self) -> dict[str, int]:
        return dict(self._engine.cluster.node_free)

    def topology(self) -> Topology:
        return self._engine.cluster.topology

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        launched: list[str] = []
        removed: list[str] = []
        errors: list[str] = []
        for launch in plan.launches:
            try:
                launched.append(
                    self._engine.launch(
                        self._svc[launch.service], launch.shape, launch.dg, launch.node, now_s, warm=False
                    )
                )
            except ValueError as exc:
                errors.append(f"launch {launch.service}/{launch.role.value} on {launch.node}: {exc}")
        for removal in plan.removals:
            if removal.instance_id not in self._engine.cluster.instances:
                errors.append(f"remove {removal.instance_id}: no such instance")
                continue
            self._engine.remove(removal.instance_id, removal.mode, removal.grace_s, now_s)
            removed.append(removal.instance_id)
        changed: list[str] = []
        for change in plan.discovery:
            if change.instance_id not in self._engine.cluster.instances:
                errors.append(f"discovery {change.instance_id}: no such instance")
                continue
            self._engine.set_discovery(change.instance_id, change.in_discovery)
            changed.append(change.instance_id)
        for u in plan.unplaced:
            errors.append(f"unplaced {u.service}/{u.role.value} ×{u.count}: {u.reason}")
        return ActuationResult(tuple(launched), tuple(removed), tuple(changed), tuple(errors))
