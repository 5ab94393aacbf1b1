"""The callback outbox's write ops: the same functions on either store writer.

``gateway.callback_outbox`` (layout and rules there) runs :func:`op_enqueue` and
:func:`op_settle` through :class:`ThreadWrites` (a ``store.write`` closure on the gateway's
writer thread) or, with ``[store] writer = "process"``, by name in the writer process
(``gateway._store_process.ProcessPipelineStore.callback_enqueue`` / ``callback_settle``,
``gateway._store_writer_main``), so that those writes leave the gateway's GIL. Both paths pass
the ops the same plain values and get the same plain values back, which is all that crosses
the process boundary:

* enqueue: the events, in any order (the process path sends them as an ``actors.messages``
  batch; the op sorts them), and ``now``; back come how many were new, the ``(index, due
  key)`` of those scheduled and the index of those waiting behind a lower seq (indices into
  the events sent: the gateway's memo keeps the event objects it already has);
* settle: one :func:`settle_rows` row per decision (its due key and outcome; the attempts
  made, ``at`` and error where the outcome needs them; for ``dead`` only, the account and the
  event's wire form) and ``now``; back come the due keys of the events released.

An op reads the message's own rows inside its transaction: which writer runs it, and in
which process, changes nothing in what it writes (tests/gateway/test_callback_outbox_writers.py).
The op functions take the four database handles as :class:`CallbackDbs`, built from anything
with ``db(name)`` (the gateway's ``Store``, the writer process's handles). This module must not
import trio itself (the writer process imports it).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import Any, Final, Protocol, cast

import lmdb
import msgpack

from actors.messages import StatusEvent, to_wire
from actors.ports import Settlement
from gateway.store import STORE_DATABASES, ms, u64

PENDING: Final = b"cb_pending"
DUE: Final = b"cb_due"
DONE: Final = b"cb_done"
DEAD: Final = b"cb_dead"
CALLBACK_DATABASES: Final = (PENDING, DUE, DONE, DEAD)
for _name in CALLBACK_DATABASES:
    if _name not in STORE_DATABASES:
        STORE_DATABASES.append(_name)

WAITING: Final = -1
INBOUND_PREFIX: Final = "mo-"
"""Outbox message ids of inbound pushes start with this (outbound ids never do)."""
_INBOUND: Final = INBOUND_PREFIX.encode()

BY_MESSAGE: Final = attrgetter("msg_id", "seq")  # enqueue's order: each message's seqs together

Enqueued = tuple[int, list[tuple[int, bytes]], list[int]]
""":func:`op_enqueue`'s result: new, ``(index, due key)`` scheduled, indices waiting."""
SettleRow = tuple[Any, ...]
"""One decision for :func:`op_settle`, in one of :func:`settle_rows`' three forms."""


class HasDbs(Protocol):
    """Anything that hands out named database handles."""

    def db(self, name: bytes) -> Any:
        """The handle of named database ``name``."""
        ...


class CallbackDbs:
    """The outbox's four database handles."""

    __slots__ = ("dead", "done", "due", "pending")

    def __init__(self, dbs: HasDbs) -> None:
        self.pending, self.due = dbs.db(PENDING), dbs.db(DUE)
        self.done, self.dead = dbs.db(DONE), dbs.db(DEAD)


def event_key(msg_id: str, seq: int) -> bytes:
    """``msg_id 0x00 seq u32 BE``: sorts a message's events by seq."""
    return msg_id.encode() + b"\x00" + seq.to_bytes(4, "big")


def ms_not_before(at: float) -> int:
    """Due time in ms for "not before ``at``": rounded up, so that a breaker or back-off
    deadline is never seen as due a fraction of a millisecond early."""
    return max(0, math.ceil(at * 1000))


_PACKERS = threading.local()


def pack(*fields: Any) -> bytes:
    """``msgpack.packb(list(fields), use_bin_type=True)`` through a Packer kept per thread:
    ``packb`` builds a Packer (and its buffer) on every call, more than half of the cost of
    packing a row here. Per thread, because a Packer is not meant to be shared."""
    try:
        packer = _PACKERS.pack
    except AttributeError:
        packer = _PACKERS.pack = msgpack.Packer(use_bin_type=True).pack
    return cast(bytes, packer(list(fields)))


# A waiting row as put() writes it: [-1, 0, first_at as float 64, "", wire] is 0x95 (array of
# 5), 0xFF (-1), 0x00 (0), 0xCB + 8 octets (float 64), 0xA0 (""), then the wire array.
_WAITING_HEAD: Final = b"\x95\xff\x00\xcb"
_WAITING_WIRE_AT: Final = 13


def released_row(raw: bytes, due_ms: int, now: float) -> bytes | None:
    """``pack(due_ms, 0, now, "", wire)`` for the waiting row ``raw``, with its wire octets
    copied instead of decoded and packed again; None when ``raw`` is not in put()'s form."""
    if raw[:4] != _WAITING_HEAD or raw[12:13] != b"\xa0" or type(now) is not float:
        return None
    return b"\x95" + pack(due_ms, 0, now, "")[1:] + bytes(raw[_WAITING_WIRE_AT:])


