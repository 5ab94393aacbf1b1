"""The durable callback outbox and dead-letter list, in LMDB through ``gateway.store``.

Satisfies ``actors.ports.CallbackOutbox`` structurally. Layout (names registered in
``gateway.store.STORE_DATABASES`` on import; ``ek`` = msg_id 0x00 seq u32 BE):

    cb_pending  ek -> msgpack [due_ms | -1, attempt, first_at, last_error, StatusEvent wire]
                every callback not yet delivered/dead; due_ms -1 = waiting behind a lower seq
    cb_due      due_ms u64 BE || ek -> b""      the schedule, in due order (only scheduled ones)
    cb_done     msg_id -> seq u32 BE            highest seq settled per message (idempotency),
                written once no later seq of the message is pending (until then the
                pending seq says the same: enqueue ignores seqs up to it)
    cb_dead     account 0x00 ek -> msgpack [dead_at, attempts, error, StatusEvent wire]

Rules that make delivery exactly-once and ordered per message:

* enqueue is idempotent per (msg_id, seq): an ek already pending, or a seq at or below the
  message's settled seq, is ignored; a seq below one already pending is ignored too (it would
  arrive after a later status: a final status never regresses);
* per message only the lowest pending seq is scheduled; the next one is released (scheduled
  "now") in the same transaction that settles the previous one as delivered, dead or dropped.

Dead letters are listed and replayed per account (:func:`list_dead_letters`,
:func:`replay_dead_letters`; the HTTP route POST /v1/callbacks/dead-letters/replay calls the
latter). A dead letter's id is ``"<msg_id>:<seq>"``.

``cb_done`` keeps one small entry per message that had a callback; :func:`prune_done` removes
those of messages older than a cut-off id (ids are time-ordered).

Inbound (MO) pushes share the outbox: their "message id" is ``mo-<inbound id>`` (a key of its
own kind, see :func:`inbound_msg_id`), always seq 1, written by :meth:`CallbackOutbox.enqueue_in`
inside the write that stores the inbound message. They get no ``cb_done`` mark: each is
enqueued once, by the write that creates its id, so there is no repeat to recognise.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection, Container, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Literal, cast

import lmdb
import msgpack

from actors.messages import StatusEvent, from_wire, to_wire
from actors.notifier import Doorbell
from actors.ports import CallbackEntry, Settlement
from gateway.store import STORE_DATABASES, Store, ms, u64

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


def inbound_msg_id(inbound_id: str) -> str:
    """The outbox's message id of inbound message ``inbound_id``: ``mo-0000000000000042``."""
    return INBOUND_PREFIX + inbound_id


def _ms_not_before(at: float) -> int:
    """Due time in ms for "not before ``at``": rounded up, so that a breaker or back-off
    deadline is never seen as due a fraction of a millisecond early."""
    return max(0, math.ceil(at * 1000))


def _now_ms(now: float) -> int:
    """``now`` in ms for "what is due": 1 µs of tolerance absorbs float noise (2.01 * 1000
    is 2009.9999999999998), so an entry is never due for the scheduler yet not for the scan."""
    return max(0, math.floor(now * 1000 + 1e-3))


_BY_MESSAGE: Final = attrgetter("msg_id", "seq")  # enqueue's order: each message's seqs together


def event_key(msg_id: str, seq: int) -> bytes:
    """``msg_id 0x00 seq u32 BE``: sorts a message's events by seq."""
    return msg_id.encode() + b"\x00" + seq.to_bytes(4, "big")


def _split_ek(ek: bytes) -> tuple[str, int]:
    return ek[:-5].decode(), int.from_bytes(ek[-4:], "big")


_PACKERS = threading.local()


def _pack(*fields: Any) -> bytes:
    """``msgpack.packb(list(fields), use_bin_type=True)`` through a Packer kept per thread:
    ``packb`` builds a Packer (and its buffer) on every call, more than half of the cost of
    packing a row here. Per thread, because a Packer is not meant to be shared."""
    try:
        pack = _PACKERS.pack
    except AttributeError:
        pack = _PACKERS.pack = msgpack.Packer(use_bin_type=True).pack
    return cast(bytes, pack(list(fields)))


