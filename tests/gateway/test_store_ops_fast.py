"""The store ops' fast paths leave exactly the rows the general path leaves.

``split_messages`` (the writer process's accepts: records sliced out of the request instead of
packed again) against ``decode_batch_of`` + ``encode``, and ``op_accept`` (with and without
the sliced records) against a copy of the straightforward op it replaced, on real LMDB files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import correlation as corr
from actors import messages as m
from actors.ingress import due_ms
from gateway import _store_correlate
from gateway import _store_pipeline as sp
from gateway.store import open_env, u64

_text = st.text(max_size=12)
_time = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_messages = st.builds(
    m.Message, msg_id=st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=1,
                              max_size=18).map(m.MsgId),
    account=st.sampled_from(["acc", "b", "ü"]), to=_text, sender=_text, text=_text,
    policy=st.just("transliterate"), accepted_at=_time | st.integers(0, 2**40),
    campaign=st.sampled_from(["", "c1", "c2"]), client_ref=_text, callback_url=_text,
    send_at=_time, not_after=_time, max_parts=st.integers(0, 255),
    parts=st.integers(-1, 4), encoding=st.sampled_from(["gsm7", "ucs2"]))


class _Dbs:
    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._dbs = dbs

    def db(self, name: bytes) -> Any:
        return self._dbs[name]


@contextmanager
def _env() -> Iterator[tuple[Any, _Dbs]]:
    with tempfile.TemporaryDirectory() as path:  # hypothesis: one file per example
        env, dbs = open_env(path, sync=False, metasync=False, map_size=1 << 24)
        try:
            yield env, _Dbs(dbs)
        finally:
            env.close()


def _dump(env: Any, dbs: _Dbs) -> dict[bytes, list[tuple[bytes, bytes]]]:
    with env.begin() as txn:
        return {name: list(txn.cursor(db=db)) for name, db in dbs._dbs.items()}


def _reference_accept(txn: Any, store: _Dbs, batch: Sequence[m.Message]) -> None:
    """op_accept as it was before the fast path (the general form, kept as the oracle)."""
    db_msg, db_state, db_out, db_hist, db_camp = (store.db(n) for n in (
        b"messages", b"state", b"outbox", b"history", b"campaigns"))
    counts: dict[bytes, int] = {}
    for msg in batch:
        key = msg.msg_id.encode()
        if not txn.put(key, m.encode(msg), db=db_msg, overwrite=False):
            continue
        n = max(1, msg.parts)
        due = due_ms(msg)
        txn.put(key, msgpack.packb(
            ["ACCEPTED", 0, [[corr.PART_PENDING, "", "", "", 0.0] for _ in range(n)], "", "",
             msg.accepted_at, due, 0, 0, [], msg.account, msg.to, msg.campaign, msg.client_ref,
             msg.callback_url], use_bin_type=True), db=db_state)
        txn.put(due.to_bytes(8, "big") + key, b"", db=db_out)
        txn.put(msg.account.encode() + b"\x00" + key, b"", db=db_hist)
        if msg.campaign:
            ck = f"{msg.account}\x00{msg.campaign}".encode()
            counts[ck + b"\x00accepted"] = counts.get(ck + b"\x00accepted", 0) + 1
            counts[ck + b"\x00parts"] = counts.get(ck + b"\x00parts", 0) + n
    for key, k in counts.items():
        raw = txn.get(key, db=db_camp)
        txn.put(key, msgpack.packb((msgpack.unpackb(raw) if raw else 0) + k), db=db_camp)


@settings(max_examples=50, deadline=None)
@given(st.lists(_messages, max_size=8))
def test_split_messages_gives_the_messages_and_their_encode_bytes(
        batch: list[m.Message]) -> None:
    msgs, records = sp.split_messages(m.encode_batch(batch))
    assert msgs == batch
    assert [type(x) for x in msgs] == [m.Message] * len(batch)
    assert records == [m.encode(x) for x in batch]
    assert msgs == m.decode_batch_of(m.Message, m.encode_batch(batch))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(_messages, max_size=6), min_size=1, max_size=3))
def test_op_accept_leaves_the_rows_of_the_general_path(batches: list[list[m.Message]]) -> None:
    """Replays (ids already stored, also within a batch) and every part count included."""
    with _env() as (env_a, a), _env() as (env_b, b), _env() as (env_c, c):
        for batch in batches:
            with env_a.begin(write=True) as txn:
                _reference_accept(txn, a, batch)
            with env_b.begin(write=True) as txn:
                sp.op_accept(txn, b, batch, None)
            with env_c.begin(write=True) as txn:
                msgs, records = sp.split_messages(m.encode_batch(batch))
                sp.op_accept(txn, c, msgs, None, records)
        assert _dump(env_b, b) == _dump(env_a, a)
        assert _dump(env_c, c) == _dump(env_a, a)


def test_split_messages_refuses_what_is_not_a_batch_of_messages() -> None:
    msg = m.Message(m.MsgId("01A"), "acc", "+35190000000", "S", "hi", "transliterate", 1.0)
    part = m.SubmitPart(m.MsgId("01A"), 1, 1, "+35190000000", "S", 0, b"", b"hi", 7, "acc")
    good = m.encode_batch([msg])
    for bad in (b"", b"\xc1", good + b"\x01", msgpack.packb([[1]]), msgpack.packb({"a": 1}),
                m.encode_batch([part]), msgpack.packb([[1, 99, *msg]])):
        with pytest.raises(m.DecodeError):
            sp.split_messages(bad)
    assert sp.split_messages(m.encode_batch([])) == ([], [])


def test_split_messages_upgrades_a_row_of_a_short_form_and_encodes_it_anew() -> None:
    """A row with the defaults left off (a valid older sender's form) is not sliced: its
    record is encode() of the full message, as the general path stores it."""
    msg = m.Message(m.MsgId("01A"), "acc", "+35190000000", "S", "hi", "transliterate", 1.0)
    short = msgpack.packb([[m.Message.TAG, m.Message.VERSION, *msg[:7]]], use_bin_type=True)
    msgs, records = sp.split_messages(short)
    assert msgs == [msg]
    assert records == [m.encode(msg)]


# ------------------------------------------------------------------ deferred puts (putmulti)
# op_mark_submitting and op_apply put their carriers, contacts and inflight rows (and the state
# rows) at the end of a chunk. Whatever one batch holds, it must leave the rows that applying
# its items one op at a time leaves (each op then flushes after a single item), and read back
# what it put earlier in the same batch (a receipt after its submit response).

_ids = [m.MsgId(f"01ABCDEFGH0000000{i}") for i in range(3)]
_cids = st.sampled_from(["100", "101", "0x65", "65", "abc"])
_part = st.integers(1, 3)
_items = st.one_of(
    st.builds(m.PartSubmitted, st.sampled_from(_ids), _part, st.just(2), st.just("c"), _cids,
              st.just(5.0)),
    st.builds(m.PartFailed, st.sampled_from(_ids), _part, st.just(2), st.just("c"),
              st.just("88"), st.just("throttled"), st.just(5.0)),
    st.builds(m.PendingReceipt, st.integers(0, 9), st.just("c"), _cids,
              st.sampled_from(["DELIVRD", "UNDELIV", "ACCEPTD", "EXPIRED"]), st.just("000"),
              st.just(6.0), st.just(6.0)),
    st.builds(m.CarrierReceipt, st.just("c"), _cids, st.sampled_from(["DELIVRD", "UNDELIV"]),
              st.just("000"), st.just(6.0), st.just(6.0)),
    st.builds(m.MessageFinished, st.sampled_from(_ids),
              st.sampled_from(["NOT_DELIVERED", "NOT_SENT"]), st.just("timeout"),
              st.just("no receipt"), st.just(7.0)),
)


def _seed(txn: Any, store: _Dbs, parts: list[int], campaign: str) -> list[m.SubmitPart]:
    msgs = [m.Message(i, "acc", f"+35191000000{k}", "S", "hi", "transliterate", 1.0,
                      campaign=campaign, parts=n) for k, (i, n) in enumerate(zip(_ids, parts))]
    sp.op_accept(txn, store, msgs, None)
    return [m.SubmitPart(x.msg_id, p, x.parts, x.to, "S", 0, b"", b"hi", 7, "acc")
            for x in msgs for p in range(1, x.parts + 1)]


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.integers(1, 2), min_size=3, max_size=3),
       marks=st.lists(st.booleans(), min_size=6, max_size=6),
       items=st.lists(_items, max_size=14), chunk=st.sampled_from([2, 512]),
       timeout=st.sampled_from([None, 60.0]), campaign=st.sampled_from(["", "c1"]))
def test_batched_ops_leave_the_rows_of_one_item_at_a_time(
        parts: list[int], marks: list[bool], items: list[m.Kind], chunk: int,
        timeout: float | None, campaign: str) -> None:
    results = []
    with _env() as (env_a, a), _env() as (env_b, b):
        for env, store, one_by_one in ((env_a, a, False), (env_b, b, True)):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(_store_correlate, "_APPLY_CHUNK", chunk)
                with env.begin(write=True) as txn:
                    todo = [p for p, go in zip(_seed(txn, store, parts, campaign), marks) if go]
                with env.begin(write=True) as txn:
                    if one_by_one:
                        allowed = [sp.op_mark_submitting(txn, store, [p], 2.0)[0] for p in todo]
                    else:
                        allowed = sp.op_mark_submitting(txn, store, todo, 2.0)
                with env.begin(write=True) as txn:
                    if one_by_one:
                        applied = [sp.op_apply(txn, store, [x], 5.0, timeout) for x in items]
                    else:
                        applied = [sp.op_apply(txn, store, items, 5.0, timeout)]
            rows = [r for x in applied for r in x.event_rows]
            released = [r for x in applied for r in x.released]
            counts = [sum(getattr(x, f) for x in applied) for f in (
                "matched", "duplicates", "unknown", "orphans_parked", "orphans_matched",
                "illegal", "ignored")]
            results.append((_dump(env, store), allowed, rows, released, counts))
    assert results[0] == results[1]
    # and the deferred rows are there at all (both ways would agree on a row never put)
    dump, allowed, rows, released, _ = results[0]
    sent = {_ids.index(r[2]) for r in rows if r[4] == "SMS_SENT"}
    assert {k for k, _ in dump[b"contacts"]} == {f"acc\x00+35191000000{k}".encode()
                                                  for k in sent}
    assert {k for k, _ in dump[b"inflight"]} == (
        {p.msg_id.encode() for p, ok in zip(todo, allowed) if ok}
        - {i.encode() for i in released})
    waiting = {u64(row[8]) + k for k, row in ((k, msgpack.unpackb(v)) for k, v in dump[b"state"])
               if row[8]}  # the row's receipt-timeout due ms
    assert {k for k, _ in dump[b"timeouts"]} == waiting
    assert bool(waiting) <= (timeout is not None)
    assert {k for k, _ in dump[b"carriers"]} == {
        b"c\x00" + corr.index_key(x.carrier_id) for x in items
        if type(x) is m.PartSubmitted and x.carrier_id}


def test_a_replayed_id_keeps_its_first_record_and_rows() -> None:
    """The record's put is the replay check (overwrite=False, passed by position)."""
    first = m.Message(m.MsgId("01A"), "acc", "+35190000000", "S", "one", "transliterate", 1.0,
                      campaign="c1")
    again = first._replace(text="two", accepted_at=2.0)
    with _env() as (env, store):
        with env.begin(write=True) as txn:
            sp.op_accept(txn, store, [first, again], None)
        with env.begin(write=True) as txn:
            sp.op_accept(txn, store, [again], None)
        rows = _dump(env, store)
    assert rows[b"messages"] == [(b"01A", m.encode(first))]
    assert [msgpack.unpackb(v)[5] for _, v in rows[b"state"]] == [1.0]
    assert len(rows[b"outbox"]) == len(rows[b"history"]) == 1
    assert dict(rows[b"campaigns"])[b"acc\x00c1\x00accepted"] == msgpack.packb(1)