def cursor_key(cursor: lmdb.Cursor) -> bytes:
    """The cursor's key. Transactions here are opened without ``buffers``, so it is bytes."""
    return cast(bytes, cursor.key())


def cursor_keys(cursor: lmdb.Cursor) -> Iterator[bytes]:
    """The keys from the cursor's position on."""
    return cast(Iterator[bytes], cursor.iternext(values=False))


# ------------------------------------------------------------------------------ the ops


def op_enqueue(txn: lmdb.Transaction, dbs: CallbackDbs, events: Sequence[StatusEvent],
               now: float) -> Enqueued:
    """Store ``events`` (in any order; of two equal (msg_id, seq) the first counts).

    They are taken sorted by (msg_id, seq), here rather than by the caller (in the writer
    process, off the gateway's GIL): a message's later events reuse what its first one looked
    up (the settled seq and the highest pending seq) instead of reading again.

    Returns how many were new, ``(index, due key)`` of those scheduled and the indices of
    those waiting behind a lower seq (indices into ``events`` as given).
    """
    new = 0
    scheduled: list[tuple[int, bytes]] = []
    waiting: list[int] = []
    cursor = txn.cursor(db=dbs.pending)
    msg_id, done_seq, last_pending = None, -1, None
    for _, i in sorted(zip(map(BY_MESSAGE, events), range(len(events)))):  # (stable)
        event = events[i]
        if event.msg_id != msg_id:
            msg_id = event.msg_id
            done = txn.get(msg_id.encode(), db=dbs.done)
            done_seq = -1 if done is None else int.from_bytes(done, "big")
            pending = pending_seqs(txn, dbs, msg_id, cursor)
            last_pending = pending[-1] if pending else None
        if event.seq <= done_seq:
            continue
        if last_pending is not None and event.seq <= last_pending:
            continue  # a duplicate, or older than a status already queued
        key = put(txn, dbs, event, schedule=last_pending is None, now=now)
        if key is None:
            waiting.append(i)
        else:
            scheduled.append((i, key))
        last_pending = event.seq
        new += 1
    return new, scheduled, waiting


def settle_rows(settlements: Sequence[Settlement]) -> list[SettleRow]:
    """The notifier's decisions as :func:`op_settle` takes them: plain values (they cross to
    the writer process as they are), each only as long as its outcome needs::

        (due key, "delivered" | "dropped")
        (due key, "retry" | "postpone", attempts made, at, error)
        (due key, "dead", attempts made, error, account, event wire)
    """
    rows: list[SettleRow] = []
    for s in settlements:
        outcome = s.outcome
        if outcome == "delivered" or outcome == "dropped":
            rows.append((s.entry.key, outcome))
        elif outcome == "dead":
            event = s.entry.event
            rows.append((s.entry.key, outcome, s.entry.attempt, s.error, event.account,
                         to_wire(event)))
        else:
            rows.append((s.entry.key, outcome, s.entry.attempt, s.at, s.error))
    return rows


def op_settle(txn: lmdb.Transaction, dbs: CallbackDbs, rows: Sequence[Sequence[Any]],
              now: float) -> list[bytes]:
    """Record :func:`settle_rows` decisions, in order; returns the due keys of the events
    released (scheduled behind a settled seq)."""
    released: list[bytes] = []
    cursor = txn.cursor(db=dbs.pending)  # one for every release_next of this write
    for row in rows:
        key, outcome = row[0], row[1]
        ek = key[8:]
        # The due key and the pending row's due time are always written together, so the
        # key still being there says the row is as it was read; gone: settled or
        # rescheduled since (a stale decision), nothing to do.
        if not txn.delete(key, db=dbs.due):
            continue
        if outcome == "retry" or outcome == "postpone":
            _, _, attempt, at, error = row
            fields = msgpack.unpackb(txn.get(ek, db=dbs.pending))
            due_ms = ms_not_before(at)
            txn.put(u64(due_ms) + ek, b"", db=dbs.due)
            txn.put(ek, pack(due_ms, attempt + (outcome == "retry"), fields[2],
                             error or fields[3], fields[4]), db=dbs.pending)
            continue
        txn.delete(ek, db=dbs.pending)
        if outcome == "dead":
            _, _, attempt, error, account, wire = row
            txn.put(account.encode() + b"\x00" + ek, pack(now, attempt + 1, error, wire),
                    db=dbs.dead)
        next_key = release_next(txn, dbs, ek, now, cursor)
        if next_key is not None:
            released.append(next_key)
    return released


# ------------------------------------------------------------------------------ helpers


