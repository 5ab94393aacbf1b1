"""The notifier actor with a scripted sender, a real LMDB outbox and virtual time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors import messages, notifier
from actors.callbacks_policy import RetryPolicy
from actors.messages import MsgId, StatusEvent
from actors.ports import CallbackOutbox, CallbackResult, CallbackSender
from gateway.callback_outbox import CallbackOutbox as LmdbOutbox
from gateway.callback_outbox import list_dead_letters, replay_dead_letters
from gateway.store import Store
from tests.fakes import InlineStore

URL = "https://hooks.example.com/sms"


@dataclass
class ScriptedSender:
    """Answers per request from ``answer(now, events)``; records what was delivered."""

    answer: Callable[[float, Sequence[StatusEvent]], CallbackResult] = (
        lambda now, events: CallbackResult(ok=True, status=200)
    )
    latency: float = 0.01
    calls: list[tuple[float, str, list[tuple[str, int]]]] = field(default_factory=list)
    delivered: list[tuple[str, int]] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0

    async def send(self, url: str, secret: bytes, events: Sequence[StatusEvent]) -> CallbackResult:
        assert secret == b"s3cret"
        self.calls.append((trio.current_time(), url, [(e.msg_id, e.seq) for e in events]))
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await trio.sleep(self.latency)
            result = self.answer(trio.current_time(), events)
        finally:
            self.concurrent -= 1
        if result.ok:
            self.delivered += [(e.msg_id, e.seq) for e in events]
        return result


def _check_protocols(sender: ScriptedSender, outbox: LmdbOutbox) -> tuple[CallbackSender, CallbackOutbox]:
    return sender, outbox  # mypy checks that both satisfy the ports structurally


def endpoint_for(event: StatusEvent) -> tuple[str, bytes] | None:
    if event.account == "silent":
        return None
    return (event.callback_url or URL, b"s3cret")


def events_for(n: int, *, statuses: Sequence[str] = ("SMS_SENT", "SMS_DELIVERED")) -> list[StatusEvent]:
    return [
        StatusEvent(MsgId(f"m{i:04d}"), "acme", status, seq, 1.0 + seq)
        for i in range(n)
        for seq, status in enumerate(statuses, start=1)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = InlineStore(tmp_path / "db")
    yield s  # type: ignore[misc]
    s.env.close()


async def start(
    nursery: trio.Nursery, store: Store, sender: ScriptedSender, policy: RetryPolicy, **kw: object
) -> tuple[trio.MemorySendChannel[bytes], notifier.NotifierStats]:
    send, recv = trio.open_memory_channel[bytes](4)
    stats = notifier.NotifierStats()
    await nursery.start(partial(
        notifier.run, recv, outbox=LmdbOutbox(store), sender=sender, policy=policy,
        endpoint_for=endpoint_for, now=trio.current_time, rand=lambda: 0.5, stats=stats, **kw))
    return send, stats


async def wait_until(predicate: Callable[[], bool], *, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.5)


def assert_in_seq_order(delivered: list[tuple[str, int]]) -> None:
    last: dict[str, int] = {}
    for msg, seq in delivered:
        assert seq > last.get(msg, 0), f"{msg} seq {seq} after {last.get(msg)}"
        last[msg] = seq


async def test_events_are_delivered_once_in_seq_order(store: Store, autojump_clock: trio.testing.MockClock) -> None:
    sender = ScriptedSender()
    events = events_for(50)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, store, sender, RetryPolicy(per_endpoint=4))
        await inbox.send(messages.encode_batch(events[:60]))
        await inbox.send(messages.encode_batch(events[60:] + events[:10]))  # 10 duplicates
        await wait_until(lambda: len(sender.delivered) >= 100, timeout=60)
        await inbox.aclose()
    assert sorted(sender.delivered) == sorted((e.msg_id, e.seq) for e in events)
    assert_in_seq_order(sender.delivered)
    assert sender.max_concurrent <= 4
    assert (stats.enqueued, stats.delivered, stats.retried) == (100, 100, 0)
    assert LmdbOutbox(store).pending_count() == 0


async def test_receiver_down_for_an_hour_gets_everything_after_recovery(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    t0 = trio.current_time()
    up_at = t0 + 3600

    def answer(now: float, events: Sequence[StatusEvent]) -> CallbackResult:
        return CallbackResult(ok=True, status=200) if now >= up_at else CallbackResult(ok=False, status=503)

    sender = ScriptedSender(answer)
    policy = RetryPolicy(breaker_failures=5, breaker_cooldown=30, breaker_max_cooldown=600)
    events = events_for(40)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, store, sender, policy)
        await inbox.send(messages.encode_batch(events))
        await wait_until(lambda: len(sender.delivered) >= len(events), timeout=3 * 3600)
        done_at = trio.current_time()
        await inbox.aclose()
    assert sorted(sender.delivered) == sorted((e.msg_id, e.seq) for e in events)
    assert len(set(sender.delivered)) == len(sender.delivered)  # exactly once
    assert_in_seq_order(sender.delivered)
    # Entries that served as probes carry their own (capped) back-off; the rest follow the breaker.
    assert done_at - up_at <= policy.max_delay + policy.breaker_max_cooldown
    # The breaker kept the dead endpoint quiet: a handful of probes, not 40 messages' retries.
    failed_calls = [c for c in sender.calls if c[0] < up_at]
    assert len(failed_calls) < 30, len(failed_calls)
    assert stats.postponed > 0 and stats.dead == 0


async def test_breaker_opens_then_half_opens_with_a_single_probe(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    failing = True
    sender = ScriptedSender(lambda now, events: CallbackResult(ok=not failing, status=200 if not failing else 500))
    policy = RetryPolicy(breaker_failures=3, breaker_cooldown=100, breaker_max_cooldown=100,
                         initial_delay=1, jitter=0, per_endpoint=1)
    async with trio.open_nursery() as nursery:
        inbox, _stats = await start(nursery, store, sender, policy)
        t0 = trio.current_time()
        await inbox.send(messages.encode_batch(events_for(10, statuses=("SMS_SENT",))))
        await wait_until(lambda: len(sender.calls) >= 3, timeout=60)
        await trio.sleep(50)
        assert len(sender.calls) == 3  # open: nothing goes out during the cooldown
        await wait_until(lambda: len(sender.calls) >= 4, timeout=200)
        probe_at = sender.calls[3][0]
        assert probe_at - t0 >= 100
        await trio.sleep(20)
        assert len(sender.calls) == 4  # the failed probe re-opened it
        failing = False
        await wait_until(lambda: len(sender.delivered) == 10, timeout=400)
        await inbox.aclose()
    assert len(sender.calls) == 4 + 10  # 3 failures and a failed probe, then one per message


async def test_permanent_failures_and_the_retry_window_dead_letter(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    def answer(now: float, events: Sequence[StatusEvent]) -> CallbackResult:
        if events[0].msg_id == "m0000":
            return CallbackResult(ok=False, status=410, error="http 410", permanent=True)
        return CallbackResult(ok=False, status=500)

    sender = ScriptedSender(answer)
    policy = RetryPolicy(max_age=600, initial_delay=10, breaker_failures=1000)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, store, sender, policy)
        await inbox.send(messages.encode_batch(events_for(2)))
        await wait_until(lambda: stats.dead == 4, timeout=2000)
        await inbox.aclose()
    dead = {d.id: d for d in list_dead_letters(store, "acme")}
    assert set(dead) == {"m0000:1", "m0000:2", "m0001:1", "m0001:2"}
    assert dead["m0000:1"].attempts == 1 and dead["m0000:1"].error == "http 410"
    assert dead["m0001:1"].attempts > 3 and "retries exhausted" in dead["m0001:1"].error
    # seq 2 was only tried after seq 1 was dead-lettered
    first_seq2 = min(t for t, _url, batch in sender.calls if ("m0001", 2) in batch)
    last_seq1 = max(t for t, _url, batch in sender.calls if ("m0001", 1) in batch)
    assert first_seq2 > last_seq1


async def test_replayed_dead_letters_are_delivered(store: Store, autojump_clock: trio.testing.MockClock) -> None:
    up = False
    sender = ScriptedSender(lambda now, events: CallbackResult(ok=up, status=200 if up else 500))
    policy = RetryPolicy(max_age=60, initial_delay=5, breaker_failures=1000)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, store, sender, policy)
        await inbox.send(messages.encode_batch(events_for(3, statuses=("SMS_SENT",))))
        await wait_until(lambda: stats.dead == 3, timeout=500)
        up = True
        assert await replay_dead_letters(store, "acme", ["m0001:1"], now=trio.current_time()) == 1
        t0 = trio.current_time()
        await wait_until(lambda: len(sender.delivered) == 1, timeout=60)
        assert trio.current_time() - t0 <= 1.5  # seen by the next poll (poll_interval 1 s)
        await inbox.aclose()
    assert sender.delivered == [("m0001", 1)]
    assert [d.id for d in list_dead_letters(store, "acme")] == ["m0000:1", "m0002:1"]


async def test_batched_mode_sends_arrays_per_endpoint(store: Store, autojump_clock: trio.testing.MockClock) -> None:
    sender = ScriptedSender()
    other = [StatusEvent(MsgId(f"x{i}"), "acme", "SMS_SENT", 1, 1.0, callback_url="https://other.example/h")
             for i in range(5)]
    async with trio.open_nursery() as nursery:
        inbox, _stats = await start(nursery, store, sender, RetryPolicy(batch_size=20))
        await inbox.send(messages.encode_batch(events_for(30, statuses=("SMS_SENT",)) + other))
        await wait_until(lambda: len(sender.delivered) == 35, timeout=60)
        await inbox.aclose()
    sizes = sorted((url, len(batch)) for _t, url, batch in sender.calls)
    assert sizes == [("https://hooks.example.com/sms", 10), ("https://hooks.example.com/sms", 20),
                     ("https://other.example/h", 5)]


async def test_events_without_an_endpoint_are_not_queued(store: Store, autojump_clock: trio.testing.MockClock) -> None:
    sender = ScriptedSender()
    silent = StatusEvent(MsgId("s1"), "silent", "SMS_SENT", 1, 1.0)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, store, sender, RetryPolicy())
        await inbox.send(messages.encode_batch([silent, *events_for(1, statuses=("SMS_SENT",))]))
        await wait_until(lambda: len(sender.delivered) == 1, timeout=60)
        await inbox.aclose()
    assert stats.dropped == 1 and sender.delivered == [("m0000", 1)]


async def test_a_hung_request_times_out_at_the_call_site(store: Store, autojump_clock: trio.testing.MockClock) -> None:
    sender = ScriptedSender(latency=0)
    hang = True

    async def send(url: str, secret: bytes, events: Sequence[StatusEvent]) -> CallbackResult:
        if hang:
            sender.calls.append((trio.current_time(), url, []))
            await trio.sleep_forever()
        return await ScriptedSender.send(sender, url, secret, events)

    sender.send = send  # type: ignore[method-assign]
    policy = RetryPolicy(request_timeout=7, initial_delay=1, jitter=0)
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, store, sender, policy)
        t0 = trio.current_time()
        await inbox.send(messages.encode_batch(events_for(1, statuses=("SMS_SENT",))))
        await wait_until(lambda: stats.retried == 1, timeout=60)
        assert trio.current_time() - t0 == pytest.approx(7, abs=0.6)
        hang = False
        await wait_until(lambda: len(sender.delivered) == 1, timeout=60)
        await inbox.aclose()


async def test_restart_resumes_what_the_outbox_holds(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    events = events_for(20)
    down = ScriptedSender(lambda now, ev: CallbackResult(ok=False, status=503))
    store = InlineStore(tmp_path / "db")
    async with trio.open_nursery() as nursery:
        inbox, _stats = await start(nursery, store, down, RetryPolicy())  # type: ignore[arg-type]
        await inbox.send(messages.encode_batch(events))
        await wait_until(lambda: len(down.calls) >= 5, timeout=60)
        nursery.cancel_scope.cancel()  # a hard stop with everything pending
    store.env.close()
    up = ScriptedSender()
    store = InlineStore(tmp_path / "db")
    async with trio.open_nursery() as nursery:
        inbox, _stats = await start(nursery, store, up, RetryPolicy())  # type: ignore[arg-type]
        await wait_until(lambda: len(up.delivered) == 40, timeout=3600)
        await inbox.aclose()
    store.env.close()
    assert sorted(up.delivered) == sorted((e.msg_id, e.seq) for e in events)
    assert_in_seq_order(up.delivered)


async def test_closing_the_inbox_drains_what_is_due_then_returns(store: Store) -> None:
    sender = ScriptedSender(latency=0)
    async with trio.open_nursery() as nursery:
        inbox, _stats = await start(nursery, store, sender, RetryPolicy(drain_timeout=5))
        await inbox.send(messages.encode_batch(events_for(5)))
        await inbox.aclose()
    # the nursery exited on its own: the notifier returned after draining
    assert len(sender.delivered) == 10


class CountingOutbox(LmdbOutbox):
    """Counts the entries the notifier reads back from the outbox."""

    read = 0

    def due(self, now: float, *, limit: int, skip: Any = ()) -> list[Any]:
        found = super().due(now, limit=limit, skip=skip)
        self.read += len(found)
        return found


async def test_each_entry_is_read_from_the_outbox_once_whatever_the_backlog(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    # One endpoint capped at 2 requests, 256 request slots overall and a backlog of 400
    # callbacks: a pass per finished request must not re-read (and re-decode) the backlog.
    sender = ScriptedSender()
    outbox = CountingOutbox(store)
    events = events_for(200)
    send, recv = trio.open_memory_channel[bytes](4)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(
            notifier.run, recv, outbox=outbox, sender=sender, endpoint_for=endpoint_for,
            policy=RetryPolicy(per_endpoint=2, max_in_flight=256), now=trio.current_time,
            rand=lambda: 0.5))
        await send.send(messages.encode_batch(events))
        await wait_until(lambda: len(sender.delivered) == 400, timeout=600)
        await send.aclose()
    assert sender.max_concurrent <= 2
    assert_in_seq_order(sender.delivered)
    assert outbox.read <= 400 + 4  # the drain's look at what is left may see one more


async def test_batched_mode_keeps_one_under_full_request_in_flight_per_endpoint(
        store: Store, autojump_clock: trio.testing.MockClock) -> None:
    """Events trickling in one by one: the first goes alone at once, the ones due while it is
    in flight wait for its answer and then go together (not one request each)."""
    sender = ScriptedSender(latency=0.05)
    events = events_for(40, statuses=("SMS_SENT",))
    async with trio.open_nursery() as nursery:
        inbox, stats = await start(nursery, store, sender, RetryPolicy(batch_size=100))
        for e in events:
            await inbox.send(messages.encode_batch([e]))
            await trio.sleep(0.002)  # 40 events over 80 ms: about two round trips
        await wait_until(lambda: len(sender.delivered) == 40, timeout=60)
        await inbox.aclose()
    assert sender.calls[0][2] == [("m0000", 1)]  # an idle endpoint: sent at once, alone
    assert sender.max_concurrent == 1  # never a second under-full request beside the first
    assert len(sender.calls) <= 4, [len(b) for _t, _u, b in sender.calls]
    assert stats.delivered == 40
    assert_in_seq_order(sender.delivered)


async def test_full_batches_do_not_wait_for_an_under_full_request(
        store: Store, autojump_clock: trio.testing.MockClock) -> None:
    sender = ScriptedSender(latency=0.05)
    async with trio.open_nursery() as nursery:
        inbox, _stats = await start(nursery, store, sender, RetryPolicy(batch_size=10))
        await inbox.send(messages.encode_batch(events_for(1, statuses=("SMS_SENT",))))
        await trio.sleep(0.01)  # the lone event is in flight
        await inbox.send(messages.encode_batch(
            [StatusEvent(MsgId(f"n{i:03d}"), "acme", "SMS_SENT", 1, 1.0) for i in range(25)]))
        await wait_until(lambda: len(sender.delivered) == 26, timeout=60)
        await inbox.aclose()
    sizes = [len(b) for _t, _u, b in sender.calls]
    assert sizes[:3] == [1, 10, 10] and sender.max_concurrent == 3  # the full ones went at once
    assert sizes[3:] == [5]  # the rest waited for the lone request's answer
