"""Discovery gating as a run saw it: Ready instances the controller held out of service discovery
because the Ready P:D ratio was off (:mod:`heteroscale.controller.readiness`).

A gated instance is billed and serves nothing, so a run says how often and for how long it happened
(``instances_gated``, ``instances_gated_s``, ``gpu_hours_gated`` in the summary, per service too)
rather than leaving it to the journal. Gating changes only at a reconcile, so sampling the
controller's bookkeeping after each one is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from heteroscale.controller.readiness import ServiceBook
from heteroscale.domain.state import Lifecycle
from heteroscale.sim.cluster import SimInstance


@dataclass(slots=True)
class GatedTotals:
    """One service's gating so far: times an instance was gated, instance-seconds and GPU-seconds held."""

    events: int = 0
    instance_s: float = 0.0
    gpu_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "instances_gated": self.events,
            "instances_gated_s": round(self.instance_s, 3),
            "gpu_hours_gated": round(self.gpu_s / 3600.0, 6),
        }


@dataclass(slots=True)
class GatingTally:
    """Samples which Ready instances are gated after each reconcile and adds up the time they stay so."""

    totals: dict[str, GatedTotals] = field(default_factory=dict)
    sampled: bool = False  # False: no controller of this run was sampled (its figures are unknown)
    _held: dict[str, tuple[str, int]] = field(default_factory=dict)  # instance id → (service, GPUs)
    _since_s: float = 0.0

    def observe(self, now_s: float, books: Mapping[str, ServiceBook], instances: Mapping[str, SimInstance]) -> None:
        """Charge the instances gated since the last sample up to ``now_s``, then take the new set."""
        self._charge(now_s)
        self.sampled = True
        held: dict[str, tuple[str, int]] = {}
        for service, book in books.items():
            for inst_id in book.gated:
                inst = instances.get(inst_id)
                if inst is not None and inst.lifecycle is Lifecycle.READY and not inst.in_discovery:
                    held[inst_id] = (service, inst.gpus)
                    if inst_id not in self._held:
                        self._totals(service).events += 1
        self._held = held

    def close(self, end_s: float) -> None:
        """Charge the instances still gated up to the end of the run."""
        self._charge(end_s)
        self._held = {}

    def _charge(self, now_s: float) -> None:
        dt = max(0.0, now_s - self._since_s)
        for service, gpus in self._held.values():
            totals = self._totals(service)
            totals.instance_s += dt
            totals.gpu_s += dt * gpus
        self._since_s = now_s

    def _totals(self, service: str) -> GatedTotals:
        return self.totals.setdefault(service, GatedTotals())

    def figures(self, service: str | None = None) -> dict[str, float | int | None]:
        """The summary's figures for one service or the run; all None when nothing was sampled."""
        if not self.sampled:
            return dict.fromkeys(GatedTotals().as_dict())
        return dict(self.of(service).as_dict())

    def of(self, service: str | None = None) -> GatedTotals:
        """One service's totals, or the run's (``None``)."""
        if service is not None:
            return self.totals.get(service, GatedTotals())
        run = GatedTotals()
        for t in self.totals.values():
            run.events += t.events
            run.instance_s += t.instance_s
            run.gpu_s += t.gpu_s
        return run
