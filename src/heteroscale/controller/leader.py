"""Leader election through a ``coordination.k8s.io/v1`` Lease, and the write fence that enforces it.

The algorithm is client-go's. The holder renews ``spec.renewTime`` from its own thread every
``retry_period_s``, whatever its reconcile cycles are doing, so a slow cycle never lets the Lease lapse.
A candidate takes the Lease over only when its record has not changed for ``lease_duration_s`` as
measured on the candidate's own monotonic clock (it never compares its clock with the holder's
timestamps), or when the holder released it. Every write carries the Lease's ``resourceVersion`` as a
precondition, so of two candidates racing for an expired Lease exactly one wins (the other gets 409).

**Fencing.** :meth:`LeaseElector.fence` is called before every write to the cluster (it is the
Kubernetes client's ``fence`` hook, see ``actuators/kube/api.py``; Lease writes are not fenced). It
refuses — raises :class:`FencedError` — unless this replica leads and its last successful renewal
*began* less than ``renew_deadline_s`` ago on the monotonic clock. The deadline is shorter than the
lease duration, and a write is sent only within it, so a write that passes the fence reaches the API
server before a successor could have taken the Lease, provided the request time-out fits in the gap
(``config/controller.py`` checks ``request_timeout_s ≤ lease_duration_s − renew_deadline_s``).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import kubernetes

from heteroscale.actuators.kube.api import ConflictError, FencedError, KubeApi, NotFoundError
from heteroscale.clock import Clock
from heteroscale.errors import HeteroScaleError, PermanentActuationError, TransientActuationError

log = logging.getLogger(__name__)


def default_identity() -> str:
    """The pod name when running in a cluster (``POD_NAME``), else ``<host>-<pid>``."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    namespace: str
    identity: str
    name: str = "heteroscale-controller"
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0  # between two renewals (or two attempts to take the Lease)

    def __post_init__(self) -> None:
        if not 0 < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("leader election needs 0 < renew_deadline_s < lease_duration_s")
        if not 0 < self.retry_period_s < self.renew_deadline_s:
            raise ValueError("leader election needs 0 < retry_period_s < renew_deadline_s")
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")


class LeaseStore(Protocol):
    """Where the Lease lives: read it (None when absent), create it, update it under its resourceVersion.
    Failures are HeteroScale actuation errors; a lost race is :class:`ConflictError`."""

    def read(self) -> dict[str, Any] | None: ...

    def create(self, body: dict[str, Any]) -> None: ...

    def update(self, body: dict[str, Any]) -> None: ...


