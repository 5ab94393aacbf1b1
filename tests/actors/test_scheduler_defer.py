"""The pump and the rate limiter's ``deferred`` channel: a message handed back is stored under
its new due time, its in-flight slot is freed, and it is fed again when due."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from actors import messages as m
from actors import scheduler
from actors.correlation import StateRecord
from actors.ingress import MsgIdFactory
from gateway._store_defer import defer_messages, op_defer
from gateway._store_pipeline import PipelineStore
from gateway.store import open_store


def _msgs(n: int, now: float, account: str = "a") -> list[m.Message]:
    ids = MsgIdFactory(lambda: now)
    return [m.Message(ids(), account, f"+1{i:09d}", "S", "t", "ucs2", now) for i in range(n)]


def _outbox(store: object) -> list[tuple[int, str]]:
    with store.read() as txn:  # type: ignore[attr-defined]
        keys = txn.cursor(db=store.db(b"outbox")).iternext(values=False)  # type: ignore[attr-defined]
        return [(int.from_bytes(k[:8], "big"), k[8:].decode()) for k in keys]


async def test_op_defer_moves_the_outbox_key_and_the_recorded_due(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        pstore = PipelineStore(store)
        msgs = _msgs(2, 1000.0)
        await pstore.accept(msgs)
        later = msgs[0]._replace(send_at=5000.5)
        assert await defer_messages(store, [later]) == 1
        assert _outbox(store) == [(1_000_000, msgs[1].msg_id), (5_000_500, msgs[0].msg_id)]
        with store.read() as txn:
            rec = StateRecord.unpack(txn.get(msgs[0].msg_id.encode(), db=store.db(b"state")))
        assert rec.due == 5_000_500
        with store.read() as txn:  # the message record is left as the client gave it
            stored = m.decode(txn.get(msgs[0].msg_id.encode(), db=store.db(b"messages")))
        assert stored == msgs[0]
        # again with the same time, or for an unknown message: nothing moves
        assert await defer_messages(store, [later]) == 0
        ghost = _msgs(1, 1.0, "ghost")[0]._replace(msg_id=m.MsgId("0" * 18), send_at=9.0)
        assert await store.write(lambda txn: op_defer(txn, store, [ghost])) == 0


async def test_a_final_message_is_not_brought_back_to_the_outbox(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        pstore = PipelineStore(store)
        (msg,) = _msgs(1, 1000.0)
        await pstore.accept([msg])
        await pstore.apply([m.MessageFinished(msg.msg_id, "NOT_SENT", "expired", "x", 1001.0)],
                           1001.0)
        assert _outbox(store) == []
        assert await defer_messages(store, [msg._replace(send_at=5000.0)]) == 0
        assert _outbox(store) == []


async def test_deferred_messages_free_their_slots_and_come_back_when_due(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    def clock() -> float:
        return 1000.0 + trio.current_time()  # due 0 means "not in the outbox": start later

    async with open_store(tmp_path / "db", sync=False, threaded=False) as store, \
            trio.open_nursery() as n:
        pstore = PipelineStore(store)
        wake_send, wake_recv = trio.open_memory_channel[bytes](8)
        rel_send, rel_recv = trio.open_memory_channel[bytes](8)
        out_send, out_recv = trio.open_memory_channel[bytes](8)
        def_send, def_recv = trio.open_memory_channel[bytes](8)
        await n.start(partial(scheduler.run, wake_recv, rel_recv, out_send, store=pstore,
                              max_inflight=2, batch=2, now=clock,
                              deferred=def_recv, reschedule=partial(defer_messages, store)))
        got: list[m.Message] = []
        ended = trio.Event()

        async def collect() -> None:
            async with out_recv:
                async for item in out_recv:
                    got.extend(m.decode_batch_of(m.Message, item))
            ended.set()

        n.start_soon(collect)
        t0 = clock()
        far = _msgs(2, t0, "far")
        await pstore.accept(far)
        await wake_send.send(m.encode_batch(far))
        await trio.sleep(1)
        assert [x.msg_id for x in got] == [x.msg_id for x in far]
        due = _msgs(3, t0 + 1, "due")
        await pstore.accept(due)
        await wake_send.send(m.encode_batch(due))
        await trio.sleep(1)
        assert len(got) == 2  # the in-flight set is full
        # The limiter hands the two back: due in an hour.
        await def_send.send(m.encode_batch([x._replace(send_at=t0 + 3600) for x in far]))
        await trio.sleep(1)
        assert [x.msg_id for x in got[2:]] == [x.msg_id for x in due[:2]]
        await rel_send.send(m.encode_batch([m.Released(x.msg_id, 0.0) for x in got[2:]]))
        await trio.sleep(1)
        assert [x.msg_id for x in got[4:]] == [due[2].msg_id]
        await rel_send.send(m.encode_batch([m.Released(due[2].msg_id, 0.0)]))
        await trio.sleep(3600 - 4.5)
        assert len(got) == 5  # not before their new due time
        await trio.sleep(1)
        assert [x.msg_id for x in got[5:]] == [x.msg_id for x in far]
        # Shutdown: the pump closes its outbox, then reads deferrals until the limiter ends.
        await wake_send.aclose()
        await trio.sleep(1)
        await def_send.send(m.encode_batch([far[0]._replace(send_at=t0 + 9000)]))
        await def_send.aclose()
        await rel_send.aclose()
        await trio.sleep(1)
        assert ended.is_set()  # the pump closed its outbox, and still stored this:
        assert (int((t0 + 9000) * 1000), far[0].msg_id) in _outbox(store)


def test_deferred_without_reschedule_is_refused() -> None:
    with pytest.raises(ValueError, match="reschedule"):
        trio.run(partial(scheduler.run, trio.open_memory_channel[bytes](0)[1],
                         trio.open_memory_channel[bytes](0)[1],
                         trio.open_memory_channel[bytes](0)[0], store=None,  # type: ignore[arg-type]
                         deferred=trio.open_memory_channel[bytes](0)[1]))
