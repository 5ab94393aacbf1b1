"""The receipt correlator on a real LMDB file: matching, orphans, duplicates, folding,
timeouts (MockClock), recovery of in-doubt parts and the read views."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest
import trio
import trio.testing

from actors import messages as m
from actors import receipt_correlator
from actors.correlation import PART_ACCEPTED, PART_SUBMITTING
from actors.ingress import MsgIdFactory
from gateway._store_pipeline import PipelineStore
from gateway.store import open_store


def _msgs(n: int, now: float, parts: int = 1, campaign: str = "c1") -> list[m.Message]:
    ids = MsgIdFactory(lambda: now)
    return [m.Message(ids(), "acc", f"+3519{i:08d}", "Septet", "hi", "transliterate", now,
                      campaign=campaign, parts=parts) for i in range(n)]


def _parts(msg: m.Message, n: int = 1) -> list[m.SubmitPart]:
    return [m.SubmitPart(msg.msg_id, i + 1, n, msg.to, msg.sender, 0, b"", b"hi", 7, msg.account)
            for i in range(n)]


@dataclass
class Rig:
    pstore: PipelineStore
    send: trio.MemorySendChannel[bytes]
    sink: Callable[..., object]
    events: list[m.StatusEvent] = field(default_factory=list)
    stats: receipt_correlator.CorrelatorStats = field(
        default_factory=receipt_correlator.CorrelatorStats)

    finished: trio.Event = field(default_factory=trio.Event)
    closers: list[trio.MemorySendChannel[bytes]] = field(default_factory=list)

    async def outcome(self, *items: m.Kind) -> None:
        await self.send.send(m.encode_batch(items))

    async def finish(self) -> None:
        """Close the inputs and wait until the correlator has applied everything."""
        for ch in self.closers:
            await ch.aclose()
        await self.finished.wait()


@asynccontextmanager
async def rig(path: Path, *, now: Callable[[], float], receipt_timeout: float | None = None,
              orphan_ttl: float = 3600.0) -> AsyncIterator[Rig]:
    # Commits on the loop when the clock is virtual (see open_store's ``threaded``).
    threaded = now is not trio.current_time
    async with open_store(path, sync=False, threaded=threaded) as store:
        pstore = PipelineStore(store, receipt_timeout=receipt_timeout)
        send, recv = trio.open_memory_channel[bytes](8)
        ev_send, ev_recv = trio.open_memory_channel[bytes](8)
        sink_send = send.clone()
        r = Rig(pstore, send, receipt_correlator.receipt_sink(pstore, sink_send))
        r.closers = [send, sink_send]

        async def collect() -> None:
            async with ev_recv:
                async for b in ev_recv:
                    r.events.extend(m.decode_batch_of(m.StatusEvent, b))

        async def correlate(task_status: trio.TaskStatus[None]) -> None:
            await receipt_correlator.run(
                recv, ev_send, None, store=pstore, receipt_timeout=receipt_timeout,
                orphan_ttl=orphan_ttl, now=now, stats=r.stats, task_status=task_status)
            r.finished.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            await nursery.start(correlate)
            try:
                yield r
            finally:
                await r.finish()


def _state(pstore: PipelineStore, msg_id: str) -> str:
    view = pstore.store.get_message(msg_id)
    assert view is not None
    return str(view.state)


async def test_10000_receipts_10pct_early_5pct_duplicated_hex_decimal_all_matched(
        tmp_path: Path) -> None:
    rnd = random.Random(7)
    async with rig(tmp_path / "db", now=lambda: 1000.0) as r:
        msgs = _msgs(10_000, 1000.0)
        for i in range(0, len(msgs), 2000):
            await r.pstore.accept(msgs[i:i + 2000])
            await r.pstore.mark_submitting([p for x in msgs[i:i + 2000] for p in _parts(x)], 1.0)
        base = 0x0400_0000_086E_CD50
        early = dupes = 0
        for start in range(0, len(msgs), 250):
            first: list[m.CarrierReceipt] = []
            then: list[m.CarrierReceipt] = []
            outcomes = []
            for i in range(start, start + 250):
                n = base + i
                submitted = f"0x{n:016X}" if i % 2 else str(n)
                reported = str(n) if i % 2 else f"{n:x}"
                receipt = m.CarrierReceipt("smsc", reported, "DELIVRD", "000", 1001.0)
                outcomes.append(m.PartSubmitted(msgs[i].msg_id, 1, 1, "smsc",
                                                m.CarrierId(submitted), 1000.5))
                if rnd.random() < 0.10:
                    early += 1
                    first.append(receipt)
                else:
                    then.append(receipt)
                if rnd.random() < 0.05:
                    dupes += 1
                    then.append(receipt)
            await r.sink(first)
            await r.outcome(*outcomes)
            await r.sink(then)
        await r.finish()
        assert r.pstore.store.entries(b"orphans") == 0
        assert r.pstore.store.entries(b"outbox") == 0
    assert r.stats.matched == 10_000
    assert r.stats.orphans_parked == early and r.stats.orphans_matched == early
    assert r.stats.duplicates == dupes
    assert r.stats.unknown == 0
    finals = [e for e in r.events if e.event == "SMS_DELIVERED"]
    assert len(finals) == 10_000
    assert {e.msg_id for e in finals} == {x.msg_id for x in msgs}


async def test_multipart_folds_to_not_delivered_with_the_carrier_code(tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=lambda: 5.0) as r:
        (msg,) = _msgs(1, 1.0, parts=3)
        await r.pstore.accept([msg])
        await r.pstore.mark_submitting(_parts(msg, 3), 2.0)
        for part in (1, 2, 3):
            await r.outcome(m.PartSubmitted(msg.msg_id, part, 3, "smsc", m.CarrierId(f"{part}"), 3))
        await r.sink([m.CarrierReceipt("smsc", "1", "DELIVRD", "000", 4.0)])
        await r.sink([m.CarrierReceipt("smsc", "2", "UNDELIV", "0x0B", 4.0)])
        await r.sink([m.CarrierReceipt("smsc", "3", "DELIVRD", "000", 4.0)])
        await r.outcome(m.PartSubmitted(msg.msg_id, 1, 3, "smsc", m.CarrierId("1"), 3))  # late
        await r.finish()
        view = r.pstore.store.get_message(msg.msg_id)
    assert view is not None
    assert view.state == "NOT_DELIVERED" and view.code == "0x0B"
    assert [p.carrier_id for p in view.parts] == ["1", "2", "3"]
    assert [e.event for e in view.events] == ["SMS_SENT", "SMS_NOT_DELIVERED"]
    assert [e.seq for e in r.events] == [1, 2]
    assert r.events[1].error_code == "0x0B"


async def test_all_parts_delivered_and_sent_comes_first_even_in_one_batch(tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=lambda: 5.0) as r:
        (msg,) = _msgs(1, 1.0, parts=2)
        await r.pstore.accept([msg])
        await r.pstore.mark_submitting(_parts(msg, 2), 2.0)
        await r.outcome(
            m.PartSubmitted(msg.msg_id, 1, 2, "smsc", m.CarrierId("a1"), 3),
            m.CarrierReceipt("smsc", "A1", "DELIVRD", "000", 4.0),
            m.PartSubmitted(msg.msg_id, 2, 2, "smsc", m.CarrierId("a2"), 3),
            m.CarrierReceipt("smsc", "161", "DELIVRD", "000", 4.0),  # 0xa1 in decimal... part 1
            m.CarrierReceipt("smsc", "162", "DELIVRD", "000", 4.0),  # 0xa2 in decimal
        )
        await r.finish()
        assert _state(r.pstore, msg.msg_id) == "DELIVERED"
    assert [e.event for e in r.events] == ["SMS_SENT", "SMS_DELIVERED"]
    assert r.stats.duplicates == 1


async def test_rejected_message_is_not_sent_and_counts_campaign(tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=lambda: 5.0) as r:
        (msg,) = _msgs(1, 1.0)
        await r.pstore.accept([msg])
        await r.pstore.mark_submitting(_parts(msg), 2.0)
        await r.outcome(m.PartFailed(msg.msg_id, 1, 1, "smsc", "0x0000000B", "bad number", 3))
        await r.finish()
        store = r.pstore.store
        with store.read() as txn:
            raw = txn.get(b"acc\x00c1\x00SMS_NOT_SENT", db=store.db(b"campaigns"))
            accepted = txn.get(b"acc\x00c1\x00accepted", db=store.db(b"campaigns"))
    assert [e.event for e in r.events] == ["SMS_NOT_SENT"]
    assert r.events[0].error_code == "0x0000000B"
    assert msgpack.unpackb(raw) == 1 and msgpack.unpackb(accepted) == 1


async def test_unknown_receipts_are_counted_and_kept_after_the_orphan_ttl(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=trio.current_time, orphan_ttl=30.0) as r:
        await r.sink([m.CarrierReceipt("smsc", "deadbeef", "DELIVRD", "000", 1.0)])
        await trio.sleep(100)
        assert r.pstore.store.entries(b"orphans") == 0
        assert r.pstore.store.entries(b"unknown") == 1
    assert r.stats.orphans_parked == 1
    assert r.stats.orphans_expired == 1


async def test_receipt_timeout_finishes_a_silent_message(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=trio.current_time, receipt_timeout=60.0) as r:
        t0 = trio.current_time()
        (msg,) = _msgs(1, t0)
        await r.pstore.accept([msg])
        await r.pstore.mark_submitting(_parts(msg), t0)
        await r.outcome(m.PartSubmitted(msg.msg_id, 1, 1, "smsc", m.CarrierId("9"), t0))
        await trio.sleep(59.0)
        assert _state(r.pstore, msg.msg_id) == "SENT"
        await trio.sleep(3.0)
        view = r.pstore.store.get_message(msg.msg_id)
        assert r.pstore.store.entries(b"timeouts") == 0
    assert view is not None and view.state == "NOT_DELIVERED" and view.code == "receipt_timeout"
    assert 60.0 <= r.events[-1].at - t0 <= 62.0


async def test_receipt_timeout_none_leaves_it_sent(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=trio.current_time, receipt_timeout=None) as r:
        (msg,) = _msgs(1, 0.0)
        await r.pstore.accept([msg])
        await r.pstore.mark_submitting(_parts(msg), 0.0)
        await r.outcome(m.PartSubmitted(msg.msg_id, 1, 1, "smsc", m.CarrierId("9"), 0.0))
        await trio.sleep(3 * 86400)
        assert _state(r.pstore, msg.msg_id) == "SENT"


async def test_recovery_resend_requeues_in_doubt_parts(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        pstore = PipelineStore(store)
        a, b = _msgs(2, 1.0, parts=2)
        await pstore.accept([a, b])
        await pstore.mark_submitting(_parts(a, 2) + _parts(b, 2), 2.0)
        await pstore.apply([m.PartSubmitted(a.msg_id, 1, 2, "smsc", m.CarrierId("1"), 3)], 3)
        # "crash": parts a/2, b/1 and b/2 were in flight
        got = await pstore.recover("resend", 10.0)
        assert got.in_doubt == 3 and got.events == []
        va, vb = store.get_message(a.msg_id), store.get_message(b.msg_id)
        assert va is not None and vb is not None
        assert [p.status for p in va.parts] == [PART_ACCEPTED, "P"]
        assert va.state == "SENT" and vb.state == "QUEUED"
        assert store.entries(b"inflight") == 0
        due, _, _ = pstore.read_due(b"", 100.0, 10, set())
        assert {x.msg_id for x in due} == {a.msg_id, b.msg_id}  # both still in the outbox
        assert await pstore.mark_submitting(_parts(a, 2), 11.0) == [False, True]


async def test_recovery_mark_unknown_ends_them(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        pstore = PipelineStore(store)
        (a,) = _msgs(1, 1.0)
        await pstore.accept([a])
        await pstore.mark_submitting(_parts(a), 2.0)
        view = store.get_message(a.msg_id)
        assert view is not None and view.parts[0].status == PART_SUBMITTING
        got = await pstore.recover("mark_unknown", 10.0)
        assert got.in_doubt == 1 and [e.event for e in got.events] == ["SMS_NOT_SENT"]
        view = store.get_message(a.msg_id)
        assert view is not None and view.state == "NOT_SENT" and view.code == "in_doubt"
        assert store.entries(b"outbox") == 0


async def test_scan_account_pages_in_time_order(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        pstore = PipelineStore(store)
        ids = MsgIdFactory(lambda: 1_700_000_000.0)
        msgs = [m.Message(ids(), "acc" if i % 3 else "other", "+1", "S", "t", "ucs2",
                          1_700_000_000.0) for i in range(30)]
        await pstore.accept(msgs)
        mine = [x.msg_id for x in msgs if x.account == "acc"]
        seen: list[str] = []
        cursor = None
        while True:
            page = store.scan_account("acc", cursor=cursor, limit=7)
            seen += [v.message.msg_id for v in page.items]
            if page.cursor is None:
                break
            cursor = page.cursor
        assert seen == mine
        assert store.scan_account("acc", since=1_700_000_001.0).items == ()
        assert len(store.scan_account("acc", until=1_700_000_001.0, limit=100).items) == 20
        assert store.get_message("nope") is None


async def test_the_segmenters_part_count_wins_over_the_ingress_estimate(tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=lambda: 5.0) as r:
        (msg,) = _msgs(1, 1.0, parts=3)  # ingress thought 3 parts, the split made 2
        await r.pstore.accept([msg])
        assert await r.pstore.mark_submitting(_parts(msg, 2), 2.0) == [True, True]
        for part in (1, 2):
            await r.outcome(m.PartSubmitted(msg.msg_id, part, 2, "smsc", m.CarrierId(f"{part}"), 3))
            await r.sink([m.CarrierReceipt("smsc", f"{part}", "DELIVRD", "000", 4.0)])
        await r.finish()
        assert _state(r.pstore, msg.msg_id) == "DELIVERED"
        assert r.pstore.store.entries(b"outbox") == 0


async def test_sink_returns_once_its_receipts_are_correlated_and_refuses_once_stopped(
        tmp_path: Path) -> None:
    from actors.errors import StoreError

    receipt = m.CarrierReceipt("smsc", "77", "DELIVRD", "000", 1001.0)
    async with rig(tmp_path / "db", now=lambda: 1000.0) as r:
        (msg,) = _msgs(1, 1000.0)
        await r.pstore.accept([msg])
        await r.pstore.mark_submitting(_parts(msg), 1000.0)
        await r.outcome(m.PartSubmitted(msg.msg_id, 1, 1, "smsc", m.CarrierId("77"), 1000.0))
        await r.sink([receipt])
        assert _state(r.pstore, msg.msg_id) == "DELIVERED"  # committed when the sink returned
    with pytest.raises(StoreError):  # the correlator has stopped: not stored, not acknowledged
        await r.sink([receipt])


async def test_one_apply_larger_than_a_chunk_keeps_every_change(tmp_path: Path) -> None:
    """op_apply writes rows back every 512 items: outcomes and receipts of the same messages
    spread over several chunks of one batch still all land (SENT then DELIVERED, in order)."""
    async with open_store(tmp_path / "db", sync=False) as store:
        pstore = PipelineStore(store, receipt_timeout=None)
        msgs = _msgs(700, 1000.0)
        await pstore.accept(msgs)
        await pstore.mark_submitting([p for x in msgs for p in _parts(x)], 1000.0)
        items: list[m.Kind] = [m.PartSubmitted(x.msg_id, 1, 1, "smsc", m.CarrierId(str(i)), 1000.5)
                               for i, x in enumerate(msgs)]
        items += [m.CarrierReceipt("smsc", str(i), "DELIVRD", "000", 1001.0) for i in range(700)]
        applied = await pstore.apply(items, 1001.0)
        assert applied.matched == 700 and len(applied.released) == 700
        assert [e[4] for e in applied.event_rows] == ["SMS_SENT"] * 700 + ["SMS_DELIVERED"] * 700
        for x in msgs[::97]:
            view = store.get_message(x.msg_id)
            assert view is not None and view.state == "DELIVERED"
            assert [(e.seq, e.event) for e in view.events] == [(1, "SMS_SENT"),
                                                                (2, "SMS_DELIVERED")]
        assert store.entries(b"outbox") == 0 and store.entries(b"inflight") == 0