class KubeLeaseStore:
    """The Lease in the Kubernetes API (calls bounded by the client's time-out and retry budget)."""

    def __init__(self, client: KubeApi, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.coordination = kubernetes.client.CoordinationV1Api(client.api)

    def read(self) -> dict[str, Any] | None:
        what = f"read lease {self.namespace}/{self.name}"
        try:
            lease: dict[str, Any] = self.client.call(
                what, self.coordination.read_namespaced_lease, self.name, self.namespace
            )
        except NotFoundError:
            return None
        return lease

    def create(self, body: dict[str, Any]) -> None:
        what = f"create lease {self.namespace}/{self.name}"
        self.client.call(what, self.coordination.create_namespaced_lease, self.namespace, body)

    def update(self, body: dict[str, Any]) -> None:
        what = f"update lease {self.namespace}/{self.name}"
        self.client.call(what, self.coordination.patch_namespaced_lease, self.name, self.namespace, body)


def _micro_time(t_s: float) -> str:
    return datetime.datetime.fromtimestamp(t_s, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Wait = Callable[[float], bool]
"""Waits up to the given seconds; True means: stop now."""


class LeaseElector:
    """Renews from its own thread (``start`` / ``stop``); ``is_leader`` and ``fence`` from any thread."""

    def __init__(self, store: LeaseStore, settings: LeaseSettings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._state = threading.Lock()  # guards the fields below
        self._attempt = threading.Lock()  # one attempt at a time
        self._renewed_mono: float | None = None  # when the last successful renewal began (monotonic)
        self._observed: tuple[str, str] | None = None  # (holder, resourceVersion) last seen
        self._observed_mono = 0.0
        self.holder: str | None = None
        self.reached = False  # the Lease store answered at least once (the API server is reachable)
        self.last_error: str | None = None  # why the last attempt failed; None when it got an answer
        self.transitions = 0  # how often this replica became the leader
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- leadership, as this replica can prove it ------------------------------------------------

    def renewal_age_s(self) -> float | None:
        """Seconds since the last successful renewal began (None: not leading)."""
        with self._state:
            renewed = self._renewed_mono
        return None if renewed is None else self.clock.monotonic_s() - renewed

    def is_leader(self) -> bool:
        age_s = self.renewal_age_s()
        return age_s is not None and age_s < self.settings.renew_deadline_s

    def fence(self, what: str) -> None:
        """Refuse ``what`` (raise :class:`FencedError`) unless this replica provably leads (module doc)."""
        age_s = self.renewal_age_s()
        deadline_s = self.settings.renew_deadline_s
        if age_s is None:
            raise FencedError(f"{what}: refused: {self.settings.identity} does not hold the leader lease")
        if age_s >= deadline_s:
            raise FencedError(
                f"{what}: refused: {self.settings.identity}'s last lease renewal began {age_s:.1f} s ago "
                f"(renew deadline {deadline_s:g} s)"
            )

    # --- one attempt -----------------------------------------------------------------------------

    def _spec(self, acquire: bool, transitions: int) -> dict[str, Any]:
        now = _micro_time(self.clock.now_s())
        spec: dict[str, Any] = {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": max(1, round(self.settings.lease_duration_s)),
            "renewTime": now,
        }
        if acquire:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = transitions
        return spec

    def try_acquire_or_renew(self) -> bool:
        """One attempt (bounded by the client's time-out and retries). True if we lead now."""
        with self._attempt:
            return self._attempt_once()

    def _attempt_once(self) -> bool:
        s = self.settings
        began = self.clock.monotonic_s()
        try:
            lease = self.store.read()
        except (TransientActuationError, PermanentActuationError) as exc:
            return self._failed(exc)
        with self._state:
            self.reached = True
            self.last_error = None
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": self._spec(acquire=True, transitions=0),
            }
            try:
                self.store.create(body)
            except ConflictError:
                return self._lost("another candidate created the lease first")
            except (TransientActuationError, PermanentActuationError) as exc:
                return self._failed(exc)
            return self._won(began, "created the lease")
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        version = str((lease.get("metadata") or {}).get("resourceVersion", ""))
        transitions = int(spec.get("leaseTransitions") or 0)
        with self._state:
            self.holder = holder or None
            if (holder, version) != self._observed:
                self._observed = (holder, version)
                self._observed_mono = began
            observed_for_s = began - self._observed_mono
        if holder == s.identity:
            return self._write(version, self._spec(acquire=False, transitions=transitions), began, "renewed")
        duration_s = float(spec.get("leaseDurationSeconds") or s.lease_duration_s)
        if holder and observed_for_s < duration_s:
            return self._lost(f"{holder} holds the lease")
        why = "the lease was released" if not holder else f"{holder}'s lease expired"
        return self._write(version, self._spec(acquire=True, transitions=transitions + 1), began, why)

    def _write(self, version: str, spec: dict[str, Any], began: float, why: str) -> bool:
        try:
            self.store.update({"metadata": {"resourceVersion": version}, "spec": spec})
        except ConflictError:
            return self._lost("the lease changed under us")
        except (TransientActuationError, PermanentActuationError) as exc:
            return self._failed(exc)
        return self._won(began, why)

    def _won(self, began: float, why: str) -> bool:
        with self._state:
            first = self._renewed_mono is None
            self._renewed_mono = began
            self.holder = self.settings.identity
            self.renewals += 1
            if first:
                self.transitions += 1
        if first:
            log.warning("leader election: %s leads now (%s)", self.settings.identity, why)
        return True

    def _lost(self, why: str) -> bool:
        with self._state:
            was = self._renewed_mono is not None
            self._renewed_mono = None
        if was:
            log.warning("leader election: %s stops leading (%s)", self.settings.identity, why)
        return False

    def _failed(self, exc: Exception) -> bool:
        with self._state:
            self.last_error = str(exc)
        log.warning("leader election: cannot reach the lease: %s", exc)
        return self.is_leader()  # keep leading only within the renew deadline

    # --- the renewal thread ----------------------------------------------------------------------

    def start(self, wait: Wait | None = None) -> None:
        """One attempt now (so a first cycle knows its role), then one every ``retry_period_s`` from a
        daemon thread until :meth:`stop`. ``wait`` replaces the waiting between attempts (tests)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.try_acquire_or_renew()
        self._thread = threading.Thread(
            target=self._renew_loop, args=(wait or self._stop.wait,), name="heteroscale-lease", daemon=True
        )
        self._thread.start()

    def _renew_loop(self, wait: Wait) -> None:
        while not self._stop.is_set():
            if wait(self.settings.retry_period_s) or self._stop.is_set():
                return
            try:
                self.try_acquire_or_renew()
            except HeteroScaleError as exc:  # defensive: the store reports its own errors
                log.warning("leader election: attempt failed: %s", exc)

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop renewing (bounded wait for the thread); True if the thread has ended."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout=timeout_s)
        return not thread.is_alive()

    def release(self) -> None:
        """Give the lease up (after :meth:`stop`) so a successor need not wait for it to expire."""
        if not self.is_leader():
            self._lost("stopping")
            return
        s = self.settings
        try:
            lease = self.store.read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != s.identity:
                return
            version = str((lease.get("metadata") or {}).get("resourceVersion", ""))
            self.store.update(
                {"metadata": {"resourceVersion": version}, "spec": {"holderIdentity": None, "leaseDurationSeconds": 1}}
            )
        except (TransientActuationError, PermanentActuationError) as exc:
            log.warning("leader election: could not release the lease: %s", exc)
        finally:
            self._lost("released the lease")
