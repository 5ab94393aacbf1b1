"""A lean HTTP/1.1 client transport for callbacks: keep-alive connections, hand-made framing.

:class:`KeepAliveTransport` (an ``httpx.AsyncBaseTransport``) keeps connections per origin,
writes request heads it is given and frames responses itself (RFC 9112: status line, headers,
Content-Length or chunked body, 1xx skipped), with a fast path on plain TCP sockets: one
``send``, one readiness wait, one ``recv`` for a whole answer. httpx's pooled client and h11
cost most of the CPU per callback (bench/RESULTS_callbacks.md). No redirects, no proxies, no
timeouts of its own (the caller cancels), response bodies read to 64 KiB at most. Knows
nothing of callbacks' content or SSRF rules: the sender dials only checked addresses. Part of
``gateway.callbacks`` (which re-exports the names others use).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from typing import Final

import httpx
import trio

from gateway.ssrf import DEFAULT_PORTS

MAX_RESPONSE: Final = 64 * 1024
"""Bytes of a response body read at most (a bigger one closes the connection)."""


Origin = tuple[str, str, int, str]
"""(scheme, host or address to dial, port, TLS server name)."""


def _request_head(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Request line and header section. The target and values were checked (no whitespace or
    control characters) by gateway.ssrf or built here, so they are written as they are."""
    lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    lines += [b"%s: %s\r\n" % (k, v) for k, v in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


class _Stale(Exception):
    """A connection failed before a response arrived (internal to the transport)."""


class _ProtocolError(Exception):
    """The receiver's answer is not HTTP/1.x as RFC 9112 frames it."""


MAX_HEAD: Final = 64 * 1024


class _Connection:
    """One HTTP/1.1 connection: a trio stream, a read buffer and RFC 9112 response framing.

    Hand-written rather than h11: requests are built by us from checked parts, and parsing a
    response (status line, headers, Content-Length or chunked body) is small; h11's event
    machinery was a quarter of the sender's CPU time per callback.
    """

    def __init__(self, stream: trio.abc.Stream, raw: socket.socket | None = None) -> None:
        self.stream = stream
        self.raw = raw  # the plain TCP socket under ``stream``, when there is no TLS
        self.buffer = bytearray()
        self.reusable = False

    async def exchange(self, data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request and read its final answer.

        On a plain TCP connection the request goes out with one ``send`` and an answer that
        arrives in one piece (a callback's answer does) is read with one readiness wait and one
        ``recv``, without trio's stream layers and their extra scheduler round trips; anything
        else (a partial write, 1xx, chunked, a body still coming) takes the general path.
        """
        sock = self.raw
        if sock is None:
            await self.stream.send_all(data)
            return await self.read_response()
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await self.stream.send_all(memoryview(data)[sent:])
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise _ProtocolError("connection closed")
            self.buffer += chunk
            answer = self._whole_answer()
            if answer is not None:
                return answer
            if self.buffer.find(b"\r\n\r\n") >= 0:
                return await self.read_response()

    def _whole_answer(self) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The buffered answer when it is complete and framed by Content-Length (or has no
        body), consumed from the buffer; None (buffer untouched) otherwise."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        version, status, headers = _parse_head(bytes(buffer[:end]))
        if status < 200:
            return None
        length, keep = None, version == b"HTTP/1.1"
        for name, value in headers:
            name = name.lower()
            if name == b"content-length":
                length = _content_length(value)
            elif name == b"transfer-encoding":
                return None
            elif name == b"connection":
                keep = keep and value.lower() != b"close"
        if status in (204, 304):
            length = 0
        elif length is None or length > MAX_RESPONSE:
            return None
        start = end + 4
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self.reusable = keep and not buffer
        return status, headers, body

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise _ProtocolError("connection closed")
        self.buffer += data

    async def _until(self, marker: bytes, limit: int) -> bytes:
        while (i := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise _ProtocolError("header section too large")
            await self._fill()
        out = bytes(self.buffer[:i])
        del self.buffer[: i + len(marker)]
        return out

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def read_response(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body (at most MAX_RESPONSE) of the next final response."""
        self.reusable = False
        while True:
            version, status, headers = _parse_head(await self._until(b"\r\n\r\n", MAX_HEAD))
            if not 100 <= status < 200:
                break  # 1xx (100 Continue, 103 Early Hints) precede the real answer
        fields = {k.lower(): v for k, v in headers}
        keep = version == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
        if status in (204, 304):
            body, complete = b"", True
        elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            body, complete = await self._chunked()
        elif b"content-length" in fields:
            length = _content_length(fields[b"content-length"])
            complete = length <= MAX_RESPONSE
            body = await self._exactly(min(length, MAX_RESPONSE))
        else:
            body, complete, keep = b"", True, False  # delimited by close: do not wait for it
        self.reusable = keep and complete and not self.buffer
        return status, headers, body

    async def _chunked(self) -> tuple[bytes, bool]:
        body = bytearray()
        while True:
            line = await self._until(b"\r\n", MAX_HEAD)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _ProtocolError("bad chunk size") from exc
            if size == 0:
                while await self._until(b"\r\n", MAX_HEAD):
                    pass  # trailer fields, ignored
                return bytes(body), True
            if len(body) + size > MAX_RESPONSE:
                return bytes(body), False
            body += await self._exactly(size)
            await self._exactly(2)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


def _parse_head(head: bytes) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _ProtocolError("bad status line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise _ProtocolError("bad header line")
        headers.append((name, value.strip()))
    return parts[0], int(parts[1]), headers


def _content_length(value: bytes) -> int:
    if not value.strip().isdigit():
        raise _ProtocolError("bad content-length")
    return int(value)


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """A lean HTTP/1.1 transport: keep-alive connections per origin, TLS with SNI.

    Made for many small POSTs to few receivers. It never follows redirects, never uses a proxy,
    reads at most 64 KiB of a response body (a bigger one closes the connection) and has no
    timeouts of its own (the caller cancels; a cancelled request's connection is closed).
    Socket and protocol errors become ``httpx.ConnectError`` / ``httpx.ReadError``.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_idle: int = 256) -> None:
        self._ssl = ssl_context or ssl.create_default_context()
        self._idle: dict[Origin, list[_Connection]] = {}
        self._max_idle = max_idle

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        sni = str(request.extensions.get("sni_hostname") or url.host)
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme], sni)
        head = _request_head(request.method.encode(), url.raw_path, request.headers.raw)
        try:
            status, headers, body = await self.round_trip(origin, head + request.content)
        except httpx.ReadError as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        return httpx.Response(status, headers=headers, content=body, request=request)

    async def round_trip(
        self, origin: Origin, data: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Write one raw request on a kept-alive (or new) connection to ``origin``; read the answer.

        The sender's fast path (it skips building httpx Request/Response objects).

        Raises:
            httpx.ConnectError: could not connect (or TLS failed).
            httpx.ReadError: the connection broke before a complete answer.
        """
        idle = self._idle.setdefault(origin, [])
        if idle:
            try:
                return await self._attempt(idle.pop(), origin, data)
            except _Stale:
                pass  # the receiver had closed this kept-alive connection: one fresh try
        try:
            return await self._attempt(await self._connect(origin), origin, data)
        except _Stale as exc:
            raise httpx.ReadError(str(exc.__cause__) or "connection lost") from exc

    async def _attempt(
        self, conn: _Connection, origin: Origin, data: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            result = await conn.exchange(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, _ProtocolError) as exc:
            await conn.aclose()
            raise _Stale from exc
        except BaseException:
            await conn.aclose()  # cancelled mid-request: the connection's state is unknown
            raise
        self._park(origin, conn)
        return result

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port, sni = origin
        if scheme == "http" and _ip_family(host):
            return await self._connect_plain(host, port)
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            if scheme == "https":
                tls = trio.SSLStream(stream, self._ssl, server_hostname=sni, https_compatible=True)
                await tls.do_handshake()
                stream = tls
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(stream)

    async def _connect_plain(self, host: str, port: int) -> _Connection:
        """A plain TCP connection to an IP address, keeping the socket for the fast path."""
        sock = socket.socket(_ip_family(host), socket.SOCK_STREAM)
        tsock = trio.socket.from_stdlib_socket(sock)
        try:
            await tsock.connect((host, port))
        except OSError as exc:
            tsock.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            tsock.close()
            raise
        return _Connection(trio.SocketStream(tsock), raw=sock)  # SocketStream sets TCP_NODELAY

    def _park(self, origin: Origin, conn: _Connection) -> None:
        idle = self._idle[origin]
        if conn.reusable and len(idle) < self._max_idle:
            idle.append(conn)
        else:
            _close_nowait(conn)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                await conn.aclose()
        self._idle.clear()


@functools.lru_cache(maxsize=4096)
def _ip_family(host: str) -> int:
    """``AF_INET`` / ``AF_INET6`` for an IP literal, 0 for a name."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return 0


def _close_nowait(conn: _Connection) -> None:
    stream = conn.stream
    # A plain socket closes at once; a TLS stream without close_notify is fine for a dropped
    # keep-alive connection (the peer sees EOF).
    inner = getattr(stream, "transport_stream", stream)
    sock = getattr(inner, "socket", None)
    if sock is not None:
        sock.close()
