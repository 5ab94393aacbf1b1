"""Sans-IO HTTP/1.1: bytes in → requests out (with limits), responses → bytes. No sockets, no clock.

Theory of operation. A :class:`RequestReader` wraps one ``httptools.HttpRequestParser`` (llhttp)
per connection. ``feed(data)`` parses whatever arrived and returns every request it completed,
so pipelined requests come out together, in order. Limits are enforced while parsing, before
the bytes are kept: header count and total head size (request line + headers, RFC 9110 §15.5.14
431), declared and actual body size (413), and malformed syntax (400). A violated limit raises
:class:`HttpError`, carrying the requests completed ahead of the refused one in the same bytes;
the driver answers those in order, then the refusal, and closes the connection, since the
framing of anything after a refused request cannot be trusted. Time limits (whole-request deadline, idle
keep-alive) belong to the driver, which asks ``in_progress`` whether a request has begun.

Streamed bodies. A reader given ``streaming`` (a predicate on a request's method, target and
headers: raw bytes, so that saying no costs the other requests ~0.1 µs) asks it when a
request's headers are complete; when it says yes, the request comes out of ``feed`` at once,
body empty, with a :class:`BodyBuffer` in ``streamed``, and the body's bytes (de-chunked) are
appended to that buffer as later ``feed`` calls parse them, bounded by ``max_stream_bytes``
instead of ``max_body_bytes``. The driver empties the buffer into the handler and feeds the
next bytes only once it is empty, so a connection holds at most one receive of a streamed body.

Must not import: trio (this module is driven by gateway.http.server and by plain tests).
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

import httptools


@dataclass(frozen=True, slots=True)
class ReaderLimits:
    """Per-request limits the reader enforces."""

    max_body_bytes: int = 1024 * 1024
    max_header_count: int = 64
    max_header_bytes: int = 16 * 1024
    max_stream_bytes: int = 1024 * 1024 * 1024  # a streamed body (routes that ask for it)


class BodyIncomplete(Exception):
    """A streamed body ended before its last byte: the client went away or stalled, or the
    body broke a limit or the framing. The handler sees it raised from the body stream."""


class BodyBuffer:
    """The parsed, not yet consumed bytes of a streamed body (sans-IO: the driver empties it)."""

    __slots__ = ("chunks", "complete", "expect_continue", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0  # bytes of the body parsed so far
        self.complete = False  # the last byte was parsed
        # the client waits for "100 Continue": sent when the handler first asks for the body
        # (so an answer given without reading it, e.g. 401, spares the client the upload)
        self.expect_continue = False

    def take(self) -> list[bytes]:
        """The chunks parsed since the last call."""
        out, self.chunks = self.chunks, []
        return out


class HttpError(Exception):
    """A request that must be refused at the protocol level; the connection is closed after.

    ``completed`` holds the requests that the same ``feed`` completed before the refused one
    (pipelined ahead of it): they are valid and must be answered, in order, before the refusal.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.completed: list[Request] = []


@dataclass(slots=True)
class Request:
    """One parsed request. Header names are lower-case; repeated headers are joined with ", "."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    http_version: str = "1.1"
    path: str = ""
    query: str = ""
    streamed: BodyBuffer | None = None  # set for a streamed request (the reader fills it)
    body_stream: AsyncIterator[bytes] | None = None  # the handler reads a streamed body here

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass(slots=True)
class Response:
    """An answer. ``stream`` (an async iterator of chunks) replaces ``body`` when set."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None
    close: bool = False


_NAMES: Final = {n.encode(): n.lower() for name in (
    "Host", "Authorization", "Content-Type", "Content-Length", "Accept", "User-Agent",
    "Connection", "Idempotency-Key", "Accept-Encoding", "Expect", "Transfer-Encoding")
    for n in (name, name.lower())}  # header names as clients usually spell them → key


