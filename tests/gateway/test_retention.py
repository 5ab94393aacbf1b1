"""Retention on a real LMDB file: old final messages go with every row pointing to them,
non-final and recent ones stay, ops are bounded, a late receipt is unknown, 0 keeps all."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import trio
import trio.testing
from prometheus_client import REGISTRY

import gateway.callback_outbox  # noqa: F401  (registers cb_done before open_store)
from actors import messages as m
from actors.ingress import MsgIdFactory, id_floor
from gateway import config as cfg
from gateway._campaign_model import COUNTERS, DEFS, MSGS, ROWS, Campaign, row_key
from gateway._store_pipeline import PipelineStore
from gateway.errors import ConfigError
from gateway.inbound import DB as INBOUND
from gateway.inbound import InboundBook
from gateway.retention import (
    op_prune,
    op_prune_campaign_rows,
    op_prune_inbound,
    prune_all,
    prune_final,
    run_pruner,
)
from gateway.store import Store, open_store

NOW = 1_790_000_000.0  # a fixed "now" (2026)
DAY = 86_400.0
OLD = NOW - 100 * DAY  # beyond the default 90 days
RECENT = NOW - 10 * DAY
CONN = "smsc"
COUNTED_DBS = (b"messages", b"state", b"history", b"carriers", b"timeouts", b"outbox", b"cb_done")


class Seeder:
    """Drives messages to a chosen state through the pipeline's own store ops."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pstore = PipelineStore(store, receipt_timeout=2 * DAY)
        self.carrier_ids = 1000
        self.made = 0

    async def make(
        self, account: str, state: str, at: float, *, carrier_id: str | None = None
    ) -> m.Message:
        self.made += 1
        at += self.made / 1000  # a ms apart: ids (and history) sort in the order made
        msg = m.Message(
            MsgIdFactory(lambda: at)(),
            account,
            "+351912345678",
            "Septet",
            "hi",
            "transliterate",
            at,
            campaign="spring",
        )
        await self.pstore.accept([msg])
        if state == "ACCEPTED":
            return msg
        if state == "NOT_SENT":
            await self.pstore.apply(
                [m.MessageFinished(msg.msg_id, "NOT_SENT", "expired", "too late", at)], at
            )
            return msg
        self.carrier_ids += 1
        cid = carrier_id or str(self.carrier_ids)
        part = m.SubmitPart(msg.msg_id, 1, 1, msg.to, msg.sender, 0, b"", b"hi", 7, account)
        assert await self.pstore.mark_submitting([part], at) == [True]
        items: list[m.Kind] = [m.PartSubmitted(msg.msg_id, 1, 1, CONN, m.CarrierId(cid), at)]
        if state in ("DELIVERED", "NOT_DELIVERED"):
            stat = "DELIVRD" if state == "DELIVERED" else "UNDELIV"
            items.append(m.CarrierReceipt(CONN, cid, stat, "", at))
        await self.pstore.apply(items, at)
        return msg

    def state_of(self, msg: m.Message) -> str | None:
        view = self.store.get_message(msg.msg_id)
        return None if view is None else str(view.state)

    def counts(self) -> dict[bytes, int]:
        return {name: self.store.entries(name) for name in COUNTED_DBS}


@pytest.fixture
async def seeder(tmp_path: Path) -> AsyncIterator[Seeder]:
    # threaded=False: ops commit on the loop, so autojump_clock tests see exact virtual time
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        yield Seeder(store)


def pruned_total(kind: str = "message") -> float:
    return REGISTRY.get_sample_value("septet_store_pruned_messages_total", {"stage": kind}) or 0.0


