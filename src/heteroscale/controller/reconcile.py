"""reconcile_once(now_s): metrics → coverage → policy → normalised decision → placement → actuation → record.

Before a policy decides, the instances reporting metrics are compared with the serving instances
(:mod:`heteroscale.policy.coverage`): a partial scrape is extrapolated or held, and never scales in.

The same code runs against the simulator (virtual time) and against a live cluster (wall time); only
the MetricSource, ClusterStateSource and Actuator behind it differ.

Journal before acting: each decision that will call the actuator is first recorded as an *intent*
(durable in the live journal), then acted on, then recorded with its *outcome* (``applied``: whether
anything reached the cluster). If the intent cannot be written nothing is applied: the decision becomes
a hold (a ``journal`` step, reason ``journal-unwritable``), the policy's memory and the service's
bookkeeping are put back as they were, and the next cycle tries again. If the actuator reports that it
was fenced (it can no longer prove it leads), the cycle's remaining plans are not applied: their
outcome says ``abandoned``.

A stuck instance (a live cluster's pod that never became Ready in time, or that cannot be placed in
its domain) is not capacity: the policy decides without it, so it launches a replacement, which the
scheduler places where there is room; the instance itself is removed at once (kill mode) and named in
the record's plan under ``stuck`` (instance, role, reason, what the cluster said).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heteroscale.actuators.base import Actuator, ClusterStateSource
from heteroscale.controller.journal import Journal, to_plain
from heteroscale.controller.mixing import MixSettings, choose_mix
from heteroscale.controller.readiness import (
    ReadinessSettings,
    ServiceBook,
    gate_discovery,
    restore_for_scale_out,
    slo_degraded,
    soft_scale_in_step,
    ungate_all,
)
from heteroscale.domain.decision import DecisionRecord, Reason, Step
from heteroscale.domain.hardware import Role
from heteroscale.domain.observation import Observation
from heteroscale.domain.plan import DiscoveryChange, PlacementPlan, Remove
from heteroscale.domain.service import ServiceSpec
from heteroscale.domain.state import ClusterState, InstanceInfo, Lifecycle, ScaleInMode
from heteroscale.errors import JournalUnwritable, MetricsUnavailable
from heteroscale.metrics.source import MetricSource
from heteroscale.policy.context import (
    Policy,
    PolicyContext,
    PolicyMemory,
    PolicyResult,
    RoleCounts,
    ServiceCounts,
    Targets,
)
from heteroscale.policy.coverage import judge_coverage, keep_no_scale_in, serving_counts
from heteroscale.policy.registry import FIXED_COUNT_POLICIES
from heteroscale.scheduling import ServiceDemand, place
from heteroscale.scheduling.budget import GpuBudget, apply_budget

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServiceBinding:
    """One managed service: its spec, its policy, its targets and the policy's memory."""

    spec: ServiceSpec
    policy: Policy
    targets: Targets
    memory: PolicyMemory = field(default_factory=PolicyMemory)
    mix: MixSettings | None = None  # cost-aware GPU mix over the service's allowed shapes (None: preference order)


def service_counts(state: ClusterState, service: str, exclude: Collection[str] = ()) -> ServiceCounts:
    """Instances of one service per role and lifecycle, with capacity per shape (stuck ones count nowhere).

    ``exclude``: instances not to count at all (soft-removed: out of discovery, on their way out).
    """
    roles: dict[Role, RoleCounts] = {}
    for role in Role:
        ready = starting = draining = in_disc = 0
        by_shape: dict[str, int] = {}
        for inst in state.of(service, role):
            if inst.id in exclude:
                continue
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