_METHODS: Final = {m.encode(): m for m in (
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}  # decoded once


class RequestReader:
    """Incremental request parser with limits (one per connection)."""

    __slots__ = (
        "_body",
        "_body_len",
        "_done",
        "_error",
        "_head_bytes",
        "_headers",
        "_limits",
        "_max_count",
        "_max_head",
        "_parser",
        "_stream",
        "_streaming",
        "_upgrade",
        "_url",
        "expect_continue",
        "in_progress",
    )

    def __init__(self, limits: ReaderLimits,
                 streaming: Callable[[bytes, bytes, dict[str, str]], bool] | None = None
                 ) -> None:
        self._limits = limits
        self._max_head = limits.max_header_bytes
        self._max_count = limits.max_header_count
        self._streaming = streaming
        self._stream: BodyBuffer | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._done: list[Request] = []
        self._reset()
        self.in_progress = False
        self._error: HttpError | None = None
        self._upgrade = False
        self.expect_continue = False  # set when a request asked for 100-continue; driver clears

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_len = 0

    def feed(self, data: bytes) -> list[Request]:
        """Parse ``data``; return the requests completed by it, in order.

        Raises:
            HttpError: a limit was exceeded or the bytes are not HTTP/1.x; its ``completed``
                carries the requests completed by ``data`` before the refused one.
        """
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade = True  # the request itself completed; the driver closes after it
        except httptools.HttpParserError as exc:
            error = self._error or HttpError(400, f"malformed HTTP request: {_reason(exc)}")
            # a streamed request whose own body failed is the refused one, not a completed one
            error.completed = [r for r in self._done if r.streamed is None or r.streamed.complete]
            self._done = []
            raise error from None
        done, self._done = self._done, []
        return done

    @property
    def must_close(self) -> bool:
        """True after an Upgrade/CONNECT request: nothing after it is HTTP/1.1 framing we serve."""
        return self._upgrade

    # httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_progress = True  # (the state was reset when the previous request completed)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_head:
            self._grow_head(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
        headers = self._headers
        if size > self._max_head or len(headers) >= self._max_count:
            if size > self._max_head:
                self._grow_head(0)
            self._fail(431, f"more than {self._limits.max_header_count} header fields")
        key = _NAMES.get(name) or name.decode("latin-1").lower()
        if key in headers:
            headers[key] = f"{headers[key]}, {value.decode('latin-1')}"
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        limit = self._limits.max_body_bytes
        head = None
        if self._streaming is not None and self._streaming(
                self._parser.get_method(), self._url, self._headers):
            head = self._request(b"")
            limit = self._limits.max_stream_bytes
        headers = self._headers
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._fail(413, f"body larger than {limit} bytes")
        expect = "expect" in headers and headers["expect"].lower() == "100-continue"
        if head is not None:
            head.streamed = self._stream = BodyBuffer()
            head.streamed.expect_continue = expect
            self._done.append(head)
        elif expect:
            self.expect_continue = True

    def on_body(self, body: bytes) -> None:
        stream = self._stream
        if stream is not None:
            stream.size += len(body)
            if stream.size > self._limits.max_stream_bytes:
                self._fail(413, f"body larger than {self._limits.max_stream_bytes} bytes")
            stream.chunks.append(body)
            return
        self._body_len += len(body)
        if self._body_len > self._limits.max_body_bytes:
            self._fail(413, f"body larger than {self._limits.max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._stream is not None:
            self._stream.complete = True
            self._stream = None
        else:
            self._done.append(self._request(
                b"".join(self._body) if len(self._body) != 1 else self._body[0]))
        self.in_progress = False
        self._reset()

    def _request(self, body: bytes) -> Request:
        p = self._parser
        method = p.get_method()
        target = self._url.decode("latin-1")
        path, _, query = target.partition("?")
        # (positional: method, target, headers, body, keep_alive, http_version, path, query)
        return Request(_METHODS.get(method) or method.decode("ascii"), target, self._headers,
                       body, p.should_keep_alive(), p.get_http_version(), path, query)

    def _grow_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self._limits.max_header_bytes:
            self._fail(431, f"request line and headers larger than {self._limits.max_header_bytes} bytes")

    def _fail(self, status: int, detail: str) -> None:
        self._error = HttpError(status, detail)
        raise self._error


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]


# ---------------------------------------------------------------------------------------------
# Serialisation

_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: Final = {
    s: f"HTTP/1.1 {s} {_REASONS[s]}\r\n".encode("ascii") for s in _REASONS
}
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def http_date(now: float) -> str:
    """RFC 9110 IMF-fixdate for the Date header."""
    return email.utils.formatdate(now, usegmt=True)


_PREFIXES: dict[tuple[int, str], bytes] = {}  # (status, content type) → first lines


def _prefix(status: int, content_type: str) -> bytes:
    """Status line and content-type line, built once per pair (a server has a handful)."""
    line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
    prefix = b"%scontent-type: %s\r\ndate: " % (line, content_type.encode("latin-1"))
    if len(_PREFIXES) < 256:  # bounded however many content types an application invents
        _PREFIXES[(status, content_type)] = prefix
    return prefix


def head_bytes(response: Response, *, date: str, keep_alive: bool, chunked: bool = False) -> bytes:
    """Status line and headers of ``response`` (Content-Length unless ``chunked``)."""
    prefix = (_PREFIXES.get((response.status, response.content_type))
              or _prefix(response.status, response.content_type))
    headers = response.headers
    return b"%s%s%s%s%s\r\n" % (
        prefix, date.encode("ascii"),
        b"\r\ntransfer-encoding: chunked\r\n" if chunked
        else b"\r\ncontent-length: %d\r\n" % len(response.body),
        b"" if keep_alive else b"connection: close\r\n",
        _header_lines(headers) if headers else b"")


def _header_lines(headers: list[tuple[str, str]]) -> bytes:
    if len(headers) == 1:  # (most answers: Location, Retry-After, Allow...)
        name, value = headers[0]
        return b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
    return b"".join([b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
                     for name, value in headers])


def response_bytes(response: Response, *, date: str, keep_alive: bool, head_only: bool = False) -> bytes:
    """A complete non-streaming response."""
    head = head_bytes(response, date=date, keep_alive=keep_alive)
    return head if head_only else head + response.body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked transfer coding (RFC 9112 §7.1); empty data is skipped."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK: Final = b"0\r\n\r\n"
