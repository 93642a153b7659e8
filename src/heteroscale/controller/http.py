"""The live controller's own metrics (prometheus_client) and its ``/metrics`` + ``/healthz`` server.

Metrics (one registry per controller, never the global default):

* ``heteroscale_desired_instances{service,role}`` — the last decision's desired count;
* ``heteroscale_target_desired_replicas{service,role,target}`` — ``actuation: metrics`` only: the
  replicas each scale target should have, for KEDA or an HPA (``target`` is ``Kind.name[.roleName]``);
* ``heteroscale_instances{service,role,lifecycle}`` — ready / starting / draining, as the cluster says;
* ``heteroscale_decisions_total{service,reason,direction}`` — by the recommendation's reason and
  whether the decision scales out, in, or holds;
* ``heteroscale_reconcile_duration_seconds`` — one cycle, histogram;
* ``heteroscale_errors_total{kind}`` — metrics, cluster, actuation, leader, reconcile;
* ``heteroscale_instances_stuck_total{service,role,reason}`` — instances removed because they were stuck
  (``start-timeout``: not Ready in time; ``unschedulable``: no room left in their domain;
  ``failed-create``: their pods cannot be created), to be replaced;
* ``heteroscale_leader`` (0/1), ``heteroscale_last_cycle_timestamp_seconds``, ``heteroscale_journal_records_total``;
* ``heteroscale_journal_writable`` (0/1: the last journal write succeeded) and
  ``heteroscale_journal_errors_total`` (journal writes that failed; while it cannot write, the
  controller holds with reason ``journal-unwritable``).

On losing the leadership the ``heteroscale_desired_instances`` and
``heteroscale_target_desired_replicas`` series are removed: only the leader
says what it wants (an HPA or a dashboard reading them never sees a standby's stale wishes).

``/healthz`` answers 200 while cycles keep completing (the last within ``stale_after_s``), else 503,
on the leader and on a standby alike, with a JSON body naming the role (``{"role": "leader" |
"standby", "healthy": …, …}``) when the server is given ``describe``.

The server's threads and connections are bounded (:mod:`.bounded_http`): a few worker threads answer
complete requests; idle or slow connections hold no thread and are closed after a time-out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from heteroscale.controller.bounded_http import BoundedHttpServer, HttpLimits
from heteroscale.domain.decision import DecisionRecord
from heteroscale.domain.hardware import Role

log = logging.getLogger(__name__)


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.desired = Gauge("heteroscale_desired_instances", "Desired instances", ["service", "role"], registry=r)
        self.target_desired = Gauge(
            "heteroscale_target_desired_replicas",
            "Desired replicas per scale target (actuation: metrics), for an external scaler",
            ["service", "role", "target"],
            registry=r,
        )
        self.instances = Gauge(
            "heteroscale_instances", "Instances by lifecycle", ["service", "role", "lifecycle"], registry=r
        )
        self.decisions = Counter(
            "heteroscale_decisions", "Decisions by reason", ["service", "reason", "direction"], registry=r
        )
        self.duration = Histogram(
            "heteroscale_reconcile_duration_seconds",
            "Duration of one controller cycle",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.errors = Counter("heteroscale_errors", "Errors by kind", ["kind"], registry=r)
        self.leader = Gauge("heteroscale_leader", "1 while this replica leads", registry=r)
        self.last_cycle = Gauge("heteroscale_last_cycle_timestamp_seconds", "End of the last cycle", registry=r)
        self.records = Counter("heteroscale_journal_records", "DecisionRecords written", registry=r)
        self.journal_writable = Gauge(
            "heteroscale_journal_writable", "1 while the last journal write succeeded", registry=r
        )
        self.journal_errors = Counter("heteroscale_journal_errors", "Journal writes that failed", registry=r)
        self.journal_writable.set(1)
        self.stuck = Counter(
            "heteroscale_instances_stuck",
            "Instances removed because they were stuck (not Ready in time, or no room in their domain)",
            ["service", "role", "reason"],
            registry=r,
        )
        for kind in ("metrics", "cluster", "actuation", "leader", "reconcile"):
            self.errors.labels(kind=kind)

    def observe_record(self, record: DecisionRecord) -> None:
        d = record.decision
        service = record.service
        self.desired.labels(service=service, role=Role.PREFILL.value).set(d.desired_prefill)
        self.desired.labels(service=service, role=Role.DECODE.value).set(d.desired_decode)
        up = d.desired_prefill > d.current_prefill or d.desired_decode > d.current_decode
        down = d.desired_prefill < d.current_prefill or d.desired_decode < d.current_decode
        direction = "out" if up and not down else "in" if down and not up else "mixed" if up else "hold"
        self.decisions.labels(service=service, reason=record.recommendation.reason.value, direction=direction).inc()
        self.records.inc()
        if "error" in record.observation:
            self.errors.labels(kind="metrics").inc()
        errors = record.outcome.get("errors") or []
        real = [e for e in errors if not str(e).startswith(("dry run", "unplaced"))]
        if real:
            self.errors.labels(kind="actuation").inc(len(real))
        self.observe_stuck(record)

    def observe_stuck(self, record: DecisionRecord) -> None:
        """Count the record's stuck instances that the cluster accepted to remove."""
        removed = set(record.outcome.get("removed") or ())
        for entry in record.plan.get("stuck") or ():
            if entry.get("instance_id") in removed:
                labels = {"service": record.service, "role": str(entry.get("role")), "reason": str(entry.get("reason"))}
                self.stuck.labels(**labels).inc()

    def lost_leadership(self) -> None:
        """A standby states no desired counts: remove every desired-instances and desired-replicas series."""
        self.desired.clear()
        self.target_desired.clear()

    def publish_target(self, service: str, role: str, target: str, replicas: int) -> None:
        self.target_desired.labels(service=service, role=role, target=target).set(replicas)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/metrics`` and ``/healthz`` on ``address:port``, threads bounded by ``limits``; ``stop()`` is bounded."""

    def __init__(
        self,
        metrics: ControllerMetrics,
        address: str,
        port: int,
        healthy: Callable[[], bool],
        limits: HttpLimits | None = None,
        *,
        describe: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.address = address
        self.port = port
        self.healthy = healthy
        self.describe = describe  # the /healthz JSON body (role, …); None: plain text
        self.limits = limits or HttpLimits()
        self._server: BoundedHttpServer | None = None

    def start(self) -> HealthServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, owner.metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = owner.healthy()
                    if owner.describe is not None:
                        body = {**owner.describe(), "healthy": ok}
                        self._answer(200 if ok else 503, json.dumps(body).encode() + b"\n", "application/json")
                    else:
                        self._answer(200 if ok else 503, b"ok\n" if ok else b"stalled\n", "text/plain")
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        self._server = BoundedHttpServer(self.address, self.port, Handler, self.limits)
        self.port = int(self._server.server_address[1])
        self._server.start("heteroscale-http")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(join_s=5.0)
            self._server = None
