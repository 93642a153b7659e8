"""`heteroscale demo`, short: the unchanged live controller scales a simulated P/D cluster out under the
ramp, reading a real Prometheus and writing to the Kubernetes API fake; everything it started stops.

The run is in this process (so its threads can be counted) with the controller and Prometheus as child
processes; a record is chosen by what it says, never by when it was made.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from heteroscale.clock import WallClock
from heteroscale.demo.prometheus import prometheus_binary
from heteroscale.demo.run import Demo
from heteroscale.demo.setup import DemoSettings
from tests.support.live_env import REPO, journal_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(entry.name))
    return out


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.skipif(prometheus_binary() is None, reason="prometheus not on PATH (make system-deps installs it)")
def test_a_short_demo_scales_out_through_a_real_prometheus_and_stops_everything(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    children_before = children(os.getpid())
    said: list[str] = []
    outcome = Demo(DemoSettings(duration_s=40.0), tmp_path / "run", said.append).run()
    assert outcome.exit_code == 0, "\n".join(said[-20:])
    assert outcome.controller_exit == 0
    # Prometheus was the real binary, and the controller's observations came through it
    assert outcome.prometheus_version[:1].isdigit(), outcome.prometheus_version
    assert (tmp_path / "run" / "prometheus" / "prometheus.yml").exists()
    decisions = [line for line in journal_lines(tmp_path / "run" / "journal.jsonl") if line["phase"] == "outcome"]
    observed = [d for d in decisions if "error" not in d["observation"] and d["observation"]["decode"]["tps"]]
    assert observed, [d["observation"] for d in decisions[:3]]
    # the controller scaled out under the ramp: past the minimum it set up at the start, and applied
    scale_outs = [
        d
        for d in decisions
        if d["applied"]
        and d["decision"]["current_decode"] >= 1
        and d["decision"]["desired_decode"] > d["decision"]["current_decode"]
    ]
    assert scale_outs, "\n".join(said[-20:])
    assert any(" chat  P " in line and "→" in line for line in said)  # decisions shown as they were made
    assert (tmp_path / "run" / "load_and_instances.png").stat().st_size > 0
    assert (tmp_path / "run" / "controller-metrics.txt").read_text().count("heteroscale_decisions_total") > 0
    # everything it started has stopped: the child processes, and every thread
    assert outcome.controller_pid is not None and not alive(outcome.controller_pid)
    assert outcome.prometheus_pid is not None and not alive(outcome.prometheus_pid)
    assert children(os.getpid()) <= children_before

    def only_old_threads() -> bool:
        return {t for t in threading.enumerate() if t.is_alive()} <= threads_before

    clock = WallClock()
    for _ in range(50):  # an HTTP handler thread may take a moment to return after its last answer
        if only_old_threads():
            break
        clock.sleep_s(0.1)
    assert only_old_threads(), sorted(t.name for t in set(threading.enumerate()) - threads_before)


@pytest.mark.skipif(prometheus_binary() is None, reason="prometheus not on PATH (make system-deps installs it)")
def test_a_stop_request_mid_run_stops_everything_and_keeps_the_journal(tmp_path: Path) -> None:
    """What Ctrl-C or SIGTERM does (the command turns both into this request)."""
    threads_before = set(threading.enumerate())
    children_before = children(os.getpid())
    stop = threading.Event()
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if "the load starts now" in line:
            stop.set()

    outcome = Demo(DemoSettings(duration_s=120.0), tmp_path / "run", say, stop).run()
    assert outcome.interrupted and outcome.exit_code == 130, "\n".join(said[-10:])
    assert outcome.controller_exit == 0  # SIGTERM: it finished its cycle and released the lease
    assert outcome.decisions  # the bootstrap decision, read back from the journal
    assert outcome.controller_pid is not None and not alive(outcome.controller_pid)
    assert outcome.prometheus_pid is not None and not alive(outcome.prometheus_pid)
    assert children(os.getpid()) <= children_before
    clock = WallClock()
    for _ in range(50):
        if {t for t in threading.enumerate() if t.is_alive()} <= threads_before:
            break
        clock.sleep_s(0.1)
    assert {t for t in threading.enumerate() if t.is_alive()} <= threads_before


def test_an_argument_out_of_range_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "heteroscale.cli.main", "demo", "--speedup", "0", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["heteroscale demo: error: --speedup must be between 1 and 60, got 0"]


def test_without_prometheus_the_demo_says_in_one_line_how_to_install_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(tmp_path)  # an empty directory: no prometheus on it
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "heteroscale.cli.main", "demo", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "prometheus is not on PATH" in line and "apt-get install prometheus" in line
    assert not (tmp_path / "out").exists()  # nothing was started or written
