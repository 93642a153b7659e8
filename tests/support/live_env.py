"""Builders for live-controller tests: cluster nodes, a ``kind: controller`` file, and running the CLI.

Everything listens on 127.0.0.1. ``run_controller`` starts ``python -m heteroscale.cli.live controller``
as a subprocess (so tests can also SIGTERM or SIGKILL it) and always waits for it with a bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_objects import node_object

NAMESPACE = "llm"
DECODE_TPS_PER_INSTANCE = 1000.0
PREFILL_TPS_PER_INSTANCE = 3000.0
REPO = Path(__file__).resolve().parents[2]


def gpu_nodes() -> list[dict[str, Any]]:
    """Two big-pods (S2), each with two H100 nodes (prefill) and two H20 nodes (decode), 8 GPUs each."""
    nodes = []
    for s2 in ("pod-a", "pod-b"):
        for i, sku in enumerate(("h100-sxm", "h100-sxm", "H20", "H20")):
            labels = {
                "heteroscale.io/logical-cluster": "lc1",
                "heteroscale.io/s2": s2,
                "heteroscale.io/s1": f"{s2}-s1-{i // 2}",
                "heteroscale.io/s0": f"{s2}-s0-{i}",
                "heteroscale.io/gpu-sku": sku,
            }
            nodes.append(node_object(f"{s2}-n{i}", labels, 8))
    nodes.append(node_object("cpu-0", {"kubernetes.io/os": "linux"}, 0))  # not a GPU node: ignored
    return nodes


def controller_config(
    workdir: Path,
    prometheus_url: str,
    kube_url: str,
    *,
    http_port: int = 0,
    interval_s: float = 1.0,
    window_s: float = 5.0,
    identity: str | None = None,
    leader: bool = True,
    spelling: str = "both",
    staleness_s: float = 6.0,
    policy: dict[str, Any] | None = None,
    journal: str = "journal.jsonl",
    name: str = "controller.yaml",
    lease_duration_s: float = 6.0,
    renew_deadline_s: float = 4.0,
    retry_period_s: float = 0.5,
    prometheus_timeout_s: float = 1.0,
    request_timeout_s: float = 1.0,
    extra: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write a kubeconfig for the fake and a controller config; return the config's path.

    The time-outs fit the lease as the config requires: Prometheus' observation budget and the
    Kubernetes retry budget are the renew deadline. ``extra`` adds fields to a section."""
    kubeconfig = workdir / "kubeconfig.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": kube_url}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "test", "namespace": NAMESPACE}}],
                "current-context": "fake",
            }
        ),
        encoding="utf-8",
    )
    options = {
        "scale_out_cooldown_s": 0,
        "scale_in_cooldown_s": 0,
        "scale_in_window_s": 0,
        "drain_grace_s": 1,
    }
    config = {
        "kind": "controller",
        "name": "test-controller",
        "prometheus": {
            "url": prometheus_url,
            "timeout_s": prometheus_timeout_s,
            "budget_s": renew_deadline_s,
            "staleness_s": staleness_s,
            "mapping": {"engine": "vllm", "spelling": spelling},
        },
        "kubernetes": {
            "kubeconfig": str(kubeconfig),
            "namespace": NAMESPACE,
            "request_timeout_s": request_timeout_s,
            "max_attempts": 4,
            "backoff_s": 0.05,
            "retry_budget_s": renew_deadline_s,
        },
        "controller": {"interval_s": interval_s, "window_s": window_s, "journal": journal},
        "leader_election": {
            "enabled": leader,
            "lease_duration_s": lease_duration_s,
            "renew_deadline_s": renew_deadline_s,
            "retry_period_s": retry_period_s,
            **({"identity": identity} if identity else {}),
        },
        "http": {"enabled": http_port != 0, "address": "127.0.0.1", "port": http_port},
        "services": [
            {
                "name": "chat",
                "model": "llama-3.1-8b",
                "roles": {
                    "prefill": {"shapes": [{"sku": "h100-sxm", "tp": 1}], "min": 1, "max": 12},
                    "decode": {"shapes": [{"sku": "h20", "tp": 1}], "min": 1, "max": 12},
                },
                "pd_ratio": 1.0,
                "slo": {"ttft_s": 2.0, "tbt_s": 0.1},
                "affinity": "s2",
                "policy": policy or {"name": "heteroscale", "prefill": 1, "decode": 1, "options": options},
                "targets": {
                    "decode_tps_per_instance": {"decode:h20:tp1": DECODE_TPS_PER_INSTANCE},
                    "prefill_tps_per_instance": {"prefill:h100-sxm:tp1": PREFILL_TPS_PER_INSTANCE},
                    "prefill_gpu_util": 0.7,
                    "decode_gpu_util": 0.7,
                    "prefill_sm_activity": 0.6,
                    "decode_sm_activity": 0.6,
                    "ttft_s": 1.5,
                    "tbt_s": 0.08,
                    "requests_per_s_per_prefill": 5.0,
                    "requests_per_s_per_decode": 5.0,
                    "mean_input_tokens": 1000.0,
                    "mean_output_tokens": 200.0,
                },
                "workload": {
                    "image": "vllm/vllm-openai:v0.10.0",
                    "prefill_args": ["--model", "meta-llama/Llama-3.1-8B", "--kv-role", "producer"],
                    "decode_args": ["--model", "meta-llama/Llama-3.1-8B", "--kv-role", "consumer"],
                    "port": 8000,
                },
            }
        ],
    }
    for section, fields in (extra or {}).items():
        config[section] = {**config[section], **fields}
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def controller_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "heteroscale.cli.live", "-v", "controller", "--config", str(config), *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.pop("POD_NAME", None)
    return env


