"""Kubernetes API load and memory of the live controller in a cluster of 20,000 pods.

The Kubernetes API fake (heteroscale/demo/kube_fake.py) serves, on 127.0.0.1: 8 GPU nodes (two big-pods
of H100 and H20 nodes, 8 GPUs each), 200 CPU nodes, and ``--pods`` pods in all — the managed services'
own (``--services`` of them, 2 prefill + 2 decode each) and, for the rest, other teams' pods in 40
other namespaces, each about the size of a real one (labels, owner, env, probes, mounts, status), a
few of them holding GPUs on the GPU nodes.

The controller runs in a subprocess built exactly as ``heteroscale controller`` builds it
(``cli.wiring.build_live`` from a ``kind: controller`` file: static policies, leader election off,
Prometheus unreachable — the static policy needs no metrics), cycles until it has converged (its pods
Ready, a cycle with nothing to do), then runs one steady cycle (``LiveController.cycle``: finish drains,
reconcile, observe the state), on which it prints:

* ``peak_rss_mb`` — the controller process's peak resident memory over that cycle (``VmHWM`` reset
  just before it via ``/proc/self/clear_refs``; the lifetime peak where that is refused) — target ≤ 150;
* ``requests_per_service`` — Kubernetes API requests served in that cycle (counted at the fake; lease
  calls excluded, there are none with leader election off) per managed service — target ≤ 5.

Both for ``gpu_accounting: namespace`` (the default: other namespaces are never listed) and ``cluster``
(the opt-in: the pods bound to a node, every namespace, page by page — its requests grow with the
cluster's pods, one per ``list_page_size``). ``cycle_s`` is wall time, mostly the fake answering (it
scans every pod on each request); a real API server answers such lists far faster.

    python benchmarks/controller_scale.py [--pods 20000] [--services 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.kube_fake import PODS, KubeFakeServer  # noqa: E402
from tests.support.kube_objects import node_object  # noqa: E402
from tests.support.live_env import NAMESPACE, gpu_nodes  # noqa: E402

TARGET_RSS_MB = 150.0
TARGET_REQUESTS = 5.0
CPU_NODES = 200
FOREIGN_NAMESPACES = 40
FOREIGN_GPU_PODS = 8  # one GPU each, one per GPU node
CHILD_TIMEOUT_S = 600.0


# --- the cluster ------------------------------------------------------------------------------


def foreign_pod(i: int, gpu_nodes_: list[str]) -> dict[str, Any]:
    """Another team's running pod, about as large as a real one."""
    ns = f"team-{i % FOREIGN_NAMESPACES:02d}"
    app = f"svc-{i % 500:03d}"
    on_gpu = i < FOREIGN_GPU_PODS
    node = gpu_nodes_[i % len(gpu_nodes_)] if on_gpu else f"cpu-{i % CPU_NODES:03d}"
    limits = {"cpu": "2", "memory": "4Gi", **({"nvidia.com/gpu": "1"} if on_gpu else {})}
    env = [{"name": f"SETTING_{k}", "value": f"value-{k}-{i}"} for k in range(8)]
    env.append({"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{app}-db", "key": "password"}}})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-7d9f8b6c5-{i:05d}",
            "namespace": ns,
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(1000 + i),
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app": app, "pod-template-hash": "7d9f8b6c5", "team": ns, "tier": "backend"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7d9f8b6c5", "controller": True}
            ],
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": app,
            "containers": [
                {
                    "name": "app",
                    "image": f"registry.example.com/{ns}/{app}:1.{i % 7}.0",
                    "args": ["--port", "8080", "--log-level", "info"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": env,
                    "resources": {"limits": limits, "requests": dict(limits)},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 10},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": f"{app}-config"}}],
        },
        "status": {
            "phase": "Running",
            "podIP": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:01:00Z"},
            ],
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}, "image": "x"}
            ],
        },
    }


def add_foreign_pods(kube: KubeFakeServer, count: int) -> None:
    gpu_names = [n["metadata"]["name"] for n in gpu_nodes() if n["status"]["allocatable"]["nvidia.com/gpu"] != "0"]

    def run(fake: Any) -> None:
        for i in range(count):
            pod = foreign_pod(i, gpu_names)
            fake.objects[PODS, pod["metadata"]["namespace"], pod["metadata"]["name"]] = pod

    kube.call(run, timeout_s=300.0)