@dataclass(slots=True)
class _Pending:
    """One service's decision, waiting for the cycle's placement."""

    binding: ServiceBinding
    spec: ServiceSpec
    book: ServiceBook
    before: tuple[PolicyMemory, ServiceBook]  # memory and bookkeeping as they were, should nothing be done
    instances: dict[str, InstanceInfo]
    observation: Observation | None
    error: str | None
    result: PolicyResult
    restores: list[DiscoveryChange]
    expired: list[Remove]
    stuck: list[InstanceInfo]
    capacity_prefill: int
    capacity_decode: int
    shape_counts: tuple[tuple[str, int], ...] = ()

    @property
    def desired_prefill(self) -> int:
        return self.result.decision.desired_prefill

    @property
    def desired_decode(self) -> int:
        return self.result.decision.desired_decode


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
        readiness: ReadinessSettings | None = None,
        budget: GpuBudget | None = None,
        plain_records: bool = True,
    ) -> None:
        """``plain_records=False`` (a simulation that keeps no journal): the returned DecisionRecords
        carry no observation or plan, whose conversion to plain data was a sixth of a short run."""
        # services by priority (highest first), then name, so capacity goes to the important ones first
        self.services = sorted(services, key=lambda b: (-b.spec.priority, b.spec.name))
        self.metrics = metrics
        self.state = state
        self.actuator = actuator
        self.journal = journal
        self.window_s = window_s
        self.tick_s = tick_s
        self.readiness = readiness or ReadinessSettings()
        # GPUs all managed services may hold together; None or an unbounded budget: no cap
        self.budget = budget if budget is not None and budget.bounded else None
        # per service: soft-removed and gated instances (rebuilt from the cluster after a restart:
        # a Ready instance out of discovery is treated as gated and restored when the ratio allows)
        self.books: dict[str, ServiceBook] = {}
        self._fenced: str | None = None  # set when the actuator refused to write this cycle
        self.plain_records = plain_records

    def reconcile_once(self, now_s: float) -> list[DecisionRecord]:
        """One cycle: every service's decision, one placement for all of them, then act and record."""
        self._fenced = None
        snapshot = self.state.snapshot(now_s)
        pending = [self._decide(binding, snapshot, now_s) for binding in self.services]
        free_gpus: Mapping[str, int] | None = None
        for binding, p in zip(self.services, pending, strict=True):
            if binding.mix is not None and p.error is None:
                free_gpus = self.state.free_gpus() if free_gpus is None else free_gpus
                self._mix(binding, binding.mix, p, snapshot, free_gpus)
        wanted = [
            ServiceDemand(
                p.spec,
                p.desired_prefill,
                p.desired_decode,
                p.result.scale_in_mode,
                p.result.drain_grace_s,
                shape_counts=p.shape_counts,
            )
            for p in pending
        ]
        if self.budget is not None:
            wanted = self._within_budget(self.budget, wanted, pending, snapshot)
        demands = [
            demand
            for demand, p in zip(wanted, pending, strict=True)
            if p.desired_prefill != p.capacity_prefill or p.desired_decode != p.capacity_decode or p.shape_counts
        ]
        placed = PlacementPlan()
        if demands:
            # soft-removed instances are already on their way out: never victims, never capacity
            leaving = {i for book in self.books.values() for i in book.soft_removed}
            placeable = dataclasses.replace(
                snapshot, instances=tuple(i for i in snapshot.instances if i.id not in leaving)
            )
            placed = place(demands, placeable, self.state.topology(), self.state.free_gpus())
        return [self._finish(p, placed, now_s) for p in pending]

    @staticmethod
    def _within_budget(
        budget: GpuBudget, wanted: list[ServiceDemand], pending: list[_Pending], snapshot: ClusterState
    ) -> list[ServiceDemand]:
        """Cap every service's demand to the GPU budget by priority; each decision gets a ``budget`` step
        (the held / granted GPUs, and for a cut service who took the capacity and why)."""
        outcome = apply_budget(wanted, snapshot.instances, budget)
        cuts = {cut.service: cut for cut in outcome.cuts}
        for p, demand in zip(pending, outcome.demands, strict=True):
            cut = cuts.get(p.spec.name)
            decision = p.result.decision
            if cut is None:
                step = Step(
                    "budget", decision.desired_prefill, decision.desired_decode, Reason.BUDGET_OK, outcome.detail
                )
            else:
                step = Step("budget", cut.granted_prefill, cut.granted_decode, Reason.BUDGET_CUT, cut.reason)
                p.shape_counts = demand.shape_counts
            decision = dataclasses.replace(
                decision, desired_prefill=step.prefill, desired_decode=step.decode, steps=(*decision.steps, step)
            )
            p.result = dataclasses.replace(p.result, decision=decision)
        return list(outcome.demands)

    def _mix(
        self,
        binding: ServiceBinding,
        settings: MixSettings,
        p: _Pending,
        snapshot: ClusterState,
        free_gpus: Mapping[str, int],
    ) -> None:
        """Turn the policy's counts into the cheapest per-shape fleet (:mod:`.mixing`), when a role moves."""
        counts = service_counts(snapshot, p.spec.name, exclude=set(p.book.soft_removed))
        topology = self.state.topology()
        mixed = choose_mix(p.spec, p.result.decision, counts, binding.targets, settings, topology, free_gpus)
        if mixed is not None:
            p.result = dataclasses.replace(p.result, decision=mixed.decision)
            p.shape_counts = mixed.shape_counts

    def _decide(self, binding: ServiceBinding, snapshot: ClusterState, now_s: float) -> _Pending:
        spec = binding.spec
        book = self.books.setdefault(spec.name, ServiceBook())
        before = (binding.memory, ServiceBook(dict(book.soft_removed), set(book.gated)))
        instances = {i.id: i for i in snapshot.of(spec.name)}
        observation = None
        error: str | None = None
        try:
            observation = self.metrics.observe(spec.name, now_s, self.window_s)
        except MetricsUnavailable as exc:
            error = str(exc)
            log.warning("%s: metrics unavailable: %s", spec.name, exc)
        # soft scale-in first: restore on SLO degradation, remove those whose window has ended
        degraded = slo_degraded(spec, observation)
        restores, expired = soft_scale_in_step(book, instances, now_s, degraded, self.readiness)
        stuck = sorted((i for i in instances.values() if i.lifecycle is Lifecycle.STUCK), key=lambda i: i.id)
        for inst in stuck:
            log.warning("%s: %s is stuck (%s): %s", spec.name, inst.id, inst.lifecycle_reason, inst.lifecycle_detail)
        counts = service_counts(snapshot, spec.name, exclude=set(book.soft_removed))
        # a partial scrape reads low: the policy sees the observation as coverage allows, never scales in on it
        window_start_s = now_s - self.window_s if observation is None else observation.window_start_s
        kept = (i for i in instances.values() if i.id not in book.soft_removed)
        coverage = judge_coverage(observation, error, counts, serving_counts(kept, window_start_s))
        ctx = PolicyContext(
            now_s=now_s,
            spec=spec,
            observation=coverage.observation,
            observation_error=coverage.error,
            counts=counts,
            targets=binding.targets,
            memory=binding.memory,
            tick_s=self.tick_s,
            window_s=self.window_s,
        )
        result = keep_no_scale_in(coverage, binding.policy.decide(ctx), binding.memory, now_s)
        binding.memory = result.memory
        decision = result.decision
        capacity = {Role.PREFILL: counts.prefill.capacity, Role.DECODE: counts.decode.capacity}
        # scale-out brings soft-removed instances back before launching new ones (no cold start)
        for role, desired in ((Role.PREFILL, decision.desired_prefill), (Role.DECODE, decision.desired_decode)):
            if desired > capacity[role]:
                back = restore_for_scale_out(book, role, desired - capacity[role], instances)
                restores += [DiscoveryChange(i, True, "soft scale-in reverted: scale-out") for i in back]
                capacity[role] += len(back)
        return _Pending(
            binding=binding,
            spec=spec,
            book=book,
            before=before,
            instances=instances,
            observation=observation,
            error=error,
            result=result,
            restores=restores,
            expired=expired,
            stuck=stuck,
            capacity_prefill=capacity[Role.PREFILL],
            capacity_decode=capacity[Role.DECODE],
        )

    def _finish(self, p: _Pending, placed: PlacementPlan, now_s: float) -> DecisionRecord:
        spec, book = p.spec, p.book
        mine = set(p.instances)
        plan = PlacementPlan(
            launches=tuple(x for x in placed.launches if x.service == spec.name),
            removals=tuple(x for x in placed.removals if x.instance_id in mine),
            unplaced=tuple(x for x in placed.unplaced if x.service == spec.name),
        )
        plan = self._soften(plan, book, p.instances, now_s, p.result.scale_in_mode)
        replaced = [Remove(i.id, ScaleInMode.KILL, 0.0) for i in p.stuck]
        # gate discovery on the Ready ratio, as it will be once this plan's changes are made
        leaving = {r.instance_id for r in (*plan.removals, *p.expired, *replaced)}
        projected = {k: v for k, v in p.instances.items() if k not in leaving}
        for change in (*p.restores, *plan.discovery):
            if change.instance_id in projected:
                projected[change.instance_id] = dataclasses.replace(
                    projected[change.instance_id], in_discovery=change.in_discovery
                )
        gating = []
        if p.binding.policy.name in FIXED_COUNT_POLICIES:
            gating = ungate_all(book, projected)
        elif self.readiness.gating:  # off where the stack's router ignores our discovery label (scale mode)
            gating = gate_discovery(spec, book, projected, self.readiness, _held_split(p.result))
        for change in gating:
            if not change.in_discovery:
                log.info("%s: %s out of service discovery: %s", spec.name, change.instance_id, change.reason)
        plan = dataclasses.replace(
            plan,
            removals=(*plan.removals, *p.expired, *replaced),
            discovery=_merge_discovery((*p.restores, *plan.discovery, *gating)),
        )
        detail = self.plain_records or self.journal.reads_records
        planned = to_plain(plan) if detail else {}
        if p.stuck and detail:
            planned["stuck"] = [
                {"instance_id": i.id, "role": i.role.value, "reason": i.lifecycle_reason, "detail": i.lifecycle_detail}
                for i in p.stuck
            ]
        record = DecisionRecord(
            at_s=now_s,
            service=spec.name,
            observation=_observed(p) if detail else {},
            recommendation=p.result.recommendation,
            decision=p.result.decision,
            plan=planned,
            outcome={},
            pd_ratio=p.result.pd_ratio,
        )
        decision_id = self.journal.new_id(spec.name, now_s)
        outcome: dict[str, object] = {"applied": "nothing to do"}
        applied = held = False
        if plan.empty and not plan.unplaced:
            pass  # nothing to do: no intent, the outcome alone records the decision
        elif self._fenced is not None:
            self._put_back(p)
            outcome = {"abandoned": f"not applied: an earlier write this cycle was fenced ({self._fenced})"}
        else:
            try:
                self.journal.intend(record, decision_id)
            except JournalUnwritable as exc:
                log.warning("%s: holding, nothing applied: the intent cannot be journaled (%s)", spec.name, exc)
                self._put_back(p)
                record, held = _held(record, str(exc)), True
                outcome = {"held": f"{Reason.JOURNAL_UNWRITABLE.value}: {exc}"}
            else:
                result = self.actuator.apply(plan, now_s)
                outcome, applied = to_plain(result), result.wrote
                if result.fenced is not None:
                    self._fenced = result.fenced
        record = dataclasses.replace(record, outcome=outcome)
        try:
            self.journal.conclude(record, decision_id, applied)
        except JournalUnwritable as exc:  # after a held intent this is expected, and already said
            level = logging.DEBUG if held else logging.ERROR
            log.log(level, "%s: the outcome of %s could not be journaled: %s", spec.name, decision_id, exc)
        return record

    @staticmethod
    def _put_back(p: _Pending) -> None:
        """Nothing will be applied: the policy's memory and the service's bookkeeping as before."""
        memory, book = p.before
        p.binding.memory = memory
        p.book.soft_removed, p.book.gated = book.soft_removed, book.gated

    def _soften(
        self,
        plan: PlacementPlan,
        book: ServiceBook,
        instances: dict[str, InstanceInfo],
        now_s: float,
        mode: ScaleInMode,
    ) -> PlacementPlan:
        """Turn drain-mode removals of serving instances into soft scale-ins (out of discovery first)."""
        if mode is not ScaleInMode.DRAIN or self.readiness.soft_scale_in_s <= 0:
            return plan
        keep: list[Remove] = []
        soft: list[DiscoveryChange] = []
        for removal in plan.removals:
            inst = instances.get(removal.instance_id)
            if inst is not None and inst.lifecycle is Lifecycle.READY and inst.in_discovery:
                book.soft_removed[inst.id] = now_s
                soft.append(
                    DiscoveryChange(inst.id, False, f"soft scale-in: observed for {self.readiness.soft_scale_in_s:g} s")
                )
            else:
                keep.append(removal)
        return dataclasses.replace(plan, removals=tuple(keep), discovery=(*plan.discovery, *soft))


