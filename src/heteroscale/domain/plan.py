"""PlacementPlan (concrete actions) and ActuationResult (what the world accepted)."""

from __future__ import annotations

from dataclasses import dataclass, field

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import ScaleInMode


@dataclass(frozen=True, slots=True)
class Launch:
    service: str
    role: Role
    shape: InstanceShape
    dg: str
    node: str


@dataclass(frozen=True, slots=True)
class Remove:
    instance_id: str
    mode: ScaleInMode = ScaleInMode.DRAIN
    grace_s: float = 600.0


@dataclass(frozen=True, slots=True)
class DiscoveryChange:
    """Put a running instance into service discovery or take it out (it keeps running)."""

    instance_id: str
    in_discovery: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    service: str
    role: Role
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    launches: tuple[Launch, ...] = ()
    removals: tuple[Remove, ...] = ()
    unplaced: tuple[Unplaced, ...] = ()
    discovery: tuple[DiscoveryChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.launches and not self.removals and not self.discovery


@dataclass(frozen=True, slots=True)
class ActuationResult:
    launched: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    discovery_changed: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())
    # writes never attempted because the actuator was fenced (it could not prove it still leads)
    abandoned: tuple[str, ...] = ()
    fenced: str | None = None  # why it stopped writing; None when it was not fenced
    # what the user should know that is no error (e.g. a kind that picks its own scale-in victim)
    notes: tuple[str, ...] = ()

    @property
    def wrote(self) -> bool:
        """Whether anything reached the cluster (a dry run or a refused plan writes nothing)."""
        return bool(self.launched or self.removed or self.discovery_changed)
