"""The rate_limiter actor under trio's MockClock: rates, bursts, slices, restarts, feedback.

Virtual time only (``autojump_clock``): the actor's ``now`` is the MockClock plus a base, so
released rates and instants are exact.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from actors import messages, rate_limiter
from actors.messages import ConnectorThrottled, Message, MessageFinished, MsgId
from actors.shaping import (
    AccountRules,
    Adaptive,
    CampaignRules,
    ConnectorRules,
    Limit,
    SendWindow,
    ShapingRules,
)

Released = list[tuple[float, Message]]
Finished = list[tuple[float, MessageFinished]]


def msg(i: int, *, to: str = "", parts: int = 1, **kw: Any) -> Message:
    kw.setdefault("accepted_at", 0.0)
    return Message(MsgId(f"m{i:06d}"), kw.pop("account", "acc"), to or f"+4477009{i:05d}",
                   kw.pop("sender", "S"), "hello", "transliterate", parts=parts, **kw)


async def drive(rules: ShapingRules, batch: Sequence[Message], *, base: float = 0.0,
                throttles: Sequence[float] = (), stop_after: float = math.inf,
                chunk: int = 500) -> tuple[Released, Finished]:
    """Feed ``batch`` to a fresh limiter; collect (virtual time since start, item)."""
    t0 = trio.current_time()

    def now() -> float:
        return base + trio.current_time()

    released: Released = []
    done: Finished = []
    in_tx, in_rx = trio.open_memory_channel[bytes](0)
    out_tx, out_rx = trio.open_memory_channel[bytes](0)
    fin_tx, fin_rx = trio.open_memory_channel[bytes](0)
    fb_tx, fb_rx = trio.open_memory_channel[bytes](0)

    async def collect(rx: trio.abc.ReceiveChannel[bytes], kind: type[Any], sink: list[Any]) -> None:
        async with rx:
            async for b in rx:
                t = trio.current_time() - t0
                sink.extend((t, m) for m in messages.decode_batch_of(kind, b))

    async def feed() -> None:
        async with in_tx:
            for i in range(0, len(batch), chunk):
                await in_tx.send(messages.encode_batch(batch[i:i + chunk]))

    async def throttle() -> None:
        async with fb_tx:
            for at in throttles:
                await trio.sleep_until(t0 + at)
                await fb_tx.send(messages.encode_batch([ConnectorThrottled("default", now())]))

    with trio.move_on_after(stop_after):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, out_rx, Message, released)
            nursery.start_soon(collect, fin_rx, MessageFinished, done)
            await nursery.start(partial(rate_limiter.run, in_rx, out_tx, fin_tx, rules=rules,
                                        feedback=fb_rx, now=now))
            nursery.start_soon(feed)
            nursery.start_soon(throttle)
    return released, done


def count_between(released: Released, start: float, end: float) -> int:
    return sum(1 for t, _ in released if start <= t < end)


async def test_no_rules_is_a_pass_through(autojump_clock: trio.testing.MockClock) -> None:
    batch = [msg(i) for i in range(1200)]
    released, done = await drive(ShapingRules(), batch)
    assert [m for _, m in released] == batch
    assert done == [] and {t for t, _ in released} == {0.0}


BUCKET_KINDS = {
    "account": ShapingRules(default_account=AccountRules(limit=Limit(100, 2))),
    "sender": ShapingRules(default_account=AccountRules(per_sender=Limit(100, 2))),
    "named_sender": ShapingRules(default_account=AccountRules(senders={"S": Limit(100, 2)})),
    "account_prefix": ShapingRules(default_account=AccountRules(prefixes={"+44": Limit(100, 2)})),
    "connector": ShapingRules(default_connector=ConnectorRules(limit=Limit(100, 2))),
    "connector_sender": ShapingRules(default_connector=ConnectorRules(per_sender=Limit(100, 2))),
    "connector_prefix": ShapingRules(
        default_connector=ConnectorRules(prefixes={"+447": Limit(100, 2)})),
    "tightest_of_several": ShapingRules(
        default_account=AccountRules(limit=Limit(400, 10), per_sender=Limit(100, 2)),
        default_connector=ConnectorRules(limit=Limit(1000, 50))),
}


@pytest.mark.parametrize("kind", sorted(BUCKET_KINDS))
async def test_rate_over_60_virtual_seconds_is_within_1_percent(
        autojump_clock: trio.testing.MockClock, kind: str) -> None:
    # 100 segments/s and 2-part messages: 50 messages/s, 3000 in a minute.
    batch = [msg(i, parts=2) for i in range(3300)]
    released, _ = await drive(BUCKET_KINDS[kind], batch)
    assert len(released) == 3300
    assert count_between(released, 0.0, 60.0) == pytest.approx(3000, rel=0.01)
    assert [m for _, m in released] == batch  # one lane: order kept


async def test_campaign_per_minute_over_60_virtual_seconds(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(campaigns={"c": CampaignRules(per_minute=1800)})
    released, _ = await drive(rules, [msg(i, campaign="c", parts=3) for i in range(2000)])
    assert count_between(released, 0.0, 60.0) == pytest.approx(1800, rel=0.01)


async def test_burst_goes_at_once_then_the_rate(autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(default_account=AccountRules(limit=Limit(rate=10, burst=50)))
    released, _ = await drive(rules, [msg(i) for i in range(100)])
    assert count_between(released, 0.0, 1e-9) == 50
    assert count_between(released, 1e-9, 1.0 + 1e-9) == 10
    assert released[-1][0] == pytest.approx(5.0)


async def test_fifteen_percent_every_twenty_minutes(autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(campaigns={"spring": CampaignRules(total=1000, slice_percent=15,
                                                            slice_every=20 * 60)})
    batch = [msg(i, campaign="spring") for i in range(1000)]
    released, _ = await drive(rules, batch)
    slices = Counter(round(t) for t, _ in released)
    assert sorted(slices.items()) == [(k * 1200, 150) for k in range(6)] + [(7200, 100)]


async def test_a_blocked_lane_does_not_stall_others(autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(default_account=AccountRules(per_sender=Limit(1, 1)))
    batch = [msg(i, sender="SLOW") for i in range(20)] + [msg(100 + i, sender=f"F{i}")
                                                          for i in range(20)]
    released, _ = await drive(rules, batch)
    fast = [t for t, m in released if m.sender != "SLOW"]
    assert fast == [0.0] * 20
    assert max(t for t, _ in released) == pytest.approx(19.0)


MONDAY_18H = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC).timestamp()
HOUR = 3600.0


async def test_windows_and_deadlines_hold_across_a_restart(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(default_account=AccountRules(
        window=SendWindow("UTC", "09:00", "17:00"), validity=20 * HOUR))
    base = MONDAY_18H - trio.current_time()
    batch = [
        msg(1, accepted_at=MONDAY_18H),                          # waits for 09:00
        msg(2, accepted_at=MONDAY_18H, not_after=MONDAY_18H + 14 * HOUR),  # 08:00: expires
        msg(3, accepted_at=MONDAY_18H - 10 * HOUR),              # validity ends 04:00: expires
        msg(4, accepted_at=MONDAY_18H, not_after=MONDAY_18H + 0.5 * HOUR),
    ]
    # First life: an hour, then a crash. Nothing may be sent outside the window.
    released, done = await drive(rules, batch, base=base, stop_after=HOUR)
    assert released == []
    assert [(round(t), f.msg_id, f.code) for t, f in done] == [(1800, "m000004", "expired")]
    # Second life: the scheduler feeds every message that is not final again, here all four
    # (as if the crash came before the first life's outcome was stored).
    released, done = await drive(rules, batch, base=base)
    assert [(round(t), m.msg_id) for t, m in released] == [(14 * HOUR, "m000001")]
    assert [(round(t), f.msg_id) for t, f in done] == [
        (0, "m000004"), (9 * HOUR, "m000003"), (13 * HOUR, "m000002")]


async def test_throttling_lowers_and_restores_the_rate(
        autojump_clock: trio.testing.MockClock) -> None:
    adaptive = Adaptive(decrease=0.5, hold=5.0, recover=0.05, cooldown=1.0)
    rules = ShapingRules(default_connector=ConnectorRules(limit=Limit(100, 1), adaptive=adaptive))
    released, _ = await drive(rules, [msg(i) for i in range(5000)], throttles=(10.0, 10.5),
                              stop_after=45.0)
    assert count_between(released, 0.0, 10.0) == pytest.approx(1000, rel=0.01)
    assert count_between(released, 10.0, 15.0) == pytest.approx(250, rel=0.02)  # one cut only
    assert count_between(released, 15.0, 25.0) == pytest.approx(750, rel=0.02)  # 50 -> 100
    assert count_between(released, 30.0, 40.0) == pytest.approx(1000, rel=0.01)


async def test_stops_reading_while_holding_too_much(mock_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(default_account=AccountRules(limit=Limit(1, 1)), max_held=10)
    in_tx, in_rx = trio.open_memory_channel[bytes](0)
    out_tx, out_rx = trio.open_memory_channel[bytes](100)
    fin_tx, fin_rx = trio.open_memory_channel[bytes](100)
    sent = 0

    async def feed() -> None:
        nonlocal sent
        async with in_tx:
            for i in range(10):
                await in_tx.send(messages.encode_batch([msg(i * 5 + k) for k in range(5)]))
                sent += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(partial(rate_limiter.run, in_rx, out_tx, fin_tx, rules=rules,
                                    now=trio.current_time))
        nursery.start_soon(feed)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == 3  # 1 released, 14 held >= 10: the third batch is the last read
        for _ in range(4):
            mock_clock.jump(1.0)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == 3  # releasing one a second: 13, 12, 11, 10 held
        mock_clock.jump(1.0)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == 4  # 5 more released, 9 held: one more batch read
        nursery.cancel_scope.cancel()
    out_rx.close()
    fin_rx.close()


async def test_deferred_messages_leave_on_their_own_channel(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(default_account=AccountRules(window=SendWindow("UTC", "09:00", "17:00")))
    base = MONDAY_18H - trio.current_time()
    in_tx, in_rx = trio.open_memory_channel[bytes](1)
    out_tx, out_rx = trio.open_memory_channel[bytes](1)
    fin_tx, fin_rx = trio.open_memory_channel[bytes](1)
    later_tx, later_rx = trio.open_memory_channel[bytes](1)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(rate_limiter.run, in_rx, out_tx, fin_tx, rules=rules,
                                    now=lambda: base + trio.current_time(),
                                    deferred=later_tx, defer_beyond=60.0))
        async with in_tx:
            await in_tx.send(messages.encode_batch([msg(1, accepted_at=MONDAY_18H)]))
        later = [m for b in [await later_rx.receive()]
                 for m in messages.decode_batch_of(Message, b)]
        assert [(m.msg_id, m.send_at) for m in later] == [("m000001", MONDAY_18H + 15 * HOUR)]
        assert [b async for b in out_rx] == []  # the actor ends: nothing held
        assert [b async for b in later_rx] == [] and [b async for b in fin_rx] == []


async def test_a_window_opening_is_sent_on_in_bounded_batches(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(default_account=AccountRules(window=SendWindow("UTC", "09:00", "17:00")))
    base = MONDAY_18H - trio.current_time()
    in_tx, in_rx = trio.open_memory_channel[bytes](10)
    out_tx, out_rx = trio.open_memory_channel[bytes](100)
    fin_tx, fin_rx = trio.open_memory_channel[bytes](1)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(rate_limiter.run, in_rx, out_tx, fin_tx, rules=rules,
                                    now=lambda: base + trio.current_time()))
        async with in_tx:
            for k in range(3):
                await in_tx.send(messages.encode_batch([msg(k * 500 + i) for i in range(500)]))
        sizes = [len(messages.decode_batch(b)) async for b in out_rx]
    fin_rx.close()
    assert sum(sizes) == 1500 and max(sizes) == rate_limiter.MAX_BATCH


async def test_recently_contacted_numbers_end_not_sent(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(default_account=AccountRules(no_recontact_hours=36))
    batch = [msg(1, to="+447700900001"), msg(2, to="+447700900001"), msg(3, to="+447700900002")]
    released, done = await drive(rules, batch)
    assert [m.msg_id for _, m in released] == ["m000001", "m000003"]
    assert [(f.msg_id, f.state, f.code) for _, f in done] == [
        ("m000002", "NOT_SENT", "recently_contacted")]
