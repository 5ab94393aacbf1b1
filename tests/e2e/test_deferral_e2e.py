"""Long shaping waits leave the pump's in-flight set (the rate limiter's ``deferred`` channel).

A campaign or account whose send window is hours away must not fill the scheduler pump's
bounded in-flight set while it waits: the limiter hands such messages back, the pump stores
them under the window's opening time and frees their slots, so later due traffic flows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trio
import trio.testing

from actors import messages as m
from actors.ingress import MsgIdFactory
from actors.shaping import AccountRules, SendWindow, ShapingRules
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.fakes import ScriptedCarrier

BASE = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC).timestamp()  # a Monday, 08:00 UTC
OPENS = BASE + 3600  # the night account's window opens at 09:00 UTC


async def test_messages_deferred_for_hours_do_not_block_later_due_messages(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    def now() -> float:
        return BASE + trio.current_time()

    events: dict[str, list[str]] = {}
    sent = trio.Event()
    day: set[str] = set()

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                for e in m.decode_batch_of(m.StatusEvent, item):
                    events.setdefault(e.msg_id, []).append(e.event)
                if day and all("SMS_DELIVERED" in events.get(i, ()) for i in day):
                    sent.set()

    rules = ShapingRules(accounts={"night": AccountRules(
        window=SendWindow("UTC", "09:00", "17:00"))})
    settings = CoreSettings(shaping=rules, max_inflight=2, batch=2, receipt_timeout=None)
    ids = MsgIdFactory(now)
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        carrier = ScriptedCarrier("c1", now=now)
        async with open_gateway(store, [carrier], settings, notifier=notifier, now=now) as gw:
            night = await gw.accept([m.Message(ids(), "night", f"+35191000000{i}", "S", "hi",
                                               "ucs2", now()) for i in range(4)])
            await trio.sleep(1)
            day.update(await gw.accept([m.Message(ids(), "day", f"+35192000000{i}", "S", "hi",
                                                  "ucs2", now()) for i in range(3)]))
            with trio.fail_after(60):
                await sent.wait()
            assert not any(i in events for i in night)
            with store.read() as txn:
                keys = list(txn.cursor(db=store.db(b"outbox")).iternext(values=False))
            assert sorted(k[8:].decode() for k in keys) == sorted(night)
            assert {int.from_bytes(k[:8], "big") for k in keys} == {int(OPENS * 1000)}
            # ...and they go when the window opens.
            with trio.fail_after(3600 + 60):
                while not all("SMS_DELIVERED" in events.get(i, ()) for i in night):
                    await trio.sleep(10)
            assert trio.current_time() >= OPENS - BASE
        assert store.entries(b"outbox") == 0
