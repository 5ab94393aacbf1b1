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
from gateway import _store_pipeline as sp
from gateway.store import open_env

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
