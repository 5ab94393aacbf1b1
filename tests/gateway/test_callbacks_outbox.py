"""The durable callback outbox: idempotent enqueue, per-message order, settle, dead letters."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.messages import MsgId, StatusEvent
from actors.ports import Settlement
from gateway.callback_outbox import (
    CallbackOutbox,
    list_dead_letters,
    prune_done,
    replay_dead_letters,
)
from gateway.store import Store, open_store
from tests.fakes import InlineStore


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
    # So is a second decision about an entry already settled.
    await outbox.settle([Settlement(later, "delivered")], now=32)
    await outbox.settle([Settlement(later, "retry", at=40, error="late")], now=32)
    assert outbox.pending_count() == 0 and outbox.next_due_after(0) is None


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


# ------------------------------------------------------------------------------------------
# Model-based: whatever arrives in whatever order, per message the outbox hands out statuses
# one at a time, in ascending seq, never regressing, and loses none it accepted.


MSGS = ("a", "b", "c")


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.store = InlineStore(Path(self.tmp.name))
        self.outbox = CallbackOutbox(self.store)  # type: ignore[arg-type]
        self.now = 1000.0
        self.accepted: set[tuple[str, int]] = set()
        self.settled: list[tuple[str, int]] = []  # delivered or dead, in order

    def teardown(self) -> None:
        self.store.env.close()
        self.tmp.cleanup()

    @rule(msg=st.sampled_from(MSGS), seqs=st.lists(st.integers(1, 6), min_size=1, max_size=4))
    def enqueue(self, msg: str, seqs: list[int]) -> None:
        events = [ev(msg, s) for s in seqs]
        highest = max([s for m, s in self.accepted | set(self.settled) if m == msg], default=0)
        new = trio.run(lambda: self.outbox.enqueue(events, now=self.now))
        expected = {s for s in seqs if s > highest}
        # Only statuses newer than anything queued or settled for the message are taken.
        assert new == len({s for s in expected if s > highest})
        self.accepted |= {(msg, s) for s in seqs if s > highest}

    @rule(outcome=st.sampled_from(["delivered", "retry", "postpone", "dead"]), pick=st.integers(0, 5))
    def settle_one(self, outcome: str, pick: int) -> None:
        due = self.outbox.due(self.now, limit=10)
        if not due:
            return
        entry = due[pick % len(due)]
        at = self.now + 5 if outcome in ("retry", "postpone") else 0.0
        trio.run(lambda: self.outbox.settle([Settlement(entry, outcome, at=at)], now=self.now))  # type: ignore[arg-type]
        if outcome in ("delivered", "dead"):
            self.settled.append((entry.event.msg_id, entry.event.seq))

    @rule(dt=st.floats(0, 10))
    def advance(self, dt: float) -> None:
        self.now += dt

    @invariant()
    def one_due_per_message_and_it_is_the_lowest_pending(self) -> None:
        due = self.outbox.due(self.now + 100, limit=100)
        per_msg = Counter(e.event.msg_id for e in due)
        assert all(c == 1 for c in per_msg.values())
        settled = set(self.settled)
        for e in due:
            pending = sorted(s for m, s in self.accepted - settled if m == e.event.msg_id)
            assert e.event.seq == pending[0]

    @invariant()
    def settled_in_ascending_seq_per_message(self) -> None:
        last: dict[str, int] = {}
        for msg, seq in self.settled:
            assert seq > last.get(msg, 0)
            last[msg] = seq

    @invariant()
    def entries_from_memory_equal_what_the_rows_say(self) -> None:
        cold = CallbackOutbox(self.store)  # type: ignore[arg-type]  # remembers nothing: reads
        assert self.outbox.due(self.now + 100, limit=100) == cold.due(self.now + 100, limit=100)

    @invariant()
    def nothing_accepted_is_lost(self) -> None:
        assert self.outbox.pending_count() == len(self.accepted - set(self.settled))


OutboxMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_outbox_state_machine = OutboxMachine.TestCase


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["enqueue", "read", "settle", "tick"]),
                          st.integers(0, 7), st.sampled_from(["delivered", "retry", "dead"])),
                max_size=40))
def test_a_resumed_scan_finds_what_a_full_scan_finds(steps: list[tuple[str, int, str]]) -> None:
    """The notifier's pattern: one held set, keys added when read and removed once settled.
    Every read must equal a full scan (a fresh outbox) with the same set."""
    with tempfile.TemporaryDirectory() as tmp:
        store = InlineStore(Path(tmp))
        outbox = CallbackOutbox(store)  # type: ignore[arg-type]
        held: set[bytes] = set()
        in_flight: list = []  # type: ignore[type-arg]
        now, seq = 1000.0, 0
        for action, n, outcome in steps:
            if action == "enqueue":
                seq += 1
                events = [ev(f"m{(seq * 7 + i) % 13:02d}", seq) for i in range(n % 4 + 1)]
                trio.run(partial(outbox.enqueue, events, now=now))
            elif action == "read":
                got = outbox.due(now, limit=n + 1, skip=held)
                cold = CallbackOutbox(store).due(now, limit=n + 1, skip=held)  # type: ignore[arg-type]
                assert got == cold
                held |= {e.key for e in got}
                in_flight += got
            elif action == "settle" and in_flight:
                done = [in_flight.pop(0) for _ in range(min(len(in_flight), n % 3 + 1))]
                at = now + 0.5 if outcome == "retry" else 0.0
                decisions = [Settlement(e, outcome, at=at) for e in done]  # type: ignore[arg-type]
                trio.run(partial(outbox.settle, decisions, now=now))
                held -= {e.key for e in done}
            else:
                now += n * 0.0004  # often within the same millisecond
        store.env.close()


async def test_a_read_during_a_slow_write_does_not_resume_past_what_it_schedules(
        tmp_path: Path) -> None:
    """The enqueue took its time (``now``) before its commit; a read in between must not move
    the resume point past that time, or the entries would wait for the next full scan."""

    class SlowStore(InlineStore):
        gate = trio.Event()

        async def write(self, op):  # type: ignore[no-untyped-def]
            await self.gate.wait()
            return await super().write(op)

    store = SlowStore(tmp_path / "db")
    outbox = CallbackOutbox(store)  # type: ignore[arg-type]
    held: set[bytes] = set()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: outbox.enqueue([ev("m1", 1)], now=100.0))
        await trio.testing.wait_all_tasks_blocked()
        assert outbox.due(100.5, limit=10, skip=held) == []  # not committed yet
        store.gate.set()
    assert keys(outbox.due(100.6, limit=10, skip=held)) == [("m1", 1)]
    store.env.close()


async def test_a_resumed_scan_finds_an_entry_written_just_below_a_millisecond(
        tmp_path: Path) -> None:
    """1000.008 is 1000.0079999999999 as a float: a write at that time schedules at ms 1000007
    (floor), so a read at the same time must not resume its next scan at 1000008."""
    store = InlineStore(tmp_path / "db")
    outbox = CallbackOutbox(store)  # type: ignore[arg-type]
    now = 1000.0079999999999
    held: set[bytes] = set()
    assert outbox.due(now, limit=10, skip=held) == []
    await outbox.enqueue([ev("m1", 1)], now=now)
    assert [e.event.msg_id for e in outbox.due(now, limit=10, skip=held)] == ["m1"]
    store.env.close()
