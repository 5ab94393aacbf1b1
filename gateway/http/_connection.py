"""The connection loop of the HTTP/1.1 server: read, answer in order, write.

Each connection is one task: receive bytes (under a deadline), feed the sans-IO
:class:`~gateway.http._protocol.RequestReader`, hand each completed request to the
application in order, write the answers. Pipelined requests that arrive together are answered
together in one write; a run of them that the application declares independent
(``app.independent(request)``, with ``app.call_many(requests)``) is handed to it in one call,
so that it can commit them together. The deadlines (idle, request, write, body) are one
:class:`~gateway.http._io.Timer` per connection, enforced by gateway.http.server's watchdog;
this loop only moves them (a float assignment: no cancel scope per request).

Streamed bodies. An application may name requests whose body it reads as a stream
(``app.streaming(method, target, headers) -> bool``, raw method and target bytes, asked when
a request's headers are complete; e.g. a campaign's recipient upload). Such a request is
handed to the application at once, with ``request.body_stream``, an async iterator of body
chunks (gateway.http._streamed); a second task of the connection reads the socket only when the application has taken every chunk parsed so far (a
zero-capacity channel between them), so the connection holds at most one receive of the body
however large it is, and a slow consumer slows the client down through TCP. The body is
bounded by ``max_stream_bytes`` (413 naming it, declared or counted) instead of
``max_body_bytes``; the whole-request deadline covers only its head, and while the body comes
in each receive must arrive within ``body_idle_timeout`` (408 otherwise). A client that goes
away mid-body makes the iterator raise :class:`BodyIncomplete`. An application that answers
before reading the whole body gets its answer sent with ``Connection: close``.

:class:`ConnectionLoop` is a mixin of :class:`gateway.http.server.HttpServer` (the loop reads
the server's limits and counters on every request: plain attributes, no indirection).

Must not import: gateway.api, gateway.http.server.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import trio

from gateway.http._io import Timer
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

if TYPE_CHECKING:
    from gateway.http.server import ServerLimits

logger = logging.getLogger(__name__)

MAX_TOGETHER: Final = 256  # pipelined requests an application may handle in one call_many
_SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})


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


class DateCache:
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


class ConnectionLoop:
    """The per-connection methods of the server (see the module docstring)."""

    _app: Callable[[Request], Awaitable[Response]]
    _app_many: Callable[[list[Request]], Awaitable[list[Response]]] | None
    _independent: Callable[[Request], bool] | None
    _streaming: Callable[[bytes, bytes, dict[str, str]], bool] | None
    _limits: ServerLimits
    _reader_limits: ReaderLimits
    _dates: DateCache
    _timers: set[Timer]
    in_flight: int
    refused_requests: int
    timeouts: int
    draining: bool

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """Read, answer, repeat. One cancel scope per connection, and a :class:`Timer`
        carrying whichever deadline applies now (idle, request, write; none while the
        application works), so a request costs no scope of its own; when the watchdog cancels
        the scope, ``timer.phase`` says which deadline it was."""
        lim = self._limits
        reader = RequestReader(self._reader_limits, self._streaming)
        with trio.CancelScope() as scope:
            timer = Timer(scope)
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
                              timer: Timer) -> None:
        """The loop of :meth:`_serve_connection`; ``timer.phase`` says where it was when it
        ended or was cancelled."""
        lim = self._limits
        fd = stream.socket.fileno()
        started = 0.0
        while True:
            now = trio.current_time()
            if reader.in_progress:
                timer.phase, timer.at = "request", started + lim.request_timeout
            else:
                if self.draining:
                    return
                timer.phase, timer.at = "idle", now + lim.idle_timeout
                # (drain() closes a connection whose timer is in this phase at once)
            data = await _receive(fd)
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

    async def _answer(self, stream: trio.SocketStream, timer: Timer,
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
                             timer: Timer, request: Request, requests: list[Request]
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
            assert self._app_many is not None  # (a run is only formed when it exists)
            answers = await self._app_many(requests)
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

    async def _send(self, stream: trio.SocketStream, timer: Timer, response: Response,
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

    async def _write(self, stream: trio.SocketStream, timer: Timer, data: bytes) -> None:
        """Send under the write deadline (the connection's timer; cleared afterwards so that
        the application's own work is never cut short by it). What the kernel takes at once
        needs no deadline (and no clock reading)."""
        fd = stream.socket.fileno()
        rest = _send_nowait(fd, data)
        if rest:
            timer.at = trio.current_time() + self._limits.write_timeout
            await _send(fd, rest)
        timer.at = math.inf
