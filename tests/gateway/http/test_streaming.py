"""Streamed request bodies through the real server on 127.0.0.1: routes the application names
get their body as chunks it pulls (back-pressure), with their own size limit and a per-receive
idle deadline instead of the whole-request one; every other route keeps the whole body and
``max_body_bytes``.

Slow-client tests use short configured deadlines (tenths of a second), as test_server.py does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from gateway.http import BodyIncomplete, HttpServer, Request, Response, ServerLimits
from gateway.http._protocol import BodyBuffer, ReaderLimits, RequestReader

MIB = 1024 * 1024


class StreamApp:
    """``/up*`` streams (``/up-hold`` waits for ``release`` after its first chunk,
    ``/up-early`` answers without reading); every other path gets its body whole."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.first = trio.Event()
        self.received = 0
        self.outcome: str = ""
        self.whole: list[int] = []

    def streaming(self, method: bytes, target: bytes, headers: dict[str, str]) -> bool:
        return target.startswith(b"/up")

    async def __call__(self, request: Request) -> Response:
        if request.body_stream is None:
            self.whole.append(len(request.body))
            return Response(200, json.dumps({"n": len(request.body)}).encode())
        if request.path == "/up-early":
            return Response(404, b'{"no":"such"}')
        digest = hashlib.sha256()
        chunks = got = 0
        try:
            async for piece in request.body_stream:
                digest.update(piece)
                chunks += 1
                got += len(piece)
                self.received += len(piece)
                if request.path == "/up-hold" and chunks == 1:
                    self.first.set()
                    await self.release.wait()
        except BodyIncomplete:
            self.outcome = "incomplete"
            raise
        self.outcome = "complete"
        return Response(200, json.dumps({"n": got, "sha": digest.hexdigest(),
                                         "chunks": chunks}).encode())


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def _serve(nursery: trio.Nursery, **limits: float) -> tuple[int, StreamApp, HttpServer]:
    app = StreamApp()
    server = HttpServer(app, ServerLimits(**limits))  # type: ignore[arg-type]
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    return port, app, server


async def _read_all(stream: trio.SocketStream, timeout: float = 10.0) -> bytes:
    out = b""
    with trio.fail_after(timeout):
        try:
            while data := await stream.receive_some(65536):
                out += data
        except trio.BrokenResourceError:
            pass
    return out


def _blob(n: int) -> bytes:
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


async def test_a_body_far_over_max_body_bytes_streams_with_content_length(
        nursery: trio.Nursery) -> None:
    port, app, _ = await _serve(nursery)
    body = _blob(8 * MIB)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        r = await c.post("/up", content=body)
        assert r.status_code == 200
        assert r.json()["n"] == len(body)
        assert r.json()["sha"] == hashlib.sha256(body).hexdigest()
        assert r.json()["chunks"] > 8  # handed over as it came, not as one piece
        # the same connection goes on: other routes keep the whole body and its limit
        assert (await c.post("/other", content=b"x" * 1000)).json() == {"n": 1000}
        r = await c.post("/other", content=_blob(2 * MIB))
        assert r.status_code == 413
        assert app.whole == [1000]