def controller_file(workdir: Path, kube_url: str, services: int, accounting: str) -> Path:
    kubeconfig = workdir / "kubeconfig.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": kube_url}}],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "bench"}}],
                "current-context": "fake",
            }
        ),
        encoding="utf-8",
    )
    service = {
        "model": "llama-3.1-8b",
        "roles": {
            "prefill": {"shapes": [{"sku": "h100-sxm", "tp": 1}], "min": 1, "max": 8},
            "decode": {"shapes": [{"sku": "h20", "tp": 1}], "min": 1, "max": 8},
        },
        "pd_ratio": 1.0,
        "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
        "affinity": "s2",
        "policy": {"name": "static", "prefill": 2, "decode": 2},
        "workload": {"image": "vllm/vllm-openai:v0.8.5", "security": {"run_as_user": 1000}},
    }
    config = {
        "kind": "controller",
        "name": "bench",
        "prometheus": {"url": "http://127.0.0.1:9", "timeout_s": 0.5},  # nothing listens: metrics unavailable
        "kubernetes": {"kubeconfig": str(kubeconfig), "namespace": NAMESPACE, "gpu_accounting": accounting},
        "controller": {"interval_s": 1.0, "window_s": 5.0, "journal": str(workdir / f"journal-{accounting}.jsonl")},
        "leader_election": {"enabled": False},
        "http": {"enabled": False},
        "services": [{"name": f"svc-{k}.v1", **service} for k in range(services)],
    }
    path = workdir / f"controller-{accounting}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# --- the controller process --------------------------------------------------------------------


def peak_rss_mb(reset: bool = False) -> tuple[float, str]:
    """VmHWM (reset to the current RSS first when asked), or the lifetime peak if /proc refuses."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0, "cycle"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "process lifetime"


def child(config_path: str) -> int:
    """Converge, say READY, wait for GO, run one steady cycle and print its figures as JSON."""
    from heteroscale.cli.wiring import build_live
    from heteroscale.config.controller import load_controller_config

    logging.basicConfig(level=logging.ERROR)  # every decision holds on metrics: one warning per service
    config, doc = load_controller_config(Path(config_path))
    live = build_live(config, doc, dry_run=False, once=False)
    converged = False
    for _ in range(60):  # bounded: each cycle waits for the fake's pods to start
        outcome = live.cycle()
        if outcome.records and all(r.outcome == {"applied": "nothing to do"} for r in outcome.records):
            converged = True
            break
        time.sleep(0.5)
    print(json.dumps({"ready": converged}), flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    peak_rss_mb(reset=True)
    t0 = time.monotonic()
    outcome = live.cycle()
    cycle_s = time.monotonic() - t0
    rss, scope = peak_rss_mb()
    quiet = all(r.outcome == {"applied": "nothing to do"} for r in outcome.records)
    print(
        json.dumps(
            {"peak_rss_mb": rss, "rss_scope": scope, "cycle_s": cycle_s, "steady": quiet, "error": outcome.error}
        ),
        flush=True,
    )
    live.shutdown()
    return 0


def measure(kube: KubeFakeServer, workdir: Path, services: int, accounting: str) -> dict[str, Any]:
    config = controller_file(workdir, kube.url, services, accounting)
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdin is not None and process.stdout is not None
        ready = json.loads(process.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError(f"{accounting}: the controller did not converge")
        kube.clear_log()
        process.stdin.write("GO\n")
        process.stdin.flush()
        figures: dict[str, Any] = json.loads(process.stdout.readline() or "{}")
        process.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    requests = [r for r in kube.requests() if "/leases" not in r[1]]
    figures["requests"] = len(requests)
    figures["requests_per_service"] = len(requests) / services
    figures["cluster_wide_pod_lists"] = sum(1 for _, path, _ in requests if path == "/api/v1/pods")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20_000)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    nodes = gpu_nodes() + [node_object(f"cpu-{i:03d}", {"kubernetes.io/os": "linux"}, 0) for i in range(CPU_NODES)]
    kube = KubeFakeServer(nodes, ready_after_s=0.2).start()
    ok = True
    try:
        t0 = time.monotonic()
        foreign = args.pods - 4 * args.services
        add_foreign_pods(kube, foreign)
        print(
            f"cluster: {args.pods} pods ({foreign} of other teams in {FOREIGN_NAMESPACES} namespaces), "
            f"{len(nodes)} nodes, {args.services} services; built in {time.monotonic() - t0:.1f} s"
        )
        with tempfile.TemporaryDirectory() as tmp:
            for accounting in ("namespace", "cluster"):
                f = measure(kube, Path(tmp), args.services, accounting)
                rss_ok = f["peak_rss_mb"] <= TARGET_RSS_MB
                req_ok = f["requests_per_service"] <= TARGET_REQUESTS
                ok = ok and rss_ok and req_ok and bool(f.get("steady")) and not f.get("error")
                print(
                    f"gpu_accounting={accounting:9s} peak_rss_mb={f['peak_rss_mb']:.1f} "
                    f"(target ≤ {TARGET_RSS_MB:g}; over the {f['rss_scope']})  "
                    f"requests_per_service={f['requests_per_service']:.2f} (target ≤ {TARGET_REQUESTS:g}; "
                    f"{f['requests']} requests, {f['cluster_wide_pod_lists']} cluster-wide pod list pages)  "
                    f"cycle_s={f['cycle_s']:.1f} (the fake's time included)  steady={f['steady']}"
                )
    finally:
        kube.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
