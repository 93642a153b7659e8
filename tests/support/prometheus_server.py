"""A real Prometheus (the Debian package's binary) on 127.0.0.1 for integration tests.

``PrometheusServer(tmp_path, targets).start()`` writes a config scraping ``targets`` every second,
starts ``prometheus`` on a free 127.0.0.1 port with its TSDB under ``tmp_path``, and waits (bounded)
until ``/-/ready`` answers. With ``web_config`` (a ``--web.config.file``: TLS, basic auth) the server
speaks https when ``tls`` is set, and ``client`` holds the httpx options (verify, auth) that its own
readiness and data probes need. ``stop()`` terminates the process by its handle and waits (bounded), killing
it if it does not exit. ``start()`` again restarts it on the same port and data directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx

from heteroscale.clock import WallClock

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def wait_until(predicate: object, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s`` passes; bounded in count and time."""
    clock = WallClock()
    deadline = clock.monotonic_s() + timeout_s
    for _ in range(int(timeout_s / interval_s) + 2):
        if callable(predicate) and predicate():
            return True
        if clock.monotonic_s() >= deadline:
            return False
        clock.sleep_s(interval_s)
    return False


class PrometheusServer:
    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        scrape_interval_s: float = 1.0,
        *,
        web_config: Path | None = None,
        tls: bool = False,
        client: dict[str, Any] | None = None,
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus is not on PATH (make test installs Debian's package)")
        self.binary = binary
        self.workdir = workdir
        self.targets = targets
        self.scrape_interval_s = scrape_interval_s
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"
        self.web_config = web_config
        self.scheme = "https" if tls else "http"
        self.client: dict[str, Any] = dict(client or {})

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        targets = ", ".join(f'"{t}"' for t in self.targets)
        text = (
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  scrape_timeout: {interval}\n"
            f"  evaluation_interval: {interval}\n"
            "scrape_configs:\n"
            "  - job_name: engines\n"
            f"    static_configs: [{{targets: [{targets}]}}]\n"
        )
        path = self.workdir / "prometheus.yml"
        path.write_text(text, encoding="utf-8")
        return path

    def start(self) -> PrometheusServer:
        if self.process is not None:
            raise RuntimeError("prometheus already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                    *([] if self.web_config is None else [f"--web.config.file={self.web_config}"]),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        if not wait_until(self._ready, READY_TIMEOUT_S, 0.2):
            self.stop()
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"prometheus did not become ready within {READY_TIMEOUT_S:g} s:\n{tail}")
        return self

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log_path.read_text(errors='replace')[-2000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0, **self.client).status_code == 200
        except httpx.HTTPError:
            return False

    def has_data(self, query: str) -> bool:
        try:
            body = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=2.0, **self.client).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(body.get("data", {}).get("result"))

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
