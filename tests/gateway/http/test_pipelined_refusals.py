"""A valid request pipelined ahead of a refused one (garbage, an oversized header) in the same
packet is answered first, in order; then the refusal; then the connection closes
(RFC 9112 §9.3.2: responses in request order)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio

from gateway.http import HttpServer, Request, Response, ServerLimits
from gateway.http._protocol import HttpError, ReaderLimits, RequestReader
from tests.gateway.http.conftest import served  # noqa: F401

GARBAGE = b"\x00garbage\r\n\r\n"


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def _post(key: str, body: dict) -> bytes:
    raw = json.dumps(body).encode()
    return (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
            ).encode() + raw


async def _until_closed(port: int, data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Send ``data`` in one write; read until the server closes; the responses as
    (status, lower-cased head, body), in the order they came."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        buf = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                buf += chunk
    out = []
    while buf:
        head, rest = buf.split(b"\r\n\r\n", 1)
        head = head.lower()
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        out.append((int(head[9:12]), head, rest[:length]))
        buf = rest[length:]
    return out


class App:
    """Echoes the path; optionally handles independent runs together (like the v1 API)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request.path)
        return Response(200, json.dumps({"path": request.path}).encode())


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def _serve(nursery: trio.Nursery, app: App, **limits: int) -> int:
    server = HttpServer(app, ServerLimits(**limits))
    return await nursery.start(server.serve, "127.0.0.1", 0)


def test_reader_keeps_the_requests_completed_before_a_malformed_one() -> None:
    reader = RequestReader(ReaderLimits())
    with pytest.raises(HttpError) as info:
        reader.feed(_get("/a") + _get("/b") + GARBAGE)
    assert info.value.status == 400
    assert [r.path for r in info.value.completed] == ["/a", "/b"]


def test_reader_keeps_the_requests_completed_before_an_oversized_header() -> None:
    reader = RequestReader(ReaderLimits(max_header_bytes=1024))
    with pytest.raises(HttpError) as info:
        reader.feed(_get("/a") + _get("/b", "X-Big: " + "a" * 4000 + "\r\n"))
    assert info.value.status == 431
    assert [r.path for r in info.value.completed] == ["/a"]


async def test_healthz_then_garbage_answers_200_then_400_then_closes(served) -> None:  # noqa: F811
    answers = await _until_closed(served.port, _get("/healthz") + GARBAGE)
    assert [a[0] for a in answers] == [200, 400]
    assert b"connection: close" in answers[1][1]


async def test_pipelined_submissions_then_garbage_are_accepted_then_400(served) -> None:  # noqa: F811
    key = served.keys["alpha"]
    good = {"to": "+351912345678", "from": "Septet", "text": "hi"}
    answers = await _until_closed(served.port, _post(key, good) * 2 + GARBAGE)
    assert [a[0] for a in answers] == [202, 202, 400]
    assert json.loads(answers[0][2])["id"] != json.loads(answers[1][2])["id"]
    assert served.message_count() == 2


async def test_request_then_oversized_header_answers_it_then_431(nursery: trio.Nursery) -> None:
    app = App()
    port = await _serve(nursery, app, max_header_bytes=1024)
    big = _get("/big", "X-Big: " + "a" * 4000 + "\r\n")
    answers = await _until_closed(port, _get("/a") + big)
    assert [a[0] for a in answers] == [200, 431]
    assert json.loads(answers[0][2]) == {"path": "/a"}
    assert app.seen == ["/a"]


async def test_request_then_too_many_headers_answers_it_then_431(nursery: trio.Nursery) -> None:
    app = App()
    port = await _serve(nursery, app, max_header_count=8)
    many = _get("/many", "".join(f"X-{i}: v\r\n" for i in range(20)))
    answers = await _until_closed(port, _get("/a") + _get("/b") + many)
    assert [a[0] for a in answers] == [200, 200, 431]
    assert app.seen == ["/a", "/b"]


async def test_a_closing_request_before_garbage_ends_the_connection_without_400(
        nursery: trio.Nursery) -> None:
    app = App()
    port = await _serve(nursery, app)
    answers = await _until_closed(port, _get("/a", "Connection: close\r\n") + GARBAGE)
    assert [a[0] for a in answers] == [200]
    assert b"connection: close" in answers[0][1]
