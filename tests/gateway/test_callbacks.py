"""The callback body, its Standard Webhooks signature, and the httpx sender against a real receiver."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from actors.messages import MsgId, StatusEvent
from bench.callbacks import Receiver, serve_receiver
from gateway.callbacks import (
    HttpCallbackSender,
    KeepAliveTransport,
    build_body,
    endpoint_resolver,
    open_callback_sender,
    secret_bytes,
    sign,
    verify,
    webhook_id,
)

SECRET = b"top-secret-key"
EVENT = StatusEvent(MsgId("01HZX0000000000000000000AB"), "acme", "SMS_DELIVERED", 2, 1795644001.25,
                    carrier_id="7f3a", campaign="spring", parts=2, client_ref="order-9",
                    callback_url="http://127.0.0.1:1/never-used")


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # From the Standard Webhooks specification's reference libraries.
    secret = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_body_carries_every_field_of_the_event() -> None:
    body = json.loads(build_body([EVENT]))
    assert body == {
        "type": "SMS_DELIVERED",
        "timestamp": "2026-11-25T22:00:01.250Z",
        "data": {"message_id": EVENT.msg_id, "sequence": 2, "account": "acme", "carrier_id": "7f3a",
                 "campaign": "spring", "parts": 2, "error_code": "", "reason": "",
                 "client_ref": "order-9", "occurred_at": 1795644001.25},
    }
    batch = json.loads(build_body([EVENT, EVENT]))
    assert isinstance(batch, list) and len(batch) == 2
    assert isinstance(json.loads(build_body([EVENT], batched=True)), list)


def test_webhook_id_is_stable_per_message_and_seq() -> None:
    assert webhook_id([EVENT]) == f"msg_{EVENT.msg_id}_2"
    assert webhook_id([EVENT, EVENT]) == webhook_id([EVENT, EVENT]).replace("x", "x")
    assert webhook_id([EVENT, EVENT]).startswith("batch_")


def test_verify_rejects_tampering_and_stale_timestamps() -> None:
    body = build_body([EVENT])
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1000",
               "webhook-signature": "v0,bogus " + sign(SECRET, "msg_1", 1000, body)}
    assert verify(SECRET, headers, body, now=1010)
    assert not verify(SECRET, headers, body + b" ", now=1010)
    assert not verify(b"other", headers, body, now=1010)
    assert not verify(SECRET, headers, body, now=2000)
    assert not verify(SECRET, {}, body, now=1000)


def test_endpoint_resolver_prefers_the_message_url_and_decodes_whsec_secrets() -> None:
    accounts = {"acme": ("https://default.example/h", "whsec_" + "c2VjcmV0"), "bare": ("", "s")}
    endpoint_for = endpoint_resolver(accounts.get)
    assert endpoint_for(EVENT) == ("http://127.0.0.1:1/never-used", b"secret")
    plain = StatusEvent(MsgId("m"), "acme", "SMS_SENT", 1, 0.0)
    assert endpoint_for(plain) == ("https://default.example/h", b"secret")
    assert endpoint_for(StatusEvent(MsgId("m"), "bare", "SMS_SENT", 1, 0.0)) is None
    assert endpoint_for(StatusEvent(MsgId("m"), "ghost", "SMS_SENT", 1, 0.0)) is None


def test_endpoint_resolver_caches_account_settings_until_a_change_or_the_ttl() -> None:
    accounts = {"acme": ("https://old.example/h", "s")}
    reads: list[str] = []
    version, clock = [0], [0.0]

    def settings(name: str) -> tuple[str, str] | None:
        reads.append(name)
        return accounts.get(name)

    endpoint_for = endpoint_resolver(settings, version=lambda: version[0], ttl=5.0,
                                     clock=lambda: clock[0])
    plain = StatusEvent(MsgId("m"), "acme", "SMS_SENT", 1, 0.0)
    for _ in range(100):
        assert endpoint_for(plain) == ("https://old.example/h", b"s")
    assert reads == ["acme"]  # one store read for 100 events
    accounts["acme"] = ("https://new.example/h", "t")
    assert endpoint_for(plain) == ("https://old.example/h", b"s")  # not told yet
    version[0] += 1  # AccountBook.update in this process
    assert endpoint_for(plain) == ("https://new.example/h", b"t")
    accounts["acme"] = ("https://other-process.example/h", "u")
    clock[0] = 5.1  # an update by another process shows after the TTL
    assert endpoint_for(plain) == ("https://other-process.example/h", b"u")
    assert len(reads) == 3


async def test_account_book_changes_bump_the_settings_version(tmp_path: Path) -> None:
    from gateway.accounts import Account, AccountBook
    from gateway.store import open_store

    async with open_store(tmp_path, sync=False) as store:
        api_book, notifier_book = AccountBook(store), AccountBook(store)
        before = notifier_book.version
        await api_book.create(Account("acme", callback_url="https://a.example/h"))
        after_create = notifier_book.version
        await api_book.update("acme", callback_url="https://b.example/h")
        assert before < after_create < notifier_book.version  # seen by every book


async def _serve(nursery: trio.Nursery, respond: object = None) -> tuple[Receiver, str]:
    receiver = Receiver() if respond is None else Receiver(respond=respond)  # type: ignore[arg-type]
    port = await nursery.start(serve_receiver, receiver)
    return receiver, f"http://127.0.0.1:{port}/hooks/sms?tenant=1"


async def test_sender_posts_signed_json_to_the_checked_address() -> None:
    async with trio.open_nursery() as nursery, open_callback_sender(allow_loopback=True) as sender:
        receiver, url = await _serve(nursery)
        result = await sender.send(url, SECRET, [EVENT])
        assert result.ok and result.status == 200
        [request] = receiver.requests
        assert (request.method, request.path) == ("POST", "/hooks/sms?tenant=1")
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-id"] == f"msg_{EVENT.msg_id}_2"
        assert verify(SECRET, request.headers, request.body, now=time.time())
        assert json.loads(request.body)["data"]["sequence"] == 2
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("status", "permanent"), [(500, False), (503, False), (429, False), (404, False), (410, True)]
)
async def test_error_statuses_are_results_not_exceptions(status: int, permanent: bool) -> None:
    async with trio.open_nursery() as nursery, open_callback_sender(allow_loopback=True) as sender:
        _receiver, url = await _serve(nursery, lambda n: status)
        result = await sender.send(url, SECRET, [EVENT])
        assert (result.ok, result.status, result.permanent) == (False, status, permanent)
        nursery.cancel_scope.cancel()


async def test_redirects_are_not_followed() -> None:
    async with trio.open_nursery() as nursery, open_callback_sender(allow_loopback=True) as sender:
        receiver, url = await _serve(nursery, lambda n: 302)
        result = await sender.send(url, SECRET, [EVENT])
        assert not result.ok and result.status == 302
        assert receiver.count == 1
        nursery.cancel_scope.cancel()


async def test_loopback_is_refused_at_send_time_without_the_dev_allowance() -> None:
    async with trio.open_nursery() as nursery, open_callback_sender() as sender:
        receiver, url = await _serve(nursery)
        result = await sender.send(url, SECRET, [EVENT])
        assert (result.ok, result.permanent) == (False, True)
        assert "loopback" in result.error and receiver.count == 0
        nursery.cancel_scope.cancel()


async def test_dns_rebinding_after_submit_is_caught_at_send_time() -> None:
    answers = ["93.184.215.14"]

    async def resolver(host: str, port: int) -> Sequence[str]:
        return answers

    async with trio.open_nursery() as nursery:
        receiver, url = await _serve(nursery)
        port = url.split(":")[2].split("/")[0]
        sender = HttpCallbackSender(resolver=resolver)
        answers[:] = ["127.0.0.1"]  # the name now points inside
        result = await sender.send(f"http://hooks.example.com:{port}/x", SECRET, [EVENT])
        assert result.permanent and "loopback" in result.error and receiver.count == 0
        # The dev profile (loopback allowed) connects to the resolved address, Host kept.
        dev = HttpCallbackSender(resolver=resolver, allow_loopback=True)
        assert (await dev.send(f"http://hooks.example.com:{port}/x", SECRET, [EVENT])).ok
        assert receiver.requests[0].headers["host"] == f"hooks.example.com:{port}"
        await sender.aclose()
        await dev.aclose()
        nursery.cancel_scope.cancel()


async def test_a_stalled_receiver_is_cut_off_by_the_callers_deadline() -> None:
    async with trio.open_nursery() as nursery, open_callback_sender(allow_loopback=True) as sender:
        _receiver, url = await _serve(nursery, lambda n: 0 if n == 0 else 200)
        with trio.move_on_after(0.3) as scope:
            await sender.send(url, SECRET, [EVENT])
        assert scope.cancelled_caught
        assert (await sender.send(url, SECRET, [EVENT])).ok  # the client is still usable
        nursery.cancel_scope.cancel()


async def test_a_closed_port_is_a_retryable_failure() -> None:
    async with open_callback_sender(allow_loopback=True) as sender:
        with trio.socket.socket() as s:
            await s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound but not listening: connection refused
            result = await sender.send(f"http://127.0.0.1:{port}/", SECRET, [EVENT])
    assert not result.ok and not result.permanent and result.error == "ConnectError"


async def _serve_raw(nursery: trio.Nursery, answers: list[bytes], *, close_after_each: bool) -> tuple[str, list[int]]:
    """A server that answers the n-th request with ``answers[n]`` verbatim (raw HTTP)."""
    connections: list[int] = []

    async def handle(stream: trio.SocketStream) -> None:
        connections.append(1)
        buffer = b""
        async with stream:
            while True:
                try:
                    while b"\r\n\r\n" not in buffer:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        buffer += data
                except trio.BrokenResourceError:
                    # The client reset the connection after dropping an oversized answer that
                    # the kernel had already taken whole: the same expected hang-up as below.
                    return
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += await stream.receive_some(65536)
                buffer = rest[length:]
                try:
                    await stream.send_all(answers.pop(0))
                except trio.BrokenResourceError:
                    return  # the client dropped an oversized answer: expected
                if close_after_each:
                    return

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(partial(trio.serve_listeners, handle, listeners))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/h", connections


async def test_transport_reads_chunked_and_oversized_responses() -> None:
    big = b"x" * (200 * 1024)
    answers = [
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"),
        b"HTTP/1.1 503 Busy\r\nretry-after: 30\r\ncontent-length: %d\r\n\r\n" % len(big) + big,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    async with trio.open_nursery() as nursery, open_callback_sender(allow_loopback=True) as sender:
        url, connections = await _serve_raw(nursery, answers, close_after_each=False)
        assert (await sender.send(url, SECRET, [EVENT])).ok
        busy = await sender.send(url, SECRET, [EVENT])
        assert (busy.ok, busy.status, busy.retry_after) == (False, 503, 30)
        assert (await sender.send(url, SECRET, [EVENT])).status == 204
        assert len(connections) == 2  # the oversized body cost its connection, nothing else did
        nursery.cancel_scope.cancel()


async def test_a_kept_alive_connection_closed_by_the_receiver_is_replaced() -> None:
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    async with trio.open_nursery() as nursery, open_callback_sender(allow_loopback=True) as sender:
        url, connections = await _serve_raw(nursery, [ok, ok, ok], close_after_each=True)
        for _ in range(3):
            assert (await sender.send(url, SECRET, [EVENT])).ok
        assert len(connections) == 3
        nursery.cancel_scope.cancel()


async def test_a_receiver_that_hangs_up_without_answering_is_a_retryable_failure() -> None:
    async with trio.open_nursery() as nursery, open_callback_sender(allow_loopback=True) as sender:
        url, _connections = await _serve_raw(nursery, [b"", b""], close_after_each=True)
        result = await sender.send(url, SECRET, [EVENT])
        assert (result.ok, result.permanent, result.error) == (False, False, "ReadError")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["keepalive", "httpx"])
async def test_any_httpx_transport_can_carry_callbacks(transport: str) -> None:
    chosen = KeepAliveTransport() if transport == "keepalive" else httpx.AsyncHTTPTransport()
    async with trio.open_nursery() as nursery:
        receiver, url = await _serve(nursery, lambda n: 200 if n else 429)
        sender = HttpCallbackSender(transport=chosen, allow_loopback=True)
        limited = await sender.send(url, SECRET, [EVENT])
        assert (limited.ok, limited.status) == (False, 429)
        assert (await sender.send(url.replace("/hooks", "/h%C3%A9/ü"), SECRET, [EVENT])).ok
        assert receiver.requests[1].path == "/h%C3%A9/%C3%BC/sms?tenant=1"
        assert verify(SECRET, receiver.requests[1].headers, receiver.requests[1].body, now=time.time())
        await sender.aclose()
        nursery.cancel_scope.cancel()


MODULES = ("gateway.callbacks", "gateway._callback_body", "gateway._callback_signing",
           "gateway._callback_transport")


def test_callbacks_reexports_every_name_other_code_imports_from_the_module_that_owns_it() -> None:
    from gateway import callbacks

    assert set(callbacks.__all__) <= set(vars(callbacks)), "a name in __all__ is not defined"
    owners = {name: module for module in MODULES[1:]
              for name, value in vars(importlib.import_module(module)).items()
              if getattr(value, "__module__", module) == module and not name.startswith("__")}
    # Imported from gateway.callbacks by gateway/, tests/ and bench/ today (private ones too).
    used = {"EVENTS", "RECEIVED", "USER_AGENT", "Origin", "HttpCallbackSender",
            "KeepAliveTransport", "build_body", "build_body_slow", "endpoint_resolver",
            "event_payload", "inbound_event", "open_callback_sender", "secret_bytes", "sign",
            "verify", "webhook_id", "_rfc3339", "_rfc3339_slow", "_request_head", "_Connection"}
    for name in used:
        assert hasattr(callbacks, name), name
        if name in owners:  # the very object, not a copy
            owner = importlib.import_module(owners[name])
            assert getattr(callbacks, name) is getattr(owner, name), name


@pytest.mark.parametrize("module", MODULES)
def test_each_callback_module_says_its_job(module: str) -> None:
    doc = importlib.import_module(module).__doc__
    assert doc and len(doc.strip().splitlines()[0]) > 20


def test_the_body_and_signing_modules_do_no_io() -> None:
    import gateway._callback_body as body
    import gateway._callback_signing as signing

    for module in (body, signing):
        assert not {"trio", "httpx", "socket", "ssl"} & set(vars(module)), module.__name__
