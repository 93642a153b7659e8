"""What the demo runs: its settings, the fake cluster's nodes, and the controller's config files.

**Time.** The simulator runs ``speedup`` times faster than the wall clock. Every duration the controller
and the fake cluster use is the simulated one divided by the speed-up, so the story is the one a real
cluster would tell in ``speedup ×`` the time: the reconcile interval (30 s), the rate window (60 s), the
pods' cold start (120 s, the simulator's), and the policy's cooldowns (120 s out, 300 s in), scale-in
window (120 s) and drain grace (60 s) — the last four shorter than the policy's defaults (180 / 600 /
300 / 600 s) so a few minutes show a scale-in too. Prometheus scrapes every second of wall time, so it
sees ``speedup`` simulated seconds between scrapes; the lease timings and HTTP time-outs stay in wall
seconds (they are about processes, not about the load). The exporter divides counters by the speed-up
(``demo.exporter``), so rates, targets and SLOs are per simulated second.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from heteroscale.actuators.kube.api import LabelKeys
from heteroscale.config.bundled import embedded_scenarios
from heteroscale.config.source import read_document
from heteroscale.domain.topology import Topology
from heteroscale.policy.context import Targets

NAMESPACE = "demo"
IDENTITY = "heteroscale-demo"
# simulated seconds (module doc)
INTERVAL_S = 30.0
WINDOW_S = 60.0
SCALE_OUT_COOLDOWN_S = 120.0
SCALE_IN_COOLDOWN_S = 300.0
SCALE_IN_WINDOW_S = 120.0
DRAIN_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class DemoSettings:
    duration_s: float = 210.0  # wall seconds of load (the ramp is stretched over them)
    speedup: float = 10.0  # simulated seconds per wall second
    base_rps: float = 3.0  # requests per simulated second, before and after the ramp
    peak_rps: float = 30.0  # at the top of the ramp
    seed: int = 0
    scenario: str = "default"  # whose first service, topology and GPUs the demo serves
    scrape_interval_s: float = 1.0  # wall
    tick_s: float = 0.25  # wall: how often the simulator catches up and the metrics are re-rendered
    bootstrap_timeout_s: float = 60.0  # wall: for the controller's first pods to turn Ready

    def __post_init__(self) -> None:
        if not 1.0 <= self.speedup <= 60.0:
            raise ValueError(f"--speedup must be between 1 and 60, got {self.speedup:g}")
        if not 10.0 <= self.duration_s <= 3600.0:
            raise ValueError(f"--duration-s must be between 10 and 3600, got {self.duration_s:g}")
        if not 0 <= self.base_rps <= self.peak_rps or self.peak_rps <= 0:
            raise ValueError(f"the load needs 0 ≤ base ≤ peak, peak > 0; got {self.base_rps:g}, {self.peak_rps:g}")

    def wall_s(self, simulated_s: float) -> float:
        return simulated_s / self.speedup

    @property
    def horizon_s(self) -> float:
        """The simulated length of the run."""
        return self.duration_s * self.speedup


def node_objects(topology: Topology, labels: LabelKeys) -> list[dict[str, Any]]:
    """The topology's nodes as Kubernetes Node objects, labelled with their domains and GPU type."""
    from heteroscale.demo.kube_objects import node_object

    keys = dict(labels.level_keys())
    out = []
    for node in topology.nodes:
        node_labels = {key: node.path[int(level)] for level, key in keys.items() if key is not None}
        node_labels[labels.sku] = node.sku
        out.append(node_object(node.name, node_labels, node.gpus_total))
    return out


def service_entry(scenario: str, service: str) -> dict[str, Any]:
    """The service as the embedded scenario file writes it, less its ``load`` (the file is the source)."""
    doc = read_document(embedded_scenarios()[scenario])
    for entry in doc.data.get("services", []):
        if entry.get("name") == service:
            return {k: v for k, v in entry.items() if k != "load"}
    raise KeyError(f"scenario {scenario} has no service {service}")


def targets_entry(targets: Targets) -> dict[str, Any]:
    out = dataclasses.asdict(targets)
    out["decode_tps_per_instance"] = dict(targets.decode_tps_per_instance)
    out["prefill_tps_per_instance"] = dict(targets.prefill_tps_per_instance)
    return out


def write_kubeconfig(path: Path, server_url: str) -> Path:
    """A kubeconfig for the fake (its token is a placeholder: the fake checks none)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "demo-fake", "cluster": {"server": server_url}}],
        "users": [{"name": "demo", "user": {"token": "demo-fake-token"}}],
        "contexts": [
            {"name": "demo-fake", "context": {"cluster": "demo-fake", "user": "demo", "namespace": NAMESPACE}}
        ],
        "current-context": "demo-fake",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def controller_config(
    settings: DemoSettings, service: dict[str, Any], targets: Targets, prometheus_url: str, http_port: int
) -> dict[str, Any]:
    """The ``kind: controller`` file the demo's controller runs with (wall-clock durations, module doc)."""
    s = settings
    options = {
        "scale_out_cooldown_s": s.wall_s(SCALE_OUT_COOLDOWN_S),
        "scale_in_cooldown_s": s.wall_s(SCALE_IN_COOLDOWN_S),
        "scale_in_window_s": s.wall_s(SCALE_IN_WINDOW_S),
        "drain_grace_s": s.wall_s(DRAIN_GRACE_S),
    }
    entry = dict(service)
    entry["policy"] = {"name": "heteroscale", "prefill": 1, "decode": 1, "options": options}
    entry["targets"] = targets_entry(targets)
    entry["workload"] = {  # the fake runs nothing: the image is never pulled
        "image": "vllm/vllm-openai:v0.10.0",
        "prefill_args": ["--model", str(entry.get("model")), "--kv-transfer-config", '{"kv_role":"kv_producer"}'],
        "decode_args": ["--model", str(entry.get("model")), "--kv-transfer-config", '{"kv_role":"kv_consumer"}'],
    }
    return {
        "kind": "controller",
        "name": "heteroscale-demo",
        "description": f"heteroscale demo: the live controller against a simulated cluster running ×{s.speedup:g}",
        "prometheus": {
            "url": prometheus_url,
            "timeout_s": 2.0,
            "staleness_s": max(5.0 * s.scrape_interval_s, s.wall_s(WINDOW_S) / 2),
            # the demo's DCGM series carry the engines' service and role labels: no kube_pod_labels join
            "mapping": {"engine": "vllm", "spelling": "colon", "gpu_join": None},
        },
        "kubernetes": {"kubeconfig": "kubeconfig.yaml", "namespace": NAMESPACE, "request_timeout_s": 2.0},
        "controller": {
            "interval_s": s.wall_s(INTERVAL_S),
            "window_s": max(s.wall_s(WINDOW_S), 3.0 * s.scrape_interval_s),
            "journal": "journal.jsonl",
        },
        "leader_election": {"enabled": True, "identity": IDENTITY},
        "http": {"enabled": True, "address": "127.0.0.1", "port": http_port},
        "services": [entry],
    }
