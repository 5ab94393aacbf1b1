"""One account's backlog behind a slow bucket does not hold up other accounts' messages.

Before ``queue_beyond``, a bulk send larger than the scheduler pump's in-flight set to an account
limited to a few messages a second filled that set with messages waiting in the limiter's
queue, and the pump read the outbox in due order: a one-time password accepted a second later,
on another account, waited until the whole backlog had gone (90 s and more for 25,000 messages
at 50/s, measured with `septet serve`). Now the limiter hands back every message whose place in
its queue is more than ``queue_beyond`` seconds from the front, with a turn at the lane's
rate; the pump stores it under that turn and frees its slot.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio
import trio.testing

from actors.shaping import AccountRules, Limit, ShapingRules
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.e2e._sent import SentTimes, now
from tests.fakes import ScriptedCarrier

RATE = 5.0  # the bulk account's messages a second
BULK = 300  # three times the pump's in-flight set


async def test_a_backlog_goes_at_its_rate_while_another_account_goes_at_once(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    sent = SentTimes()
    rules = ShapingRules(accounts={"bulk": AccountRules(limit=Limit(RATE, RATE))})
    settings = CoreSettings(shaping=rules, max_inflight=100, batch=50, receipt_timeout=None,
                            queue_beyond=10.0)
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        carrier = ScriptedCarrier("c1", now=now)
        async with open_gateway(store, [carrier], settings, notifier=sent.notifier,
                                now=now) as gw:
            bulk = await gw.accept(sent.messages(
                "bulk", [f"+3519100{i:05d}" for i in range(BULK)], "promo"))
            await trio.sleep(1)
            t_otp = now()
            otp = await gw.accept(sent.messages("otp", ["+351920000000"], "Your code is 123456"))
            await sent.all_sent(otp, within=5)
            assert sent.at[otp[0]] - t_otp < 1.0  # not behind the backlog (it was ~60 s)
            await sent.all_sent(bulk, within=BULK / RATE + 60, step=1)
        assert store.entries(b"outbox") == 0
    # The backlog went at its rate, not faster, and not much slower for being handed back.
    times = sorted(sent.at[i] for i in bulk)
    span = times[-1] - times[0]
    assert (BULK - RATE) / RATE - 1 <= span <= BULK / RATE + 15, span
    per_second = Counter(int(t - times[0]) for t in times)
    assert max(per_second.values()) <= 2 * RATE  # the burst, then the rate
