"""The controller's /metrics + /healthz server under idle connections: threads and /healthz latency.

In this process, on 127.0.0.1: open IDLE idle TCP connections to the server, then time GETS requests
to /healthz while they stay open, and count this process's threads. The same handler behind the
standard library's ``ThreadingHTTPServer`` (one thread per connection, what the controller used before)
is measured the same way, for comparison. Prints one line per server:

    <server>  threads=<with the idle connections open> (<before>)  healthz p50=<ms> max=<ms>  ok=<n>/<GETS>

Run: ``.venv/bin/python benchmarks/http_server.py``
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from heteroscale.clock import Stopwatch, WallClock  # noqa: E402
from heteroscale.controller.bounded_http import BoundedHttpServer, HttpLimits  # noqa: E402

IDLE = 300
GETS = 50
CLOCK = WallClock()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def measure(name: str, port: int, stop: Callable[[], None]) -> str:
    before = threading.active_count()
    idle: list[socket.socket] = []
    try:
        for i in range(IDLE):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(2.0)
            try:
                sock.connect(("127.0.0.1", port))
                idle.append(sock)
            except OSError:
                sock.close()
            if i % 8 == 7:  # paced, as separate clients would be: a burst overflows the accept queue
                CLOCK.sleep_s(0.005)
        CLOCK.sleep_s(0.5)
        threads = threading.active_count()
        latencies_ms: list[float] = []
        ok = 0
        with httpx.Client(timeout=5.0) as client:
            for _ in range(GETS):
                watch = Stopwatch()
                with contextlib.suppress(httpx.HTTPError):  # counted as not ok
                    ok += client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                latencies_ms.append(watch.elapsed_s() * 1000.0)
        return (
            f"{name:<22} threads={threads} ({before} before, {len(idle)} idle connections)  "
            f"healthz p50={statistics.median(latencies_ms):.1f} ms max={max(latencies_ms):.1f} ms  ok={ok}/{GETS}"
        )
    finally:
        for sock in idle:
            sock.close()
        stop()


def main() -> int:
    print(f"/healthz with {IDLE} idle connections open, {GETS} requests")
    bounded = BoundedHttpServer("127.0.0.1", 0, Handler, HttpLimits()).start()
    print(measure("bounded (4 workers)", int(bounded.server_address[1]), bounded.stop), flush=True)
    threading_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading_server.daemon_threads = True
    serving = threading.Thread(target=threading_server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()

    def stop_threading() -> None:
        threading_server.shutdown()
        threading_server.server_close()
        serving.join(timeout=5.0)

    print(measure("ThreadingHTTPServer", int(threading_server.server_address[1]), stop_threading), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
