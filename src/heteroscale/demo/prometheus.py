"""A real Prometheus: the ``prometheus`` binary on PATH, on 127.0.0.1, scraping the given targets.

``start()`` writes a config (one job, the given scrape interval), starts the binary on a free port with
its TSDB under the run's directory and waits, bounded, until ``/-/ready`` answers; ``stop()``
terminates it by its handle, waits (bounded) and kills it if it does not exit. ``start()`` again
restarts it on the same port and data directory. The demo scrapes its one engine target; the
integration tests (``tests/support/prometheus_server.py``) scrape several and may pass a
``--web.config.file`` (``web_config``: TLS, basic auth) with ``tls`` (serve https) and ``client``
(the httpx options, such as verify and auth, that its own probes need).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from heteroscale.clock import Clock
from heteroscale.errors import HeteroScaleError

READY_TIMEOUT_S = 30.0
READY_POLL_S = 0.2
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
    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        scrape_interval_s: float,
        clock: Clock,
        *,
        job_name: str = "demo-engines",
        web_config: Path | None = None,
        tls: bool = False,
        client: Mapping[str, Any] | None = None,
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise HeteroScaleError(INSTALL_HINT)
        self.binary = binary
        self.workdir = workdir
        self.targets = list(targets)
        self.scrape_interval_s = scrape_interval_s
        self.clock = clock
        self.job_name = job_name
        self.web_config = web_config
        self.scheme = "https" if tls else "http"
        self.client: dict[str, Any] = dict(client or {})
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def _write_config(self) -> Path:
        interval = f"{round(self.scrape_interval_s * 1000)}ms"
        targets = ", ".join(f'"{t}"' for t in self.targets)
        path = self.workdir / "prometheus.yml"
        path.write_text(
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  scrape_timeout: {interval}\n"
            f"  evaluation_interval: {interval}\n"
            "scrape_configs:\n"
            f"  - job_name: {self.job_name}\n"
            f"    static_configs: [{{targets: [{targets}]}}]\n",
            encoding="utf-8",
        )
        return path

    def start(self) -> Self:
        if self.process is not None:
            raise HeteroScaleError(f"prometheus is already running on {self.url}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        web = [] if self.web_config is None else [f"--web.config.file={self.web_config}"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                    *web,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = self.clock.monotonic_s() + READY_TIMEOUT_S
        for _ in range(int(READY_TIMEOUT_S / READY_POLL_S) + 2):
            if self._ready():
                return self
            if self.clock.monotonic_s() >= deadline:
                break
            self.clock.sleep_s(READY_POLL_S)
        self.stop()
        raise HeteroScaleError(f"prometheus did not become ready within {READY_TIMEOUT_S:g} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        """The log's last line and where the whole log is (one line for a user)."""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        return f"{' '.join(lines) or 'no output'} (log: {self.log_path})"

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise HeteroScaleError(f"prometheus exited at start: {self._log_tail()}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0, **self.client).status_code == 200
        except httpx.HTTPError:
            return False

    def version(self) -> str:
        """The server's version (its build-info API), or ``unknown``."""
        try:
            data = httpx.get(f"{self.url}/api/v1/status/buildinfo", timeout=2.0, **self.client).json()
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
