"""Serves the Kubernetes API fake (:class:`.kube_fake.KubeFake`) on 127.0.0.1 from a thread, with the
nodes, the custom resources (CRDs) and the schema validator a test gives it; ``stop()`` is bounded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection
from typing import Any

import kmock

from heteroscale.demo.kube_custom import crd_kinds
from heteroscale.demo.kube_fake import DEPLOYMENTS, NODES, PODS, Fault, KubeFake, WriteSeen
from heteroscale.demo.kube_objects import is_ready


class KubeFakeServer:
    """Serves a KubeFake on 127.0.0.1 from a thread; ``stop()`` ends it with bounded waits."""

    START_TIMEOUT_S = 10.0

    def __init__(
        self,
        nodes: list[dict[str, Any]],
        ready_after_s: float = 0.5,
        *,
        crds: Collection[dict[str, Any]] = (),
        validator: Callable[[dict[str, Any]], list[str]] | None = None,
    ) -> None:
        self.nodes = nodes
        self.ready_after_s = ready_after_s
        self.crds = list(crds)
        self.validator = validator
        self.port = 0
        self.fake: KubeFake | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with KubeFake(ready_after_s=self.ready_after_s) as fake, kmock.Server(fake, host="127.0.0.1") as server:
            for node in self.nodes:
                fake.objects[NODES, None, node["metadata"]["name"]] = node
            fake.resources["coordination.k8s.io/v1/leases"] = {
                "namespaced": True,
                "kind": "Lease",
                "singular": "lease",
                "verbs": ["get", "create", "patch"],
                "shortnames": [],
                "categories": [],
                "subresources": [],
            }
            for res, kind in ((PODS, "Pod"), (DEPLOYMENTS, "Deployment")):
                fake.resources[res] = {
                    "namespaced": True,
                    "kind": kind,
                    "singular": kind.lower(),
                    "verbs": ["get", "list", "create", "patch", "delete"],
                    "shortnames": [],
                    "categories": [],
                    "subresources": ["scale"] if kind == "Deployment" else [],
                }
            fake.validator = self.validator
            for crd in self.crds:
                for ck in crd_kinds(crd):
                    resource = kmock.resource(group=ck.group, version=ck.version, plural=ck.plural)
                    fake.custom[resource] = ck
                    subresources = ["status", "scale"] if ck.spec_replicas else ["status"]
                    fake.resources[resource] = {
                        "namespaced": True,
                        "kind": ck.kind,
                        "singular": ck.kind.lower(),
                        "verbs": ["get", "list", "create", "patch", "delete"],
                        "shortnames": [],
                        "categories": [],
                        "subresources": subresources,
                    }
            self.fake = fake
            self.port = server.port
            self._started.set()
            await self._stop.wait()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread by start()
            self._error = exc
            self._started.set()

    def start(self) -> KubeFakeServer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._started.wait(self.START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"kube fake did not start: {self._error!r}")
        return self

    def call(self, fn: Callable[[KubeFake], Any], timeout_s: float = 5.0) -> Any:
        """Run ``fn(fake)`` on the fake's event loop (thread-safe access to its objects)."""
        if self._loop is None or self.fake is None:
            raise RuntimeError("kube fake not running")
        fake = self.fake

        async def run() -> Any:
            return fn(fake)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=timeout_s)

    def inject(self, fault: Fault) -> Fault:
        if self.fake is None:
            raise RuntimeError("kube fake not running")
        with self.fake.faults_lock:
            self.fake.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        if self.fake is not None:
            with self.fake.faults_lock:
                self.fake.faults.clear()

    def writes(self) -> list[WriteSeen]:
        """Every write the fake applied so far (module doc), oldest first."""
        return list(self.call(lambda f: list(f.writes)))

    def non_holder_writes(self) -> list[WriteSeen]:
        """Writes applied while their writer did not hold the Lease."""
        return [w for w in self.writes() if not w.by_holder]

    def deployments(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return list(self.call(lambda f: [dict(d) for d in f.live_objects(DEPLOYMENTS, namespace)]))

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        def read(f: KubeFake) -> list[dict[str, Any]]:
            f.run_controllers()
            return [dict(p) for p in f.live_objects(PODS, namespace)]

        return list(self.call(read))

    def ready_counts(self, namespace: str | None = None) -> dict[str, tuple[int, int]]:
        """service → (Ready prefill pods, Ready decode pods) that are in service discovery."""
        out: dict[str, list[int]] = {}
        for pod in self.pods(namespace):
            labels = pod["metadata"].get("labels") or {}
            service, role = labels.get("heteroscale.io/service"), labels.get("heteroscale.io/role")
            if service is None or role not in ("prefill", "decode") or not is_ready(pod):
                continue
            if pod["metadata"].get("deletionTimestamp") or labels.get("heteroscale.io/discovery") != "on":
                continue
            out.setdefault(service, [0, 0])[0 if role == "prefill" else 1] += 1
        return {k: (v[0], v[1]) for k, v in out.items()}

    def drain(self, nodes: Collection[str]) -> int:
        """``kubectl drain``: cordon ``nodes`` and evict (delete) every pod bound to them; the pods evicted."""

        def run(f: KubeFake) -> int:
            for name in nodes:
                f.objects[NODES, None, name].patch({"spec": {"unschedulable": True}})
            evicted = [p for p in f.live_objects(PODS) if p.get("spec", {}).get("nodeName") in nodes]
            for pod in evicted:
                f.objects[PODS, pod["metadata"].get("namespace"), pod["metadata"]["name"]].delete()
            return len(evicted)

        return int(self.call(run))

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, path, query) of every request served since the last :meth:`clear_log`."""
        return list(self.call(lambda f: list(f.log)))

    def clear_log(self) -> None:
        self.call(lambda f: f.log.clear())

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