async def test_old_final_messages_go_with_every_row_pointing_to_them(seeder: Seeder) -> None:
    gone, kept = [], []
    for account in ("alpha", "beta"):
        for state in ("DELIVERED", "NOT_DELIVERED", "NOT_SENT"):
            gone.append(await seeder.make(account, state, OLD))
        for state in ("ACCEPTED", "SENT"):  # old but not final: must stay
            kept.append(await seeder.make(account, state, OLD))
        kept.append(await seeder.make(account, "DELIVERED", RECENT))
    store = seeder.store
    marked = [msg.msg_id.encode() for msg in gone[:2] + kept[-1:]]
    await store.write(
        lambda txn: [  # settled-callback marks (cb_done) of some of them
            txn.put(k, (1).to_bytes(4, "big"), db=store.db(b"cb_done")) for k in marked
        ]
    )
    before = seeder.counts()
    metric = pruned_total()

    assert await prune_final(store, older_than_s=90 * DAY, now=NOW, pause=0) == 6

    assert pruned_total() - metric == 6
    assert all(seeder.state_of(msg) is None for msg in gone)
    assert [seeder.state_of(msg) for msg in kept] == ["ACCEPTED", "SENT", "DELIVERED"] * 2
    after = seeder.counts()
    assert before[b"messages"] - after[b"messages"] == 6
    assert before[b"state"] - after[b"state"] == 6
    assert before[b"history"] - after[b"history"] == 6
    # carrier rows: 2 per account went (DELIVERED, NOT_DELIVERED; NOT_SENT never had one)
    assert before[b"carriers"] - after[b"carriers"] == 4
    assert after[b"carriers"] == 4  # the old SENT (waits for its receipt) and recent DELIVERED
    assert after[b"timeouts"] == before[b"timeouts"] == 2  # the old SENT ones still wait
    assert after[b"outbox"] == before[b"outbox"] == 2  # the old ACCEPTED ones
    assert after[b"cb_done"] == 1  # only the recent message's mark is left
    for account in ("alpha", "beta"):
        page = store.scan_account(account)
        assert [v.message.msg_id for v in page.items] == [
            k.msg_id for k in kept if k.account == account
        ]
    # campaign counters are aggregates: they stay
    stats = await _campaign_counters(store, "alpha\x00spring")
    assert stats["accepted"] == 6 and stats["SMS_DELIVERED"] == 2


async def _campaign_counters(store: Store, campaign: str) -> dict[str, int]:
    import msgpack

    prefix = campaign.encode() + b"\x00"
    with store.read() as txn, txn.cursor(db=store.db(b"campaigns")) as cur:
        cur.set_range(prefix)
        return {
            k[len(prefix) :].decode(): msgpack.unpackb(v) for k, v in cur if k.startswith(prefix)
        }


async def test_ops_look_at_no_more_than_the_batch(
    seeder: Seeder, autojump_clock: trio.testing.MockClock
) -> None:
    for i in range(28):  # every seventh one is still waiting for its receipt
        await seeder.make(f"acct{i % 3}", "SENT" if i % 7 == 0 else "NOT_SENT", OLD + i)
    await seeder.make("acct0", "NOT_SENT", RECENT)
    store = seeder.store
    results = []
    after = ""
    while True:
        done = await store.write(
            lambda txn, a=after: op_prune(txn, store, id_floor(NOW - 90 * DAY), 4, after=a)
        )
        results.append(done)
        if done.after is None:
            break
        after = done.after
    assert [r.messages for r in results] == [3, 3, 4, 3, 4, 3, 4]  # 24 final ones
    assert store.entries(b"messages") == 4 + 1

    for i in range(20):
        await seeder.make("acct0", "NOT_SENT", OLD + 100 + i)
    ops = store.statistics().ops
    t0 = trio.current_time()
    assert await prune_final(store, older_than_s=90 * DAY, now=NOW, batch=4, pause=0.5) == 20
    # 24 old messages (4 kept SENT first, then the 20 new) looked at, 4 per op: 6 ops and a
    # pause between two of them
    assert store.statistics().ops - ops == math.ceil(24 / 4)
    assert trio.current_time() - t0 == pytest.approx(5 * 0.5)


async def test_a_receipt_for_a_pruned_message_is_unknown_not_an_error(seeder: Seeder) -> None:
    msg = await seeder.make("alpha", "DELIVERED", OLD, carrier_id="4242")
    assert await prune_final(seeder.store, older_than_s=90 * DAY, now=NOW, pause=0) == 1
    late = await seeder.pstore.apply([m.CarrierReceipt(CONN, "4242", "DELIVRD", "", NOW)], NOW)
    assert (late.matched, late.duplicates, late.orphans_parked, late.event_rows) == (0, 0, 1, [])
    assert await seeder.pstore.expire_orphans(NOW + 1, 100) == 1  # kept as an unknown receipt
    assert seeder.store.entries(b"unknown") == 1
    finished = await seeder.pstore.apply(
        [m.MessageFinished(msg.msg_id, "NOT_SENT", "x", "y", NOW)], NOW
    )
    assert finished.unknown == 1 and finished.event_rows == []
    assert seeder.state_of(msg) is None  # nothing recreated it


async def test_a_carrier_id_reused_by_a_newer_message_keeps_its_row(seeder: Seeder) -> None:
    await seeder.make("alpha", "DELIVERED", OLD, carrier_id="0x1f")
    newer = await seeder.make("alpha", "SENT", RECENT, carrier_id="31")  # same key (31 == 0x1f)
    assert seeder.store.entries(b"carriers") == 1  # the newer submit took the key over
    assert await prune_final(seeder.store, older_than_s=90 * DAY, now=NOW, pause=0) == 1
    assert seeder.store.entries(b"carriers") == 1
    applied = await seeder.pstore.apply([m.CarrierReceipt(CONN, "31", "DELIVRD", "", NOW)], NOW)
    assert applied.matched == 1
    assert seeder.state_of(newer) == "DELIVERED"


