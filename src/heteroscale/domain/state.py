"""Cluster state: instances per service, deployment group and role, with their lifecycle.

A STUCK instance (only a live cluster reports one; the simulator never does) is neither capacity nor
draining: the controller removes it and the policy, seeing less capacity, launches a replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from heteroscale.domain.hardware import InstanceShape, Role


class Lifecycle(StrEnum):
    PENDING = "pending"  # accepted, not yet placed / pulled
    STARTING = "starting"  # cold start under way
    READY = "ready"
    DRAINING = "draining"  # no new work; finishing in-flight work
    STUCK = "stuck"  # never became Ready in time, or cannot be placed where it is pinned: not capacity
    GONE = "gone"


class ScaleInMode(StrEnum):
    DRAIN = "drain"  # no new work; in-flight work finishes within a grace period
    KILL = "kill"  # in-flight requests fail


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    id: str
    service: str
    role: Role
    shape: InstanceShape
    dg: str
    node: str
    lifecycle: Lifecycle
    in_discovery: bool
    launched_at_s: float
    ready_at_s: float | None = None
    lifecycle_reason: str = ""  # why, when the lifecycle needs one (a stuck instance: "start-timeout", …)
    lifecycle_detail: str = ""  # what the cluster said about it, for the record

    @property
    def counts_as_capacity(self) -> bool:
        """Starting instances count, so a slow start does not cause repeated scale-out."""
        return self.lifecycle in (Lifecycle.PENDING, Lifecycle.STARTING, Lifecycle.READY)


@dataclass(frozen=True, slots=True)
class ClusterState:
    at_s: float
    instances: tuple[InstanceInfo, ...]

    def of(self, service: str, role: Role | None = None) -> tuple[InstanceInfo, ...]:
        return tuple(i for i in self.instances if i.service == service and (role is None or i.role is role))

    def count(self, service: str, role: Role, *lifecycles: Lifecycle) -> int:
        wanted = lifecycles or (Lifecycle.PENDING, Lifecycle.STARTING, Lifecycle.READY)
        return sum(1 for i in self.of(service, role) if i.lifecycle in wanted)
