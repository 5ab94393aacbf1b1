"""The sans-IO request reader and the response writer, without sockets."""

from __future__ import annotations

import pytest

from gateway.http._protocol import (
    HttpError,
    ReaderLimits,
    RequestReader,
    Response,
    chunk,
    head_bytes,
    response_bytes,
)

GET = b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"


def post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def test_pipelined_requests_come_out_together_in_order() -> None:
    reader = RequestReader(ReaderLimits())
    done = reader.feed(GET + post(b"{}") + GET)
    assert [(r.method, r.path, r.query, r.body) for r in done] == [
        ("GET", "/healthz", "x=1", b""), ("POST", "/v1/messages", "", b"{}"),
        ("GET", "/healthz", "x=1", b"")]
    assert all(r.keep_alive for r in done) and not reader.in_progress


def test_a_request_split_anywhere_is_reassembled() -> None:
    data = post(b'{"a": 1}', b"X-A: 1\r\n")
    for cut in range(1, len(data)):
        reader = RequestReader(ReaderLimits())
        assert reader.feed(data[:cut]) == []
        assert reader.in_progress
        (req,) = reader.feed(data[cut:])
        assert req.body == b'{"a": 1}' and req.header("x-a") == "1"


def test_repeated_headers_are_joined_and_names_lowercased() -> None:
    (req,) = RequestReader(ReaderLimits()).feed(
        b"GET / HTTP/1.1\r\nAccept: a\r\nACCEPT: b\r\n\r\n")
    assert req.headers["accept"] == "a, b"


def test_chunked_request_body() -> None:
    data = (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    (req,) = RequestReader(ReaderLimits()).feed(data)
    assert req.body == b"abcde"


def test_http_10_is_not_kept_alive() -> None:
    (req,) = RequestReader(ReaderLimits()).feed(b"GET / HTTP/1.0\r\n\r\n")
    assert not req.keep_alive and req.http_version == "1.0"


@pytest.mark.parametrize(("data", "status"), [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    (post(b"x" * 101), 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n80\r\n" + b"x" * 128 + b"\r\n", 413),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(9)) + b"\r\n", 431),
    (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nX: " + b"v" * 300 + b"\r\n\r\n", 431),
])
def test_limits_and_malformed_requests_raise(data: bytes, status: int) -> None:
    reader = RequestReader(ReaderLimits(max_body_bytes=100, max_header_count=8,
                                        max_header_bytes=256))
    with pytest.raises(HttpError) as info:
        reader.feed(data)
    assert info.value.status == status and info.value.detail


def test_declared_body_over_limit_is_refused_before_it_arrives() -> None:
    reader = RequestReader(ReaderLimits(max_body_bytes=10))
    with pytest.raises(HttpError) as info:
        reader.feed(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert info.value.status == 413


def test_expect_continue_is_flagged() -> None:
    reader = RequestReader(ReaderLimits())
    assert reader.feed(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n") == []
    assert reader.expect_continue and reader.in_progress


def test_upgrade_request_is_answered_then_the_connection_closes() -> None:
    reader = RequestReader(ReaderLimits())
    (req,) = reader.feed(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    assert req.path == "/" and reader.must_close


def test_response_bytes() -> None:
    resp = Response(202, b'{"a":1}', headers=[("location", "/x")])
    data = response_bytes(resp, date="D", keep_alive=False)
    assert data.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert b"content-length: 7\r\n" in data and b"connection: close\r\n" in data
    assert b"location: /x\r\n" in data and data.endswith(b'\r\n\r\n{"a":1}')
    assert response_bytes(resp, date="D", keep_alive=True, head_only=True).endswith(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head_bytes(resp, date="D", keep_alive=True, chunked=True)
    assert chunk(b"abc") == b"3\r\nabc\r\n" and chunk(b"") == b""
