"""The controller's ``/metrics`` + ``/healthz`` server (controller/http.py, controller/bounded_http.py).

In-process on 127.0.0.1, so the thread count is this process's: 300 idle TCP connections leave the
threads at the loop plus the workers (with ``ThreadingHTTPServer`` they made one thread each) and
``/healthz`` still answers; a request dripped byte by byte or never finished is closed after the
time-out while others are answered; an oversized request is closed; ``stop()`` ends every thread.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from heteroscale.clock import WallClock
from heteroscale.controller.bounded_http import HttpLimits
from heteroscale.controller.http import ControllerMetrics, HealthServer
from tests.support.prometheus_server import wait_until

pytestmark = pytest.mark.integration

CLOCK = WallClock()
LIMITS = HttpLimits(workers=3, max_connections=32, timeout_s=1.0)
IDLE_CONNECTIONS = 300


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("heteroscale-http")]


@pytest.fixture
def server() -> Iterator[HealthServer]:
    health = HealthServer(ControllerMetrics(), "127.0.0.1", 0, lambda: True, LIMITS).start()
    try:
        yield health
    finally:
        health.stop()
    assert server_threads() == []  # stop() ended the loop and every worker


def get(server: HealthServer, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5.0)


def connect(server: HealthServer) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(("127.0.0.1", server.port))
    except OSError:
        sock.close()
        return None
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True when the server closes (EOF or reset) within ``within_s``."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_hold_no_thread_and_healthz_still_answers(server: HealthServer) -> None:
    threads_before = threading.active_count()
    assert len(server_threads()) == 1 + LIMITS.workers
    idle: list[socket.socket] = []
    try:
        for i in range(IDLE_CONNECTIONS):
            sock = connect(server)
            if sock is not None:
                idle.append(sock)
            if i % 8 == 7:  # let the accept loop run: a burst would overflow the kernel's accept queue
                CLOCK.sleep_s(0.005)
        assert len(idle) >= IDLE_CONNECTIONS // 2  # most got in (the oldest are closed to make room)
        assert threading.active_count() == threads_before  # not one thread per connection
        response = get(server, "/healthz")
        assert response.status_code == 200 and response.text == "ok\n"
        assert "heteroscale_leader" in get(server, "/metrics").text
        assert threading.active_count() == threads_before
    finally:
        for sock in idle:
            sock.close()


def test_an_unfinished_request_is_closed_after_the_time_out_while_others_are_answered(server: HealthServer) -> None:
    drip = connect(server)
    assert drip is not None
    try:
        drip.sendall(b"GET /healthz HTTP/1.0\r\n")  # never the blank line that ends the headers
        answered = [get(server, "/healthz").status_code for _ in range(5)]
        assert answered == [200] * 5
        assert closed_by_server(drip, within_s=LIMITS.timeout_s + 3.0)
    finally:
        drip.close()


def test_an_oversized_request_is_closed(server: HealthServer) -> None:
    big = connect(server)
    assert big is not None
    try:
        big.sendall(b"GET /healthz HTTP/1.0\r\nX-Pad: " + b"a" * (LIMITS.max_request_bytes + 10))
        assert closed_by_server(big, within_s=LIMITS.timeout_s + 3.0)
    finally:
        big.close()
    assert get(server, "/healthz").status_code == 200


def test_unknown_paths_are_404_and_the_connection_closes_after_the_answer(server: HealthServer) -> None:
    sock = connect(server)
    assert sock is not None
    try:
        sock.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        for _ in range(100):  # bounded: the answer is small
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.0 404") and data.endswith(b"not found\n")  # then EOF: no keep-alive
    finally:
        sock.close()


def test_stalled_controller_is_503() -> None:
    health = HealthServer(ControllerMetrics(), "127.0.0.1", 0, lambda: False, LIMITS).start()
    try:
        response = get(health, "/healthz")
        assert response.status_code == 503 and response.text == "stalled\n"
    finally:
        health.stop()
    assert wait_until(lambda: server_threads() == [], 5.0)


def test_a_failing_handler_costs_no_worker() -> None:
    def broken() -> bool:
        raise RuntimeError("health check bug")

    health = HealthServer(ControllerMetrics(), "127.0.0.1", 0, broken, LIMITS).start()
    try:
        for _ in range(2 * LIMITS.workers):  # more failures than workers
            with pytest.raises(httpx.HTTPError):
                get(health, "/healthz")
        assert "heteroscale_leader" in get(health, "/metrics").text
        assert len(server_threads()) == 1 + LIMITS.workers
    finally:
        health.stop()