def run_controller(config: Path, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the controller to completion (``--once`` / ``--cycles``), bounded by ``timeout_s``."""
    return subprocess.run(
        controller_command(config, *args),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_env(),
        check=False,
        stdin=subprocess.DEVNULL,
    )


# exec the controller under a file-size limit (RLIMIT_FSIZE): every write that would grow a file past it
# fails with EFBIG, as on a full disk (Python ignores SIGXFSZ, so the write returns the error)
_LIMITED = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


def start_controller(
    config: Path, *args: str, log_path: Path, file_size_limit_bytes: int | None = None
) -> subprocess.Popen[bytes]:
    """Start the controller; with ``file_size_limit_bytes`` no file it writes may grow past that size
    (its log then goes through a pipe, copied to ``log_path`` by a thread of ours, not limited)."""
    command = controller_command(config, *args)
    if file_size_limit_bytes is None:
        log = log_path.open("ab")
        try:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env(), stdin=subprocess.DEVNULL)
        finally:
            log.close()
    command = [sys.executable, "-c", _LIMITED, str(file_size_limit_bytes), *command]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), stdin=subprocess.DEVNULL
    )
    pipe = process.stdout
    assert pipe is not None

    def copy() -> None:  # ends at EOF, when the process exits
        with log_path.open("ab") as log:
            for line in pipe:
                log.write(line)
                log.flush()

    threading.Thread(target=copy, name="controller-log", daemon=True).start()
    return process


def stop_process(process: subprocess.Popen[bytes], *, kill: bool = False, timeout_s: float = 15.0) -> int:
    """SIGTERM (or SIGKILL) a process by its handle and wait for it, bounded; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=timeout_s)


def journal_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a journal file (intents, outcomes, checkpoints), each parsed strictly."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def journal_records(path: Path) -> list[dict[str, Any]]:
    """One record per decision: the outcomes (intents and checkpoints left out)."""
    return [r for r in journal_lines(path) if r.get("phase", "outcome") == "outcome"]


def replicas(deployments: list[dict[str, Any]]) -> dict[str, int]:
    """Deployment name → spec.replicas."""
    return {d["metadata"]["name"]: int(d["spec"]["replicas"]) for d in deployments}


def role_replicas(deployments: list[dict[str, Any]], role: str) -> int:
    return sum(
        int(d["spec"]["replicas"]) for d in deployments if d["metadata"]["labels"].get("heteroscale.io/role") == role
    )