async def test_zero_days_keeps_everything(
    seeder: Seeder, autojump_clock: trio.testing.MockClock
) -> None:
    for state in ("DELIVERED", "NOT_SENT"):
        await seeder.make("alpha", state, NOW - 5000 * DAY)
    before = seeder.counts()
    assert await prune_final(seeder.store, older_than_s=0, now=NOW) == 0
    t0 = trio.current_time()
    await run_pruner(seeder.store, retention_days=0, now=lambda: NOW)  # returns at once
    assert trio.current_time() == t0
    assert seeder.counts() == before
    assert cfg.load(None, env={}).store.retention_days == 90
    assert cfg.load(None, env={"SEPTET_STORE__RETENTION_DAYS": "0"}).store.retention_days == 0


async def test_the_pruner_runs_a_few_minutes_after_start_then_hourly(
    seeder: Seeder, autojump_clock: trio.testing.MockClock
) -> None:
    clock = {"now": NOW}
    old = await seeder.make("alpha", "DELIVERED", OLD)
    later = await seeder.make("alpha", "DELIVERED", NOW - 89.99 * DAY)  # 90 days in ~15 min
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_pruner(seeder.store, retention_days=90, now=lambda: clock["now"])
        )
        await trio.sleep(299)
        assert seeder.state_of(old) == "DELIVERED"
        await trio.sleep(2)  # the first pass, at 300 s
        assert seeder.state_of(old) is None and seeder.state_of(later) == "DELIVERED"
        clock["now"] = NOW + 3600
        await trio.sleep(3600)  # the next pass, an hour later
        assert seeder.state_of(later) is None
        nursery.cancel_scope.cancel()


def test_a_negative_retention_is_refused_with_the_other_bad_keys() -> None:
    with pytest.raises(ConfigError) as err:
        cfg.load(None, env={"SEPTET_STORE__RETENTION_DAYS": "-1", "SEPTET_STORE__MAP_SIZE": "1"})
    text = str(err.value)
    assert "store.retention_days" in text and "store.map_size" in text


async def test_the_api_answers_404_for_a_pruned_message_and_lists_the_rest(tmp_path: Path) -> None:
    from tests.gateway.http.conftest import start

    async with open_store(tmp_path / "db", sync=False) as store, trio.open_nursery() as nursery:
        served = await start(nursery, store)
        seeder = Seeder(store)
        gone = await seeder.make("alpha", "DELIVERED", OLD)
        kept = [
            await seeder.make("alpha", "SENT", OLD),
            await seeder.make("alpha", "NOT_SENT", RECENT),
        ]
        async with served.client() as c:
            assert (await c.get(f"/v1/messages/{gone.msg_id}")).status_code == 200
            assert await prune_final(store, older_than_s=90 * DAY, now=NOW, pause=0) == 1
            pruned = await c.get(f"/v1/messages/{gone.msg_id}")
            listed = await c.get("/v1/messages")
            still = await c.get(f"/v1/messages/{kept[0].msg_id}")
        nursery.cancel_scope.cancel()
    assert pruned.status_code == 404
    assert still.status_code == 200
    assert [x["id"] for x in _items(listed)] == [k.msg_id for k in kept]


