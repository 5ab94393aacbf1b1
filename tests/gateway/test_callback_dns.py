"""DNS failures at send time are transient; SSRF refusals stay permanent (issue 7 follow-up).

A resolver outage (EAI_AGAIN), a lookup that times out, NXDOMAIN or an empty answer must not
dead-letter a callback at once: the sender answers ``permanent=False`` with a ``dns: ...``
error and the notifier retries with its back-off until the retry window ends. Resolvers here
are fakes; the only sockets are a receiver on 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest
import trio

from actors import messages, notifier
from actors.callbacks_policy import RetryPolicy
from actors.messages import MsgId, StatusEvent
from actors.ports import CallbackEntry, CallbackResult
from bench.callbacks import Receiver, serve_receiver
from gateway.callback_outbox import CallbackOutbox
from gateway.callbacks import open_callback_sender, verify
from gateway.ssrf import (
    CallbackHostUnresolved,
    CallbackUrlRefused,
    check_callback_url,
    resolve_callback_url,
)
from gateway.store import open_store

SECRET = b"dns-secret"
EVENT = StatusEvent(MsgId("01HZX0000000000000000000DN"), "acme", "SMS_DELIVERED", 1, 1795644001.25,
                    carrier_id="c1", parts=1)
URL = "http://hooks.example.com:9/hook"  # never dialled: the lookups below fail


def gai(code: int) -> socket.gaierror:
    return socket.gaierror(code, "fake resolver")


class Scripted:
    """An async resolver that raises or answers from a script, then answers ``last``."""

    def __init__(self, *script: BaseException | Sequence[str], last: Sequence[str] = ()) -> None:
        self.script = list(script)
        self.last = list(last)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        step = self.script.pop(0) if self.script else self.last
        if isinstance(step, BaseException):
            raise step
        return list(step)


NOT_FOUND_CODES = [getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, n)]


@pytest.mark.parametrize(("failure", "kind"), [
    (gai(socket.EAI_AGAIN), "temporary"),
    (gai(socket.EAI_FAIL), "temporary"),
    *[(gai(code), "not_found") for code in NOT_FOUND_CODES],
    (TimeoutError(), "timeout"),
    (OSError("network unreachable"), "temporary"),
    ([], "no_answer"),
])
async def test_a_name_without_an_address_now_is_unresolved_not_refused(
        failure: BaseException | list[str], kind: str) -> None:
    with pytest.raises(CallbackHostUnresolved) as info:
        await resolve_callback_url(URL, resolver=Scripted(failure))
    assert info.value.failure == kind and info.value.host == "hooks.example.com"
    # Still a refusal with the same reason for submit-time callers (the API answers as before).
    assert isinstance(info.value, CallbackUrlRefused) and info.value.reason == "unresolvable"


def test_submit_time_check_still_refuses_a_failing_name_as_unresolvable() -> None:
    def down(host: str, port: int) -> list[str]:
        raise gai(socket.EAI_AGAIN)

    with pytest.raises(CallbackHostUnresolved) as info:
        check_callback_url(URL, resolver=down)
    assert info.value.reason == "unresolvable" and info.value.failure == "temporary"


async def test_a_host_name_the_resolver_cannot_encode_is_a_permanent_refusal() -> None:
    with pytest.raises(CallbackUrlRefused) as info:
        await resolve_callback_url(URL, resolver=Scripted(UnicodeError("label too long")))
    assert not isinstance(info.value, CallbackHostUnresolved)
    assert info.value.reason == "invalid_host"


@pytest.mark.parametrize(("failure", "error"), [
    (gai(socket.EAI_AGAIN), "dns: temporary failure resolving host"),
    (gai(socket.EAI_NONAME), "dns: host not found (NXDOMAIN)"),
    (TimeoutError(), "dns: timeout resolving host"),
    ([], "dns: no address for host"),
])
async def test_sender_reports_a_dns_failure_as_transient(
        failure: BaseException | list[str], error: str) -> None:
    async with open_callback_sender(resolver=Scripted(failure)) as sender:
        result = await sender.send(URL, SECRET, [EVENT])
    assert result == CallbackResult(ok=False, error=error, permanent=False)


async def test_a_lookup_slower_than_dns_timeout_is_a_transient_dns_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    async def hangs(host: str, port: int) -> Sequence[str]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with open_callback_sender(resolver=hangs, dns_timeout=3.0) as sender:
        t0 = trio.current_time()
        result = await sender.send(URL, SECRET, [EVENT])
    assert trio.current_time() - t0 == pytest.approx(3.0)
    assert not result.permanent and result.error == "dns: timeout resolving host"


@pytest.mark.parametrize(("url", "answers", "reason"), [
    (URL, ["10.0.0.7"], "private"),
    (URL, ["93.184.216.34", "127.0.0.1"], "loopback"),  # one bad answer is enough
    (URL, ["169.254.169.254"], "metadata"),
    ("http://127.0.0.1:9/hook", [], "loopback"),
    ("http://0x7f000001/hook", [], "loopback"),
    ("ftp://hooks.example.com/hook", [], "scheme"),
    ("http://user@evil@127.0.0.1/", [], "userinfo"),
    ("http://256.1.1.1/", [], "invalid_host"),
])
async def test_sender_keeps_ssrf_refusals_permanent(url: str, answers: list[str], reason: str) -> None:
    async with open_callback_sender(resolver=Scripted(answers)) as sender:
        result = await sender.send(url, SECRET, [EVENT])
    assert result.permanent and not result.ok and result.error == f"url refused: {reason}"


async def test_a_failed_lookup_is_not_cached_and_the_next_answer_is() -> None:
    receiver = Receiver()
    resolver = Scripted(gai(socket.EAI_AGAIN), [], last=["127.0.0.1"])
    now = [0.0]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        url = f"http://hooks.example.com:{port}/hook"
        async with open_callback_sender(allow_loopback=True, resolver=resolver, dns_ttl=10,
                                        monotonic=lambda: now[0]) as sender:
            assert (await sender.send(url, SECRET, [EVENT])).error.startswith("dns: temporary")
            assert (await sender.send(url, SECRET, [EVENT])).error == "dns: no address for host"
            assert (await sender.send(url, SECRET, [EVENT])).ok  # asked again: not poisoned
            assert (await sender.send(url, SECRET, [EVENT])).ok
            assert len(resolver.lookups) == 3  # the good answer is kept for dns_ttl
            resolver.last = []  # the name disappears once the answer expires...
            now[0] = 11.0
            assert not (await sender.send(url, SECRET, [EVENT])).permanent
            resolver.last = ["127.0.0.1"]  # ...and comes back: the failure was not kept
            assert (await sender.send(url, SECRET, [EVENT])).ok
            assert len(resolver.lookups) == 5
        nursery.cancel_scope.cancel()
    assert len(receiver.requests) == 3
    assert all(r.headers["host"] == f"hooks.example.com:{port}" for r in receiver.requests)


def test_notifier_retries_a_dns_failure_and_dead_letters_only_after_the_window() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=60.0, max_age=3600.0)
    entry = CallbackEntry(b"k", EVENT, attempt=0, first_attempt_at=0.0, due=0.0)
    result = CallbackResult(ok=False, error="dns: host not found (NXDOMAIN)")
    assert notifier.decide(entry, result, policy=policy, now=0.0, rand=0.5).outcome == "retry"
    late = entry._replace(attempt=40)
    dead = notifier.decide(late, result, policy=policy, now=3599.0, rand=0.5)
    assert dead.outcome == "dead" and dead.error == "retries exhausted: dns: host not found (NXDOMAIN)"


async def test_notifier_delivers_after_the_resolver_recovers(tmp_path: Path) -> None:
    receiver = Receiver()
    resolver = Scripted(gai(socket.EAI_AGAIN), TimeoutError(), gai(socket.EAI_NONAME),
                        last=["127.0.0.1"])
    policy = RetryPolicy(initial_delay=0.02, max_delay=0.05, request_timeout=2.0,
                         breaker_failures=50)
    stats = notifier.NotifierStats()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        url = f"http://hooks.example.com:{port}/hook"
        events = [StatusEvent(MsgId("m-dns"), "acme", status, seq, time.time(), parts=1,
                              callback_url=url)
                  for seq, status in enumerate(("SMS_SENT", "SMS_DELIVERED"), start=1)]
        async with (open_store(tmp_path / "db") as store,
                    open_callback_sender(allow_loopback=True, resolver=resolver) as sender):
            send, recv = trio.open_memory_channel[bytes](1)
            await nursery.start(partial(
                notifier.run, recv, outbox=CallbackOutbox(store), sender=sender, policy=policy,
                endpoint_for=lambda e: (e.callback_url, SECRET), stats=stats))
            async with send:
                await send.send(messages.encode_batch(events))
                with trio.fail_after(20):
                    while stats.delivered < len(events):
                        await trio.sleep(0.01)
            assert CallbackOutbox(store).pending_count() == 0
        nursery.cancel_scope.cancel()
    assert stats.dead == 0 and stats.retried >= 3
    assert [r.headers["webhook-id"] for r in receiver.requests] == ["msg_m-dns_1", "msg_m-dns_2"]
    assert all(verify(SECRET, r.headers, r.body, now=time.time()) for r in receiver.requests)
