"""The durable callback outbox: idempotent enqueue, per-message order, settle, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actors.messages import MsgId, StatusEvent
from actors.ports import Settlement
from gateway.callback_outbox import (
    CallbackOutbox,
    list_dead_letters,
    prune_done,
    replay_dead_letters,
)
from gateway.store import Store, open_store


def ev(msg: str, seq: int, event: str = "SMS_SENT", account: str = "acme") -> StatusEvent:
    return StatusEvent(MsgId(msg), account, event, seq, 100.0 + seq)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "db", sync=False) as s:
        yield s


def keys(entries: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(e.event.msg_id, e.event.seq) for e in entries]


async def test_enqueue_is_idempotent_per_message_and_seq(store: Store) -> None:
    outbox = CallbackOutbox(store)
    assert await outbox.enqueue([ev("m1", 1), ev("m2", 1)], now=10) == 2
    assert await outbox.enqueue([ev("m1", 1), ev("m2", 1)], now=11) == 0
    assert keys(outbox.due(10, limit=10)) == [("m1", 1), ("m2", 1)]
    assert outbox.pending_count() == 2


async def test_only_the_lowest_pending_seq_of_a_message_is_due(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev("m1", 2, "SMS_DELIVERED"), ev("m1", 1)], now=10)
    [first] = outbox.due(10, limit=10)
    assert (first.event.seq, first.attempt) == (1, 0)
    await outbox.settle([Settlement(first, "delivered")], now=12)
    [second] = outbox.due(12, limit=10)
    assert (second.event.seq, second.first_attempt_at) == (2, 12)  # window starts on release
    await outbox.settle([Settlement(second, "delivered")], now=13)
    assert outbox.due(100, limit=10) == [] and outbox.pending_count() == 0
    # Late duplicates and older statuses are ignored: a final status never regresses.
    assert await outbox.enqueue([ev("m1", 1), ev("m1", 2)], now=14) == 0


async def test_an_older_status_arriving_after_a_newer_one_is_ignored(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev("m1", 2, "SMS_DELIVERED")], now=10)
    assert await outbox.enqueue([ev("m1", 1)], now=11) == 0
    assert keys(outbox.due(11, limit=10)) == [("m1", 2)]


async def test_retry_moves_the_entry_and_counts_the_attempt(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev("m1", 1)], now=10)
    [entry] = outbox.due(10, limit=10)
    await outbox.settle([Settlement(entry, "retry", at=20.5, error="http 503")], now=11)
    assert outbox.due(20, limit=10) == []
    assert outbox.next_due_after(11) == 20.5
    [again] = outbox.due(20.5, limit=10)
    assert (again.attempt, again.first_attempt_at, again.due) == (1, 10, 20.5)
    await outbox.settle([Settlement(again, "postpone", at=30)], now=21)
    [later] = outbox.due(30, limit=10)
    assert later.attempt == 1  # a postponement spends no attempt
    # A stale decision about an entry that has moved on is ignored.
    await outbox.settle([Settlement(entry, "delivered")], now=31)
    assert keys(outbox.due(30, limit=10)) == [("m1", 1)]


async def test_due_skips_keys_in_flight_and_respects_the_limit(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev(f"m{i}", 1) for i in range(5)], now=10)
    first_two = outbox.due(10, limit=2)
    assert keys(first_two) == [("m0", 1), ("m1", 1)]
    rest = outbox.due(10, limit=10, skip={e.key for e in first_two})
    assert keys(rest) == [("m2", 1), ("m3", 1), ("m4", 1)]
    assert outbox.due(9.9, limit=10) == []


async def test_dead_letters_release_the_next_event_and_can_be_listed_and_replayed(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev("m1", 1), ev("m1", 2, "SMS_DELIVERED"), ev("m2", 1, account="other")], now=10)
    due = {e.event.msg_id: e for e in outbox.due(10, limit=10)}
    await outbox.settle([Settlement(due["m1"], "dead", error="http 410"),
                         Settlement(due["m2"], "dead", error="timeout")], now=11)
    assert keys(outbox.due(11, limit=10)) == [("m1", 2)]  # seq 2 goes once seq 1 is dead
    [dead] = list_dead_letters(store, "acme")
    assert (dead.id, dead.error, dead.attempts, dead.dead_at) == ("m1:1", "http 410", 1, 11)
    assert [d.id for d in list_dead_letters(store, "other")] == ["m2:1"]
    assert list_dead_letters(store, "acme", after="m1:1") == []

    assert await replay_dead_letters(store, "acme", ["nope:1"], now=12) == 0
    assert await replay_dead_letters(store, "acme", "all", now=12) == 1
    assert list_dead_letters(store, "acme") == []
    # m1 seq 2 is still pending, so the replayed seq 1 waits behind it.
    [m1_2] = [e for e in outbox.due(12, limit=10) if e.event.msg_id == "m1"]
    await outbox.settle([Settlement(m1_2, "delivered")], now=13)
    assert keys(outbox.due(13, limit=10)) == [("m1", 1)]
    assert await replay_dead_letters(store, "other", ["m2:1"], now=14) == 1
    assert ("m2", 1) in keys(outbox.due(14, limit=10))


async def test_prune_forgets_settled_marks_of_old_messages(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev("a1", 1), ev("b1", 1)], now=10)
    await outbox.settle([Settlement(e, "delivered") for e in outbox.due(10, limit=10)], now=11)
    assert await prune_done(store, before_msg_id="b") == 1
    assert await outbox.enqueue([ev("a1", 1), ev("b1", 1)], now=12) == 1  # only a1 is new again
