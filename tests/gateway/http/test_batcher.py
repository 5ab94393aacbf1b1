"""AcceptBatcher: concurrent submissions share accepts (at most ``max_in_flight`` at once);
failures reach every member; cancellations strand nobody."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

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


class CountingGateway:
    """Accepts take ``took`` seconds; records each call's messages, start and end, and the
    most accepts ever running at once."""

    def __init__(self, took: float = 0.01) -> None:
        self.took = took
        self.calls: list[tuple[list[Any], float, float]] = []
        self.running = 0
        self.most = 0
        self.fail_when: Callable[[list[Any]], bool] = lambda msgs: False

    async def accept(self, messages: list[Any], *, also: Any = None) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        start = trio.current_time()
        try:
            await trio.sleep(self.took)
        finally:
            self.running -= 1
        if self.fail_when(messages):
            raise Saturated(1.0)
        self.calls.append((list(messages), start, trio.current_time()))


async def test_issue_9_a_second_group_commits_while_the_first_does(autojump_clock: Any) -> None:
    gw = CountingGateway(took=0.010)
    b = AcceptBatcher(gw, gather=0.002)
    finished: dict[int, float] = {}

    async def one(i: int, at: float) -> None:
        await trio.sleep(at)
        await b.accept([i])
        finished[i] = trio.current_time()

    async with trio.open_nursery() as n:
        n.start_soon(one, 0, 0.0)
        n.start_soon(one, 1, 0.001)  # the first is committing: a second slot, 2 ms gathering
        n.start_soon(one, 2, 0.002)  # joins the second group while it gathers
        n.start_soon(one, 3, 0.004)  # both slots taken: waits for one to return
    assert finished[0] == pytest.approx(0.010)
    assert finished[1] == finished[2] == pytest.approx(0.013)  # not 0.022 as with one slot
    assert [c[0] for c in gw.calls] == [[0], [1, 2], [3]]
    assert finished[3] == pytest.approx(0.022)  # handed the first slot at 0.010, gathered 2 ms
    assert gw.most == 2


async def test_issue_9_one_slot_keeps_one_accept_at_a_time(autojump_clock: Any) -> None:
    gw = CountingGateway(took=0.010)
    b = AcceptBatcher(gw, gather=0.002, max_in_flight=1)
    async with trio.open_nursery() as n:
        for i in range(5):
            n.start_soon(b.accept, [i])
    assert gw.most == 1 and sorted(m for c in gw.calls for m in c[0]) == list(range(5))


async def test_issue_9_cancelled_while_gathering_hands_its_slot_on(autojump_clock: Any) -> None:
    gw = CountingGateway(took=0.010)
    b = AcceptBatcher(gw, gather=0.002)
    done: list[int] = []

    async def one(i: int, at: float) -> None:
        await trio.sleep(at)
        await b.accept([i])
        done.append(i)

    async def cancelled_while_gathering() -> None:
        await trio.sleep(0.001)
        with trio.move_on_after(0.001):  # its gathering ends at 0.003: cancelled at 0.002
            await b.accept([1])
        done.append(-1)

    async with trio.open_nursery() as n:
        n.start_soon(one, 0, 0.0)
        n.start_soon(cancelled_while_gathering)
        n.start_soon(one, 2, 0.0015)  # both slots taken: waits, then leads in the freed one
    assert sorted(done) == [-1, 0, 2]
    assert [1] not in [c[0] for c in gw.calls]
    assert sorted(m for c in gw.calls for m in c[0]) == [0, 2]
    assert (b._in_flight, b._pending) == (0, [])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["ok", "cancel", "fail"]),
                          st.integers(1, 3)), min_size=1, max_size=25),
       st.integers(1, 3))
def test_issue_9_every_request_is_committed_once_or_told_why(
        arrivals: list[tuple[int, str, int]], slots: int) -> None:
    """Random arrivals (ms), cancellations and failing groups: each request that returned
    normally had its messages committed exactly once, a failed one saw the group's error,
    no more than ``slots`` accepts ran at once, and the batcher ends idle."""
    gw = CountingGateway(took=0.004)
    bad = {i for i, (_, kind, _) in enumerate(arrivals) if kind == "fail"}
    gw.fail_when = lambda msgs: any(m[0] in bad for m in msgs)
    outcome: dict[int, str] = {}

    async def one(i: int, at: int, kind: str, size: int) -> None:
        await trio.sleep(at / 1000)
        msgs = [(i, k) for k in range(size)]
        with trio.move_on_after(0.003 if kind == "cancel" else math.inf):
            try:
                await b.accept(msgs)
                outcome[i] = "ok"
            except Saturated:
                outcome[i] = "failed"
            return
        outcome[i] = "cancelled"

    async def main() -> None:
        async with trio.open_nursery() as n:
            for i, (at, kind, size) in enumerate(arrivals):
                n.start_soon(one, i, at, kind, size)

    b = AcceptBatcher(gw, max_messages=4, gather=0.002, max_in_flight=slots)
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    committed = [m for c in gw.calls for m in c[0]]
    assert len(committed) == len(set(committed))  # nothing twice
    requests = {m[0] for m in committed}
    for i, (_, _, size) in enumerate(arrivals):
        if outcome[i] == "ok":
            assert i in requests and sum(1 for m in committed if m[0] == i) == size
        elif outcome[i] == "failed":
            assert i not in requests
    assert gw.most <= slots
    assert all(len(c[0]) <= 4 or len({m[0] for m in c[0]}) == 1 for c in gw.calls)
    assert (b._in_flight, b._pending, b._pending_messages) == (0, [], 0)
