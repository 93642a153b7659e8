"""The metrics mode (``actuation: metrics``): say the desired replicas per target, write nothing.

It reads the targets exactly as the scale mode does (:mod:`.scale`) and plans the same way, but where
the scale mode would write a target's replicas it *publishes* them: ``publish(target, replicas)``, which
the controller turns into ``heteroscale_target_desired_replicas{service,role,target}`` on ``/metrics``
for KEDA (a Prometheus trigger) or an HPA (an External metric) to act on. Nothing is written to the
cluster. The fence still guards every publication (only a leader says what it wants) and a standby
never reads, so it never publishes; the controller clears the series when it loses the lead.

A target whose desired count was never published is published at its current replicas on every read,
so the series exist from the first cycle and an external scaler never sees a gap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from heteroscale.actuators.kube.api import FencedError, KubernetesSettings
from heteroscale.actuators.kube.targets import ScaleTarget
from heteroscale.actuators.scale import ScaleTargetsCluster, TargetsRead
from heteroscale.clock import Clock
from heteroscale.domain.plan import ActuationResult, PlacementPlan

log = logging.getLogger(__name__)

PublishFn = Callable[[ScaleTarget, int], None]


class PublishedTargets(ScaleTargetsCluster):
    """ClusterStateSource over the targets, Actuator that publishes desired replicas (module doc)."""

    def __init__(
        self,
        api_client: Any,
        settings: KubernetesSettings,
        targets: Sequence[ScaleTarget],
        publish: PublishFn,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(api_client, settings, targets, clock)
        self.publish = publish
        self.desired: dict[str, int] = {}  # target id → the replicas last published for it

    def after_read(self, read: TargetsRead) -> None:
        for tid, r in sorted(read.targets.items()):
            value = self.desired.setdefault(tid, r.replicas * max(1, r.groups))
            self.publish(r.target, value)

    def forget(self) -> None:
        """Forget what was published (the controller lost the lead and cleared the series)."""
        self.desired.clear()

    def apply(self, plan: PlacementPlan, now_s: float) -> ActuationResult:
        snap = self._last if self._last is not None else self._read(now_s)
        changes, errors, notes = self.plan_changes(plan, snap)
        if self.client.fence is not None:
            try:
                self.client.fence("publish desired replicas")
            except FencedError as exc:
                abandoned = [f"publish {tid}" for tid in sorted(changes)]
                return ActuationResult(errors=(*errors, f"fenced: {exc}"), abandoned=tuple(abandoned), fenced=str(exc))
        launched: list[str] = []
        removed: list[str] = []
        for tid, c in sorted(changes.items()):
            read = snap.targets[tid]
            value = max(0, read.replicas * max(1, read.groups) + c.delta)
            self.desired[tid] = value
            self.publish(read.target, value)
            launched.extend(c.launched)
            removed.extend(c.removed)
            if c.victims:  # nothing is written, so no deletion cost either: the workload's controller picks
                notes.append(f"{tid}: {read.target.kind.kind} removes {read.target.kind.removes}")
            notes.append(f"{tid}: desired replicas {value} published for an external scaler")
        return ActuationResult(
            launched=tuple(launched), removed=tuple(removed), errors=tuple(errors), notes=tuple(notes)
        )
