"""The live loop: ``Controller.reconcile_once`` on the wall clock, against Prometheus and Kubernetes.

Leadership is kept by the elector's own thread (``controller/leader.py``): it renews the Lease every
retry period whatever the cycles do, and every write to the cluster passes its fence. Each cycle: a
replica that cannot prove it leads only watches (on losing the lead its ``desired`` series are
cleared); the leader finishes drains that fell due and reconciles every service once, each decision
journaled before and after acting (``controller/reconcile.py``); then the controller's own metrics are
updated. It then sleeps until the next tick in short slices, so a stop request (SIGTERM) is honoured
within a fraction of a second. Failures never end the loop: a cluster that cannot be read is logged,
counted and retried on the next tick; metrics that cannot be read become a hold inside the decision; a
journal that cannot be written becomes a hold too (``journal-unwritable``, counted in ``/metrics``), and
drains are not finished while it lasts. The loop is bounded by ``max_cycles`` / ``max_duration_s``
when given (``--once`` is one cycle; it never sleeps past the duration's deadline, so a run ends within
one cycle of it), else by the stop request.

Whether the Kubernetes API was ever reached (a Lease read, or a cycle that read the cluster) is kept in
``api_reached``, and why the last attempt failed in ``api_error``; ``/healthz`` shows both, so an
unbounded controller that keeps retrying an unreachable API says so, and ``cli/live.py`` ends a run that
never reached it with exit code 4.

On start, each policy's memory (last scale-out and scale-in, direction, recent recommendations, the
ratio) is rebuilt from the journal's last checkpoint and the records after it (``controller/journal``),
counting only applied actions, so a restarted controller keeps its cooldowns and takes no action twice,
and a dry run's plans block nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from heteroscale.actuators.base import Actuator, ClusterStateSource
from heteroscale.clock import Clock, WallClock
from heteroscale.controller.http import ControllerMetrics
from heteroscale.controller.journal import DurableJournal, MemoryFold, restore_memory
from heteroscale.controller.reconcile import Controller, ServiceBinding, service_counts
from heteroscale.domain.decision import DecisionRecord
from heteroscale.domain.hardware import Role
from heteroscale.domain.plan import ActuationResult
from heteroscale.errors import HeteroScaleError, PermanentActuationError, TransientActuationError

log = logging.getLogger(__name__)


class DrainingCluster(ClusterStateSource, Actuator, Protocol):
    def finish_drains(self, now_s: float) -> ActuationResult: ...


class Leadership(Protocol):
    """What the loop needs of leader election (``controller.leader.LeaseElector``)."""

    def start(self) -> None: ...

    def is_leader(self) -> bool: ...

    def stop(self, timeout_s: float = 5.0) -> bool: ...

    def release(self) -> None: ...

    @property
    def reached(self) -> bool:
        """The Lease store answered at least once."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the last attempt to reach the Lease failed (None: it got an answer)."""
        ...


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
        clock: Clock | None = None,
        elector: Leadership | None = None,
        metrics: ControllerMetrics | None = None,
        on_record: Callable[[DecisionRecord], None] | None = None,
        on_lost_lead: Callable[[], None] | None = None,
    ) -> None:
        self.controller = controller
        self.cluster = cluster
        self.settings = settings
        self.clock: Clock = clock if clock is not None else WallClock()
        self.elector = elector
        self.metrics = metrics if metrics is not None else ControllerMetrics()
        self.stop_requested = threading.Event()
        self.cycles = 0
        self.started_mono_s = self.clock.monotonic_s()
        self.last_cycle_end_mono_s: float | None = None
        self.last_error: str | None = None
        self.leading = False
        self.on_record = on_record  # called with every decision once it is journaled (e.g. a dry run's lines)
        self.on_lost_lead = on_lost_lead  # e.g. the metrics mode forgets what it published
        self.api_reached = False  # the Kubernetes API answered at least once (the Lease or a cluster read)
        self.api_error: str | None = None  # why the last attempt to reach it failed; None when it answered
        self._journal_errors_seen = 0
        self._started = False

    def request_stop(self) -> None:
        """Ask the loop to stop after the current cycle (safe from a signal handler)."""
        self.stop_requested.set()

    # --- health --------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Cycles keep completing (leader or standby): the last ended within the staleness limit."""
        limit_s = self.settings.stale_after_cycles * self.settings.interval_s
        last = self.last_cycle_end_mono_s if self.last_cycle_end_mono_s is not None else self.started_mono_s
        return self.clock.monotonic_s() - last <= limit_s + self.settings.interval_s

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` body: role, health and what they rest on."""
        last = self.last_cycle_end_mono_s
        journal = self.controller.journal
        return {
            "role": "leader" if self.leading else "standby",
            "healthy": self.healthy(),
            "cycles": self.cycles,
            "last_cycle_age_s": None if last is None else round(self.clock.monotonic_s() - last, 3),
            "journal_writable": journal.writable,
            "last_error": self.last_error,
            "api_reached": self.api_reached,
            "api_error": self.api_error,
        }

    # --- start-up ------------------------------------------------------------------------------

    def restore(self, fold: MemoryFold) -> None:
        """Every policy's memory from the journal's folded records (module doc)."""
        now_s = self.clock.now_s()
        for binding in self.controller.services:
            binding.memory = fold.memory(binding.spec.name, now_s)

    def start(self) -> None:
        """Start leader election (one attempt now, then its renewal thread)."""
        if not self._started and self.elector is not None:
            self.elector.start()
        self._started = True

    # --- one cycle -----------------------------------------------------------------------------

    def _lead(self) -> bool:
        leading = True if self.elector is None else self.elector.is_leader()
        if self.leading and not leading:
            log.warning("not leading any more: acting stops, the desired-instances series are cleared")
            self.metrics.lost_leadership()
            if self.on_lost_lead is not None:
                self.on_lost_lead()
        self.leading = leading
        self.metrics.leader.set(1 if leading else 0)
        return leading

    def cycle(self) -> CycleOutcome:
        self.start()
        t0 = self.clock.monotonic_s()
        now_s = self.clock.now_s()
        outcome = CycleOutcome(at_s=now_s, leader=self._lead(), records=[])
        self._note_lease_contact()
        if outcome.leader:
            try:
                self._finish_drains(now_s)
                outcome.records = self.controller.reconcile_once(now_s)
                self._api_answered()
            except (TransientActuationError, PermanentActuationError) as exc:
                outcome.error = f"cluster: {exc}"
                self.api_error = str(exc)
                self.metrics.errors.labels(kind="cluster").inc()
                log.warning("cycle at %.3f: no decision, the cluster cannot be read: %s", now_s, exc)
            except HeteroScaleError as exc:  # e.g. a policy refusing its targets: say so, keep running
                self._api_answered()  # raised after the cluster snapshot: the API did answer
                outcome.error = f"reconcile: {exc}"
                self.metrics.errors.labels(kind="reconcile").inc()
                log.error("cycle at %.3f: reconcile failed: %s", now_s, exc)
            for record in outcome.records:
                self.metrics.observe_record(record)
                if self.on_record is not None:
                    self.on_record(record)
            if outcome.records:
                self._observe_state(now_s)
            self._lead()  # leadership may have lapsed during the cycle
        elif self.api_error is not None:  # a standby that cannot reach the Lease: say why it does nothing
            outcome.error = f"leader election: {self.api_error}"
        self._observe_journal()
        outcome.duration_s = self.clock.monotonic_s() - t0
        self.metrics.duration.observe(outcome.duration_s)
        self.last_cycle_end_mono_s = self.clock.monotonic_s()
        self.metrics.last_cycle.set(self.clock.now_s())
        self.cycles += 1
        self.last_error = outcome.error
        return outcome

    def _api_answered(self) -> None:
        self.api_reached = True
        self.api_error = None

    def _note_lease_contact(self) -> None:
        """What the elector's attempts say about the API: reached once, and why the last one failed."""
        if self.elector is None:
            return
        if self.elector.reached:
            self.api_reached = True
        self.api_error = self.elector.last_error

    def _finish_drains(self, now_s: float) -> None:
        journal = self.controller.journal
        if not journal.writable:  # no write to the cluster while nothing can be journaled
            log.warning("drains not finished this cycle: the journal cannot be written (%s)", journal.last_error)
            return
        finished = self.cluster.finish_drains(now_s)
        if finished.errors:
            self.metrics.errors.labels(kind="actuation").inc(len(finished.errors))
            log.warning("finishing drains: %s", "; ".join(finished.errors))

    def _observe_journal(self) -> None:
        journal = self.controller.journal
        self.metrics.journal_writable.set(1 if journal.writable else 0)
        if journal.errors > self._journal_errors_seen:
            self.metrics.journal_errors.inc(journal.errors - self._journal_errors_seen)
            self._journal_errors_seen = journal.errors

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

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Cycle until stopped or bounded; returns the number of cycles run."""
        s = self.settings
        self.start()
        start_mono = self.clock.monotonic_s()
        deadline_mono = None if s.max_duration_s is None else start_mono + s.max_duration_s
        next_mono = start_mono
        while not self.stop_requested.is_set():
            if s.max_cycles is not None and self.cycles >= s.max_cycles:
                break
            if deadline_mono is not None and self.clock.monotonic_s() >= deadline_mono:
                break
            outcome = self.cycle()
            if outcome.error:
                log.warning("cycle %d: %s", self.cycles, outcome.error)
            if s.max_cycles is not None and self.cycles >= s.max_cycles:
                break
            next_mono += s.interval_s
            now_mono = self.clock.monotonic_s()
            next_mono = max(next_mono, now_mono)  # after a slow cycle, do not try to catch up
            # --duration-s: never sleep past the deadline to wait for a tick that will not run
            wake_mono = next_mono if deadline_mono is None else min(next_mono, deadline_mono)
            slices = int(max(0.0, wake_mono - now_mono) / s.sleep_slice_s) + 2
            for _ in range(slices):
                left_s = wake_mono - self.clock.monotonic_s()
                if left_s <= 0 or self.stop_requested.is_set():
                    break
                self.clock.sleep_s(min(s.sleep_slice_s, left_s))
        return self.cycles

    def shutdown(self) -> None:
        """Stop renewing, release the lease and close the journal (called once after ``run``)."""
        if self.elector is not None:
            if not self.elector.stop():
                log.warning("leader election: the renewal thread did not stop in time")
            self.elector.release()
            self.leading = False
            self.metrics.leader.set(0)
        self.controller.journal.close()


__all__ = [
    "CycleOutcome",
    "DrainingCluster",
    "DurableJournal",
    "Leadership",
    "LiveController",
    "LiveSettings",
    "ServiceBinding",
    "restore_memory",
]
