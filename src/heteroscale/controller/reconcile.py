"""reconcile_once(now_s): metrics → policy → normalised decision → placement → actuation → record.

The same code runs against the simulator (virtual time) and against a live cluster (wall time); only
the MetricSource, ClusterStateSource and Actuator behind it differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from heteroscale.actuators.base import Actuator, ClusterStateSource
from heteroscale.controller.journal import Journal, to_plain
from heteroscale.domain.decision import DecisionRecord
from heteroscale.domain.hardware import Role
from heteroscale.domain.plan import PlacementPlan
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import ClusterState, Lifecycle
from heteroscale.errors import MetricsUnavailable
from heteroscale.metrics.source import MetricSource
from heteroscale.policy.context import (
    Policy,
    PolicyContext,
    PolicyMemory,
    RoleCounts,
    ServiceCounts,
    Targets,
)
from heteroscale.scheduling.firstfit import place_first_fit

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServiceBinding:
    """One managed service: its spec, its policy, its targets and the policy's memory."""

    spec: ServiceSpec
    policy: Policy
    targets: Targets
    memory: PolicyMemory = field(default_factory=PolicyMemory)


def service_counts(state: ClusterState, service: str) -> ServiceCounts:
    """Instances of one service per role and lifecycle, with capacity per shape."""
    roles: dict[Role, RoleCounts] = {}
    for role in Role:
        ready = starting = draining = in_disc = 0
        by_shape: dict[str, int] = {}
        for inst in state.of(service, role):
            lc = inst.lifecycle
            if lc is Lifecycle.READY:
                ready += 1
            elif lc in (Lifecycle.PENDING, Lifecycle.STARTING):
                starting += 1
            elif lc is Lifecycle.DRAINING:
                draining += 1
                continue
            else:
                continue
            if inst.in_discovery:
                in_disc += 1
            by_shape[inst.shape.key] = by_shape.get(inst.shape.key, 0) + 1
        roles[role] = RoleCounts(ready, starting, draining, in_disc, tuple(sorted(by_shape.items())))
    return ServiceCounts(prefill=roles[Role.PREFILL], decode=roles[Role.DECODE])


class Controller:
    def __init__(
        self,
        services: list[ServiceBinding],
        metrics: MetricSource,
        state: ClusterStateSource,
        actuator: Actuator,
        journal: Journal,
        window_s: float = 60.0,
        tick_s: float = 30.0,
    ) -> None:
        # services by priority (highest first), then name, so capacity goes to the important ones first
        self.services = sorted(services, key=lambda b: (-b.spec.priority, b.spec.name))
        self.metrics = metrics
        self.state = state
        self.actuator = actuator
        self.journal = journal
        self.window_s = window_s
        self.tick_s = tick_s

    def reconcile_once(self, now_s: float) -> list[DecisionRecord]:
        records: list[DecisionRecord] = []
        snapshot = self.state.snapshot(now_s)
        for binding in self.services:
            spec = binding.spec
            observation = None
            error: str | None = None
            try:
                observation = self.metrics.observe(spec.name, now_s, self.window_s)
            except MetricsUnavailable as exc:
                error = str(exc)
                log.warning("%s: metrics unavailable: %s", spec.name, exc)
            counts = service_counts(snapshot, spec.name)
            ctx = PolicyContext(
                now_s=now_s,
                spec=spec,
                observation=observation,
                observation_error=error,
                counts=counts,
                targets=binding.targets,
                memory=binding.memory,
                tick_s=self.tick_s,
            )
            result = binding.policy.decide(ctx)
            binding.memory = result.memory
            decision = result.decision
            deltas = {
                Role.PREFILL: decision.desired_prefill - counts.prefill.capacity,
                Role.DECODE: decision.desired_decode - counts.decode.capacity,
            }
            plan = PlacementPlan()
            if deltas[Role.PREFILL] or deltas[Role.DECODE]:
                plan = place_first_fit(
                    spec,
                    deltas,
                    snapshot,
                    self.state.topology(),
                    self.state.free_gpus(),
                    result.scale_in_mode,
                    result.drain_grace_s,
                )
            outcome: dict[str, object] = {"applied": "nothing to do"}
            if not plan.empty or plan.unplaced:
                outcome = to_plain(self.actuator.apply(plan, now_s))
            record = DecisionRecord(
                at_s=now_s,
                service=spec.name,
                observation={"error": error} if observation is None else to_plain(observation),
                recommendation=result.recommendation,
                decision=decision,
                plan=to_plain(plan),
                outcome=outcome,
            )
            self.journal.append(record)
            records.append(record)
            if not plan.empty:
                snapshot = self.state.snapshot(now_s)
        return records
