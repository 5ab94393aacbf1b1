"""The trio driver of the HTTP/1.1 server: sockets, deadlines and connection limits.

Each connection is one task: receive bytes (under a deadline), feed the sans-IO
:class:`~gateway.http._protocol.RequestReader`, hand each completed request to the
application in order, write the answers. Pipelined requests that arrive together are answered
together in one write; a run of them that the application declares independent
(``app.independent(request)``, with ``app.call_many(requests)``) is handed to it in one call,
so that it can commit them together. Deadlines (a float per connection, enforced by one
watchdog task every ``tick`` seconds):

* idle: a keep-alive connection with no request begun is closed after ``idle_timeout``;
* request: from a request's first byte to its last body byte at most ``request_timeout`` —
  a body trickled at 1 byte/s is cut off with 408 and the connection closed;
* write: a client that stops reading its answers is dropped after ``write_timeout``.

Streamed bodies. An application may name requests whose body it reads as a stream
(``app.streaming(method, target, headers) -> bool``, raw method and target bytes, asked when
a request's headers are complete; e.g. a campaign's recipient upload). Such a request is
handed to the application at once, with ``request.body_stream``, an async iterator of body
chunks (gateway.http._streamed); a second task of the connection
reads the socket only when the application has taken every chunk parsed so far (a
zero-capacity channel between them), so the connection holds at most one receive of the body
however large it is, and a slow consumer slows the client down through TCP. The body is
bounded by ``max_stream_bytes`` (413 naming it, declared or counted) instead of
``max_body_bytes``; the whole-request deadline covers only its head, and while the body comes
in each receive must arrive within ``body_idle_timeout`` (408 otherwise). A client that goes
away mid-body makes the iterator raise :class:`BodyIncomplete`. An application that answers
before reading the whole body gets its answer sent with ``Connection: close``.

Saturation: past ``max_connections`` a new connection is answered 503 with Retry-After and
closed; past ``max_in_flight`` requests being handled, a request is answered 503 the same way
without reaching the application. The application never sees a protocol error, and no
exception text ever reaches a client: an application crash is logged and answered with a
bare 500 problem document.

Must not import: gateway.api (the application is passed in).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final

import trio

from gateway.http._io import Timer as _Timer
from gateway.http._io import linger as _linger
from gateway.http._io import receive as _receive
from gateway.http._io import send as _send
from gateway.http._io import send_nowait as _send_nowait
from gateway.http._protocol import (
    CONTINUE,
    LAST_CHUNK,
    BodyIncomplete,
    HttpError,
    ReaderLimits,
    Request,
    RequestReader,
    Response,
    chunk,
    head_bytes,
    http_date,
    response_bytes,
)
from gateway.http._streamed import BodyStream, feed_body

logger = logging.getLogger(__name__)

App = Callable[[Request], Awaitable[Response]]
MAX_TOGETHER: Final = 256  # pipelined requests an application may handle in one call_many
_SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})


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


def problem_response(status: int, title: str, detail: str, *, retry_after: int | None = None,
                     close: bool = False) -> Response:
    """A minimal RFC 9457 document for protocol-level refusals."""
    doc = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    headers = [("retry-after", str(retry_after))] if retry_after is not None else []
    return Response(status, json.dumps(doc).encode(), "application/problem+json", headers,
                    close=close)


_TITLES: Final = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
                  431: "Request Header Fields Too Large", 500: "Internal Server Error",
                  503: "Service Unavailable"}


class _DateCache:
    """The Date header, formatted once per second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def get(self) -> str:
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._text = http_date(now)
        return self._text


