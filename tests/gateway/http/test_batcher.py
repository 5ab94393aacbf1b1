"""AcceptBatcher: concurrent submissions share one accept; failures reach every member."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from gateway.api._batcher import AcceptBatcher
from gateway.errors import Saturated


class SlowGateway:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], Any]] = []
        self.fail: Exception | None = None
        self.txn: list[str] = []

    async def accept(self, messages: list[Any], *, also: Any = None) -> None:
        self.calls.append((list(messages), also))
        fail = self.fail
        await trio.sleep(0.01)
        if fail is not None:
            raise fail
        if also is not None:
            also(self.txn)


async def test_alone_goes_at_once_then_waiters_share_one_accept(autojump_clock: Any) -> None:
    gw = SlowGateway()
    b = AcceptBatcher(gw)
    async with trio.open_nursery() as n:
        for i in range(10):
            n.start_soon(b.accept, [i], (lambda t, i=i: t.append(f"k{i}")) if i % 2 else None)
    first, rest = (c[0] for c in gw.calls)  # trio starts tasks in no fixed order
    assert len(first) == 1 and sorted(first + rest) == list(range(10))
    assert sorted(gw.txn) == ["k1", "k3", "k5", "k7", "k9"]  # every also ran, in the same txn
    assert (b.groups, b.requests) == (2, 10)


async def test_failure_is_every_members_failure(autojump_clock: Any) -> None:
    gw = SlowGateway()
    b = AcceptBatcher(gw)
    outcomes: list[str] = []

    async def one(i: int) -> None:
        try:
            await b.accept([i])
            outcomes.append("ok")
        except Saturated:
            outcomes.append("saturated")

    async with trio.open_nursery() as n:
        n.start_soon(one, 0)
        await trio.testing.wait_all_tasks_blocked()
        gw.fail = Saturated(1.0)
        for i in range(1, 4):
            n.start_soon(one, i)
    assert sorted(outcomes) == ["ok", "saturated", "saturated", "saturated"]
    gw.fail = None
    await b.accept([9])  # and the batcher is usable afterwards
    assert gw.calls[-1][0] == [9]


async def test_a_cancelled_waiter_does_not_strand_the_others(autojump_clock: Any) -> None:
    gw = SlowGateway()
    b = AcceptBatcher(gw)
    done: list[int] = []

    async def one(i: int) -> None:
        await b.accept([i])
        done.append(i)

    async with trio.open_nursery() as n:
        n.start_soon(one, 0)
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await b.accept([1])
        n.start_soon(one, 2)
    assert sorted(done) == [0, 2]
    assert [1] not in [c[0] for c in gw.calls]


async def test_groups_are_bounded(autojump_clock: Any) -> None:
    gw = SlowGateway()
    b = AcceptBatcher(gw, max_messages=250)
    async with trio.open_nursery() as n:
        for i in range(8):
            n.start_soon(b.accept, list(range(100)))
    assert all(len(c[0]) <= 250 for c in gw.calls) and sum(len(c[0]) for c in gw.calls) == 800
