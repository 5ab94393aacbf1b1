"""An SMSC that stops answering holds up its own route only.

The dispatcher bounds the batches in submission at once. That bound was shared by all
connectors, so a connector whose every submit waited for ``submit_timeout`` (an SMSC that
keeps the connection but stops answering, a provider whose requests hang) took every slot, and
parts for the other connectors waited a whole timeout per round (measured: 24.9 s behind a
25 s hang). Now each connector has its own ``concurrency`` slots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import trio
import trio.testing

from actors import messages as m
from actors.ingress import MsgIdFactory
from actors.ports import SubmitResult
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.fakes import ScriptedCarrier

BASE = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC).timestamp()
HANG = 25.0


class Hanging(ScriptedCarrier):
    """Bound, but every submit takes ``HANG`` seconds to be answered."""

    async def submit_many(self, parts: Sequence[m.SubmitPart]) -> list[SubmitResult]:
        await trio.sleep(HANG)
        return await super().submit_many(parts)


async def test_a_hanging_smsc_does_not_hold_up_another_route(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    def now() -> float:
        return BASE + trio.current_time()

    sent_at: dict[str, float] = {}

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                for e in m.decode_batch_of(m.StatusEvent, item):
                    if e.event == "SMS_SENT":
                        sent_at[e.msg_id] = now()

    settings = CoreSettings(max_inflight=1000, batch=10, receipt_timeout=None,
                            routes={"+44": ["uk"], "+351": ["pt"]})
    ids = MsgIdFactory(now)
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        uk, pt = Hanging("uk", now=now), ScriptedCarrier("pt", now=now)
        async with open_gateway(store, [uk, pt], settings, notifier=notifier, now=now) as gw:
            slow = []
            for k in range(20):  # 20 accepts, more batches than the dispatcher's 8 slots
                slow += await gw.accept([m.Message(ids(), "a", f"+4477009{k:03d}{i:02d}", "S",
                                                   "hi", "transliterate", now())
                                         for i in range(10)])
            await trio.sleep(0.1)
            t = now()
            fast = await gw.accept([m.Message(ids(), "b", f"+35191234{i:04d}", "S", "hi",
                                              "transliterate", now()) for i in range(10)])
            with trio.fail_after(HANG):
                while not all(i in sent_at for i in fast):
                    await trio.sleep(0.1)
            assert max(sent_at[i] for i in fast) - t < 1.0  # not a hang's length
            with trio.fail_after(10 * HANG):  # the slow route still gets through, all of it
                while not all(i in sent_at for i in slow):
                    await trio.sleep(1)
    assert uk.duplicates() == 0 and pt.duplicates() == 0
