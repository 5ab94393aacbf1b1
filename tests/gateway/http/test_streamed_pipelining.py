"""``Expect: 100-continue`` on a request pipelined behind another, through the real server on
127.0.0.1: its ``100 Continue`` comes after the answers to the requests ahead of it (a client
takes an interim response as belonging to its oldest unanswered request, RFC 9112 §9.3.2),
and comes at all when the head arrived behind a streamed body, whose feeder (not the request
loop) read those bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from gateway.http import HttpServer, Request, Response, ServerLimits


class App:
    """``/up`` streams its body (``reading`` is set when it starts); every other path gets
    its body whole. Answers the size."""

    def __init__(self) -> None:
        self.reading = trio.Event()

    def streaming(self, method: bytes, target: bytes, headers: dict[str, str]) -> bool:
        return target.startswith(b"/up")

    async def __call__(self, request: Request) -> Response:
        n = len(request.body)
        if request.body_stream is not None:
            self.reading.set()
            async for piece in request.body_stream:
                n += len(piece)
        return Response(200, b'{"n": %d}' % n)


@pytest.fixture
async def app() -> App:
    return App()


@pytest.fixture
async def port(app: App) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(HttpServer(app, ServerLimits()).serve, "127.0.0.1", 0)
        nursery.cancel_scope.cancel()


async def _until(stream: trio.SocketStream, marker: bytes, seen: bytes = b"") -> bytes:
    with trio.fail_after(3):  # the request deadline (10 s) would answer 408 much later
        while marker not in seen:
            data = await stream.receive_some(65536)
            assert data, seen
            seen += data
    return seen


NEXT = b"POST /other HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"


@pytest.mark.parametrize("path", [b"/up", b"/whole"])
async def test_a_pipelined_100_continue_follows_the_answer_ahead_of_it(
        port: int, path: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST " + path + b" HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello" + NEXT)
    seen = await _until(stream, b"100 Continue")
    assert seen.startswith(b"HTTP/1.1 200") and b'{"n": 5}' in seen
    await stream.send_all(b"abc")
    assert b'{"n": 3}' in await _until(stream, b'{"n": 3}', seen)


async def test_an_expect_continue_read_by_a_streamed_bodys_feeder_gets_its_100(
        port: int, app: App) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
    await app.reading.wait()  # the handler reads the body: the feeder reads what follows
    await stream.send_all(b"hello" + NEXT)
    seen = await _until(stream, b"100 Continue")
    assert seen.startswith(b"HTTP/1.1 200") and b'{"n": 5}' in seen
    await stream.send_all(b"abc")
    assert b'{"n": 3}' in await _until(stream, b'{"n": 3}', seen)