def _items(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    doc = r.json()
    return list(doc["messages"])


# ------------------------------------------------------------- inbound, receipts, campaign rows


async def _put_inbound(store: Store, account: str, seq: int, at: float) -> str:
    msg_id = f"{seq:016d}"
    value = msgpack.packb([at, CONN, "+351912000001", "+351910000000", "hi", "gsm", 1])
    await store.write(lambda txn: txn.put(f"{account}\x00{msg_id}".encode(), value,
                                          db=store.db(INBOUND)))
    return msg_id


async def test_old_inbound_messages_go_recent_ones_stay(seeder: Seeder) -> None:
    store = seeder.store
    old = [await _put_inbound(store, a, i, OLD + i) for i, a in enumerate(["", "alpha", "beta"] * 3)]
    recent = [await _put_inbound(store, "alpha", 100 + i, RECENT) for i in range(2)]
    metric = pruned_total("inbound")

    removed = await prune_all(store, older_than_s=90 * DAY, now=NOW, batch=2, pause=0)

    assert removed == {"message": 0, "inbound": 9, "receipt": 0, "campaign_row": 0}
    assert pruned_total("inbound") - metric == 9
    book = InboundBook(store)
    assert [x.id for x in book.page("alpha")[0]] == recent
    assert book.get("alpha", old[1]) is None and store.entries(INBOUND) == 2
    # bounded: an op looks at no more than its limit and says where to go on
    await _put_inbound(store, "alpha", 200, OLD)
    first = await store.write(lambda txn: op_prune_inbound(txn, store, NOW - 90 * DAY, 1))
    assert (first.removed, first.after is not None) == (0, True)  # looked at a recent one only


async def test_old_unmatched_receipts_go_recent_and_waiting_ones_stay(seeder: Seeder) -> None:
    pstore, store = seeder.pstore, seeder.store
    for i in range(5):  # old receipts nothing matched, moved to the unknown ones
        await pstore.apply([m.CarrierReceipt(CONN, f"9{i}", "DELIVRD", "", OLD)], OLD)
    assert await pstore.expire_orphans(OLD + 1, 100) == 5
    await pstore.apply([m.CarrierReceipt(CONN, "77", "DELIVRD", "", RECENT)], RECENT)
    assert await pstore.expire_orphans(RECENT + 1, 100) == 1
    await pstore.apply([m.CarrierReceipt(CONN, "88", "DELIVRD", "", OLD)], OLD)  # still parked
    await pstore.apply([m.CarrierReceipt(CONN, "99", "DELIVRD", "", NOW)], NOW)  # parked now
    assert store.entries(b"unknown") == 6
    orphan_keys = store.entries(b"orphans")
    metric = pruned_total("receipt")

    removed = await prune_all(store, older_than_s=90 * DAY, now=NOW, batch=2, pause=0)

    assert removed["receipt"] == 6  # 5 unknown + 1 orphan (counted once, whatever its keys)
    assert pruned_total("receipt") - metric == 6
    assert store.entries(b"unknown") == 1
    assert 0 < store.entries(b"orphans") == orphan_keys // 2
    # the orphan parked now still matches its submit response when it lands
    msg = await seeder.make("alpha", "SENT", NOW, carrier_id="99")
    assert seeder.state_of(msg) == "DELIVERED"
    assert store.entries(b"orphans") == 0


async def _put_campaign(store: Store, name: str, state: str, at: float, rows: int) -> Campaign:
    c = Campaign(name, "alpha", "Septet", "hi", state=state, created_at=at - 3600, rows=rows,
                 cursor=rows, finished_at=at if state in ("done", "cancelled") else 0.0)

    def op(txn: Any) -> None:
        txn.put(c.key.encode(), c.pack(), db=store.db(DEFS))
        for row in range(rows):
            txn.put(row_key(c.key, row), msgpack.packb({"to": "+351912345678"}),
                    db=store.db(ROWS))
            txn.put(row_key(c.key, row), f"id{row}".encode(), db=store.db(MSGS))

    await store.write(op)
    return c


async def test_rows_of_old_finished_campaigns_go_live_ones_stay(seeder: Seeder) -> None:
    store = seeder.store
    gone = [await _put_campaign(store, "old-done", "done", OLD, 7),
            await _put_campaign(store, "old-cancelled", "cancelled", OLD, 3)]
    kept = [await _put_campaign(store, "recent-done", "done", RECENT, 2)]
    # live ones keep their rows whatever their age
    for state in ("draft", "scheduled", "running", "paused"):
        kept.append(await _put_campaign(store, f"old-{state}", state, OLD - 1000 * DAY, 2))
    metric = pruned_total("campaign_row")

    removed = await prune_all(store, older_than_s=90 * DAY, now=NOW, batch=3, pause=0)

    assert removed["campaign_row"] == 10
    assert pruned_total("campaign_row") - metric == 10
    assert store.entries(ROWS) == store.entries(MSGS) == 2 * len(kept)
    with store.read() as txn:
        assert all(txn.get(c.key.encode(), db=store.db(DEFS)) for c in gone + kept)
        for c in kept:
            assert txn.get(row_key(c.key, 1), db=store.db(ROWS)) is not None
        counters = {c.name: txn.get(f"{c.key}\x00pruned_rows".encode(), db=store.db(COUNTERS))
                    for c in gone + kept}
    assert {k: msgpack.unpackb(v) if v else None for k, v in counters.items()} == {
        "old-done": 7, "old-cancelled": 3, "recent-done": None, "old-draft": None,
        "old-scheduled": None, "old-running": None, "old-paused": None}
    # a second pass finds nothing more (the records stay, their rows are gone)
    again = await prune_all(store, older_than_s=90 * DAY, now=NOW, batch=3, pause=0)
    assert again["campaign_row"] == 0


async def test_a_campaign_op_removes_no_more_rows_than_its_limit(seeder: Seeder) -> None:
    store = seeder.store
    await _put_campaign(store, "big", "done", OLD, 5)
    results = []
    after = b""
    while True:
        done = await store.write(
            lambda txn, a=after: op_prune_campaign_rows(txn, store, NOW - 90 * DAY, 1, after=a))
        results.append(done.removed)
        if done.after is None:
            break
        after = done.after
    assert results == [1, 1, 1, 1, 1] and store.entries(ROWS) == 0
