"""The rate limiter forwards a batch's own bytes when it releases all of it at once, and packs
what it releases otherwise (held messages, an upgraded row, more than MAX_BATCH)."""

from __future__ import annotations

from functools import partial

import msgpack
import trio
import trio.testing

from actors import messages, rate_limiter
from actors.messages import Message, MsgId
from actors.shaping import AccountRules, Limit, ShapingRules


def _msg(i: int) -> Message:
    return Message(MsgId(f"m{i:06d}"), "acc", f"+4477009{i:05d}", "S", "hello", "transliterate",
                   0.0)


async def _items_out(rules: ShapingRules, items: list[bytes]) -> list[bytes]:
    in_tx, in_rx = trio.open_memory_channel[bytes](len(items))
    out_tx, out_rx = trio.open_memory_channel[bytes](100)
    fin_tx, fin_rx = trio.open_memory_channel[bytes](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(rate_limiter.run, in_rx, out_tx, fin_tx, rules=rules,
                                    now=trio.current_time))
        async with in_tx:
            for item in items:
                await in_tx.send(item)
        out = [item async for item in out_rx]
    fin_rx.close()
    return out


async def test_a_batch_released_whole_goes_on_as_its_own_bytes() -> None:
    item = messages.encode_batch([_msg(i) for i in range(5)])
    out = await _items_out(ShapingRules(), [item])
    assert out == [item]
    assert out[0] is item  # forwarded, not packed again


async def test_an_upgraded_row_is_sent_in_its_current_form() -> None:
    # a version-1 Message row without its defaulted fields: decoded (upgraded), so the bytes
    # that go on must be the current encoding, not the short row
    short = msgpack.packb([[1, 1, "m1", "acc", "+4477", "S", "hi", "ucs2", 0.0]])
    out = await _items_out(ShapingRules(), [short])
    assert out != [short]
    assert messages.decode_batch(out[0]) == messages.decode_batch(short)


async def test_held_messages_are_not_forwarded_with_the_batch(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(accounts={"acc": AccountRules(limit=Limit(rate=1.0, burst=2))})
    msgs = [_msg(i) for i in range(4)]
    out = await _items_out(rules, [messages.encode_batch(msgs)])
    got = [x for item in out for x in messages.decode_batch_of(Message, item)]
    assert got == msgs
    assert len(out) > 1  # two at once, then one a second
