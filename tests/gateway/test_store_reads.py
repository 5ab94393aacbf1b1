"""The pump's outbox read (``read_due``) on a real LMDB file: order, limit, skip, the resume
cursor and next due time, a missing record, and the channel bytes it hands on."""

from __future__ import annotations

from pathlib import Path

from actors import messages as m
from actors._wire import WireBatch, array_of
from actors.ingress import MsgIdFactory, due_key
from gateway._store_pipeline import PipelineStore, cursor_after_end, read_due
from gateway.store import open_store


def _msgs(n: int, at: float, send_at: float = 0.0) -> list[m.Message]:
    ids = MsgIdFactory(lambda: at)
    return [m.Message(ids(), "acc", f"+3519{i:08d}", "Septet", f"hi {i}", "transliterate", at,
                      send_at=send_at) for i in range(n)]


async def test_due_entries_in_key_order_as_the_channel_item_of_their_records(
        tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        due = _msgs(5, 10.0)
        later = _msgs(2, 10.0, send_at=50.0)
        await PipelineStore(store).accept(later + due)
        found, cursor, next_due = read_due(store, b"", 20.0, 100, set())
        assert list(found) == due  # key order: due time, then id
        assert next_due == 50.0 and cursor == due_key(later[0])
        # the records joined are exactly what encode_batch makes: the hop on packs nothing
        assert isinstance(found, WireBatch) and found.wire == m.encode_batch(due)


async def test_limit_skip_and_resume(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        msgs = _msgs(6, 10.0)
        await PipelineStore(store).accept(msgs)
        skip = {msgs[0].msg_id, msgs[2].msg_id}
        found, cursor, next_due = read_due(store, b"", 20.0, 2, skip)
        assert list(found) == [msgs[1], msgs[3]]
        assert cursor == due_key(msgs[4]) and next_due is None  # limit reached: resume there
        found, cursor, next_due = read_due(store, cursor, 20.0, 10, skip)
        assert list(found) == msgs[4:]
        assert cursor == cursor_after_end() and next_due is None
        assert read_due(store, cursor, 20.0, 10, skip) == ([], cursor_after_end(), None)


async def test_an_entry_without_its_record_is_left_out(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        msgs = _msgs(3, 10.0)
        await PipelineStore(store).accept(msgs)

        def drop(txn: object) -> None:
            txn.delete(msgs[1].msg_id.encode(), db=store.db(b"messages"))  # type: ignore[attr-defined]

        await store.write(drop)
        found, _, _ = read_due(store, b"", 20.0, 10, set())
        assert list(found) == [msgs[0], msgs[2]]


async def test_only_skipped_entries_give_an_empty_read(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        msgs = _msgs(2, 10.0)
        await PipelineStore(store).accept(msgs)
        found, cursor, _ = read_due(store, b"", 20.0, 10, {x.msg_id for x in msgs})
        assert list(found) == [] and cursor == cursor_after_end()


def test_array_of_joins_packed_elements() -> None:
    rows = [m.encode(x) for x in _msgs(20, 1.0)]  # 20: past a fixarray's 15
    assert m.decode_batch(array_of(rows)) == [m.decode(r) for r in rows]
    assert m.decode_batch(array_of([])) == []
