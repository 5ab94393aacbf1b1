"""KeepAliveTransport's two paths against real servers on 127.0.0.1.

Plain HTTP to an IP address goes on the raw socket (one send, one readiness wait, one recv for
a whole answer); answers that come in pieces, 1xx, chunked or close-delimited ones fall back to
the general reader. HTTPS goes through ``trio.SSLStream`` (SNI and certificate checked); the
certificate below is a self-signed one for ``localhost`` / 127.0.0.1, valid until 2126.
"""

from __future__ import annotations

import base64
import hmac
import ssl
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import MsgId, StatusEvent
from gateway.callbacks import HttpCallbackSender, KeepAliveTransport, sign, verify

SECRET = b"top-secret-key"
EVENT = StatusEvent(MsgId("01HZX0000000000000000000AB"), "acme", "SMS_DELIVERED", 2, 1795644001.25,
                    carrier_id="7f3a", parts=1)
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

CERT = b"""-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUZcUnSDGyk30mjMhwksHGsO7mglgwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNTA0NDYxM1oYDzIxMjYxMTAx
MDQ0NjEzWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQdY8XH4csXxrmG981AjvzPAsHyyCFgwvbbMkDxqMQr9wfyxZjVnp7Y
5zMRz+dFaOdM1OThnaxkexOiULpClNyzo28wbTAdBgNVHQ4EFgQUkVkBf368xQRp
thri1YyvHbhWD3MwHwYDVR0jBBgwFoAUkVkBf368xQRpthri1YyvHbhWD3MwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSAAwRQIgQNG3A/nGG/voTQqV32nf/x0nd6UdMFxv9F3vykKAVOICIQDD
8rZwiG8AkPxgvPCQJlQPiJvy/4MeK1jxrQBA68uOSg==
-----END CERTIFICATE-----
"""
KEY = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS8md3E/g7lyVBFXo
9j8pWHjYBgM4M7ZUVjhs02jnhEahRANCAAQdY8XH4csXxrmG981AjvzPAsHyyCFg
wvbbMkDxqMQr9wfyxZjVnp7Y5zMRz+dFaOdM1OThnaxkexOiULpClNyz
-----END PRIVATE KEY-----
"""


class Server:
    """A raw HTTP/1.1 server: reads each request whole (Content-Length), then writes the
    pieces of the next scripted answer with a short pause between them."""

    def __init__(self, answers: list[Sequence[bytes]]) -> None:
        self.answers = answers
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        buffer = b""
        try:
            async with stream:
                while self.answers:
                    while b"\r\n\r\n" not in buffer:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buffer += data
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                      if line.lower().startswith(b"content-length")))
                    while len(rest) < length:
                        rest += await stream.receive_some(65536)
                    self.requests.append((head, rest[:length]))
                    buffer = rest[length:]
                    for i, piece in enumerate(self.answers.pop(0)):
                        if i:
                            await trio.sleep(0.02)  # the client sees the answer in pieces
                        await stream.send_all(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


async def _plain(nursery: trio.Nursery, server: Server) -> str:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(partial(trio.serve_listeners, server.handle, listeners))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hook"


async def test_the_raw_path_reuses_one_connection_and_sends_the_signed_request() -> None:
    server = Server([[OK]] * 5)
    async with trio.open_nursery() as nursery:
        url = await _plain(nursery, server)
        sender = HttpCallbackSender(allow_loopback=True)
        for _ in range(5):
            assert (await sender.send(url, SECRET, [EVENT])).ok
        await sender.aclose()
        nursery.cancel_scope.cancel()
    assert server.connections == 1
    head, body = server.requests[-1]
    assert head.startswith(b"POST /hook HTTP/1.1\r\n")
    headers = _headers(head)
    assert headers["host"] == url.split("/")[2] and headers["content-length"] == str(len(body))
    assert verify(SECRET, headers, body, now=time.time())


async def test_answers_in_pieces_and_of_every_framing_are_read_on_the_raw_path() -> None:
    server = Server([
        [b"HTTP/1.1 200 OK\r\ncontent-", b"length: 5\r\n\r\nhe", b"llo"],  # head split, body late
        [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
        [b"HTTP/1.1 429 Slow down\r\nretry-after: 7\r\ncontent-length: 2\r\n\r\nno"],
        [b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"],  # not kept: a new connection
        [OK],
    ])
    async with trio.open_nursery() as nursery:
        url = await _plain(nursery, server)
        sender = HttpCallbackSender(allow_loopback=True)
        results = [await sender.send(url, SECRET, [EVENT]) for _ in range(6)]
        await sender.aclose()
        nursery.cancel_scope.cancel()
    assert [r.status for r in results] == [200, 202, 200, 429, 204, 200]
    assert results[3].retry_after == 7 and not results[3].ok
    assert server.connections == 2


async def test_bytes_after_the_answer_cost_the_connection_not_the_result() -> None:
    server = Server([[OK + b"HTTP/1.1 200 OK\r\n"], [OK]])  # a stray extra answer begins
    async with trio.open_nursery() as nursery:
        url = await _plain(nursery, server)
        sender = HttpCallbackSender(allow_loopback=True)
        assert (await sender.send(url, SECRET, [EVENT])).ok
        assert (await sender.send(url, SECRET, [EVENT])).ok
        await sender.aclose()
        nursery.cancel_scope.cancel()
    assert server.connections == 2


async def test_a_request_cancelled_on_the_raw_path_closes_its_connection() -> None:
    server = Server([[], [OK]])  # the first request gets no answer at all
    async with trio.open_nursery() as nursery:
        url = await _plain(nursery, server)
        sender = HttpCallbackSender(allow_loopback=True)
        with trio.move_on_after(0.2) as scope:
            await sender.send(url, SECRET, [EVENT])
        assert scope.cancelled_caught
        assert (await sender.send(url, SECRET, [EVENT])).ok
        await sender.aclose()
        nursery.cancel_scope.cancel()
    assert server.connections == 2


def _client_context(tmp_path: Path) -> ssl.SSLContext:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(CERT)
    return ssl.create_default_context(cafile=str(ca))


async def _tls(nursery: trio.Nursery, server: Server, tmp_path: Path) -> int:
    (tmp_path / "cert.pem").write_bytes(CERT + KEY)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tmp_path / "cert.pem"))
    listeners = await trio.open_ssl_over_tcp_listeners(0, context, host="127.0.0.1")
    nursery.start_soon(partial(trio.serve_listeners, server.handle, listeners))
    return int(listeners[0].transport_listener.socket.getsockname()[1])


async def _localhost(host: str, port: int) -> list[str]:
    return ["127.0.0.1"] if host == "localhost" else []


async def test_https_callbacks_go_over_tls_with_the_name_checked(tmp_path: Path) -> None:
    server = Server([[OK], [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"ok"], [OK]])
    async with trio.open_nursery() as nursery:
        port = await _tls(nursery, server, tmp_path)
        sender = HttpCallbackSender(
            transport=KeepAliveTransport(ssl_context=_client_context(tmp_path)),
            allow_loopback=True, resolver=_localhost)
        url = f"https://localhost:{port}/tls/hook"
        results = [await sender.send(url, SECRET, [EVENT]) for _ in range(3)]
        await sender.aclose()
        nursery.cancel_scope.cancel()
    assert all(r.ok for r in results), results
    assert server.connections == 1  # kept alive over TLS too
    head, body = server.requests[0]
    assert head.startswith(b"POST /tls/hook HTTP/1.1\r\n")
    assert verify(SECRET, _headers(head), body, now=time.time())


async def test_a_certificate_that_does_not_verify_is_a_connect_error(tmp_path: Path) -> None:
    server = Server([[OK]])
    async with trio.open_nursery() as nursery:
        port = await _tls(nursery, server, tmp_path)
        sender = HttpCallbackSender(allow_loopback=True, resolver=_localhost)  # system CAs only
        result = await sender.send(f"https://localhost:{port}/hook", SECRET, [EVENT])
        await sender.aclose()
        nursery.cancel_scope.cancel()
    assert (result.ok, result.permanent, result.error) == (False, False, "ConnectError")
    assert not server.requests


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
async def test_the_raw_path_dials_ipv4_and_ipv6_literals(host: str) -> None:
    server = Server([[OK]])
    family_host = host.strip("[]")
    try:
        listeners = await trio.open_tcp_listeners(0, host=family_host)
    except OSError:
        pytest.skip(f"no {family_host} on this machine")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, server.handle, listeners))
        port = listeners[0].socket.getsockname()[1]
        sender = HttpCallbackSender(allow_loopback=True)
        assert (await sender.send(f"http://{host}:{port}/h", SECRET, [EVENT])).ok
        await sender.aclose()
        nursery.cancel_scope.cancel()


async def test_host_names_are_resolved_once_per_ttl_and_checked_at_every_send() -> None:
    server = Server([[OK]] * 4)
    lookups: list[str] = []
    answers = ["127.0.0.1"]
    now = [0.0]

    async def resolver(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        return list(answers)

    async with trio.open_nursery() as nursery:
        url = (await _plain(nursery, server)).replace("127.0.0.1", "hooks.example.com")
        sender = HttpCallbackSender(allow_loopback=True, resolver=resolver, dns_ttl=10,
                                    monotonic=lambda: now[0])
        assert (await sender.send(url, SECRET, [EVENT])).ok
        assert (await sender.send(url, SECRET, [EVENT])).ok
        assert lookups == ["hooks.example.com"]  # the second send reused the answer
        now[0] = 11.0
        assert (await sender.send(url, SECRET, [EVENT])).ok
        assert len(lookups) == 2  # expired: asked again
        strict = HttpCallbackSender(resolver=resolver, dns_ttl=10, monotonic=lambda: now[0])
        refused = await strict.send(url, SECRET, [EVENT])  # no loopback allowance: checked
        assert refused.permanent and "loopback" in refused.error
        answers[:] = []
        now[0] = 30.0
        gone = await sender.send(url, SECRET, [EVENT])  # an empty answer is not kept...
        assert not gone.ok and not gone.permanent and gone.error == "dns: no address for host"
        answers[:] = ["127.0.0.1"]
        assert (await sender.send(url, SECRET, [EVENT])).ok
        assert len(lookups) == 5  # ...and is retried (transient), not dead-lettered
        await sender.aclose()
        await strict.aclose()
        nursery.cancel_scope.cancel()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=40), st.integers(0, 2**40), st.binary(max_size=3000))
def test_sign_equals_hmac_sha256_for_any_key(secret: bytes, msg_id: str, ts: int, body: bytes) -> None:
    expected = hmac.digest(secret, f"{msg_id}.{ts}.".encode() + body, "sha256")
    assert sign(secret, msg_id, ts, body) == "v1," + base64.b64encode(expected).decode()
