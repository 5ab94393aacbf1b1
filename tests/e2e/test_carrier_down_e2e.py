"""A connector that is down does not stop the routes of the others.

Before ``route_wait``, a message whose only connector was unbound went on to the dispatcher,
which waited with it (rightly: no attempt is spent while nothing is bound) while it kept its
slot in the scheduler pump's in-flight set. A backlog for that connector larger than the set
filled it, and messages for every other route then waited for as long as the outage lasted.
Now the rate limiter hands such a message back to the durable schedule for as long as the
route has been down (0.5 s up to ``not_ready_recheck``), and it goes when its connector is
back.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.e2e._sent import SentTimes, now
from tests.fakes import ScriptedCarrier

BACKLOG = 300  # three times the pump's in-flight set


async def test_an_smsc_down_holds_only_its_own_route(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    sent = SentTimes()
    settings = CoreSettings(max_inflight=100, batch=50, receipt_timeout=None,
                            routes={"+44": ["uk"], "+351": ["pt"]}, not_ready_recheck=30.0)
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        uk, pt = ScriptedCarrier("uk", now=now), ScriptedCarrier("pt", now=now)
        uk.ready_flag = False
        async with open_gateway(store, [uk, pt], settings, notifier=sent.notifier,
                                now=now) as gw:
            backlog = await gw.accept(sent.messages(
                "a", [f"+4477009{i:05d}" for i in range(BACKLOG)]))
            await trio.sleep(1)
            t = now()
            other = await gw.accept(sent.messages("b", ["+351912345678"]))
            await sent.all_sent(other, within=5)
            assert sent.at[other[0]] - t < 1.0  # not behind the other route's outage
            await trio.sleep(120)
            assert not any(i in sent.at for i in backlog) and uk.calls == 0
            back = now()
            uk.ready_flag = True  # the SMSC is back: its backlog goes, all of it, once
            await sent.all_sent(backlog, within=120, step=0.5)
            assert max(sent.at[i] for i in backlog) - back <= 30.0 + 5.0
        assert store.entries(b"outbox") == 0
    assert uk.duplicates() == 0 and sum(uk.submitted.values()) == BACKLOG
