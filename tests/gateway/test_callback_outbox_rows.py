"""The callback outbox's shortcuts: a released row patched in place, the done mark deferred."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import MsgId, StatusEvent, to_wire
from actors.ports import Settlement
from gateway._callback_ops import WAITING
from gateway._callback_ops import pack as _pack
from gateway._callback_ops import released_row as _released_row
from gateway.callback_outbox import DONE, CallbackOutbox, replay_dead_letters
from gateway.store import Store, open_store

text = st.text(max_size=12)
events = st.builds(StatusEvent, st.text(min_size=1, max_size=20).map(MsgId), text, text,
                   st.integers(1, 2**32 - 1), st.floats(allow_nan=False, allow_infinity=False),
                   text, text, st.integers(0, 10), text, text, text, text)


@settings(max_examples=200, deadline=None)
@given(events, st.floats(allow_nan=False), st.integers(0, 2**63 - 1),
       st.floats(allow_nan=False, allow_infinity=False))
def test_a_released_row_is_what_packing_it_afresh_gives(event: StatusEvent, first_at: float,
                                                        due_ms: int, now: float) -> None:
    wire = to_wire(event)
    waiting = _pack(WAITING, 0, first_at, "", wire)
    assert _released_row(waiting, due_ms, now) == _pack(due_ms, 0, now, "", wire)
    assert msgpack.unpackb(_released_row(waiting, due_ms, now))[4] == msgpack.unpackb(waiting)[4]


def test_rows_not_in_the_waiting_form_are_left_to_the_general_path() -> None:
    wire = to_wire(StatusEvent(MsgId("m"), "a", "SMS_SENT", 1, 1.0))
    assert _released_row(_pack(5, 0, 1.0, "", wire), 9, 2.0) is None  # scheduled
    assert _released_row(_pack(WAITING, 0, 1.0, "boom", wire), 9, 2.0) is None  # an error kept
    assert _released_row(_pack(WAITING, 0, 1, "", wire), 9, 2.0) is None  # first_at an int


def ev(msg: str, seq: int) -> StatusEvent:
    return StatusEvent(MsgId(msg), "acme", "SMS_SENT" if seq == 1 else "SMS_DELIVERED", seq,
                       100.0 + seq)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "db", sync=False) as s:
        yield s


async def _settle_due(outbox: CallbackOutbox, outcome: str, now: float) -> list[tuple[str, int]]:
    due = outbox.due(now, limit=10)
    await outbox.settle([Settlement(e, outcome) for e in due], now=now)  # type: ignore[arg-type]
    return [(e.event.msg_id, e.event.seq) for e in due]


async def test_the_done_mark_waits_for_the_last_pending_status(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev("m1", 1), ev("m1", 2)], now=10)
    assert await _settle_due(outbox, "delivered", 11) == [("m1", 1)]
    assert store.entries(DONE) == 0  # seq 2 pending says it: seq 1 again is refused
    assert await outbox.enqueue([ev("m1", 1)], now=12) == 0
    assert await _settle_due(outbox, "delivered", 13) == [("m1", 2)]
    assert store.entries(DONE) == 1
    assert await outbox.enqueue([ev("m1", 1), ev("m1", 2)], now=14) == 0
    assert outbox.due(20, limit=10) == []


async def test_a_replayed_lower_status_pending_does_not_defer_the_mark(store: Store) -> None:
    outbox = CallbackOutbox(store)
    await outbox.enqueue([ev("m1", 1)], now=10)
    assert await _settle_due(outbox, "dead", 11) == [("m1", 1)]
    await outbox.enqueue([ev("m1", 2)], now=12)
    assert await replay_dead_letters(store, "acme", "all", now=13) == 1  # waits behind seq 2
    assert await _settle_due(outbox, "delivered", 14) == [("m1", 2)]
    assert await outbox.enqueue([ev("m1", 2)], now=15) == 0  # seq 2 is done: not sent again
    assert await _settle_due(outbox, "delivered", 16) == [("m1", 1)]  # the replay, once
    assert outbox.due(20, limit=10) == []
