"""FakeLeaseStore: an in-memory Lease with the API server's resourceVersion precondition, for unit tests
of leader election (controller/leader.py) without a server; failures are injected by name. Turns: the
renewal thread's wait driven by the test on a ManualClock (no sleeps; every wait bounded)."""

from __future__ import annotations

import copy
import queue
import threading
from typing import Any

from heteroscale.actuators.kube.api import ConflictError
from heteroscale.clock import ManualClock
from heteroscale.errors import TransientActuationError


class FakeLeaseStore:
    """One Lease object (or none). ``failing``: every call raises a transient error (an API outage)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.failing = False
        self.calls = 0
        self.updates = 0
        self._lock = threading.Lock()

    def _check(self) -> None:
        self.calls += 1
        if self.failing:
            raise TransientActuationError("fake lease store: API unreachable (injected)")

    def read(self) -> dict[str, Any] | None:
        with self._lock:
            self._check()
            return copy.deepcopy(self.lease)

    def create(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._check()
            if self.lease is not None:
                raise ConflictError("fake lease store: already exists")
            self.version += 1
            self.lease = copy.deepcopy(body)
            self.lease.setdefault("metadata", {})["resourceVersion"] = str(self.version)

    def update(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._check()
            if self.lease is None:
                raise ConflictError("fake lease store: no lease")
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != self.lease["metadata"]["resourceVersion"]:
                raise ConflictError("fake lease store: resourceVersion changed")
            self.version += 1
            self.updates += 1
            self.lease["spec"] = {**(self.lease.get("spec") or {}), **body.get("spec", {})}
            self.lease["metadata"]["resourceVersion"] = str(self.version)

    @property
    def holder(self) -> str | None:
        with self._lock:
            return None if self.lease is None else (self.lease.get("spec") or {}).get("holderIdentity")


class Turns:
    """The renewal thread's wait, driven by the test: the thread parks after each attempt until released."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.parked_q: queue.Queue[float] = queue.Queue()
        self.go_q: queue.Queue[bool] = queue.Queue()

    def wait(self, seconds: float) -> bool:  # called by the renewal thread
        self.parked_q.put(seconds)
        return self.go_q.get(timeout=10.0)

    def parked(self) -> float:
        """Block (bounded) until the thread has finished an attempt and waits; returns its wait."""
        return self.parked_q.get(timeout=10.0)

    def release(self, advance_s: float) -> None:
        """Move time on by ``advance_s`` and let the thread make its next attempt."""
        self.clock.advance(advance_s)
        self.go_q.put(False)

    def stop(self) -> None:
        self.go_q.put(True)
