"""Opt-outs in the rate limiter: a message to a number on its account's list ends
NOT_SENT/opted_out before any bucket is charged (the pure Shaper, explicit ``now``), a held
message whose number opts out meanwhile ends so too, one account's list never touches
another's; and the actor sends the outcome on its ``finished`` channel (MockClock)."""

from __future__ import annotations

from functools import partial
from typing import Any

import msgpack
import trio
import trio.testing

from actors import rate_limiter
from actors.messages import MessageFinished, State
from actors.ports import OptOuts
from actors.shaping import AccountRules, CampaignRules, Limit, Shaper, ShapingRules
from tests.actors.test_shaping_engine import finished, released_ids, row

OPTED = "+447700900001"
OTHER = "+447700900002"


class Lists:
    """An in-memory ``OptOuts``, counting its questions."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = set(pairs)
        self.asked = 0

    def opted_out(self, account: str, number: str) -> bool:
        self.asked += 1
        return (account, number) in self.pairs


def test_the_port_is_satisfied_structurally() -> None:
    port: OptOuts = Lists()
    assert not port.opted_out("acc", OPTED)


def test_an_opted_out_number_ends_not_sent_without_charging_a_bucket() -> None:
    lists = Lists(("acc", OPTED))
    s = Shaper(ShapingRules(default_account=AccountRules(limit=Limit(1, 1))), optouts=lists)
    s.admit(row(1, to=OPTED), 0.0)
    s.admit(row(2, to=OTHER), 0.0)  # the one token is still there for it
    s.admit(row(3, to=OPTED), 0.0)
    assert finished(s) == [("1", "opted_out"), ("3", "opted_out")]
    assert released_ids(s) == ["2"] and s.held == 0


def test_the_outcome_is_not_sent_with_code_reason_and_time() -> None:
    s = Shaper(ShapingRules(), optouts=Lists(("acc", OPTED)))
    s.admit(row("m", to=OPTED), 42.0)
    [wire] = s.finished
    done = MessageFinished(*wire[2:])
    assert (done.msg_id, done.state, done.code, done.reason, done.at) == (
        "m", State.NOT_SENT.value, "opted_out", "the recipient opted out", 42.0)


def test_opt_out_wins_over_an_expired_deadline_and_a_campaign_slice() -> None:
    rules = ShapingRules(campaigns={"c": CampaignRules(per_minute=1)})
    s = Shaper(rules, optouts=Lists(("acc", OPTED)))
    s.admit(row(1, to=OPTED, not_after=1.0), 5.0)
    s.admit(row(2, to=OPTED, campaign="c"), 5.0)
    s.admit(row(3, to=OTHER, campaign="c"), 5.0)  # the campaign's one a minute is unspent
    assert finished(s) == [("1", "opted_out"), ("2", "opted_out")]
    assert released_ids(s) == ["3"]


def test_a_held_message_whose_number_opts_out_meanwhile_ends_not_sent() -> None:
    lists = Lists()
    s = Shaper(ShapingRules(default_account=AccountRules(limit=Limit(1, 1))), optouts=lists)
    s.admit(row(1, to=OTHER), 0.0)
    s.admit(row(2, to=OPTED), 0.0)  # held: the bucket is empty
    s.admit(row(3, to=OTHER), 0.0)
    assert released_ids(s) == ["1"] and s.held == 2
    lists.pairs.add(("acc", OPTED))  # the handset replied STOP while it waited
    s.poll(1.0)
    assert finished(s) == [("2", "opted_out")]
    assert released_ids(s) == ["3"] and s.held == 0  # it took no token from message 3


def test_one_accounts_opt_out_never_affects_another_account() -> None:
    s = Shaper(ShapingRules(), optouts=Lists(("a", OPTED)))
    s.admit(row(1, account="a", to=OPTED), 0.0)
    s.admit(row(2, account="b", to=OPTED), 0.0)
    s.admit(row(3, account="a", to=OTHER), 0.0)
    assert finished(s) == [("1", "opted_out")]
    assert released_ids(s) == ["2", "3"]


def test_without_a_list_nothing_is_asked_and_everything_goes() -> None:
    s = Shaper(ShapingRules())
    s.admit(row(1, to=OPTED), 0.0)
    assert released_ids(s) == ["1"] and finished(s) == []


async def test_the_actor_sends_opted_out_on_its_finished_channel(
        autojump_clock: trio.testing.MockClock) -> None:
    lists = Lists(("acc", OPTED))
    in_send, in_recv = trio.open_memory_channel[bytes](4)
    out_send, out_recv = trio.open_memory_channel[bytes](4)
    fin_send, fin_recv = trio.open_memory_channel[bytes](4)
    released: list[Any] = []
    ended: list[Any] = []

    async def collect(recv: trio.abc.ReceiveChannel[bytes], into: list[Any]) -> None:
        async with recv:
            async for batch in recv:
                into.extend(msgpack.unpackb(batch))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, out_recv, released)
        nursery.start_soon(collect, fin_recv, ended)
        await nursery.start(partial(
            rate_limiter.run, in_recv, out_send, fin_send, rules=ShapingRules(),
            optouts=lists, now=lambda: 1000.0 + trio.current_time()))
        async with in_send:
            await in_send.send(msgpack.packb([row(1, to=OPTED), row(2, to=OTHER)]))
    assert [r[2] for r in released] == ["2"]
    assert [(r[2], r[3], r[4]) for r in ended] == [("1", "NOT_SENT", "opted_out")]
    assert lists.asked == 2
