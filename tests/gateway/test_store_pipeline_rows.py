"""The state-row packer and op_accept's batched records (gateway._store_rows, _all_new).

The strict row packer must write exactly the bytes of ``msgpack.packb(..., use_bin_type=True)``
(old and new rows are compared as bytes, and every reader decodes them the same); op_accept's
one-putmulti path for a batch of new ids must leave the rows of the general path, and never
overwrite a record already stored (replays, ids out of order, a repeated id in the batch).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import messages as m
from actors._wire import WireBatch
from actors.ingress import due_ms
from gateway import _store_pipeline as sp
from gateway._store_accept import _all_new, records_of
from gateway._store_pipeline import PipelineStore
from gateway._store_rows import row_packer
from gateway.store import open_store
from tests.gateway.test_store_ops_fast import _dump, _env, _messages, _reference_accept


class _Word(str, enum.Enum):
    SENT = "SENT"


class _Level(enum.IntEnum):
    HIGH = 7


class _Pair(NamedTuple):
    a: Any
    b: Any


_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
            | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8)
            | st.sampled_from([_Word.SENT, _Level.HIGH]))
_values = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
                   | st.builds(_Pair, inner, inner)
                   | st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_the_row_packer_writes_the_bytes_of_packb(value: Any) -> None:
    assert row_packer()(value) == msgpack.packb(value, use_bin_type=True)


def test_the_row_packer_refuses_what_packb_refuses() -> None:
    for bad in (object(), {1, 2}):
        for pack in (row_packer(), lambda v: msgpack.packb(v, use_bin_type=True)):
            try:
                pack([bad])
            except TypeError:
                continue
            raise AssertionError(f"{bad!r} was packed")


_ascending = st.lists(st.integers(10, 99), min_size=1, max_size=6, unique=True).map(sorted)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_ascending, st.lists(_messages, min_size=6, max_size=6),
                          st.booleans()), min_size=1, max_size=4))
def test_op_accept_batched_records_leave_the_rows_of_the_general_path(
        batches: list[tuple[list[int], list[m.Message], bool]]) -> None:
    """Ids mostly ascending (the putmulti path), some batches reversed or repeating an id,
    later batches replaying earlier ids or going below the last one (the per-record path)."""
    with _env() as (env_a, a), _env() as (env_b, b):
        for numbers, msgs, shuffle in batches:
            ids = [f"01K{n}" for n in numbers]
            if shuffle:
                ids = ids[::-1] + ids[:1]  # out of order, and one id twice
            batch = [x._replace(msg_id=m.MsgId(i)) for i, x in zip(ids, msgs)]
            with env_a.begin(write=True) as txn:
                _reference_accept(txn, a, batch)
            with env_b.begin(write=True) as txn:
                sp.op_accept(txn, b, batch, None)
        assert _dump(env_a, a) == _dump(env_b, b)


def test_all_new_takes_the_batched_path_only_for_new_ascending_ids() -> None:
    with _env() as (env, store):
        db = store.db(b"messages")
        with env.begin(write=True) as txn:
            assert _all_new(txn, db, [b"01B", b"01C"])  # empty db
            txn.put(b"01C", b"x", db=db)
            assert _all_new(txn, db, [b"01D", b"01E"])
            assert not _all_new(txn, db, [b"01C", b"01D"])  # 01C is stored
            assert not _all_new(txn, db, [b"01B", b"01D"])  # below the last key
            assert not _all_new(txn, db, [b"01E", b"01D"])  # not ascending
            assert not _all_new(txn, db, [b"01D", b"01D"])  # repeated
            assert not _all_new(txn, db, [])


_times = st.floats(min_value=-1e6, max_value=4e9, allow_nan=False) | st.integers(-10**6, 2**40)


@settings(max_examples=200, deadline=None)
@given(send_at=_times, accepted_at=_times)
def test_op_accept_files_a_message_at_due_ms(send_at: float, accepted_at: float) -> None:
    """op_accept works the due time out inline; it must be ``due_ms``'s (outbox key, row)."""
    msg = m.Message(m.MsgId("01A"), "acc", "+35190000000", "S", "hi", "transliterate",
                    accepted_at, send_at=send_at)
    with _env() as (env, store):
        with env.begin(write=True) as txn:
            sp.op_accept(txn, store, [msg], None)
        rows = _dump(env, store)
    assert rows[b"outbox"] == [(due_ms(msg).to_bytes(8, "big") + b"01A", b"")]
    assert msgpack.unpackb(rows[b"state"][0][1])[6] == due_ms(msg)


@settings(max_examples=60, deadline=None)
@given(st.lists(_messages, max_size=8))
def test_records_of_a_wire_batch_are_the_encode_bytes(batch: list[m.Message]) -> None:
    assert records_of(m.with_wire(batch)) == [m.encode(x) for x in batch]
    assert records_of(batch) is None  # a plain sequence: op_accept packs
    wire = m.encode_batch(batch)
    assert records_of(WireBatch([*batch, m.Message(m.MsgId("X"), "a", "", "", "", "", 0.0)],
                                wire)) is None  # fewer rows than messages
    assert records_of(WireBatch(batch, wire + b"\x00")) is None  # bytes after the rows


def test_records_of_garbage_is_none() -> None:
    msg = m.Message(m.MsgId("01A"), "acc", "+35190000000", "S", "hi", "transliterate", 1.0)
    assert records_of(WireBatch([msg], b"\x91")) is None  # header, no row
    assert records_of(WireBatch([msg], b"\xc1")) is None  # not msgpack


async def test_pipeline_store_accepts_a_wire_batch_as_it_accepts_a_list(tmp_path: Any) -> None:
    msgs = [m.Message(m.MsgId(f"01K{i}"), "acc", f"+3519000000{i}", "S", "hi", "transliterate",
                      1.0, campaign="c1") for i in range(5)]
    dumps = []
    for name, batch in (("list", msgs), ("wire", m.with_wire(msgs))):
        async with open_store(tmp_path / name, sync=False, metasync=False,
                              threaded=False) as store:
            await PipelineStore(store).accept(batch)
            await PipelineStore(store).accept(batch[:2])  # a replay: nothing changes
            dumps.append(_dump(store.env, store))
    assert dumps[0] == dumps[1]
    assert dumps[0][b"messages"] == [(x.msg_id.encode(), m.encode(x)) for x in msgs]
