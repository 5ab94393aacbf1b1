"""The notifier's long-lived sender tasks: reuse, linger, the overall cap, breaker recovery.

Virtual time (MockClock), a scripted sender that notes which trio task made each request, and
a real LMDB outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors import messages, notifier
from actors.callbacks_policy import RetryPolicy
from actors.messages import MsgId, StatusEvent
from actors.ports import CallbackResult
from gateway.callback_outbox import CallbackOutbox
from tests.fakes import InlineStore

A, B = "https://a.example/h", "https://b.example/h"


class Sender:
    """Answers ``ok`` after ``latency``; notes (time, task, url, keys) per request."""

    def __init__(self, latency: float = 0.01) -> None:
        self.latency = latency
        self.ok = True
        self.calls: list[tuple[float, Any, str, list[tuple[str, int]]]] = []
        self.delivered: list[tuple[str, int]] = []
        self.concurrent: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total = self.peak_total = 0

    async def send(self, url: str, secret: bytes, events: Sequence[StatusEvent]) -> CallbackResult:
        self.calls.append((trio.current_time(), trio.lowlevel.current_task(), url,
                           [(e.msg_id, e.seq) for e in events]))
        self.concurrent[url] = self.concurrent.get(url, 0) + 1
        self.total += 1
        self.peak[url] = max(self.peak.get(url, 0), self.concurrent[url])
        self.peak_total = max(self.peak_total, self.total)
        try:
            await trio.sleep(self.latency)
        finally:
            self.concurrent[url] -= 1
            self.total -= 1
        if not self.ok:
            return CallbackResult(ok=False, status=503)
        self.delivered += [(e.msg_id, e.seq) for e in events]
        return CallbackResult(ok=True, status=200)


def events(prefix: str, n: int, url: str) -> list[StatusEvent]:
    return [StatusEvent(MsgId(f"{prefix}{i:04d}"), "acme", "SMS_SENT", 1, 1.0, callback_url=url)
            for i in range(n)]


@pytest.fixture
def outbox(tmp_path: Path) -> Any:
    store = InlineStore(tmp_path / "db")
    yield CallbackOutbox(store)  # type: ignore[arg-type]
    store.env.close()


async def start(nursery: trio.Nursery, outbox: Any, sender: Sender,
                policy: RetryPolicy) -> tuple[trio.MemorySendChannel[bytes], notifier.NotifierStats]:
    send, recv = trio.open_memory_channel[bytes](4)
    stats = notifier.NotifierStats()
    await nursery.start(partial(
        notifier.run, recv, outbox=outbox, sender=sender, policy=policy,
        endpoint_for=lambda e: (e.callback_url, b"k"), now=trio.current_time,
        rand=lambda: 0.5, stats=stats))
    return send, stats


async def until(predicate: Any, timeout: float = 60) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.001)


async def test_one_task_per_connection_slot_sends_request_after_request(
        outbox: Any, autojump_clock: trio.testing.MockClock) -> None:
    sender = Sender()
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, outbox, sender, RetryPolicy(per_endpoint=4))
        await inbox.send(messages.encode_batch(events("m", 200, A)))
        await until(lambda: stats.delivered == 200)
        await inbox.aclose()
    assert len(sender.calls) == 200 and sender.peak[A] == 4
    assert len({task for _t, task, _u, _k in sender.calls}) == 4  # not a task per request


async def test_an_idle_sender_task_lingers_then_ends(
        outbox: Any, autojump_clock: trio.testing.MockClock) -> None:
    sender = Sender()
    linger = notifier._LINGER
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, outbox, sender, RetryPolicy(per_endpoint=1))
        for i, pause in enumerate((0.0, linger / 2, linger * 2)):
            await trio.sleep(pause)
            await inbox.send(messages.encode_batch(events(f"x{i}", 1, A)))
            await until(lambda n=i + 1: stats.delivered == n)
        await inbox.aclose()
    tasks = [task for _t, task, _u, _k in sender.calls]
    assert tasks[0] is tasks[1]  # came back within the linger: the same task
    assert tasks[2] is not tasks[1]  # after it: a new one


async def test_the_overall_cap_moves_idle_slots_to_the_endpoint_that_needs_them(
        outbox: Any, autojump_clock: trio.testing.MockClock) -> None:
    sender = Sender()
    policy = RetryPolicy(per_endpoint=4, max_in_flight=4)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, outbox, sender, policy)
        await inbox.send(messages.encode_batch(events("a", 40, A)))
        await until(lambda: stats.delivered == 40)
        # A's four tasks are idle (lingering) and hold every slot; B must not wait for them
        t0 = trio.current_time()
        await inbox.send(messages.encode_batch(events("b", 40, B)))
        await until(lambda: stats.delivered == 80)
        took = trio.current_time() - t0
        await inbox.aclose()
    assert sender.peak_total <= 4 and sender.peak[B] == 4
    assert took < notifier._LINGER / 2, took


async def test_after_a_breaker_recovers_every_slot_sends_again(
        outbox: Any, autojump_clock: trio.testing.MockClock) -> None:
    sender = Sender(latency=0.05)
    sender.ok = False
    policy = RetryPolicy(per_endpoint=4, breaker_failures=4, breaker_cooldown=30,
                         breaker_max_cooldown=30, initial_delay=1, jitter=0)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, outbox, sender, policy)
        await inbox.send(messages.encode_batch(events("m", 100, A)))
        await until(lambda: stats.postponed > 0 and not sender.total)  # open, nothing in flight
        sender.ok = True
        sender.peak.clear()
        await until(lambda: stats.delivered >= 1, timeout=600)  # the half-open probe
        t0 = trio.current_time()
        await until(lambda: stats.delivered == 100, timeout=600)
        took = trio.current_time() - t0
        await inbox.aclose()
    # The probe's success woke the tasks parked behind it: 99 requests of 0.05 s on 4 slots,
    # not on one (nor after their linger).
    assert sender.peak[A] == 4 and took < 2.0, took
    assert sorted(sender.delivered) == sorted((e.msg_id, 1) for e in events("m", 100, A))


async def test_a_deadline_that_passes_as_the_answer_comes_is_not_a_timeout(
        outbox: Any, autojump_clock: trio.testing.MockClock) -> None:
    """The answer wakes the sender task, then the request's deadline passes before it runs:
    the answer counts, and the task's next request gets a deadline of its own."""
    entered, release = trio.Event(), trio.Event()
    cancelled = []

    class Gated(Sender):
        async def send(self, url: str, secret: bytes,
                       events: Sequence[StatusEvent]) -> CallbackResult:
            if not self.calls:
                self.calls.append((trio.current_time(), None, url, []))
                entered.set()
                await release.wait()
                self.delivered += [(e.msg_id, e.seq) for e in events]
                return CallbackResult(ok=True, status=200)
            try:
                return await super().send(url, secret, events)
            except trio.Cancelled:
                cancelled.append(trio.current_time())
                raise

    sender = Gated()
    policy = RetryPolicy(per_endpoint=1, request_timeout=5.0, initial_delay=1, jitter=0)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, outbox, sender, policy)
        await inbox.send(messages.encode_batch(events("m", 3, A)))
        await entered.wait()
        release.set()  # the task is runnable with its answer...
        autojump_clock.jump(policy.request_timeout + 1)  # ...when its deadline passes
        await until(lambda: stats.delivered == 3)
        await inbox.aclose()
    assert (stats.retried, cancelled) == (0, [])
    assert sorted(sender.delivered) == [("m0000", 1), ("m0001", 1), ("m0002", 1)]
