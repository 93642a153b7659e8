"""The live loop: ``Controller.reconcile_once`` on the wall clock, against Prometheus and Kubernetes.

Each cycle: renew (or try to take) the leader Lease — a replica that does not lead only watches;
finish drains that fell due; reconcile every service once (one DecisionRecord each, written durably);
update the controller's own metrics. Then sleep until the next tick in short slices, so a stop request
(SIGTERM) is honoured within a fraction of a second. Failures never end the loop: a cluster that cannot
be read is logged, counted and retried on the next tick; metrics that cannot be read become a hold
inside the decision (the Controller's own behaviour). The loop is bounded by ``max_cycles`` /
``max_duration_s`` when given (``--once`` is one cycle), else by the stop request.

On start, each policy's memory (last scale-out and scale-in times, direction, recent recommendations)
is rebuilt from the journal, so a restarted controller keeps its cooldowns and takes no action twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from heteroscale.actuators.base import Actuator, ClusterStateSource
from heteroscale.clock import WallClock
from heteroscale.controller.http import ControllerMetrics
from heteroscale.controller.journal import Journal, to_plain
from heteroscale.controller.leader import LeaseElector
from heteroscale.controller.reconcile import Controller, ServiceBinding, service_counts
from heteroscale.domain.decision import DecisionRecord, Reason
from heteroscale.domain.hardware import Role
from heteroscale.domain.plan import ActuationResult
from heteroscale.errors import HeteroScaleError, PermanentActuationError, TransientActuationError
from heteroscale.policy.context import PolicyMemory
from heteroscale.policy.normalize import PD
from heteroscale.policy.outcome import remember_actions
from heteroscale.policy.ratio import restored_ratio

log = logging.getLogger(__name__)

HOLD_REASONS = frozenset(
    {Reason.HOLD_STALE.value, Reason.HOLD_MISSING.value, Reason.HOLD_PARTIAL.value, Reason.HOLD_NO_SIGNAL.value}
)


class DrainingCluster(ClusterStateSource, Actuator, Protocol):
    def finish_drains(self, now_s: float) -> ActuationResult: ...


class DurableJournal(Journal):
    """The JSONL journal, each record flushed and fsynced before the next action.

    Opening repairs a torn last line (a record cut by a kill mid-write was never complete, so it was
    never acted on as written); ``count_on_disk`` is how many complete records the file held at open.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(None)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.count_on_disk = 0
        self.repaired_bytes = 0
        if path.exists():
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep < len(data):
                self.repaired_bytes = len(data) - keep
                log.warning("journal %s: dropped a torn last record of %d bytes", path, self.repaired_bytes)
                with path.open("r+b") as fh:
                    fh.truncate(keep)
            self.count_on_disk = data[:keep].count(b"\n")
        self._fh = path.open("a", encoding="utf-8")

    def append(self, record: DecisionRecord) -> None:
        super().append(record)
        self._fh.write(json.dumps(to_plain(record), sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        super().close()
        if not self._fh.closed:
            self._fh.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The complete records of a journal file (a torn or unreadable line is skipped, with a warning)."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("journal %s: line %d is not JSON; skipped", path, n)
                continue
            if isinstance(record, dict):
                out.append(record)
    return out


def restore_memory(records: Iterable[dict[str, Any]], service: str, now_s: float, window_s: float) -> PolicyMemory:
    """A policy's memory rebuilt from journal records of ``service`` (see the module doc).

    Only what every policy shares is rebuilt, plus the P/D ratio the last decision used (an adaptive
    ratio resumes there); other policy-specific history (signal samples, the forecaster's profile)
    starts empty and refills within one window (a season for the profile).
    """
    memory = PolicyMemory()
    recent: list[tuple[float, int, int]] = []
    ratio: float | None = None
    for record in records:
        if record.get("service") != service:
            continue
        try:
            at_s = float(record["at_s"])
            decision = record["decision"]
            current = PD(int(decision["current_prefill"]), int(decision["current_decode"]))
            final = PD(int(decision["desired_prefill"]), int(decision["desired_decode"]))
            rec = record["recommendation"]
        except (KeyError, TypeError, ValueError):
            continue
        if at_s > now_s:
            continue
        memory = remember_actions(memory, at_s, current, final)
        given = record.get("pd_ratio")
        if isinstance(given, int | float) and not isinstance(given, bool) and math.isfinite(given) and given > 0:
            ratio = float(given)
        if rec.get("reason") not in HOLD_REASONS and now_s - at_s <= window_s:
            recent.append((at_s, int(rec.get("prefill", 0)), int(rec.get("decode", 0))))
    if ratio is not None:  # an adaptive ratio resumes where it was, not at the service's
        memory = restored_ratio(memory, ratio)
    return replace(memory, recommendations=tuple(recent))


@dataclass(frozen=True, slots=True)
class LiveSettings:
    interval_s: float = 30.0
    max_cycles: int | None = None  # None: until stopped
    max_duration_s: float | None = None
    sleep_slice_s: float = 0.2  # a stop request is seen within this
    stale_after_cycles: float = 3.0  # /healthz fails when no cycle ended for this many intervals

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s}")
        if self.max_cycles is not None and self.max_cycles < 1:
            raise ValueError(f"max_cycles must be ≥ 1, got {self.max_cycles}")


@dataclass(slots=True)
class CycleOutcome:
    at_s: float
    leader: bool
    records: list[DecisionRecord]
    error: str | None = None
    duration_s: float = 0.0


class LiveController:
    """Runs cycles until stopped or bounded (see the module doc)."""

    def __init__(
        self,
        controller: Controller,
        cluster: DrainingCluster,
        settings: LiveSettings,
        *,
        clock: WallClock | None = None,
        elector: LeaseElector | None = None,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.controller = controller
        self.cluster = cluster
        self.settings = settings
        self.clock = clock if clock is not None else WallClock()
        self.elector = elector
        self.metrics = metrics if metrics is not None else ControllerMetrics()
        self.stop_requested = threading.Event()
        self.cycles = 0
        self.started_s = self.clock.now_s()
        self.last_cycle_end_s: float | None = None
        self.last_error: str | None = None

    def request_stop(self) -> None:
        """Ask the loop to stop after the current cycle (safe from a signal handler)."""
        self.stop_requested.set()

    def healthy(self) -> bool:
        limit_s = self.settings.stale_after_cycles * self.settings.interval_s
        last = self.last_cycle_end_s if self.last_cycle_end_s is not None else self.started_s
        return self.clock.now_s() - last <= limit_s + self.settings.interval_s

    def restore(self, records: list[dict[str, Any]], window_s: float) -> None:
        now_s = self.clock.now_s()
        for binding in self.controller.services:
            binding.memory = restore_memory(records, binding.spec.name, now_s, window_s)

    def cycle(self) -> CycleOutcome:
        t0 = self.clock.monotonic_s()
        now_s = self.clock.now_s()
        outcome = CycleOutcome(at_s=now_s, leader=True, records=[])
        if self.elector is not None:
            try:
                outcome.leader = self.elector.try_acquire_or_renew()
            except HeteroScaleError as exc:  # defensive: the elector reports its own errors
                outcome.leader = False
                outcome.error = f"leader election: {exc}"
                self.metrics.errors.labels(kind="leader").inc()
            self.metrics.leader.set(1 if outcome.leader else 0)
        else:
            self.metrics.leader.set(1)
        if outcome.leader:
            try:
                finished = self.cluster.finish_drains(now_s)
                if finished.errors:
                    self.metrics.errors.labels(kind="actuation").inc(len(finished.errors))
                    log.warning("finishing drains: %s", "; ".join(finished.errors))
                outcome.records = self.controller.reconcile_once(now_s)
            except (TransientActuationError, PermanentActuationError) as exc:
                outcome.error = f"cluster: {exc}"
                self.metrics.errors.labels(kind="cluster").inc()
                log.warning("cycle at %.3f: no decision, the cluster cannot be read: %s", now_s, exc)
            except HeteroScaleError as exc:  # e.g. a policy refusing its targets: say so, keep running
                outcome.error = f"reconcile: {exc}"
                self.metrics.errors.labels(kind="reconcile").inc()
                log.error("cycle at %.3f: reconcile failed: %s", now_s, exc)
            for record in outcome.records:
                self.metrics.observe_record(record)
            if outcome.records:
                self._observe_state(now_s)
        outcome.duration_s = self.clock.monotonic_s() - t0
        self.metrics.duration.observe(outcome.duration_s)
        self.last_cycle_end_s = self.clock.now_s()
        self.metrics.last_cycle.set(self.last_cycle_end_s)
        self.cycles += 1
        self.last_error = outcome.error
        return outcome

    def _observe_state(self, now_s: float) -> None:
        try:
            state = self.cluster.snapshot(now_s)
        except (TransientActuationError, PermanentActuationError):
            return
        for binding in self.controller.services:
            counts = service_counts(state, binding.spec.name)
            for role in Role:
                rc = counts.role(role)
                for lifecycle, value in (("ready", rc.ready), ("starting", rc.starting), ("draining", rc.draining)):
                    self.metrics.instances.labels(service=binding.spec.name, role=role.value, lifecycle=lifecycle).set(
                        value
                    )

    def run(self) -> int:
        """Cycle until stopped or bounded; returns the number of cycles run."""
        s = self.settings
        start_mono = self.clock.monotonic_s()
        next_mono = start_mono
        while not self.stop_requested.is_set():
            if s.max_cycles is not None and self.cycles >= s.max_cycles:
                break
            if s.max_duration_s is not None and self.clock.monotonic_s() - start_mono >= s.max_duration_s:
                break
            outcome = self.cycle()
            if outcome.error:
                log.warning("cycle %d: %s", self.cycles, outcome.error)
            if s.max_cycles is not None and self.cycles >= s.max_cycles:
                break
            next_mono += s.interval_s
            now_mono = self.clock.monotonic_s()
            next_mono = max(next_mono, now_mono)  # after a slow cycle, do not try to catch up
            slices = int((next_mono - now_mono) / s.sleep_slice_s) + 2
            for _ in range(slices):
                left_s = next_mono - self.clock.monotonic_s()
                if left_s <= 0 or self.stop_requested.is_set():
                    break
                self.clock.sleep_s(min(s.sleep_slice_s, left_s))
        return self.cycles

    def shutdown(self) -> None:
        """Release the lease and close the journal (called once after ``run``)."""
        if self.elector is not None:
            self.elector.release()
            self.metrics.leader.set(0)
        self.controller.journal.close()


__all__ = [
    "CycleOutcome",
    "DrainingCluster",
    "DurableJournal",
    "LiveController",
    "LiveSettings",
    "ServiceBinding",
    "read_journal",
    "restore_memory",
]
