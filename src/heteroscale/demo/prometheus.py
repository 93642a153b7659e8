"""A real Prometheus for the demo: the ``prometheus`` binary on PATH, on 127.0.0.1, scraping one target.

``start()`` writes a config (one job, the given scrape interval), starts the binary on a free port with
its TSDB under the run's directory and waits, bounded, until ``/-/ready`` answers; ``stop()``
terminates it by its handle, waits (bounded) and kills it if it does not exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import httpx

from heteroscale.clock import Clock
from heteroscale.errors import HeteroScaleError

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
INSTALL_HINT = (
    "prometheus is not on PATH: install it (Debian/Ubuntu: sudo apt-get install prometheus; "
    "or `make system-deps`; or put a prometheus binary from prometheus.io on PATH)"
)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusProcess:
    def __init__(self, workdir: Path, target: str, scrape_interval_s: float, clock: Clock) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise HeteroScaleError(INSTALL_HINT)
        self.binary = binary
        self.workdir = workdir
        self.target = target
        self.scrape_interval_s = scrape_interval_s
        self.clock = clock
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def _write_config(self) -> Path:
        interval = f"{round(self.scrape_interval_s * 1000)}ms"
        path = self.workdir / "prometheus.yml"
        path.write_text(
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  scrape_timeout: {interval}\n"
            f"  evaluation_interval: {interval}\n"
            "scrape_configs:\n"
            "  - job_name: demo-engines   # the simulated engines of heteroscale demo\n"
            f'    static_configs: [{{targets: ["{self.target}"]}}]\n',
            encoding="utf-8",
        )
        return path

    def start(self) -> PrometheusProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = self.clock.monotonic_s() + READY_TIMEOUT_S
        for _ in range(int(READY_TIMEOUT_S / 0.2) + 2):
            if self._ready():
                return self
            if self.clock.monotonic_s() >= deadline:
                break
            self.clock.sleep_s(0.2)
        self.stop()
        tail = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        raise HeteroScaleError(f"prometheus did not become ready within {READY_TIMEOUT_S:g} s: {' '.join(tail)}")

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
            raise HeteroScaleError(f"prometheus exited at start: {' '.join(tail) or 'no output'}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def version(self) -> str:
        """The server's version (its build-info API), or ``unknown``."""
        try:
            data = httpx.get(f"{self.url}/api/v1/status/buildinfo", timeout=2.0).json()
            return str(data["data"]["version"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return "unknown"

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
