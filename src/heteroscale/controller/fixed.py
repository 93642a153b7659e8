"""Fixed-count reconcile: hold each service at configured P and D counts.

It goes through the same seams as every controller (MetricSource, ClusterStateSource, Actuator) and
writes the same DecisionRecords, so a simulated cluster is driven exactly as a real one would be.
"""

from __future__ import annotations

from collections.abc import Mapping

from heteroscale.actuators.base import Actuator, ClusterStateSource
from heteroscale.controller.journal import Journal, to_plain
from heteroscale.domain.decision import DecisionRecord, Reason, Recommendation, ScalingDecision, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import ScaleInMode
from heteroscale.errors import MetricsUnavailable
from heteroscale.metrics.source import MetricSource
from heteroscale.scheduling.firstfit import place_first_fit


def clamp_to_bounds(spec: ServiceSpec, prefill: int, decode: int) -> Step:
    p = min(max(prefill, spec.min_prefill), spec.max_prefill)
    d = min(max(decode, spec.min_decode), spec.max_decode)
    if p == prefill and d == decode:
        return Step("bounds", p, d, Reason.WITHIN_BOUNDS)
    reason = Reason.CLAMPED_MIN if (p > prefill or d > decode) else Reason.CLAMPED_MAX
    return Step(
        "bounds",
        p,
        d,
        reason,
        f"[{spec.min_prefill},{spec.max_prefill}]P [{spec.min_decode},{spec.max_decode}]D",
    )


class FixedCountController:
    def __init__(
        self,
        services: list[ServiceSpec],
        targets: Mapping[str, tuple[int, int]],
        metrics: MetricSource,
        state: ClusterStateSource,
        actuator: Actuator,
        journal: Journal,
        window_s: float = 60.0,
        scale_in_mode: ScaleInMode = ScaleInMode.DRAIN,
        drain_grace_s: float = 600.0,
    ) -> None:
        self.services = services
        self.targets = dict(targets)
        self.metrics = metrics
        self.state = state
        self.actuator = actuator
        self.journal = journal
        self.window_s = window_s
        self.scale_in_mode = scale_in_mode
        self.drain_grace_s = drain_grace_s

    def reconcile_once(self, now_s: float) -> list[DecisionRecord]:
        records: list[DecisionRecord] = []
        snapshot = self.state.snapshot(now_s)
        for spec in self.services:
            try:
                obs = to_plain(self.metrics.observe(spec.name, now_s, self.window_s))
            except MetricsUnavailable as exc:
                obs = {"unavailable": str(exc)}
            cur_p = snapshot.count(spec.name, Role.PREFILL)
            cur_d = snapshot.count(spec.name, Role.DECODE)
            want_p, want_d = self.targets[spec.name]
            rec = Recommendation(spec.name, want_p, want_d, Reason.FIXED_COUNT)
            bounded = clamp_to_bounds(spec, want_p, want_d)
            decision = ScalingDecision(spec.name, cur_p, cur_d, bounded.prefill, bounded.decode, (bounded,))
            deltas = {Role.PREFILL: bounded.prefill - cur_p, Role.DECODE: bounded.decode - cur_d}
            plan = place_first_fit(
                spec,
                deltas,
                snapshot,
                self.state.topology(),
                self.state.free_gpus(),
                self.scale_in_mode,
                self.drain_grace_s,
            )
            outcome = self.actuator.apply(plan, now_s) if not plan.empty else None
            record = DecisionRecord(
                at_s=now_s,
                service=spec.name,
                observation=obs,
                recommendation=rec,
                decision=decision,
                plan=to_plain(plan),
                outcome=to_plain(outcome) if outcome is not None else {"applied": "nothing to do"},
            )
            self.journal.append(record)
            records.append(record)
            if not plan.empty:
                snapshot = self.state.snapshot(now_s)
        return records