def put(txn: lmdb.Transaction, dbs: CallbackDbs, event: StatusEvent, *, schedule: bool,
        now: float) -> bytes | None:
    """Write a new pending row; returns its due key when scheduled (None: waiting)."""
    ek = event_key(event.msg_id, event.seq)
    due_ms = ms(now) if schedule else WAITING
    txn.put(ek, pack(due_ms, 0, now, "", to_wire(event)), db=dbs.pending)
    if not schedule:
        return None
    key = u64(due_ms) + ek
    txn.put(key, b"", db=dbs.due)
    return key


def mark_done(txn: lmdb.Transaction, dbs: CallbackDbs, ek: bytes) -> None:
    """Raise the message's settled seq to that of event key ``ek``."""
    msg_id = ek[:-5]
    if msg_id.startswith(_INBOUND):
        return  # enqueued once, by the write that created it: nothing to recognise later
    done = txn.get(msg_id, db=dbs.done)
    if done is None or int.from_bytes(done, "big") < int.from_bytes(ek[-4:], "big"):
        txn.put(msg_id, ek[-4:], db=dbs.done)


def release_next(txn: lmdb.Transaction, dbs: CallbackDbs, ek: bytes, now: float,
                 cursor: lmdb.Cursor | None = None) -> bytes | None:
    """After the event of key ``ek`` is settled: mark it done and schedule the message's
    lowest waiting event, unless one is scheduled already; returns the due key written, if any.

    The done mark is left out while a later seq of the message is still pending: enqueue
    ignores every seq up to the highest pending one anyway, and the last one settled
    writes the mark (a message's SMS_SENT settles with its SMS_DELIVERED waiting: one
    read and one write less per message).

    ``cursor``: a cursor on ``cb_pending`` of ``txn`` to reuse (one is opened otherwise).
    """
    prefix = ek[:-4]  # msg_id 0x00
    if cursor is None:
        cursor = txn.cursor(db=dbs.pending)
    if not cursor.set_range(prefix) or not cursor_key(cursor).startswith(prefix):
        mark_done(txn, dbs, ek)
        return None
    next_ek = cursor_key(cursor)
    if int.from_bytes(next_ek[-4:], "big") <= int.from_bytes(ek[-4:], "big"):
        # a lower seq (a replay) is pending
        mark_done(txn, dbs, ek)
    raw = cast(bytes, cursor.value())  # no ``buffers`` on these transactions: bytes
    due_ms = ms(now)
    row = released_row(raw, due_ms, now)  # (a scheduled row never has that head)
    if row is None:
        fields = msgpack.unpackb(raw)
        if fields[0] != WAITING:
            return None
        row = pack(due_ms, 0, now, "", fields[4])
    txn.put(next_ek, row, db=dbs.pending)
    key = u64(due_ms) + next_ek
    txn.put(key, b"", db=dbs.due)
    return key


def pending_seqs(txn: lmdb.Transaction, dbs: CallbackDbs, msg_id: str,
                 cursor: lmdb.Cursor | None = None) -> list[int]:
    """The seqs of ``msg_id`` pending (scheduled or waiting), ascending."""
    prefix = msg_id.encode() + b"\x00"
    if cursor is None:
        cursor = txn.cursor(db=dbs.pending)
    seqs: list[int] = []
    if cursor.set_range(prefix):
        for key in cursor_keys(cursor):
            if not key.startswith(prefix):
                break
            seqs.append(int.from_bytes(key[-4:], "big"))
    return seqs


# ------------------------------------------------------------------- the thread writer


class CallbackWrites(Protocol):
    """Where the outbox's two hot writes run: :class:`ThreadWrites` or the writer process
    (``gateway._store_process.ProcessPipelineStore``). Each returns once committed."""

    async def callback_enqueue(self, events: Sequence[StatusEvent], now: float) -> Enqueued:
        """:func:`op_enqueue` in one durable write."""
        ...

    async def callback_settle(self, rows: Sequence[SettleRow], now: float) -> list[bytes]:
        """:func:`op_settle` in one durable write."""
        ...


class StoreWrite(HasDbs, Protocol):
    """What :class:`ThreadWrites` needs of a store (``gateway.store.Store``)."""

    async def write(self, op: Any) -> Any:
        """Run ``op(txn)`` in the next group-committed write."""
        ...


class ThreadWrites:
    """:class:`CallbackWrites` on ``store``'s own writer (``store.write`` closures)."""

    def __init__(self, store: StoreWrite) -> None:
        self._store = store
        self._dbs = CallbackDbs(store)

    async def callback_enqueue(self, events: Sequence[StatusEvent], now: float) -> Enqueued:
        dbs = self._dbs
        result: Enqueued = await self._store.write(
            lambda txn: op_enqueue(txn, dbs, events, now))
        return result

    async def callback_settle(self, rows: Sequence[SettleRow], now: float) -> list[bytes]:
        dbs = self._dbs
        result: list[bytes] = await self._store.write(lambda txn: op_settle(txn, dbs, rows, now))
        return result