class HttpServer:
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
        self._dates = _DateCache()
        self.connections = 0
        self.in_flight = 0
        self.refused_connections = 0
        self.refused_requests = 0
        self.timeouts = 0
        self.draining = False
        self.stopped = trio.Event()  # set when serve() has returned after drain()
        self._accept_scope: trio.CancelScope | None = None
        self._connections_scope: trio.CancelScope | None = None
        self._idle: set[trio.CancelScope] = set()
        self._timers: set[_Timer] = set()
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
        for scope in list(self._idle):
            scope.cancel()

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

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """Read, answer, repeat. One cancel scope per connection, and a :class:`_Timer`
        carrying whichever deadline applies now (idle, request, write; none while the
        application works), so a request costs no scope of its own; when the watchdog cancels
        the scope, ``timer.phase`` says which deadline it was."""
        lim = self._limits
        reader = RequestReader(self._reader_limits, self._streaming)
        with trio.CancelScope() as scope:
            timer = _Timer(scope)
            self._timers.add(timer)
            try:
                await self._serve_requests(stream, reader, timer)
            finally:
                self._timers.discard(timer)
        phase = timer.phase
        if phase in ("write", "answer"):  # while answering only the write deadline is set
            self.timeouts += 1  # a client that does not read its answers
        elif phase in ("request", "body") and not self.draining:
            self.timeouts += 1
            detail = (f"the request was not complete within {lim.request_timeout} s"
                      if phase == "request" else
                      f"no body bytes arrived for {lim.body_idle_timeout} s")
            with trio.move_on_after(lim.write_timeout):
                resp = problem_response(408, "Request Timeout", detail, close=True)
                await stream.send_all(response_bytes(resp, date=self._dates.get(),
                                                     keep_alive=False))
            await _linger(stream)

    async def _serve_requests(self, stream: trio.SocketStream, reader: RequestReader,
                              timer: _Timer) -> None:
        """The loop of :meth:`_serve_connection`; ``timer.phase`` says where it was when it
        ended or was cancelled."""
        lim = self._limits
        scope = timer.scope
        started = 0.0
        while True:
            now = trio.current_time()
            if reader.in_progress:
                timer.phase, timer.at = "request", started + lim.request_timeout
            else:
                if self.draining:
                    return
                timer.phase, timer.at = "idle", now + lim.idle_timeout
                self._idle.add(scope)  # drain() may close it at once
            try:
                data = await _receive(stream)
            finally:
                self._idle.discard(scope)
            if not data:
                return
            was_in_progress = reader.in_progress
            try:
                requests = reader.feed(data)
            except HttpError as err:
                # Requests pipelined ahead of the refused one are valid: answered first, in
                # order (RFC 9112 §9.3.2), unless one of them already ends the connection.
                if err.completed:
                    timer.phase = "answer"
                    if not await self._answer(stream, timer, err.completed, reader):
                        return
                timer.phase = "write"
                await self._send(stream, timer, problem_response(
                    err.status, _TITLES.get(err.status, "Bad Request"), err.detail, close=True),
                    keep_alive=False)
                await _linger(stream)
                return
            if reader.in_progress and (not was_in_progress or requests):
                started = now  # a new request began in this chunk
            if requests:
                timer.phase = "answer"
                if not await self._answer(stream, timer, requests, reader):
                    return
                if reader.in_progress:
                    # a request begun behind these must not be charged for their handling
                    started = max(started, trio.current_time())
            if reader.expect_continue:
                # After the answers ahead of it (a client takes an interim response as its
                # oldest unanswered request's), and also when the head came in behind a
                # streamed body, whose feeder parsed it during _answer.
                reader.expect_continue = False
                if reader.in_progress:
                    timer.phase = "write"
                    await self._write(stream, timer, CONTINUE)

    async def _answer(self, stream: trio.SocketStream, timer: _Timer,
                      requests: list[Request], reader: RequestReader) -> bool:
        """Answer ``requests`` in order; False when the connection must close.

        A streamed request is handled while its body comes in (:meth:`_call_streamed`);
        requests pipelined behind its body join ``requests``."""
        timer.at = math.inf  # the application's work has no read deadline
        if len(requests) == 1 and requests[0].streamed is None:
            # The common case (no pipelining), the general loop below without its bookkeeping.
            request = requests[0]
            response = await self._call(request)
            keep = (request.keep_alive and not response.close and not self.draining
                    and not reader.must_close)
            await self._send(stream, timer, response, keep_alive=keep,
                             head_only=request.method == "HEAD")
            return keep
        out: list[bytes] = []
        together: list[Response] = []
        refusal: HttpError | None = None
        for i, request in enumerate(requests):  # (requests may grow while iterating)
            if together:
                response = together.pop(0)
            elif request.streamed is not None:
                if out:
                    await self._write(stream, timer, b"".join(out))
                    out.clear()
                response, refusal = await self._call_streamed(stream, reader, timer, request,
                                                              requests)
            else:
                run = self._independent_run(requests, i) if self._independent else 0
                if out and request.method not in _SAFE:
                    # Handled one after another (RFC 9112 §9.3.2: unsafe pipelined requests
                    # are not run in parallel); answer what is done before the next commit.
                    await self._write(stream, timer, b"".join(out))
                    out.clear()
                if run > 1:
                    together = await self._call_many(requests[i:i + run])
                    response = together.pop(0)
                else:
                    response = await self._call(request)
            # Inside a run handled together every request has been handled: all are answered
            # (the run ends at a request that closes the connection).
            keep = bool(together) or (
                request.keep_alive and not response.close and not self.draining
                and not (reader.must_close and i == len(requests) - 1))
            if response.stream is not None:
                if out:
                    await self._write(stream, timer, b"".join(out))
                    out.clear()
                await self._send(stream, timer, response, keep_alive=keep,
                                 head_only=request.method == "HEAD")
            else:
                out.append(response_bytes(response, date=self._dates.get(), keep_alive=keep,
                                          head_only=request.method == "HEAD"))
            if not keep:
                break
        else:
            keep = True
        if out:
            await self._write(stream, timer, b"".join(out))
        if not keep and request.streamed is not None and not request.streamed.complete:
            # answered before its body was read: the client may still be sending, and closing
            # on unread bytes makes the kernel reset the connection, answer and all
            timer.phase = "write"
            await _linger(stream)
        if refusal is not None and keep:  # refused behind a streamed body: answered last
            timer.phase = "write"
            await self._send(stream, timer, problem_response(
                refusal.status, _TITLES.get(refusal.status, "Bad Request"), refusal.detail,
                close=True), keep_alive=False)
            await _linger(stream)
            return False
        return keep

    async def _call_streamed(self, stream: trio.SocketStream, reader: RequestReader,
                             timer: _Timer, request: Request, requests: list[Request]
                             ) -> tuple[Response, HttpError | None]:
        """Run the application on a streamed request while a second task feeds it the body.

        Returns the answer (with ``close`` when the body was not read to its end, or the
        refusal itself when the body broke a limit or the framing) and a refusal that
        belongs to a request pipelined behind the body (answered after it)."""
        buf = request.streamed
        assert buf is not None
        send, receive = trio.open_memory_channel[bytes](0)  # the back-pressure: no buffer
        body = BodyStream(receive)
        request.body_stream = body
        refusal: list[HttpError] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed_body, stream, reader, timer, buf, send, body, requests,
                               refusal, self._limits.body_idle_timeout,
                               self._limits.write_timeout)
            response = await self._call(request)
            nursery.cancel_scope.cancel()  # answered: whatever is unread stays unread
        timer.phase, timer.at = "answer", math.inf
        if refusal and not buf.complete:  # the body itself was refused (413, bad chunking)
            err = refusal[0]
            return problem_response(err.status, _TITLES.get(err.status, "Bad Request"),
                                    err.detail, close=True), None
        if not (buf.complete and body.drained):
            response = replace(response, close=True)  # the rest of the body is on the wire
        return response, refusal[0] if refusal else None

    def _independent_run(self, requests: list[Request], i: int) -> int:
        """How many requests from ``i`` on the application may handle together (its
        ``independent`` predicate), stopping after one that ends the connection."""
        n = 0
        independent = self._independent
        assert independent is not None
        for request in requests[i:i + MAX_TOGETHER]:
            if not independent(request):
                break
            n += 1
            if not request.keep_alive:
                break
        return n

    async def _call_many(self, requests: list[Request]) -> list[Response]:
        if self.in_flight + len(requests) > self._limits.max_in_flight:
            return [await self._call(r) for r in requests]  # each refused or served alone
        self.in_flight += len(requests)
        try:
            answers = await self._app_many(requests)  # type: ignore[misc]
            if len(answers) != len(requests):  # pragma: no cover - an application bug
                raise RuntimeError("call_many answered a different number of requests")
            return answers
        except Exception:
            logger.exception("request handler crashed: %d pipelined requests", len(requests))
            return [problem_response(500, "Internal Server Error",
                                     "the server failed to handle the request")
                    for _ in requests]
        finally:
            self.in_flight -= len(requests)

    async def _call(self, request: Request) -> Response:
        if self.in_flight >= self._limits.max_in_flight:
            self.refused_requests += 1
            return problem_response(503, "Service Unavailable", "too many requests in flight",
                                    retry_after=self._limits.retry_after)
        self.in_flight += 1
        try:
            return await self._app(request)
        except BodyIncomplete as exc:  # a streamed body the client did not finish
            return problem_response(400, "Bad Request", f"the request body is incomplete: {exc}",
                                    close=True)
        except Exception:
            logger.exception("request handler crashed: %s %s", request.method, request.path)
            return problem_response(500, "Internal Server Error",
                                    "the server failed to handle the request")
        finally:
            self.in_flight -= 1

    async def _send(self, stream: trio.SocketStream, timer: _Timer, response: Response,
                    *, keep_alive: bool, head_only: bool = False) -> None:
        date = self._dates.get()
        if response.stream is None:
            await self._write(stream, timer, response_bytes(
                response, date=date, keep_alive=keep_alive, head_only=head_only))
            return
        await self._write(stream, timer, head_bytes(response, date=date, keep_alive=keep_alive,
                                                    chunked=True))
        if head_only:
            return
        try:
            async for piece in response.stream:
                if piece:
                    await self._write(stream, timer, chunk(piece))
        except Exception as exc:
            # Headers are gone already: the only honest signal left is an unterminated body.
            logger.exception("streamed response failed: %s", type(exc).__name__)
            raise trio.BrokenResourceError("stream failed") from exc
        await self._write(stream, timer, LAST_CHUNK)

    async def _write(self, stream: trio.SocketStream, timer: _Timer, data: bytes) -> None:
        """Send under the write deadline (the connection's timer; cleared afterwards so that
        the application's own work is never cut short by it). What the kernel takes at once
        needs no deadline (and no clock reading)."""
        rest = _send_nowait(stream, data)
        if rest:
            timer.at = trio.current_time() + self._limits.write_timeout
            await _send(stream, rest)
        timer.at = math.inf
