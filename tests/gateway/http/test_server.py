"""The trio HTTP server over real sockets on 127.0.0.1: keep-alive, pipelining and every limit.

Slow-client tests use short configured deadlines (tenths of a second), not long sleeps.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from gateway.http import HttpServer, Request, Response, ServerLimits


class App:
    """A tiny application: /slow waits for ``release``; /crash raises; others echo."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.calls = 0

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        if request.path == "/slow":
            await self.release.wait()
        if request.path == "/crash":
            raise RuntimeError("secret internal detail")
        return Response(200, json.dumps({"path": request.path, "n": len(request.body)}).encode())


async def _serve(nursery: trio.Nursery, limits: ServerLimits) -> tuple[int, App, HttpServer]:
    app = App()
    server = HttpServer(app, limits)
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    return port, app, server


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def _read_all(stream: trio.SocketStream, timeout: float = 5.0) -> bytes:
    """Everything until the server closes the connection."""
    out = b""
    with trio.fail_after(timeout):
        while data := await stream.receive_some(65536):
            out += data
    return out


async def _read_responses(stream: trio.SocketStream, n: int) -> bytes:
    out = b""
    with trio.fail_after(5):
        while out.count(b"HTTP/1.1 ") < n or not out.endswith(b"}"):
            out += await stream.receive_some(65536)
    return out


