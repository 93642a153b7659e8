"""A small HTTP/1.0 server whose threads and connections are bounded, for ``/metrics`` and ``/healthz``.

``http.server.ThreadingHTTPServer`` starts a thread per connection and lets an idle one hold it: 300
idle connections made 302 threads. Here one loop thread accepts connections and reads each request
(non-blocking) until its headers are complete; only then does one of ``workers`` threads answer it.
So an idle or slow client holds no thread, and:

* at most ``max_connections`` connections wait for their request; a new one beyond that closes the
  one that has waited longest;
* a request must arrive within ``timeout_s`` of the connection (a slow drip of bytes counts) and be
  at most ``max_request_bytes``, else the connection is closed;
* the request is answered with a socket time-out of ``timeout_s`` (a client that does not read cannot
  hold a worker longer), and the connection is closed after the answer (no keep-alive);
* requests waiting for a worker queue up to ``4 × workers``; beyond that the connection is closed.

Only requests without a body (GET) are served. ``stop()`` is bounded.
"""

from __future__ import annotations

import io
import logging
import queue
import selectors
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from heteroscale.clock import WallClock

log = logging.getLogger(__name__)

HEADERS_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    workers: int = 4  # threads that answer requests
    max_connections: int = 64  # connections waiting for their request
    timeout_s: float = 5.0  # for the request to arrive, and for each socket operation of the answer
    max_request_bytes: int = 16384
    backlog: int = 16  # the kernel's accept queue

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_connections < 1 or self.backlog < 1 or self.max_request_bytes < 64:
            raise ValueError(f"HTTP limits must be positive, got {self}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


@dataclass(slots=True)
class _Pending:
    conn: socket.socket
    address: Any
    since_s: float
    data: bytearray = field(default_factory=bytearray)


class BoundedHttpServer:
    """Serves ``handler`` (a BaseHTTPRequestHandler subclass) on ``address:port`` (see the module doc)."""

    def __init__(
        self, address: str, port: int, handler: type[BaseHTTPRequestHandler], limits: HttpLimits | None = None
    ) -> None:
        self.limits = limits or HttpLimits()
        self.handler = handler
        self.clock = WallClock()
        self._listener = socket.create_server((address, port), backlog=self.limits.backlog)
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._pending: dict[int, _Pending] = {}  # by file descriptor, oldest first
        self._work: queue.Queue[tuple[socket.socket, Any, bytes] | None] = queue.Queue(4 * self.limits.workers)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.dropped = 0  # connections closed unanswered (over a limit, timed out, too large)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, name: str = "http") -> BoundedHttpServer:
        loop = threading.Thread(target=self._loop, name=f"{name}-accept", daemon=True)
        workers = [
            threading.Thread(target=self._worker, name=f"{name}-worker-{i}", daemon=True)
            for i in range(self.limits.workers)
        ]
        self._threads = [loop, *workers]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, join_s: float = 5.0) -> None:
        self._stopping.set()
        for _ in range(self.limits.workers):
            try:
                self._work.put(None, timeout=join_s)
            except queue.Full:
                break
        deadline_s = self.clock.monotonic_s() + join_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline_s - self.clock.monotonic_s()))
        self._threads = []

    # --- the loop: accept, read requests, hand them to workers --------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(timeout=0.2):
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        self._read(key.fd)
                self._expire()
        finally:
            for fd in list(self._pending):
                self._close(fd)
            self._selector.close()
            self._listener.close()

    def _accept(self) -> None:
        for _ in range(self.limits.backlog):  # bounded: what the accept queue holds
            try:
                conn, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("http: accept failed: %s", exc)
                return
            if len(self._pending) >= self.limits.max_connections:
                self._close(next(iter(self._pending)))  # the longest waiter makes room
            conn.setblocking(False)
            self._pending[conn.fileno()] = _Pending(conn, address, self.clock.monotonic_s())
            self._selector.register(conn, selectors.EVENT_READ, None)

    def _read(self, fd: int) -> None:
        pending = self._pending.get(fd)
        if pending is None:
            return
        try:
            chunk = pending.conn.recv(self.limits.max_request_bytes + 1 - len(pending.data))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away
            self._close(fd)
            return
        pending.data += chunk
        if HEADERS_END in pending.data:
            self._selector.unregister(pending.conn)
            del self._pending[fd]
            try:
                self._work.put_nowait((pending.conn, pending.address, bytes(pending.data)))
            except queue.Full:  # every worker busy and the queue full: shed load
                self.dropped += 1
                pending.conn.close()
        elif len(pending.data) > self.limits.max_request_bytes:
            self._close(fd)

    def _expire(self) -> None:
        limit_s = self.clock.monotonic_s() - self.limits.timeout_s
        for fd, pending in list(self._pending.items()):
            if pending.since_s > limit_s:
                break  # the rest arrived later
            self._close(fd)

    def _close(self, fd: int) -> None:
        pending = self._pending.pop(fd, None)
        if pending is None:
            return
        self.dropped += 1
        self._selector.unregister(pending.conn)  # every waiting connection is registered
        pending.conn.close()

    # --- workers -----------------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            conn, address, request = item
            try:
                conn.setblocking(True)
                conn.settimeout(self.limits.timeout_s)
                _answer(self.handler, conn, address, request, self)
            except OSError as exc:  # the client left or stopped reading: nothing to answer
                log.debug("http: %s: %s", address, exc)
            except Exception:  # a handler's bug must not cost a worker: say it, serve the next request
                log.exception("http: answering %s failed", address)
            finally:
                conn.close()


def _answer(
    handler: type[BaseHTTPRequestHandler], conn: socket.socket, address: Any, request: bytes, server: Any
) -> None:
    """Run ``handler`` on the request the loop already read (its ``rfile``), answering on the socket.

    The instance is made without ``__init__``, which would read the socket itself."""
    instance = handler.__new__(handler)
    instance.request = conn
    instance.client_address = address
    instance.server = server
    instance.rfile = io.BytesIO(request)
    instance.wfile = conn.makefile("wb")  # flushed by the handler and on close
    instance.close_connection = True
    try:
        instance.handle_one_request()
    finally:
        instance.wfile.close()
