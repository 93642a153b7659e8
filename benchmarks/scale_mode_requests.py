"""Kubernetes API requests of one steady cycle in ``actuation: scale``, per service and per target.

The Kubernetes API fake serves, on 127.0.0.1, ``--services`` services, each running two Deployments
(prefill and decode, ``--replicas`` pods each) that are not ours, and ``--foreign`` pods of other apps
in the same namespace. The scale-mode cluster (``actuators/scale.py``) and the Controller with static
policies (no metrics needed) converge, then one steady cycle (``reconcile_once``: the read, nothing to
do) is counted at the fake. It prints:

* ``requests_per_target`` — API requests of that cycle per scale target — target 2 (its ``scale``
  read and one page of its pods, listed by the target's own selector, so other apps' pods cost
  nothing);
* ``cycle_s`` — wall time of that cycle, mostly the fake answering.

    python benchmarks/scale_mode_requests.py [--services 10] [--replicas 4] [--foreign 2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import kubernetes  # noqa: E402
from tests.support import builders  # noqa: E402
from tests.support.crds import deployment  # noqa: E402
from tests.support.kube_fake import DEPLOYMENTS, PODS, KubeFakeServer  # noqa: E402
from tests.support.live_env import NAMESPACE, gpu_nodes  # noqa: E402
from tests.support.prometheus_server import wait_until  # noqa: E402

from heteroscale.actuators.kube.api import KubernetesSettings  # noqa: E402
from heteroscale.actuators.kube.kinds import kind_of  # noqa: E402
from heteroscale.actuators.kube.targets import ScaleTarget  # noqa: E402
from heteroscale.actuators.scale import ScaleTargetsCluster  # noqa: E402
from heteroscale.clock import WallClock  # noqa: E402
from heteroscale.controller.journal import Journal  # noqa: E402
from heteroscale.controller.readiness import ReadinessSettings  # noqa: E402
from heteroscale.controller.reconcile import Controller, ServiceBinding  # noqa: E402
from heteroscale.domain.hardware import InstanceShape, Role  # noqa: E402
from heteroscale.domain.observation import Observation  # noqa: E402
from heteroscale.errors import MetricsUnavailable  # noqa: E402
from heteroscale.policy.context import Targets  # noqa: E402
from heteroscale.policy.registry import make_policy  # noqa: E402

TARGET_REQUESTS_PER_TARGET = 2.0
PREFILL = InstanceShape(Role.PREFILL, "h100-sxm", 1)
DECODE = InstanceShape(Role.DECODE, "h20", 1)


class NoMetrics:
    def observe(self, service: str, now_s: float, window_s: float) -> Observation:
        raise MetricsUnavailable(f"{service}: static policy, no metrics")


def put(kube: KubeFakeServer, resource: Any, obj: dict[str, Any]) -> None:
    def write(f: Any) -> None:
        obj["metadata"].update({"namespace": NAMESPACE, "resourceVersion": "1", "uid": obj["metadata"]["name"]})
        obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        f.objects[resource, NAMESPACE, obj["metadata"]["name"]] = obj

    kube.call(write)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--foreign", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the static policies' "metrics unavailable" lines are expected
    kube = KubeFakeServer(gpu_nodes(), ready_after_s=0.0).start()
    try:
        kind = kind_of("apps/v1", "Deployment")
        assert kind is not None
        targets, bindings = [], []
        unused = Targets(((DECODE.key, 1.0),), ((PREFILL.key, 1.0),), *([1.0] * 10), source="unused")
        for i in range(args.services):
            name = f"svc{i}"
            for role, shape in ((Role.PREFILL, PREFILL), (Role.DECODE, DECODE)):
                dep = deployment(f"{name}-{role.value}", args.replicas)
                dep["spec"]["template"]["spec"]["containers"][0]["resources"] = {}  # no GPUs: any node
                put(kube, DEPLOYMENTS, dep)
                targets.append(ScaleTarget(name, role, shape.sku, shape.tp, kind, f"{name}-{role.value}"))
            spec = builders.service(name=name, prefill_shapes=(PREFILL,), decode_shapes=(DECODE,), min_prefill=0)
            static = make_policy("static", {"prefill": args.replicas, "decode": args.replicas})
            bindings.append(ServiceBinding(spec, static, unused))
        for j in range(args.foreign):
            meta = {"name": f"other-{j}", "labels": {"app": "other"}}
            spec = {"containers": [{"name": "c", "image": "busybox"}]}
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": "Running"}}
            put(kube, PODS, pod)
        configuration = kubernetes.client.Configuration()
        configuration.host = kube.url
        configuration.retries = False
        settings = KubernetesSettings(namespace=NAMESPACE, request_timeout_s=30.0, retry_budget_s=60.0)
        cluster = ScaleTargetsCluster(kubernetes.client.ApiClient(configuration), settings, targets, WallClock())
        controller = Controller(
            bindings, NoMetrics(), cluster, cluster, Journal(None), readiness=ReadinessSettings(gating=False)
        )
        clock = WallClock()
        wanted = 2 * args.services * args.replicas + args.foreign
        assert wait_until(lambda: len(kube.pods(NAMESPACE)) >= wanted, 120.0, 0.5)
        for _ in range(3):  # converge: the pods exist and are Ready, nothing left to do
            records = controller.reconcile_once(clock.now_s())
            if all(r.outcome == {"applied": "nothing to do"} for r in records):
                break
            time.sleep(0.5)
        before = len(kube.call(lambda f: list(f.log)))
        t0 = time.perf_counter()
        records = controller.reconcile_once(clock.now_s())
        cycle_s = time.perf_counter() - t0
        requests = len(kube.call(lambda f: list(f.log))) - before
        assert all(r.outcome == {"applied": "nothing to do"} for r in records), records[0].outcome
        print(
            json.dumps(
                {
                    "services": args.services,
                    "targets": len(targets),
                    "foreign_pods": args.foreign,
                    "requests": requests,
                    "requests_per_target": round(requests / len(targets), 2),
                    "target_requests_per_target": TARGET_REQUESTS_PER_TARGET,
                    "cycle_s": round(cycle_s, 3),
                }
            )
        )
        cluster.client.api.close()
    finally:
        kube.stop()


if __name__ == "__main__":
    main()
