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

The write ops themselves are in ``gateway._callback_ops``, shared by both store writers: with
``[store] writer = "process"`` :meth:`CallbackOutbox.enqueue` and :meth:`CallbackOutbox.settle`
run in the writer process (by name, msgpack arguments), otherwise on the gateway's writer
thread; the in-memory memo that spares :meth:`CallbackOutbox.due` its reads stays here.

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
import time
from collections.abc import Collection, Container, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import lmdb
import msgpack

from actors.messages import StatusEvent, from_wire
from actors.notifier import Doorbell
from actors.ports import CallbackEntry, Settlement
from gateway._callback_ops import (
    CALLBACK_DATABASES,
    DEAD,
    DONE,
    DUE,
    INBOUND_PREFIX,
    PENDING,
    WAITING,
    CallbackDbs,
    CallbackWrites,
    ThreadWrites,
    cursor_key,
    cursor_keys,
    event_key,
    op_enqueue,
    pending_seqs,
    put,
    settle_rows,
)
from gateway.store import Store, ms, u64

__all__ = [  # the layout's names are re-exported: they are this module's public face
    "CALLBACK_DATABASES", "DEAD", "DONE", "DUE", "INBOUND_PREFIX", "PENDING", "WAITING",
    "CallbackOutbox", "DeadLetter", "event_key", "inbound_msg_id", "list_dead_letters",
    "prune_done", "replay_dead_letters"]


def inbound_msg_id(inbound_id: str) -> str:
    """The outbox's message id of inbound message ``inbound_id``: ``mo-0000000000000042``."""
    return INBOUND_PREFIX + inbound_id


def _now_ms(now: float) -> int:
    """``now`` in ms for "what is due": 1 µs of tolerance absorbs float noise (2.01 * 1000
    is 2009.9999999999998), so an entry is never due for the scheduler yet not for the scan."""
    return max(0, math.floor(now * 1000 + 1e-3))


def _split_ek(ek: bytes) -> tuple[str, int]:
    return ek[:-5].decode(), int.from_bytes(ek[-4:], "big")


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
    """The callback outbox of one store. Its writes are single durable writes.

    ``writes``: where :meth:`enqueue` and :meth:`settle` run (``gateway._callback_ops``): by
    default ``store.write`` closures on the gateway's writer thread; with ``[store] writer =
    "process"`` the writer process (``gateway._store_process.ProcessPipelineStore``), which runs
    the same op functions. :meth:`enqueue_in` always runs inside its caller's write.

    What this process enqueued is remembered until it is settled (``_fresh``: scheduled
    entries that were never tried, by due key; ``_held_back``: events waiting behind a lower
    seq, by event key), so :meth:`due` builds those entries from memory instead of reading
    and decoding their rows. Only committed writes fill the memo (the ops return what it
    needs: due keys and indices into the events sent, the keys released), and an entry is
    found there only under the exact due key it was written with: a retry or a postponement
    writes a new key and is read from LMDB, like everything another process wrote.
    """

    def __init__(self, store: Store, *, writes: CallbackWrites | None = None) -> None:
        self._store = store
        self._dbs = CallbackDbs(store)
        self._pending, self._due = self._dbs.pending, self._dbs.due
        self._writes: CallbackWrites = writes if writes is not None else ThreadWrites(store)
        self._fresh: dict[bytes, tuple[StatusEvent, float]] = {}  # due key -> (event, first_at)
        self._held_back: dict[bytes, StatusEvent] = {}  # ek -> event (due_ms WAITING)
        # due(): [skip object of the last call, where to resume, its now, last full scan]
        self._scan: list[Any] = [None, b"", -math.inf, -math.inf]
        self._writing: list[float] = []  # ``now`` of this outbox's writes not yet committed
        # Rung by writers of :meth:`enqueue_in` after their commit; the notifier listens.
        self.doorbell = Doorbell()

    def _remember(self, events: Sequence[StatusEvent], scheduled: Sequence[Sequence[Any]],
                  waiting: Sequence[int], first_at: float) -> None:
        """Fill the memo from an enqueue's result (indices into ``events``)."""
        if len(self._fresh) + len(self._held_back) > _MEMO_MAX:
            self._fresh.clear()
            self._held_back.clear()
        fresh, held_back = self._fresh, self._held_back
        for i, key in scheduled:
            fresh[key] = (events[i], first_at)
        for i in waiting:
            event = events[i]
            held_back[event_key(event.msg_id, event.seq)] = event

    # ------------------------------------------------------------------------- writes

    async def enqueue(self, events: Sequence[StatusEvent], *, now: float) -> int:
        """Store ``events`` (one write); returns how many were new. See the module rules."""
        self._writing.append(now)  # due() must not resume past what this write schedules
        try:
            new, scheduled, waiting = await self._writes.callback_enqueue(events, now)
        finally:
            self._writing.remove(now)
        self._remember(events, scheduled, waiting, now)
        return new

    def enqueue_in(self, txn: lmdb.Transaction, events: Sequence[StatusEvent], *, now: float
                   ) -> int:
        """As :meth:`enqueue`, inside a write the caller runs (so the callback is durable
        exactly when what it reports is). Run that write inside :meth:`writing` (``now``) and
        ring :attr:`doorbell` once it has committed, so the notifier sends it at once."""
        return op_enqueue(txn, self._dbs, events, now)[0]

    @contextmanager
    def writing(self, now: float) -> Iterator[None]:
        """Around a write that enqueues at ``now`` (:meth:`enqueue_in`): :meth:`due` does not
        resume its scan past ``now`` meanwhile, so the entry is read on the next pass."""
        self._writing.append(now)
        try:
            yield
        finally:
            self._writing.remove(now)

    async def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        """Record the notifier's decisions (one write)."""
        if settlements:
            self._writing.append(now)  # releases are scheduled at ``now``: see due()
            try:
                released = await self._writes.callback_settle(settle_rows(settlements), now)
            finally:
                self._writing.remove(now)
            for s in settlements:
                self._fresh.pop(s.entry.key, None)
            for key in released:
                event = self._held_back.pop(key[8:], None)
                if event is not None:
                    self._fresh[key] = (event, now)

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
            for key in cursor_keys(cursor) if found else ():
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
        # Not past what a write at ``now`` schedules (``ms(now)``: no tolerance, which could
        # round up into the next millisecond), nor past what a write of ours still under way
        # will schedule (its ``now`` was taken before this read).
        now_ms = u64(ms(min(now, *self._writing)) if self._writing else ms(now))
        resume = now_ms if first_open is None or first_open > now_ms else first_open
        self._scan[:3] = [skip, resume, now]
        return out

    def next_due_after(self, now: float) -> float | None:
        """Due time of the first scheduled entry after ``now``."""
        with self._store.read() as txn:
            cursor = txn.cursor(db=self._due)
            if not cursor.set_range(u64(_now_ms(now) + 1)):
                return None
            return int.from_bytes(cursor_key(cursor)[:8], "big") / 1000

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
    dbs = CallbackDbs(store)
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
            if txn.get(event_key(event.msg_id, event.seq), db=dbs.pending) is None:
                pending = pending_seqs(txn, dbs, event.msg_id)
                put(txn, dbs, event, schedule=not pending, now=at)
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
        while cursor.first() and cursor_key(cursor) < limit:
            cursor.delete()
            removed += 1
        return removed

    return await store.write(op)
