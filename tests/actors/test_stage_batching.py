"""Natural batching in the stages: a stage takes every item already waiting in its inbox
(never waiting for more), and the dispatcher keeps one mark in flight, so parts arriving while
it commits go in the next mark. Idle, an item goes through at once."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

from actors import dispatcher, rate_limiter, scheduler, segmenter
from actors import messages as m
from actors._wire import WireBatch, join_arrays
from actors.ingress import MsgIdFactory
from actors.ports import PipelineStore as PipelinePort
from actors.ports import SubmitResult
from actors.routing import RouteTable
from actors.shaping import AccountRules, Limit, ShapingRules
from gateway._store_pipeline import PipelineStore
from gateway.store import open_store
from tests.fakes import ScriptedCarrier


def _msgs(n: int, start: int = 0, now: float = 1.0) -> list[m.Message]:
    return [m.Message(m.MsgId(f"m{i:06d}"), "acc", f"+4477009{i:05d}", "S", "hello",
                      "transliterate", now) for i in range(start, start + n)]


def _parts(msgs: Sequence[m.Message]) -> list[m.SubmitPart]:
    return [m.SubmitPart(x.msg_id, 1, 1, x.to, x.sender, 0, b"", b"t", 0, x.account)
            for x in msgs]


class _GatedStore:
    """``mark_submitting`` that records each batch and, while ``gate`` is set, waits for it."""

    def __init__(self) -> None:
        self.marks: list[Sequence[m.SubmitPart]] = []
        self.marked: set[tuple[str, int]] = set()
        self.gate: trio.Event | None = None
        self.in_flight = 0
        self.most_in_flight = 0

    def as_port(self) -> PipelinePort:
        return cast(PipelinePort, self)

    async def mark_submitting(self, parts: Sequence[m.SubmitPart], now: float) -> list[bool]:
        self.marks.append(parts)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await trio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        self.marked.update((p.msg_id, p.part) for p in parts)
        return [True] * len(parts)


class _CheckingCarrier(ScriptedCarrier):
    """Fails the test if a part is submitted before its mark committed."""

    def __init__(self, store: _GatedStore) -> None:
        super().__init__("one", lambda part, attempt: "silent")
        self.store = store
        self.early_submits = 0

    async def submit_many(self, parts: Sequence[m.SubmitPart]) -> list[SubmitResult]:
        self.early_submits += sum((p.msg_id, p.part) not in self.store.marked for p in parts)
        return await super().submit_many(parts)


async def _sink_nowhere(receipts: object) -> None:
    pass


async def test_parts_arriving_during_a_mark_go_in_one_next_mark(
        autojump_clock: trio.testing.MockClock) -> None:
    store = _GatedStore()
    carrier = _CheckingCarrier(store)
    carrier.now = trio.current_time
    in_send, in_recv = trio.open_memory_channel[bytes](8)
    out_send, out_recv = trio.open_memory_channel[bytes](64)
    items = [m.encode_batch(_parts(_msgs(3, start=3 * i))) for i in range(4)]
    async with trio.open_nursery() as nursery:
        await nursery.start(carrier.run, _sink_nowhere)
        await nursery.start(partial(
            dispatcher.run, in_recv, out_send, carriers={"one": carrier},
            routes=RouteTable.from_mapping({"": ["one"]}), store=store.as_port(),
            now=trio.current_time))
        store.gate = trio.Event()
        t0 = trio.current_time()
        await in_send.send(items[0])
        await trio.testing.wait_all_tasks_blocked()
        assert len(store.marks) == 1  # idle: marked at once, without waiting for more
        assert trio.current_time() == t0
        for item in items[1:]:  # arrive while the first mark commits
            await in_send.send(item)
        await trio.testing.wait_all_tasks_blocked()
        assert len(store.marks) == 1  # one mark in flight at a time
        store.gate.set()
        store.gate = None
        await in_send.aclose()
        outcomes = [o async for item in out_recv for o in m.decode_batch_of(m.PartSubmitted, item)]
        nursery.cancel_scope.cancel()
    assert [len(batch) for batch in store.marks] == [3, 9]
    second = store.marks[1]
    assert isinstance(second, WireBatch)  # the items' bytes joined: the writer packs nothing
    assert second.wire == join_arrays(items[1:])
    assert list(second) == [p for item in items[1:] for p in m.decode_batch_of(m.SubmitPart, item)]
    assert store.most_in_flight == 1
    assert carrier.early_submits == 0
    assert sorted((o.msg_id, o.part) for o in outcomes) == sorted(
        (p.msg_id, p.part) for batch in store.marks for p in batch)


async def test_a_mark_takes_at_most_max_mark_parts_of_what_waits(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher, "MAX_MARK", 5)
    store = _GatedStore()
    carrier = _CheckingCarrier(store)
    carrier.now = trio.current_time
    in_send, in_recv = trio.open_memory_channel[bytes](8)
    out_send, out_recv = trio.open_memory_channel[bytes](64)
    async with trio.open_nursery() as nursery:
        await nursery.start(carrier.run, _sink_nowhere)
        for i in range(4):  # all waiting before the dispatcher starts
            await in_send.send(m.encode_batch(_parts(_msgs(3, start=3 * i))))
        await in_send.aclose()
        await nursery.start(partial(
            dispatcher.run, in_recv, out_send, carriers={"one": carrier},
            routes=RouteTable.from_mapping({"": ["one"]}), store=store.as_port(),
            now=trio.current_time))
        outcomes = [o async for item in out_recv for o in m.decode_batch_of(m.PartSubmitted, item)]
        nursery.cancel_scope.cancel()
    assert [len(batch) for batch in store.marks] == [6, 6]  # stops once >= MAX_MARK
    assert len(outcomes) == 12


async def test_segmenter_takes_every_waiting_item_into_one_item_on() -> None:
    in_send, in_recv = trio.open_memory_channel[bytes](8)
    out_send, out_recv = trio.open_memory_channel[bytes](8)
    fin_send, fin_recv = trio.open_memory_channel[bytes](8)
    batches = [_msgs(2, start=2 * i) for i in range(3)]
    async with trio.open_nursery() as nursery:
        for batch in batches:  # waiting before the segmenter runs
            await in_send.send(m.encode_batch(batch))
        await in_send.aclose()
        await nursery.start(partial(segmenter.run, in_recv, out_send, fin_send, now=lambda: 7.0))
        out = [item async for item in out_recv]
        fin_recv.close()
    assert len(out) == 1
    expected = [p for batch in batches for x in batch for p in segmenter.plan_parts(x, 7.0)]
    assert m.decode_batch_of(m.SubmitPart, out[0]) == expected


async def _limiter_out(rules: ShapingRules, items: list[bytes]) -> list[bytes]:
    in_send, in_recv = trio.open_memory_channel[bytes](len(items))
    out_send, out_recv = trio.open_memory_channel[bytes](100)
    fin_send, fin_recv = trio.open_memory_channel[bytes](100)
    async with trio.open_nursery() as nursery:
        for item in items:  # waiting before the limiter runs
            await in_send.send(item)
        await in_send.aclose()
        await nursery.start(partial(rate_limiter.run, in_recv, out_send, fin_send, rules=rules,
                                    now=trio.current_time))
        out = [item async for item in out_recv]
    fin_recv.close()
    return out


async def test_limiter_forwards_waiting_items_released_whole_as_their_bytes_joined() -> None:
    items = [m.encode_batch(_msgs(3, start=3 * i)) for i in range(3)]
    assert await _limiter_out(ShapingRules(), items) == [join_arrays(items)]


async def test_limiter_taking_waiting_items_still_holds_what_a_limit_holds(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(accounts={"acc": AccountRules(limit=Limit(rate=1.0, burst=2))})
    batches = [_msgs(2, start=2 * i) for i in range(2)]
    t0 = trio.current_time()
    out = await _limiter_out(rules, [m.encode_batch(b) for b in batches])
    got = [x for item in out for x in m.decode_batch_of(m.Message, item)]
    assert got == [x for b in batches for x in b]
    assert len(out) == 3  # two at once, then one a second
    assert trio.current_time() - t0 == 2.0


async def test_limiter_takes_waiting_items_only_up_to_max_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limiter, "MAX_BATCH", 4)
    items = [m.encode_batch(_msgs(3, start=3 * i)) for i in range(3)]
    out = await _limiter_out(ShapingRules(), items)
    assert [len(m.decode_batch(x)) for x in out] == [4, 2, 3]  # 6 taken (split by 4), then 3
    assert [x for item in out for x in m.decode_batch(item)] == [
        x for item in items for x in m.decode_batch(item)]


async def test_pump_offers_every_waiting_commit_and_hands_them_on_as_one_item(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    ids = MsgIdFactory(lambda: 1.0)
    batches = [[m.Message(ids(), "a", f"+1{i:09d}", "S", "t", "ucs2", 1.0) for i in range(3)]
               for _ in range(3)]
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        pstore = PipelineStore(store)
        wake_send, wake_recv = trio.open_memory_channel[bytes](8)
        rel_send, rel_recv = trio.open_memory_channel[bytes](8)
        out_send, out_recv = trio.open_memory_channel[bytes](8)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(scheduler.run, wake_recv, rel_recv, out_send,
                                        store=pstore, batch=512, now=lambda: 10.0))
            await trio.testing.wait_all_tasks_blocked()  # the first read: caught up
            for batch in batches:
                await pstore.accept(batch)
            items = [m.encode_batch(b) for b in batches]
            for item in items:  # three commits waiting at once
                wake_send.send_nowait(item)
            await trio.testing.wait_all_tasks_blocked()
            out = []
            while True:
                try:
                    out.append(out_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            await wake_send.aclose()
            await rel_send.aclose()
    assert out == [join_arrays(items)]  # one item on, the commits' bytes joined
