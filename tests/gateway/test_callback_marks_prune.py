"""serve prunes the callback outbox's settled-status marks (cb_done) of old messages hourly."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio
import trio.testing

from actors.ingress import MsgIdFactory
from actors.messages import StatusEvent
from actors.ports import Settlement
from gateway.callback_outbox import DONE, CallbackOutbox
from gateway.cli import prune_callback_marks
from gateway.store import open_store

DAY = 86_400.0
T = 1_800_000_000.0


async def test_marks_older_than_the_horizon_are_pruned_every_hour(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        outbox = CallbackOutbox(store)
        old = MsgIdFactory(lambda: T - 8 * DAY)()
        new = MsgIdFactory(lambda: T - 6 * DAY)()
        await outbox.enqueue([StatusEvent(i, "a", "SMS_SENT", 1, T) for i in (old, new)], now=T)
        await outbox.settle([Settlement(e, "delivered") for e in outbox.due(T, limit=10)], now=T)
        assert store.entries(DONE) == 2
        async with trio.open_nursery() as n:
            n.start_soon(partial(prune_callback_marks, store, now=lambda: T))
            await trio.sleep(3599)
            assert store.entries(DONE) == 2  # not before the hour
            await trio.sleep(2)
            assert store.entries(DONE) == 1
            n.cancel_scope.cancel()
        with store.read() as txn:
            assert txn.get(new.encode(), db=store.db(DONE)) is not None
