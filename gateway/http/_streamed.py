"""Streamed request bodies on the server side: the handler's async iterator
(:class:`BodyStream`, ``request.body_stream``) and the task that feeds it from the socket with
back-pressure (:func:`feed_body`). See gateway.http.server, "Streamed bodies".

Must not import: gateway.api, gateway.http.server.
"""

from __future__ import annotations

import math

import trio

from gateway.http._io import Timer, receive, send
from gateway.http._protocol import (
    CONTINUE,
    BodyBuffer,
    BodyIncomplete,
    HttpError,
    Request,
    RequestReader,
)


class BodyStream:
    """``request.body_stream`` of a streamed request: the body's chunks as the handler pulls
    them (``async for chunk in request.body_stream``). Raises :class:`BodyIncomplete` when
    the body ends before its last byte."""

    __slots__ = ("_receive", "drained", "error", "wanted")

    def __init__(self, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        self._receive = receive
        self.error: BodyIncomplete | None = None
        self.drained = False  # the feeder handed over the last chunk
        self.wanted = trio.Event()  # the handler asked for the body

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        self.wanted.set()
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self.error is not None:
                raise self.error from None
            raise StopAsyncIteration from None


async def feed_body(stream: trio.SocketStream, reader: RequestReader, timer: Timer,
                    buf: BodyBuffer, chunks: trio.MemorySendChannel[bytes], body: BodyStream,
                    requests: list[Request], refusal: list[HttpError], idle: float,
                    write_timeout: float) -> None:
    """Hand the parsed chunks of ``buf`` to the handler one at a time through ``chunks`` (no
    buffer: each waits until the handler takes it), and read the socket only when it has taken
    them all, each receive within ``idle`` seconds (the connection's ``timer``). A client
    waiting for ``100 Continue`` gets it when the handler first asks for more than arrived
    with the head. Requests pipelined behind the body join ``requests``; a refusal goes to
    ``refusal``; a body that ends early sets ``body.error``."""
    fd = stream.socket.fileno()
    async with chunks:
        while True:
            for piece in buf.take():
                await chunks.send(piece)
            if buf.complete:
                body.drained = True
                return
            if buf.expect_continue:
                buf.expect_continue = False
                await body.wanted.wait()  # not before the handler asks for the body
                timer.phase, timer.at = "write", trio.current_time() + write_timeout
                await send(fd, CONTINUE)
            timer.phase, timer.at = "body", trio.current_time() + idle
            try:
                data = await receive(fd)
            except trio.BrokenResourceError:
                data = b""
            timer.phase, timer.at = "answer", math.inf
            if not data:
                body.error = BodyIncomplete(f"the connection closed after {buf.size} body bytes")
                return
            try:
                requests.extend(reader.feed(data))
            except HttpError as err:
                refusal.append(err)
                requests.extend(err.completed)
                if not buf.complete:
                    body.error = BodyIncomplete(err.detail)
                    return
