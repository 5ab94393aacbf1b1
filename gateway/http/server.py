"""The trio driver of the HTTP/1.1 server: sockets, deadlines and connection limits.

Each connection is one task running the loop of gateway.http._connection (read, answer,
repeat; pipelining and streamed bodies are described there). This module owns the listener,
the connection limits and the deadlines. Deadlines (a float per connection, enforced by one
watchdog task every ``tick`` seconds):

* idle: a keep-alive connection with no request begun is closed after ``idle_timeout``;
* request: from a request's first byte to its last body byte at most ``request_timeout`` —
  a body trickled at 1 byte/s is cut off with 408 and the connection closed;
* write: a client that stops reading its answers is dropped after ``write_timeout``.

Saturation: past ``max_connections`` a new connection is answered 503 with Retry-After and
closed; past ``max_in_flight`` requests being handled, a request is answered 503 the same way
without reaching the application. The application never sees a protocol error, and no
exception text ever reaches a client: an application crash is logged and answered with a
bare 500 problem document.

Must not import: gateway.api (the application is passed in).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from gateway.http._connection import ConnectionLoop, DateCache, problem_response
from gateway.http._io import Timer
from gateway.http._protocol import ReaderLimits, Request, Response, response_bytes

logger = logging.getLogger(__name__)

App = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Everything an exposed server needs bounded. Mirrors gateway.config.HttpConfig."""

    max_body_bytes: int = 1024 * 1024
    max_header_count: int = 64
    max_header_bytes: int = 16 * 1024
    request_timeout: float = 10.0
    idle_timeout: float = 30.0
    write_timeout: float = 10.0
    max_connections: int = 4096
    max_in_flight: int = 2048
    retry_after: int = 1
    max_stream_bytes: int = 1024 * 1024 * 1024
    body_idle_timeout: float = 30.0

    def reader(self) -> ReaderLimits:
        return ReaderLimits(self.max_body_bytes, self.max_header_count, self.max_header_bytes,
                            self.max_stream_bytes)


class HttpServer(ConnectionLoop):
    """Serves ``app`` on trio listeners with :class:`ServerLimits`.

    ``statistics()`` gives cheap counters (connections, in-flight, refused) for metrics.
    """

    def __init__(self, app: App, limits: ServerLimits) -> None:
        self._app = app
        # Optional: an application may handle a run of pipelined requests together
        # (``independent(request) -> bool`` and ``async call_many(requests) -> responses``,
        # answers in order); it promises that doing so is indistinguishable from handling
        # them one after another. Anything else is handled one request at a time.
        self._independent: Callable[[Request], bool] | None = getattr(app, "independent", None)
        self._app_many = getattr(app, "call_many", None)
        if self._app_many is None:
            self._independent = None
        # Optional: ``streaming(method, target, headers) -> bool`` names requests whose body
        # the application reads as a stream (``request.body_stream``); see the docstring.
        self._streaming: Callable[[bytes, bytes, dict[str, str]], bool] | None = getattr(
            app, "streaming", None)
        self._limits = limits
        self._reader_limits = limits.reader()
        self._dates = DateCache()
        self.connections = 0
        self.in_flight = 0
        self.refused_connections = 0
        self.refused_requests = 0
        self.timeouts = 0
        self.draining = False
        self.stopped = trio.Event()  # set when serve() has returned after drain()
        self._accept_scope: trio.CancelScope | None = None
        self._connections_scope: trio.CancelScope | None = None
        self._timers: set[Timer] = set()
        # Deadlines are checked this often: at most this late (a small fraction of each).
        self.tick = min(0.1, limits.request_timeout / 8, limits.idle_timeout / 8,
                        limits.write_timeout / 8, limits.body_idle_timeout / 8)

    def statistics(self) -> dict[str, int]:
        return {"connections": self.connections, "in_flight": self.in_flight,
                "refused_connections": self.refused_connections,
                "refused_requests": self.refused_requests, "timeouts": self.timeouts}

    async def serve(self, host: str, port: int, *, backlog: int = 1024, reuse_port: bool = False,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``host:port`` (0: any free port) and serve until cancelled.

        Reports the bound port through ``task_status``.
        """
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(backlog)
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            self._connections_scope = nursery.cancel_scope
            nursery.start_soon(self._watchdog)
            async with listener:
                task_status.started(sock.getsockname()[1])
                with trio.CancelScope() as self._accept_scope:
                    while True:
                        stream = await listener.accept()
                        nursery.start_soon(self._connection, stream)
            # Draining: the listener is closed; connections finish what they are answering.
        self.stopped.set()

    def drain(self, grace: float) -> None:
        """Graceful stop: accept no more connections, answer the requests being handled
        (with ``Connection: close``), close idle connections, and end ``serve`` once all are
        closed or after ``grace`` seconds."""
        self.draining = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        if self._connections_scope is not None:
            self._connections_scope.deadline = trio.current_time() + grace
        for timer in self._timers:
            if timer.phase == "idle":  # waiting for a request to begin (nothing to answer)
                timer.scope.cancel()

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            if self.connections > self._limits.max_connections:
                self.refused_connections += 1
                await self._refuse(stream, "too many connections")
                return
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._serve_connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away; nothing to answer
        finally:
            self.connections -= 1
            with trio.move_on_after(0.5) as scope:
                scope.shield = True
                await stream.aclose()

    async def _watchdog(self) -> None:
        """Cancel every connection whose deadline passed; runs every ``tick`` seconds, until
        the server drained and its last connection closed."""
        while not (self.draining and self.connections == 0):
            await trio.sleep(self.tick)
            now = trio.current_time()
            for timer in [t for t in self._timers if t.at <= now]:
                timer.at = math.inf
                timer.scope.cancel()

    async def _refuse(self, stream: trio.SocketStream, detail: str) -> None:
        resp = problem_response(503, "Service Unavailable", detail,
                                retry_after=self._limits.retry_after, close=True)
        with trio.move_on_after(self._limits.write_timeout):
            await stream.send_all(response_bytes(resp, date=self._dates.get(), keep_alive=False))