# A waiting row as _put writes it: [-1, 0, first_at as float 64, "", wire] is 0x95 (array of
# 5), 0xFF (-1), 0x00 (0), 0xCB + 8 octets (float 64), 0xA0 (""), then the wire array.
_WAITING_HEAD: Final = b"\x95\xff\x00\xcb"
_WAITING_WIRE_AT: Final = 13


def _released_row(raw: bytes, due_ms: int, now: float) -> bytes | None:
    """``_pack(due_ms, 0, now, "", wire)`` for the waiting row ``raw``, with its wire octets
    copied instead of decoded and packed again; None when ``raw`` is not in _put's form."""
    if raw[:4] != _WAITING_HEAD or raw[12:13] != b"\xa0" or type(now) is not float:
        return None
    return b"\x95" + _pack(due_ms, 0, now, "")[1:] + bytes(raw[_WAITING_WIRE_AT:])


def _key(cursor: lmdb.Cursor) -> bytes:
    """The cursor's key. Transactions here are opened without ``buffers``, so it is bytes."""
    return cast(bytes, cursor.key())


def _keys(cursor: lmdb.Cursor) -> Iterator[bytes]:
    return cast(Iterator[bytes], cursor.iternext(values=False))


def _event(wire: list[Any]) -> StatusEvent:
    event = from_wire(wire)
    assert isinstance(event, StatusEvent)
    return event


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A callback that was given up on. ``id`` is ``"<msg_id>:<seq>"``."""

    id: str
    event: StatusEvent
    dead_at: float
    attempts: int
    error: str


_FULL_SCAN_EVERY: Final = 1.0  # seconds between due() scans from the first key (see due)
_MEMO_MAX: Final = 200_000  # entries remembered at most (then forgotten: reads take over)


class CallbackOutbox:
    """The callback outbox of one store. All writes are single ``store.write`` ops.

    What this process enqueued is remembered until it is settled (``_fresh``: scheduled
    entries that were never tried, by due key; ``_held_back``: events waiting behind a lower
    seq, by event key), so :meth:`due` builds those entries from memory instead of reading
    and decoding their rows. Only committed writes fill the memo, and an entry is found there
    only under the exact due key it was written with: a retry or a postponement writes a new
    key and is read from LMDB, like everything another process wrote.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending, self._due = store.db(PENDING), store.db(DUE)
        self._done, self._dead = store.db(DONE), store.db(DEAD)
        self._fresh: dict[bytes, tuple[StatusEvent, float]] = {}  # due key -> (event, first_at)
        self._held_back: dict[bytes, StatusEvent] = {}  # ek -> event (due_ms WAITING)
        # due(): [skip object of the last call, where to resume, its now, last full scan]
        self._scan: list[Any] = [None, b"", -math.inf, -math.inf]
        self._writing: list[float] = []  # ``now`` of this outbox's writes not yet committed
        # Rung by writers of :meth:`enqueue_in` after their commit; the notifier listens.
        self.doorbell = Doorbell()

    def _remember(self, scheduled: list[tuple[bytes, StatusEvent]],
                  waiting: list[tuple[bytes, StatusEvent]], first_at: float) -> None:
        if len(self._fresh) + len(self._held_back) > _MEMO_MAX:
            self._fresh.clear()
            self._held_back.clear()
        for key, event in scheduled:
            self._fresh[key] = (event, first_at)
        for ek, event in waiting:
            self._held_back[ek] = event

    # ------------------------------------------------------------------------- writes

    async def enqueue(self, events: Sequence[StatusEvent], *, now: float) -> int:
        """Store ``events`` (one write); returns how many were new. See the module rules."""
        ordered = sorted(events, key=_BY_MESSAGE)
        self._writing.append(now)  # due() must not resume past what this write schedules
        try:
            new, scheduled, waiting = await self._store.write(
                lambda txn: self._enqueue(txn, ordered, now))
        finally:
            self._writing.remove(now)
        self._remember(scheduled, waiting, now)
        return new

    def enqueue_in(self, txn: lmdb.Transaction, events: Sequence[StatusEvent], *, now: float
                   ) -> int:
        """As :meth:`enqueue`, inside a write the caller runs (so the callback is durable
        exactly when what it reports is). Run that write inside :meth:`writing` (``now``) and
        ring :attr:`doorbell` once it has committed, so the notifier sends it at once."""
        return self._enqueue(txn, sorted(events, key=_BY_MESSAGE), now)[0]

    @contextmanager
    def writing(self, now: float) -> Iterator[None]:
        """Around a write that enqueues at ``now`` (:meth:`enqueue_in`): :meth:`due` does not
        resume its scan past ``now`` meanwhile, so the entry is read on the next pass."""
        self._writing.append(now)
        try:
            yield
        finally:
            self._writing.remove(now)

    def _enqueue(self, txn: lmdb.Transaction, events: Sequence[StatusEvent], now: float
                 ) -> tuple[int, list[tuple[bytes, StatusEvent]], list[tuple[bytes, StatusEvent]]]:
        """``events`` sorted by (msg_id, seq): a message's later events reuse what its first
        one looked up (the settled seq and the highest pending seq) instead of reading again.

        Returns how many were new, and those (due key, event) scheduled and (ek, event) waiting.
        """
        new = 0
        scheduled: list[tuple[bytes, StatusEvent]] = []
        waiting: list[tuple[bytes, StatusEvent]] = []
        cursor = txn.cursor(db=self._pending)
        msg_id, done_seq, last_pending = None, -1, None
        for event in events:
            if event.msg_id != msg_id:
                msg_id = event.msg_id
                done = txn.get(msg_id.encode(), db=self._done)
                done_seq = -1 if done is None else int.from_bytes(done, "big")
                pending = self._pending_seqs(txn, msg_id, cursor)
                last_pending = pending[-1] if pending else None
            if event.seq <= done_seq:
                continue
            if last_pending is not None and event.seq <= last_pending:
                continue  # a duplicate, or older than a status already queued
            key = self._put(txn, event, schedule=last_pending is None, now=now)
            if key is None:
                waiting.append((event_key(event.msg_id, event.seq), event))
            else:
                scheduled.append((key, event))
            last_pending = event.seq
            new += 1
        return new, scheduled, waiting

    async def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        """Record the notifier's decisions (one write)."""
        if settlements:
            self._writing.append(now)  # releases are scheduled at ``now``: see due()
            try:
                released = await self._store.write(
                    lambda txn: self._settle(txn, settlements, now))
            finally:
                self._writing.remove(now)
            for s in settlements:
                self._fresh.pop(s.entry.key, None)
            for key in released:
                event = self._held_back.pop(key[8:], None)
                if event is not None:
                    self._fresh[key] = (event, now)

    def _settle(self, txn: lmdb.Transaction, settlements: Sequence[Settlement], now: float
                ) -> list[bytes]:
        """Returns the due keys of the events released (scheduled behind a settled seq)."""
        released: list[bytes] = []
        cursor = txn.cursor(db=self._pending)  # one for every _release_next of this write
        for s in settlements:
            key = s.entry.key
            ek = key[8:]
            # The due key and the pending row's due time are always written together, so the
            # key still being there says the row is as it was read; gone: settled or
            # rescheduled since (a stale decision), nothing to do.
            if not txn.delete(key, db=self._due):
                continue
            if s.outcome in ("retry", "postpone"):
                row = msgpack.unpackb(txn.get(ek, db=self._pending))
                attempt = s.entry.attempt + (s.outcome == "retry")
                due_ms = _ms_not_before(s.at)
                txn.put(u64(due_ms) + ek, b"", db=self._due)
                txn.put(ek, _pack(due_ms, attempt, row[2], s.error or row[3], row[4]), db=self._pending)
                continue
            txn.delete(ek, db=self._pending)
            event = s.entry.event
            if s.outcome == "dead":
                dead = _pack(now, s.entry.attempt + 1, s.error, to_wire(event))
                txn.put(event.account.encode() + b"\x00" + ek, dead, db=self._dead)
            next_key = self._release_next(txn, event, now, cursor)
            if next_key is not None:
                released.append(next_key)
        return released

    def _put(self, txn: lmdb.Transaction, event: StatusEvent, *, schedule: bool, now: float
             ) -> bytes | None:
        """Write a new pending row; returns its due key when scheduled (None: waiting)."""
        ek = event_key(event.msg_id, event.seq)
        due_ms = ms(now) if schedule else WAITING
        txn.put(ek, _pack(due_ms, 0, now, "", to_wire(event)), db=self._pending)
        if not schedule:
            return None
        key = u64(due_ms) + ek
        txn.put(key, b"", db=self._due)
        return key

    def _mark_done(self, txn: lmdb.Transaction, event: StatusEvent) -> None:
        if event.msg_id.startswith(INBOUND_PREFIX):
            return  # enqueued once, by the write that created it: nothing to recognise later
        key = event.msg_id.encode()
        done = txn.get(key, db=self._done)
        if done is None or int.from_bytes(done, "big") < event.seq:
            txn.put(key, event.seq.to_bytes(4, "big"), db=self._done)

    def _release_next(self, txn: lmdb.Transaction, event: StatusEvent, now: float,
                      cursor: lmdb.Cursor | None = None) -> bytes | None:
        """After ``event`` is settled: mark it done and schedule the message's lowest waiting
        event, unless one is scheduled already; returns the due key written, if any.

        The done mark is left out while a later seq of the message is still pending: enqueue
        ignores every seq up to the highest pending one anyway, and the last one settled
        writes the mark (a message's SMS_SENT settles with its SMS_DELIVERED waiting: one
        read and one write less per message).

        ``cursor``: a cursor on ``cb_pending`` of ``txn`` to reuse (one is opened otherwise).
        """
        prefix = event.msg_id.encode() + b"\x00"
        if cursor is None:
            cursor = txn.cursor(db=self._pending)
        if not cursor.set_range(prefix) or not _key(cursor).startswith(prefix):
            self._mark_done(txn, event)
            return None
        ek = _key(cursor)
        if int.from_bytes(ek[-4:], "big") <= event.seq:  # a lower seq (a replay) is pending
            self._mark_done(txn, event)
        raw = cast(bytes, cursor.value())  # no ``buffers`` on these transactions: bytes
        due_ms = ms(now)
        released = _released_row(raw, due_ms, now)  # (a scheduled row never has that head)
        if released is None:
            row = msgpack.unpackb(raw)
            if row[0] != WAITING:
                return None
            released = _pack(due_ms, 0, now, "", row[4])
        txn.put(ek, released, db=self._pending)
        key = u64(due_ms) + ek
        txn.put(key, b"", db=self._due)
        return key

    def _pending_seqs(self, txn: lmdb.Transaction, msg_id: str,
                      cursor: lmdb.Cursor | None = None) -> list[int]:
        prefix = msg_id.encode() + b"\x00"
        if cursor is None:
            cursor = txn.cursor(db=self._pending)
        seqs: list[int] = []
        if cursor.set_range(prefix):
            for key in _keys(cursor):
                if not key.startswith(prefix):
                    break
                seqs.append(int.from_bytes(key[-4:], "big"))
        return seqs

    # -------------------------------------------------------------------------- reads

    def due(self, now: float, *, limit: int, skip: Container[bytes] = ()) -> list[CallbackEntry]:
        """Up to ``limit`` scheduled entries due at ``now``, in due order, minus ``skip``.

        A caller that passes the same ``skip`` set each time, takes no key out of it before
        that key is settled and reads with the clock its writes use (the notifier and its set
        of entries in flight) does not pay for walking past them again and again: the scan
        resumes at the millisecond of the first key that was not in ``skip`` last time (never
        later than ``now``'s nor than that of a write of this outbox still under way), since
        whatever is scheduled after a read is due at that read's time or later. A full scan runs at least
        once a second (and whenever the clock went back), so an entry written behind that
        point (another process with an older clock) waits at most that long.
        """
        end = u64(_now_ms(now) + 1)
        out: list[CallbackEntry] = []
        fresh = self._fresh
        start = b""
        if skip is self._scan[0] and type(skip) is set and \
                self._scan[2] <= now < self._scan[3] + _FULL_SCAN_EVERY:
            start = self._scan[1]
        else:
            self._scan[3] = now  # this one is a full scan
        first_open: bytes | None = None  # ms prefix of the first key not in skip
        with self._store.read() as txn:
            cursor = txn.cursor(db=self._due)
            found = cursor.set_range(start) if start else cursor.first()
            for key in _keys(cursor) if found else ():
                if key >= end or len(out) >= limit:
                    if first_open is None:
                        first_open = key[:8]
                    break
                if key in skip:
                    continue
                if first_open is None:
                    first_open = key[:8]
                known = fresh.get(key)
                if known is not None:  # written by this process, never tried: no read
                    out.append(CallbackEntry(key, known[0], 0, known[1],
                                             int.from_bytes(key[:8], "big") / 1000))
                    continue
                raw = txn.get(key[8:], db=self._pending)
                if raw is None:
                    continue
                due_ms, attempt, first_at, _error, wire = msgpack.unpackb(raw)
                out.append(CallbackEntry(key, _event(wire), attempt, first_at, due_ms / 1000))
        # Not past now, nor past what a write of ours still under way will schedule (its
        # ``now`` was taken before this read).
        now_ms = u64(_now_ms(min(now, *self._writing)) if self._writing else _now_ms(now))
        resume = now_ms if first_open is None or first_open > now_ms else first_open
        self._scan[:3] = [skip, resume, now]
        return out

    def next_due_after(self, now: float) -> float | None:
        """Due time of the first scheduled entry after ``now``."""
        with self._store.read() as txn:
            cursor = txn.cursor(db=self._due)
            if not cursor.set_range(u64(_now_ms(now) + 1)):
                return None
            return int.from_bytes(_key(cursor)[:8], "big") / 1000

    def pending_count(self) -> int:
        """Callbacks not yet delivered or dead (scheduled and waiting)."""
        return self._store.entries(PENDING)