async def test_keep_alive_and_pipelining(nursery: trio.Nursery) -> None:
    port, _app, server = await _serve(nursery, ServerLimits())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /a HTTP/1.1\r\n\r\n")
    first = await _read_responses(stream, 1)
    await stream.send_all(b"GET /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                          b"GET /d HTTP/1.1\r\n\r\n")
    rest = await _read_responses(stream, 3)
    assert b'"/a"' in first
    assert [p for p in (b'"/b"', b'"/c"', b'"/d"') if p in rest] == [b'"/b"', b'"/c"', b'"/d"']
    assert rest.index(b'"/b"') < rest.index(b'"/c"') < rest.index(b'"/d"')
    assert server.statistics()["connections"] == 1
    await stream.aclose()


async def test_httpx_reuses_one_connection(nursery: trio.Nursery) -> None:
    port, _app, server = await _serve(nursery, ServerLimits())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        for i in range(5):
            r = await c.post("/x", content=b"a" * i)
            assert r.json() == {"path": "/x", "n": i}
        assert server.statistics()["connections"] == 1


async def test_http_10_connection_is_closed_after_the_answer(nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery, ServerLimits())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /old HTTP/1.0\r\n\r\n")
    data = await _read_all(stream)
    assert data.startswith(b"HTTP/1.1 200") and b"connection: close" in data


async def test_body_trickled_one_byte_at_a_time_is_cut_off(nursery: trio.Nursery) -> None:
    port, app, _ = await _serve(nursery, ServerLimits(request_timeout=0.5))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
    started = trio.current_time()

    async def trickle() -> None:
        try:
            for _ in range(100):
                await stream.send_all(b"x")
                await trio.sleep(0.1)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as n:
        n.start_soon(trickle)
        data = await _read_all(stream)
        n.cancel_scope.cancel()
    elapsed = trio.current_time() - started
    assert data.startswith(b"HTTP/1.1 408")
    assert b"application/problem+json" in data
    assert 0.4 < elapsed < 1.5
    assert app.calls == 0


async def test_slow_headers_are_cut_off_too(nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery, ServerLimits(request_timeout=0.3, idle_timeout=5))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\nX-A: 1\r\n")  # never finished
    data = await _read_all(stream)
    assert data.startswith(b"HTTP/1.1 408")


async def test_idle_keep_alive_connection_is_closed(nursery: trio.Nursery) -> None:
    port, _, _server = await _serve(nursery, ServerLimits(idle_timeout=0.3))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /a HTTP/1.1\r\n\r\n")
    started = trio.current_time()
    data = await _read_all(stream)
    assert data.startswith(b"HTTP/1.1 200")  # answered, then closed when idle
    assert 0.2 < trio.current_time() - started < 2
    silent = await trio.open_tcp_stream("127.0.0.1", port)
    assert await _read_all(silent) == b""


async def test_connections_beyond_the_maximum_get_503(nursery: trio.Nursery) -> None:
    port, _, server = await _serve(nursery, ServerLimits(max_connections=2, retry_after=3))
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    for s in held:  # make sure both are being served
        await s.send_all(b"GET / HTTP/1.1\r\n\r\n")
        await _read_responses(s, 1)
    extra = await trio.open_tcp_stream("127.0.0.1", port)
    data = await _read_all(extra)
    assert data.startswith(b"HTTP/1.1 503") and b"retry-after: 3" in data
    assert server.statistics()["refused_connections"] == 1
    await held[0].aclose()
    with trio.fail_after(2):
        while server.statistics()["connections"] > 1:
            await trio.sleep(0.01)
    again = await trio.open_tcp_stream("127.0.0.1", port)
    await again.send_all(b"GET / HTTP/1.1\r\n\r\n")
    assert (await _read_responses(again, 1)).startswith(b"HTTP/1.1 200")


async def test_requests_beyond_max_in_flight_get_503(nursery: trio.Nursery) -> None:
    port, app, _ = await _serve(nursery, ServerLimits(max_in_flight=1))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        results: list[int] = []

        async def slow() -> None:
            results.append((await c.get("/slow")).status_code)

        async with trio.open_nursery() as n:
            n.start_soon(slow)
            with trio.fail_after(2):
                while app.calls == 0:
                    await trio.sleep(0.01)
            refused = await c.get("/fast")
            app.release.set()
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert results == [200]


async def test_a_crashing_handler_answers_500_without_details(nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery, ServerLimits())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        r = await c.get("/crash")
        after = await c.get("/fine")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert after.status_code == 200  # the connection and server live on


@pytest.mark.parametrize(("raw", "status"), [
    (b"POST /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
    (b"GET /x HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(20)) + b"\r\n", 431),
    (b"GET /x HTTP/1.1\r\nX: " + b"v" * 5000 + b"\r\n\r\n", 431),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
])
async def test_protocol_refusals_answer_a_problem_and_close(nursery: trio.Nursery, raw: bytes,
                                                            status: int) -> None:
    port, app, _ = await _serve(nursery, ServerLimits(max_body_bytes=1000, max_header_count=10,
                                                      max_header_bytes=4096))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(raw)
    data = await _read_all(stream)
    assert data.startswith(b"HTTP/1.1 %d" % status)
    assert b"application/problem+json" in data and b"connection: close" in data
    assert app.calls == 0


async def test_huge_body_via_httpx_is_refused(nursery: trio.Nursery) -> None:
    port, app, _ = await _serve(nursery, ServerLimits(max_body_bytes=1024 * 1024))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        try:
            r = await c.post("/x", content=b"x" * (2 * 1024 * 1024))
            assert r.status_code == 413
        except httpx.WriteError:
            pass  # the server may close before the client has written everything
    assert app.calls == 0


async def test_expect_100_continue(nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery, ServerLimits())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    with trio.fail_after(2):
        interim = await stream.receive_some(1024)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    await stream.send_all(b"ok")
    assert b'"n": 2' in await _read_responses(stream, 1)


async def test_many_simultaneous_connections_are_all_served(nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery, ServerLimits())
    ok = 0

    async def one() -> None:
        nonlocal ok
        s = await trio.open_tcp_stream("127.0.0.1", port)
        await s.send_all(b"GET / HTTP/1.1\r\n\r\n")
        if (await _read_responses(s, 1)).startswith(b"HTTP/1.1 200"):
            ok += 1
        await s.aclose()

    async with trio.open_nursery() as n:
        for _ in range(200):
            n.start_soon(one)
    assert ok == 200


async def test_streamed_answer_is_chunked(nursery: trio.Nursery) -> None:
    async def stream_app(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield b"row%d\n" % i
        return Response(200, content_type="text/csv", stream=chunks())

    server = HttpServer(stream_app, ServerLimits())
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        r = await c.get("/")
        again = await c.get("/")
    assert r.text == "row0\nrow1\nrow2\n" and r.headers["transfer-encoding"] == "chunked"
    assert again.text == r.text


def test_server_limits_mirror_http_config() -> None:
    from dataclasses import fields

    from gateway.config import HttpConfig
    limits = {f.name for f in fields(ServerLimits)}
    assert limits <= {f.name for f in fields(HttpConfig)}
    assert ServerLimits().max_body_bytes == HttpConfig().max_body_bytes == 1024 * 1024
    assert HttpConfig().backlog >= 1024




async def test_drain_finishes_requests_in_progress_and_closes_idle_ones() -> None:
    app = App()
    server = HttpServer(app, ServerLimits())
    async with trio.open_nursery() as n:
        port = await n.start(server.serve, "127.0.0.1", 0)
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        await busy.send_all(b"GET /slow HTTP/1.1\r\n\r\n")
        with trio.fail_after(2):
            while app.calls == 0:
                await trio.sleep(0.01)
        server.drain(grace=5)
        assert await _read_all(idle) == b""  # idle: closed at once
        app.release.set()
        answer = await _read_all(busy)  # busy: answered, then closed
        assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer
        with trio.fail_after(2):
            await server.stopped.wait()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)  # no longer listening


async def test_a_slow_handler_is_not_cut_by_the_idle_deadline(nursery: trio.Nursery) -> None:
    port, app, _ = await _serve(nursery, ServerLimits(idle_timeout=0.2, request_timeout=0.2))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /slow HTTP/1.1\r\n\r\n")
    await trio.sleep(0.5)  # longer than both deadlines: the application is still working
    app.release.set()
    assert (await _read_responses(stream, 1)).startswith(b"HTTP/1.1 200")


async def test_a_client_that_stops_reading_is_dropped(nursery: trio.Nursery) -> None:
    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * 65536
        return Response(200, content_type="text/csv", stream=chunks())

    server = HttpServer(endless, ServerLimits(write_timeout=0.3))
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")  # ... and never read
    with trio.fail_after(10):
        while server.statistics()["connections"]:
            await trio.sleep(0.05)
    assert server.statistics()["timeouts"] == 1
