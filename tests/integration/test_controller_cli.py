"""`heteroscale controller` as a user runs it: exit 4 when the Kubernetes API is never reached, /healthz
while it keeps retrying, flags over HETEROSCALE_* over the file, a dry run's lines, --duration-s.

Servers listen on 127.0.0.1 only (the Kubernetes API fake; "unreachable" is a port nothing listens on);
the controller is a subprocess, always waited for with a bound.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from heteroscale.clock import WallClock
from tests.support.kube_fake import KubeFakeServer
from tests.support.live_env import (
    NAMESPACE,
    REPO,
    controller_command,
    controller_config,
    journal_records,
    role_replicas,
    run_controller,
    start_controller,
    stop_process,
)
from tests.support.prometheus_server import free_port, wait_until

pytestmark = [pytest.mark.integration]

CLOCK = WallClock()


def nowhere() -> str:
    """A 127.0.0.1 URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("heteroscale controller: error:")]


def run_with_env(
    config: Path, env: dict[str, str], *args: str, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HETEROSCALE_") and k != "POD_NAME"}
    full["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), full.get("PYTHONPATH", "")])
    full.update(env)
    return subprocess.run(
        controller_command(config, *args),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=full,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_leader_election_on_and_the_api_unreachable_once_exits_4_with_one_line(tmp_path: Path) -> None:
    """The defect: the run exited 0 with an empty journal, as if all were well."""
    config = controller_config(tmp_path, nowhere(), nowhere(), identity="ctl-a")
    result = run_controller(config, "--once")
    assert result.returncode == 4, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "the Kubernetes API was never reached in 1 cycle(s)" in line and "read lease" in line
    assert journal_records(tmp_path / "journal.jsonl") == []


def test_bounded_cycles_without_leader_election_and_the_api_unreachable_exit_4(tmp_path: Path) -> None:
    config = controller_config(tmp_path, nowhere(), nowhere(), leader=False, interval_s=0.2)
    result = run_controller(config, "--cycles", "2")
    assert result.returncode == 4, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert "never reached in 2 cycle(s)" in line and "list" in line


def test_an_unbounded_run_keeps_retrying_and_healthz_says_so(tmp_path: Path) -> None:
    port = free_port()
    config = controller_config(tmp_path, nowhere(), nowhere(), identity="ctl-a", http_port=port, interval_s=0.5)
    process = start_controller(config, log_path=tmp_path / "controller.log")
    seen: dict[str, Any] = {}

    def retried_twice() -> bool:
        try:
            seen.update(json.loads(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0).text))
        except (httpx.HTTPError, ValueError):
            return False
        return int(seen.get("cycles", 0)) >= 2

    try:
        assert wait_until(retried_twice, 45.0, 0.3), (tmp_path / "controller.log").read_text()[-2000:]
        assert seen["api_reached"] is False and "read lease" in str(seen["api_error"])
        assert seen["role"] == "standby" and "leader election" in str(seen["last_error"])
    finally:
        code = stop_process(process)
    assert code == 4  # stopped without ever having reached the API


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path, kube: KubeFakeServer) -> None:
    config = controller_config(tmp_path, nowhere(), kube.url, leader=False)
    good_kubeconfig = tmp_path / "kubeconfig.yaml"
    data = yaml.safe_load(config.read_text())
    data["kubernetes"]["kubeconfig"] = "missing-kubeconfig.yaml"  # the file's is wrong: env replaces it
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {"HETEROSCALE_KUBECONFIG": str(good_kubeconfig), "HETEROSCALE_NAMESPACE": "from-env"}
    result = run_with_env(config, env, "--once", "--namespace", "from-flag")
    assert result.returncode == 0, result.stderr[-2000:]
    assert role_replicas(kube.deployments("from-flag"), "decode") == 1  # raised to the minimum there
    assert kube.deployments("from-env") == [] and kube.deployments(NAMESPACE) == []
    result = run_with_env(config, env, "--once")
    assert result.returncode == 0, result.stderr[-2000:]
    assert role_replicas(kube.deployments("from-env"), "prefill") == 1


def test_a_bad_namespace_flag_is_one_line(tmp_path: Path) -> None:
    config = controller_config(tmp_path, nowhere(), nowhere(), leader=False)
    result = run_with_env(config, {}, "--check", "--namespace", "Not_A_Name")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "heteroscale controller: error: --namespace: 'Not_A_Name': not a namespace name (lower-case letters, "
        "digits and '-', a letter or digit at each end, ≤ 63)"
    ]


def test_a_dry_run_prints_one_line_per_decision(tmp_path: Path, kube: KubeFakeServer) -> None:
    config = controller_config(tmp_path, nowhere(), kube.url, leader=False, interval_s=0.2)
    result = run_controller(config, "--cycles", "2", "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if " chat  P " in line]
    records = journal_records(tmp_path / "journal.jsonl")
    assert len(lines) == len(records) == 2
    for line in lines:
        assert "chat  P 0→1  D 0→1  hold-missing-observation → clamped-to-min" in line
        assert line.endswith("(dry run, not applied)")
    assert kube.deployments(NAMESPACE) == []


def test_duration_is_honoured_within_one_tick(tmp_path: Path, kube: KubeFakeServer) -> None:
    """The defect: --duration-s 2 with a 60 s interval slept the whole interval before stopping."""
    config = controller_config(tmp_path, nowhere(), kube.url, leader=False, interval_s=60.0)
    result = run_controller(config, "--duration-s", "2", timeout_s=45.0)  # the old loop slept 60 s: time-out
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stopped after 1 cycle(s)" in result.stdout
