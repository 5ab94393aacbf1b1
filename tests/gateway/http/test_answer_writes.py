"""Answer writes and idle connections after the issue-9 fast paths (real sockets, 127.0.0.1).

An answer is first written without a deadline (what the kernel takes at once cannot hang);
the write deadline must still hold for the rest of a large answer, and the rest must arrive
whole. drain() finds idle connections by their timer's phase, also after answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from gateway.http import HttpServer, Request, Response, ServerLimits

BIG = 8 * 1024 * 1024  # far more than a loopback socket's buffers


async def _big(request: Request) -> Response:
    return Response(200, b"x" * BIG, content_type="text/plain")


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def test_issue_9_a_large_answer_to_a_client_that_stops_reading_is_dropped(
        nursery: trio.Nursery) -> None:
    server = HttpServer(_big, ServerLimits(write_timeout=0.3))
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")  # ... and never read
    with trio.fail_after(10):
        while server.statistics()["connections"]:
            await trio.sleep(0.05)
    assert server.statistics()["timeouts"] == 1


async def test_issue_9_a_large_answer_arrives_whole_then_the_next(nursery: trio.Nursery) -> None:
    server = HttpServer(_big, ServerLimits())
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    for _ in range(2):  # keep-alive: the second answer follows the first on the same connection
        await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < BIG:
                data += await stream.receive_some(1 << 20)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % BIG in head
        assert body == b"x" * BIG
    assert server.statistics()["timeouts"] == 0


async def test_issue_9_drain_closes_a_connection_idle_after_its_answers() -> None:
    async def ok(request: Request) -> Response:
        return Response(200, b"{}")

    server = HttpServer(ok, ServerLimits())
    async with trio.open_nursery() as n:
        port = await n.start(server.serve, "127.0.0.1", 0)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /a HTTP/1.1\r\n\r\n")
        with trio.fail_after(5):
            data = await stream.receive_some(65536)
        assert data.startswith(b"HTTP/1.1 200") and b"connection: close" not in data
        await trio.testing.wait_all_tasks_blocked()  # the connection waits for its next request
        server.drain(grace=5)
        with trio.fail_after(2):
            assert await stream.receive_some(65536) == b""  # closed at once, not after grace
            await server.stopped.wait()
