"""An SMSC that stops answering holds up its own route only.

The dispatcher bounds the batches in submission at once. That bound was shared by all
connectors, so a connector whose every submit waited for ``submit_timeout`` (an SMSC that
keeps the connection but stops answering, a provider whose requests hang) took every slot, and
parts for the other connectors waited a whole timeout per round (measured: 24.9 s behind a
25 s hang). Now each connector has its own ``concurrency`` slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio
import trio.testing

from actors import messages as m
from actors.ports import SubmitResult
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.e2e._sent import SentTimes, now
from tests.fakes import ScriptedCarrier

HANG = 25.0


class Hanging(ScriptedCarrier):
    """Bound, but every submit takes ``HANG`` seconds to be answered."""

    async def submit_many(self, parts: Sequence[m.SubmitPart]) -> list[SubmitResult]:
        await trio.sleep(HANG)
        return await super().submit_many(parts)


async def test_a_hanging_smsc_does_not_hold_up_another_route(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    sent = SentTimes()
    settings = CoreSettings(max_inflight=1000, batch=10, receipt_timeout=None,
                            routes={"+44": ["uk"], "+351": ["pt"]})
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        uk, pt = Hanging("uk", now=now), ScriptedCarrier("pt", now=now)
        async with open_gateway(store, [uk, pt], settings, notifier=sent.notifier,
                                now=now) as gw:
            slow = []
            for k in range(20):  # 20 accepts, more batches than the dispatcher's 8 slots
                slow += await gw.accept(sent.messages(
                    "a", [f"+4477009{k:03d}{i:02d}" for i in range(10)]))
            await trio.sleep(0.1)
            t = now()
            fast = await gw.accept(sent.messages("b", [f"+35191234{i:04d}" for i in range(10)]))
            await sent.all_sent(fast, within=HANG, step=0.1)
            assert max(sent.at[i] for i in fast) - t < 1.0  # not a hang's length
            await sent.all_sent(slow, within=10 * HANG, step=1)  # the slow route gets through
    assert uk.duplicates() == 0 and pt.duplicates() == 0