async def test_a_chunked_body_streams(nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(300):
            yield _blob(10_000 + i)

    expected = b"".join(_blob(10_000 + i) for i in range(300))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        r = await c.post("/up", content=pieces())  # no length: Transfer-Encoding: chunked
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert r.status_code == 200
        assert r.json()["n"] == len(expected)
        assert r.json()["sha"] == hashlib.sha256(expected).hexdigest()


async def test_the_connection_reads_only_as_fast_as_the_handler_consumes(
        nursery: trio.Nursery) -> None:
    port, app, _ = await _serve(nursery)
    total = 64 * MIB
    sent = 0
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up-hold HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % total)
    piece = _blob(MIB)

    async def send() -> None:
        nonlocal sent
        for _ in range(total // MIB):
            await stream.send_all(piece)
            sent += len(piece)

    async with trio.open_nursery() as n:
        n.start_soon(send)
        await app.first.wait()
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        # The handler holds its first chunk: the server stopped reading, so the client is
        # stuck once the kernel's socket buffers are full, far short of the body.
        assert app.received <= 65536
        assert sent < total // 4
        app.release.set()
        data = b""
        with trio.fail_after(30):
            while b"\r\n\r\n{" not in data or not data.endswith(b"}"):
                data += await stream.receive_some(65536)
    assert sent == total and app.received == total
    assert data.startswith(b"HTTP/1.1 200")


async def test_a_slow_client_is_not_cut_by_the_request_deadline(nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery, request_timeout=0.3, body_idle_timeout=1.0)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
    for _ in range(6):  # 0.6 s in all, twice the request deadline; 0.1 s between receives
        await trio.sleep(0.1)
        await stream.send_all(b"ab")
    data = await _read_all_one(stream)
    assert data.startswith(b"HTTP/1.1 200")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["n"] == 12


async def _read_all_one(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while not data.endswith(b"}"):
            data += await stream.receive_some(65536)
    return data


async def test_a_stalled_body_is_cut_after_the_idle_deadline(nursery: trio.Nursery) -> None:
    port, _, server = await _serve(nursery, body_idle_timeout=0.3)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789")
    started = trio.current_time()
    data = await _read_all(stream)
    assert data.startswith(b"HTTP/1.1 408")
    assert b"no body bytes arrived for 0.3 s" in data
    assert 0.25 < trio.current_time() - started < 2.0
    assert server.timeouts == 1


async def test_a_connection_dropped_mid_body_raises_body_incomplete(
        nursery: trio.Nursery) -> None:
    port, app, server = await _serve(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"a\r\n0123456789\r\n")
    with trio.fail_after(5):
        while app.received < 10:
            await trio.sleep(0.01)
    await stream.aclose()
    with trio.fail_after(5):
        while app.outcome != "incomplete" or server.connections:
            await trio.sleep(0.01)


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_streamed_body_over_its_limit_is_413_naming_the_limit(
        nursery: trio.Nursery, chunked: bool) -> None:
    port, app, _ = await _serve(nursery, max_stream_bytes=3 * MIB)
    body = _blob(4 * MIB)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        try:
            r = await c.post("/up", content=pieces() if chunked else body)
        except httpx.TransportError:  # pragma: no cover - the refusal lost to a reset
            pytest.fail("the 413 did not reach the client")
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == f"body larger than {3 * MIB} bytes"
    if not chunked:
        assert app.received == 0  # refused from the declared length, before any byte
    else:
        assert app.outcome == "incomplete" and app.received <= 3 * MIB


async def test_an_answer_before_the_body_is_read_closes_the_connection(
        nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        r = await c.post("/up-early", content=_blob(8 * MIB))  # beyond the socket buffers
    assert r.status_code == 404
    assert r.headers["connection"] == "close"


async def test_requests_pipelined_behind_a_streamed_body_are_answered_in_order(
        nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                          b"POST /other HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                          b"POST /up HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    data = await _read_all(stream)
    bodies = [json.loads(part.partition(b"\r\n\r\n")[2].split(b"HTTP/1.1")[0])
              for part in data.split(b"HTTP/1.1 200")[1:]]
    assert [b["n"] for b in bodies] == [5, 3, 2]


def test_reader_hands_a_streamed_request_over_at_its_headers() -> None:
    reader = RequestReader(ReaderLimits(max_body_bytes=10, max_stream_bytes=100),
                           lambda method, target, headers: target.startswith(b"/s?"))
    (head,) = reader.feed(b"POST /s?x=1 HTTP/1.1\r\nContent-Length: 50\r\n\r\n0123")
    assert (head.path, head.query, head.body) == ("/s", "x=1", b"")
    buf = head.streamed
    assert isinstance(buf, BodyBuffer)
    assert buf.take() == [b"0123"] and not buf.complete and reader.in_progress
    assert reader.feed(b"4" * 46 + b"GET /n HTTP/1.1\r\n\r\n")[0].path == "/n"
    assert buf.size == 50 and buf.complete and buf.take() == [b"4" * 46]
    assert not reader.in_progress


async def test_100_continue_is_sent_when_the_handler_asks_for_the_body(
        nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up HTTP/1.1\r\nContent-Length: 4\r\n"
                          b"Expect: 100-continue\r\n\r\n")
    with trio.fail_after(5):
        assert await stream.receive_some(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
    await stream.send_all(b"abcd")
    data = await _read_all_one(stream)
    assert data.startswith(b"HTTP/1.1 200") and b'"n": 4' in data


async def test_an_answer_without_reading_the_body_spares_the_client_the_upload(
        nursery: trio.Nursery) -> None:
    port, _, _ = await _serve(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /up-early HTTP/1.1\r\nContent-Length: 100000000\r\n"
                          b"Expect: 100-continue\r\n\r\n")
    data = await _read_all(stream)
    assert data.startswith(b"HTTP/1.1 404")  # no 100 Continue before it
    assert b"100 Continue" not in data and b"connection: close" in data