def _observed(p: _Pending) -> dict[str, Any]:
    return {"error": p.error} if p.observation is None else to_plain(p.observation)


def _held(record: DecisionRecord, why: str) -> DecisionRecord:
    """``record`` turned into a hold at the current counts, with a ``journal`` step saying why."""
    d = record.decision
    step = Step("journal", d.current_prefill, d.current_decode, Reason.JOURNAL_UNWRITABLE, why)
    held = dataclasses.replace(
        d, desired_prefill=d.current_prefill, desired_decode=d.current_decode, steps=(*d.steps, step)
    )
    return dataclasses.replace(record, decision=held)


def _merge_discovery(changes: Sequence[DiscoveryChange]) -> tuple[DiscoveryChange, ...]:
    """One change per instance, the last word winning, in first-mention order."""
    last: dict[str, DiscoveryChange] = {}
    for change in changes:
        last[change.instance_id] = change
    return tuple(last.values())


def _held_split(result: PolicyResult) -> float | None:
    """The P:D ratio discovery gating holds: the split the decision asked for where the policy sized the
    roles together, else the ratio it reports. A ratio applied to the decode demand (adaptive) or a GPU
    mix of unequal shapes decides counts off r by design; gating them against r held out Ready instances
    the decision wanted serving."""
    d = result.decision
    if result.coordinated and d.desired_prefill > 0 and d.desired_decode > 0:
        return d.desired_prefill / d.desired_decode
    return result.pd_ratio
