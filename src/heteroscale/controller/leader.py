"""Leader election through a ``coordination.k8s.io/v1`` Lease, so two replicas never both act.

The algorithm is client-go's: the holder renews ``spec.renewTime`` every cycle; a candidate takes the
Lease over only when its record has not changed for ``lease_duration_s`` as measured by the candidate's
own clock (it never compares its clock with the holder's timestamps), or when the holder released it.
Every write carries the Lease's ``resourceVersion`` as a precondition, so of two candidates racing for
an expired Lease exactly one wins (the other gets 409). A leader that cannot renew stops acting once
``renew_deadline_s`` has passed since its last successful renewal, which is shorter than the lease
duration, so its successor can only take over after it has stopped.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import kubernetes

from heteroscale.actuators.kube.api import ConflictError, KubeApi, NotFoundError
from heteroscale.clock import Clock
from heteroscale.errors import PermanentActuationError, TransientActuationError

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

    def __post_init__(self) -> None:
        if not 0 < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("leader election needs 0 < renew_deadline_s < lease_duration_s")
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")


def _micro_time(t_s: float) -> str:
    return datetime.datetime.fromtimestamp(t_s, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """One ``try_acquire_or_renew()`` per controller cycle; ``is_leader()`` in between."""

    def __init__(self, client: KubeApi, settings: LeaseSettings, clock: Clock) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.coordination = kubernetes.client.CoordinationV1Api(client.api)
        self._renewed_at_s: float | None = None
        self._observed: tuple[str, str] | None = None  # (holder, resourceVersion) last seen
        self._observed_at_s = 0.0
        self.holder: str | None = None
        self.transitions = 0

    def is_leader(self) -> bool:
        if self._renewed_at_s is None:
            return False
        return self.clock.now_s() - self._renewed_at_s < self.settings.renew_deadline_s

    def _spec(self, now_s: float, acquire: bool, transitions: int) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": max(1, round(self.settings.lease_duration_s)),
            "renewTime": _micro_time(now_s),
        }
        if acquire:
            spec["acquireTime"] = _micro_time(now_s)
            spec["leaseTransitions"] = transitions
        return spec

    def try_acquire_or_renew(self) -> bool:
        """One attempt (bounded by the cluster's request time-out and retries). True if we lead now."""
        s = self.settings
        now_s = self.clock.now_s()
        what = f"lease {s.namespace}/{s.name}"
        try:
            lease = self.client.call(f"read {what}", self.coordination.read_namespaced_lease, s.name, s.namespace)
        except NotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": self._spec(now_s, acquire=True, transitions=0),
            }
            try:
                self.client.call(f"create {what}", self.coordination.create_namespaced_lease, s.namespace, body)
            except ConflictError:
                return self._lost("another candidate created the lease first")
            except (TransientActuationError, PermanentActuationError) as exc:
                return self._failed(exc)
            return self._won(now_s, "created the lease")
        except (TransientActuationError, PermanentActuationError) as exc:
            return self._failed(exc)
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        version = str(lease.get("metadata", {}).get("resourceVersion", ""))
        transitions = int(spec.get("leaseTransitions") or 0)
        self.holder = holder or None
        if (holder, version) != self._observed:
            self._observed = (holder, version)
            self._observed_at_s = now_s
        if holder == s.identity:
            return self._write(lease, self._spec(now_s, acquire=False, transitions=transitions), now_s, "renewed")
        duration_s = float(spec.get("leaseDurationSeconds") or s.lease_duration_s)
        if holder and now_s - self._observed_at_s < duration_s:
            self._renewed_at_s = None
            return False
        why = "the lease was released" if not holder else f"{holder}'s lease expired"
        return self._write(lease, self._spec(now_s, acquire=True, transitions=transitions + 1), now_s, why)

    def _write(self, lease: dict[str, Any], spec: dict[str, Any], now_s: float, why: str) -> bool:
        s = self.settings
        body = {"metadata": {"resourceVersion": lease["metadata"].get("resourceVersion")}, "spec": spec}
        try:
            self.client.call(
                f"update lease {s.namespace}/{s.name}",
                self.coordination.patch_namespaced_lease,
                s.name,
                s.namespace,
                body,
            )
        except ConflictError:
            return self._lost("the lease changed under us")
        except (TransientActuationError, PermanentActuationError) as exc:
            return self._failed(exc)
        return self._won(now_s, why)

    def _won(self, now_s: float, why: str) -> bool:
        if self._renewed_at_s is None:
            log.warning("leader election: %s leads now (%s)", self.settings.identity, why)
            self.transitions += 1
        self._renewed_at_s = now_s
        self.holder = self.settings.identity
        return True

    def _lost(self, why: str) -> bool:
        if self._renewed_at_s is not None:
            log.warning("leader election: %s stops leading (%s)", self.settings.identity, why)
        self._renewed_at_s = None
        return False

    def _failed(self, exc: Exception) -> bool:
        log.warning("leader election: cannot reach the lease: %s", exc)
        return self.is_leader()  # keep leading only within the renew deadline

    def release(self) -> None:
        """Give the lease up (on a graceful stop) so a successor need not wait for it to expire."""
        if not self.is_leader():
            return
        s = self.settings
        try:
            lease = self.client.call(
                f"read lease {s.namespace}/{s.name}", self.coordination.read_namespaced_lease, s.name, s.namespace
            )
            if (lease.get("spec") or {}).get("holderIdentity") != s.identity:
                return
            body = {
                "metadata": {"resourceVersion": lease["metadata"].get("resourceVersion")},
                "spec": {"holderIdentity": None, "leaseDurationSeconds": 1},
            }
            self.client.call(
                f"release lease {s.namespace}/{s.name}",
                self.coordination.patch_namespaced_lease,
                s.name,
                s.namespace,
                body,
            )
        except (TransientActuationError, PermanentActuationError) as exc:
            log.warning("leader election: could not release the lease: %s", exc)
        finally:
            self._renewed_at_s = None
