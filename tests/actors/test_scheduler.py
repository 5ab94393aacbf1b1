"""The scheduler pump over a real LMDB outbox: due order, future send_at, bounded window,
fast path, restart from the store."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio
import trio.testing

from actors import messages as m
from actors import scheduler
from actors.ingress import MsgIdFactory
from gateway._store_pipeline import PipelineStore
from gateway.store import open_store


def _msgs(n: int, now: float, send_at: float = 0.0) -> list[m.Message]:
    ids = MsgIdFactory(lambda: now)
    return [m.Message(ids(), "a", f"+1{i:09d}", "S", "t", "ucs2", now, send_at=send_at)
            for i in range(n)]


class Harness:
    def __init__(self, pstore: PipelineStore, max_inflight: int) -> None:
        self.pstore = pstore
        self.wake_send, self.wake_recv = trio.open_memory_channel[bytes](8)
        self.rel_send, self.rel_recv = trio.open_memory_channel[bytes](8)
        self.out_send, self.out_recv = trio.open_memory_channel[bytes](1)
        self.got: list[m.Message] = []
        self.max_inflight = max_inflight

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(partial(scheduler.run, self.wake_recv, self.rel_recv, self.out_send,
                                    store=self.pstore, max_inflight=self.max_inflight, batch=4,
                                    now=trio.current_time))
        nursery.start_soon(self._collect)

    async def _collect(self) -> None:
        async with self.out_recv:
            async for item in self.out_recv:
                self.got.extend(m.decode_batch_of(m.Message, item))

    async def accept(self, msgs: list[m.Message]) -> None:
        await self.pstore.accept(msgs)
        await self.wake_send.send(m.encode_batch(msgs))

    async def release(self, msgs: list[m.Message]) -> None:
        await self.rel_send.send(m.encode_batch([m.Released(x.msg_id, 0.0) for x in msgs]))

    async def stop(self) -> None:
        await self.wake_send.aclose()
        await self.rel_send.aclose()


async def test_future_messages_wait_in_the_store_until_due(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store, \
            trio.open_nursery() as n:
        pstore = PipelineStore(store)
        t0 = trio.current_time()
        later = _msgs(3, t0, send_at=t0 + 50)
        now = _msgs(2, t0 + 0.001)
        await pstore.accept(later)
        await pstore.accept(now)
        h = Harness(pstore, 100)
        await h.start(n)
        await trio.sleep(10)
        assert [x.msg_id for x in h.got] == [x.msg_id for x in now]
        await trio.sleep(45)
        assert [x.msg_id for x in h.got] == [x.msg_id for x in now + later]
        await h.stop()


async def test_window_bounds_what_is_handed_on_and_releases_refill_it(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store, \
            trio.open_nursery() as n:
        h = Harness(PipelineStore(store), 10)
        await h.start(n)
        msgs = _msgs(25, trio.current_time())
        await h.accept(msgs)
        await trio.sleep(1)
        assert len(h.got) == 10
        await h.release(h.got[:5])
        await trio.sleep(1)
        # reads refill it but for a tenth, left to a message that may overtake the backlog
        assert len(h.got) == 14
        await h.release(h.got[5:14])
        await trio.sleep(1)
        assert len(h.got) == 23
        await h.release(h.got[14:23])
        await trio.sleep(1)
        assert [x.msg_id for x in h.got] == [x.msg_id for x in msgs[:25]]  # in due order
        await h.stop()


async def test_a_restarted_pump_reads_what_waits_in_the_store(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store, \
            trio.open_nursery() as n:
        pstore = PipelineStore(store)
        msgs = _msgs(9, trio.current_time())
        await pstore.accept(msgs)  # stored before any pump ran (as after a restart)
        h = Harness(pstore, 100)
        await h.start(n)
        await trio.sleep(1)
        assert [x.msg_id for x in h.got] == [x.msg_id for x in msgs]
        await h.accept(msgs[:3])  # offered again: already in flight, not handed on twice
        await trio.sleep(1)
        assert len(h.got) == 9
        await h.stop()


async def test_closing_wake_stops_the_pump_and_closes_its_outbox(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        h = Harness(PipelineStore(store), 100)
        with trio.fail_after(5):
            async with trio.open_nursery() as n:
                await h.start(n)
                await h.accept(_msgs(3, trio.current_time()))
                await trio.sleep(1)
                await h.stop()
        assert len(h.got) == 3
