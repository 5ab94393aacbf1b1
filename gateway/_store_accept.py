"""The ingress op: storing accepted messages (the record, state row, outbox, history and
campaign counters of each, in the group-committed write transaction), and slicing a batch's
records out of its bytes for the writer process. Part of the pipeline's store ops
(``gateway._store_pipeline`` has the rest and :class:`~gateway._store_pipeline.PipelineStore`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import msgpack

from actors import correlation as corr
from actors import messages as m
from actors._wire import WireBatch
from actors.messages import State
from gateway._store_rows import (
    _NO_OVERWRITE,
    Dbs,
    _count,
    _new_part,
    _packer,
    _put_all,
    row_packer,
)

__all__ = ["op_accept", "records_of", "split_messages"]


def split_messages(data: bytes) -> tuple[list[m.Message], list[bytes]]:
    """The Messages of an ``encode_batch`` batch ``data``, and each one's record: the bytes
    ``encode(msg)`` makes of it. A current-version row is exactly those bytes, so they are
    sliced out of ``data`` instead of packed again (the writer process's accepts come in this
    form: 1.09 -> 0.70 µs a message for decoding and the record, measured); an older row is
    upgraded (``from_wire``) and encoded.

    Raises:
        DecodeError: not a batch of Messages.
    """
    kind = m.Message
    head, width = (kind.TAG, kind.VERSION), len(kind._fields) + 2
    msgs: list[m.Message] = []
    records: list[bytes] = []
    unpacker = msgpack.Unpacker(raw=False, use_list=False, max_buffer_size=max(1, len(data)))
    try:
        unpacker.feed(data)
        n = unpacker.read_array_header()
        unpack, tell = unpacker.unpack, unpacker.tell
        start = tell()
        for _ in range(n):
            r = unpack()
            end = tell()
            if type(r) is tuple and len(r) == width and r[:2] == head:
                msgs.append(_new_msg(kind, r[2:]))
                records.append(data[start:end])
            else:
                msg = m.from_wire(r)  # checks; upgrades an older version
                if not isinstance(msg, kind):
                    raise m.DecodeError(f"expected Message, got {type(msg).__name__}")
                msgs.append(msg)
                records.append(m.encode(msg))
            start = end
    except (ValueError, msgpack.UnpackException) as exc:  # DecodeError is a ValueError
        raise (exc if isinstance(exc, m.DecodeError) else m.DecodeError("not msgpack")) from exc
    if start != len(data):
        raise m.DecodeError("bytes after the batch")
    return msgs, records


def records_of(batch: Sequence[m.Message]) -> list[bytes] | None:
    """``encode(msg)`` of each message of ``batch`` when it is a :class:`WireBatch` (the
    bytes it was decoded from or packed as, ``actors.messages.with_wire``): sliced out of its
    wire with ``Unpacker.skip``, 0.14 µs a message against 0.37 to pack one (measured);
    None for any other sequence, or a wire that does not hold ``len(batch)`` rows.

    A WireBatch's wire is exactly ``encode_batch`` of its messages (it is built only when
    every row was of its kind's current version), and each row of ``encode_batch`` is
    ``encode`` of its message.
    """
    if type(batch) is not WireBatch:
        return None
    data = batch.wire
    unpacker = msgpack.Unpacker(max_buffer_size=max(1, len(data)))
    unpacker.feed(data)
    try:
        if unpacker.read_array_header() != len(batch):
            return None
        skip, tell = unpacker.skip, unpacker.tell
        records: list[bytes] = []
        start = tell()
        for _ in range(len(batch)):
            skip()
            end = tell()
            records.append(data[start:end])
            start = end
    except (ValueError, msgpack.UnpackException):
        return None
    return records if start == len(data) else None


_new_msg: Final = tuple.__new__  # a namedtuple from checked fields (as messages.from_wire)


def op_accept(
    txn: Any, store: Dbs, batch: Sequence[m.Message], also: Callable[[Any], None] | None,
    records: Sequence[bytes] | None = None,
) -> None:
    """Store new messages: record, state ACCEPTED, outbox entry, history, campaign counter.

    ``records``: ``encode(msg)`` of each message when the caller has them
    (:func:`split_messages`); packed here otherwise.
    """
    db_msg, db_state, db_out, db_hist = (store.db(n) for n in
                                         (b"messages", b"state", b"outbox", b"history"))
    campaigns: dict[tuple[str, str], int] = {}  # (account, campaign) -> count
    parts: dict[tuple[str, str], int] = {}
    put, pack, pack_row = txn.put, _packer(), row_packer()
    accepted, pending = State.ACCEPTED.value, corr.PART_PENDING
    head = (m.Message.TAG, m.Message.VERSION)
    # Rows go in one putmulti per db, after the loop: no op reads them in between, and a put
    # costs ~0.45 µs against ~0.15 in a putmulti (py-lmdb's argument parsing, measured). The
    # records too when every id is new (see _all_new: ids are made in ascending order);
    # otherwise each record's own put(overwrite=False) tells a replay.
    rows: list[tuple[bytes, bytes]] = []
    out: list[tuple[bytes, bytes]] = []
    hist: list[tuple[bytes, bytes]] = []
    keys = [msg.msg_id.encode() for msg in batch]
    if records is None:
        records = [pack(head + msg) for msg in batch]  # == encode(msg)
    fresh = _all_new(txn, db_msg, keys)
    if fresh:
        _put_all(txn, db_msg, list(zip(keys, records)))
    for i, msg in enumerate(batch):
        key = keys[i]
        if not fresh and not put(key, records[i], *_NO_OVERWRITE, db_msg):
            continue  # replay of an id already stored: idempotent
        n = max(1, msg.parts)
        # due_ms(msg) inline (~19 % of this op was its call): int() truncates where floor()
        # rounds down, which differ only below 0, where both end at 0. No max(): a call each.
        t = msg.send_at if msg.send_at > msg.accepted_at else msg.accepted_at  # noqa: FURB136
        due = int(t * 1000)
        if due < 0:  # noqa: PLR1730
            due = 0
        rows.append((key, pack_row([
            accepted, 0, ([[pending, "", "", "", 0.0]] if n == 1 else  # _new_part()
                          [_new_part() for _ in range(n)]),
            "", "", msg.accepted_at, due, 0, 0, [], msg.account, msg.to, msg.campaign,
            msg.client_ref, msg.callback_url])))
        out.append((due.to_bytes(8, "big") + key, b""))
        hist.append((msg.account.encode() + b"\x00" + key, b""))
        if msg.campaign:  # counters per account and campaign name (names are per account)
            ck = (msg.account, msg.campaign)
            campaigns[ck] = campaigns.get(ck, 0) + 1
            parts[ck] = parts.get(ck, 0) + n
    _put_all(txn, db_state, rows)
    _put_all(txn, db_out, out)
    _put_all(txn, db_hist, hist)
    for (account, campaign), k in campaigns.items():
        name = f"{account}\x00{campaign}"
        _count(txn, store, name, "accepted", k)
        _count(txn, store, name, "parts", parts[account, campaign])  # campaign statistics (H8)
    if also is not None:
        also(txn)


def _all_new(txn: Any, db: Any, keys: list[bytes]) -> bool:
    """True when no key of ``keys`` is in ``db`` and none repeats, known without a lookup
    each: the keys ascend strictly and the first sorts after the last key stored (message
    ids are made in ascending order, so a batch of new messages always passes; a replay,
    ids from another node or out of order take the per-record path)."""
    if not keys or keys != sorted(keys) or len(set(keys)) != len(keys):
        return False
    with txn.cursor(db=db) as cur:
        return not cur.last() or cur.key() < keys[0]