# ------------------------------------------------------------------------ dead letters


def _dead_rows(txn: lmdb.Transaction, db: Any, account: str) -> Iterator[tuple[bytes, bytes]]:
    prefix = account.encode() + b"\x00"
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key, value in cast(Iterator[tuple[bytes, bytes]], cursor.iternext()):
            if not key.startswith(prefix):
                return
            yield key, value


def _dead_id(key: bytes) -> str:
    msg_id, seq = _split_ek(key.split(b"\x00", 1)[1])
    return f"{msg_id}:{seq}"


def list_dead_letters(
    store: Store, account: str, *, after: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters of ``account`` in message-id (= time) order, after the id ``after``."""
    out: list[DeadLetter] = []
    with store.read() as txn:
        for key, value in _dead_rows(txn, store.db(DEAD), account):
            dead_id = _dead_id(key)
            if after is not None and _id_order(dead_id) <= _id_order(after):
                continue
            dead_at, attempts, error, wire = msgpack.unpackb(value)
            out.append(DeadLetter(dead_id, _event(wire), dead_at, attempts, error))
            if len(out) >= limit:
                break
    return out


def _id_order(dead_id: str) -> tuple[str, int]:
    msg_id, _, seq = dead_id.rpartition(":")
    return msg_id, int(seq) if seq.isdigit() else 0


async def replay_dead_letters(
    store: Store,
    account: str,
    ids: Collection[str] | Literal["all"],
    *,
    now: float | None = None,
) -> int:
    """Put dead letters of ``account`` back into the outbox (one write); returns how many.

    A replayed callback starts a fresh retry window. If a later status of the same message is
    still pending, the replayed one waits for it (replay is an explicit operator action, so an
    older status may then arrive after a newer one; receivers order by ``sequence``).
    Unknown ids are ignored. The running notifier picks replayed entries up within its
    ``poll_interval``. ``now`` defaults to the wall clock.
    """
    at = time.time() if now is None else now
    outbox = CallbackOutbox(store)
    wanted = None if ids == "all" else set(ids)

    def op(txn: lmdb.Transaction) -> int:
        rows = [
            (key, value)
            for key, value in _dead_rows(txn, store.db(DEAD), account)
            if wanted is None or _dead_id(key) in wanted
        ]
        for key, value in rows:
            txn.delete(key, db=store.db(DEAD))
            event = _event(msgpack.unpackb(value)[3])
            if txn.get(event_key(event.msg_id, event.seq), db=store.db(PENDING)) is None:
                pending = outbox._pending_seqs(txn, event.msg_id)
                outbox._put(txn, event, schedule=not pending, now=at)
        return len(rows)

    return await store.write(op)


async def prune_done(store: Store, *, before_msg_id: str) -> int:
    """Forget the settled-seq marks of messages with ids below ``before_msg_id`` (one write).

    After pruning, a late duplicate of such a message's status would be delivered again; prune
    only past the horizon in which the correlator can replay (e.g. older than 7 days).
    """

    def op(txn: lmdb.Transaction) -> int:
        cursor = txn.cursor(db=store.db(DONE))
        removed = 0
        limit = before_msg_id.encode()
        while cursor.first() and _key(cursor) < limit:
            cursor.delete()
            removed += 1
        return removed

    return await store.write(op)
