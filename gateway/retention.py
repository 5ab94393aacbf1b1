"""Retention: final messages older than a horizon are removed with every row pointing to them.

Theory of operation
-------------------
Message ids sort in acceptance order (their first 10 characters are the acceptance time in ms,
``actors.ingress.id_floor``), so "accepted before ``t``" is the id range below
``id_floor(t)``. :func:`op_prune` walks that range of the ``state`` database in id order,
looking at no more than ``limit`` messages, and removes each FINAL one (DELIVERED,
NOT_DELIVERED, NOT_SENT) with:

    messages      msg_id
    state         msg_id (the record and its status events)
    history       account 0x00 msg_id
    outbox, timeouts, inflight   its entries, if any are left (a final message has none)
    carriers      connector 0x00 carrier key, for each part's carrier id, only where the row
                  still names this message and part (a carrier may reuse an id later)
    cb_done       msg_id (the callback outbox's settled-seq mark), when that db is registered

A message in any other state stays, whatever its age: it still waits in the outbox or for a
receipt. Finality is read inside the write transaction, and the store's single writer runs the
correlator's ops too, so a message cannot change between the check and the delete; final
states are absorbing, so nothing writes to a final message afterwards.

Kept on purpose: campaign counters (aggregates; a campaign's ``messages.csv`` export then skips
rows whose message is gone), contacts (last SENT time per number, not per message), pending
callbacks and dead letters (they carry their own copy of the event), idempotency records
(their own TTL). A receipt arriving later for a pruned message finds no carrier row: it is
parked as an orphan and, after the orphan TTL, kept among the unknown receipts, like any
receipt we cannot match.

Three more kinds age out with the same horizon, each by its own bounded op (a key cursor, no
more than ``limit`` entries looked at; none of these keys sorts by time, so each op reads the
time from the values):

    inbound        (:func:`op_prune_inbound`) MO messages received before the horizon. Their
                   push, if any, is in the callback outbox with its own copy of the event.
    unknown        (:func:`op_prune_receipts`) receipts we never matched, received before the
    orphans        horizon; and parked orphans parked before it (the correlator normally moves
                   them to ``unknown`` after the orphan TTL, far shorter than any retention).
    campaign_rows  (:func:`op_prune_campaign_rows`) the staged rows and their row -> id
    campaign_msgs  references of campaigns that are ``done`` or ``cancelled`` and finished
                   (``finished_at``, else ``created_at``) before the horizon. The record
                   (``campaign_defs``) and the counters stay; the counter ``pruned_rows`` says
                   how many rows went, and the ``messages.csv`` export is then the header line
                   alone. A draft, scheduled, running or paused campaign keeps its rows, however
                   old, and so does one with neither time set.

:func:`prune_final` runs the ops one after another through ``Store.write`` (each op is one
bounded piece of one group commit, never one giant transaction) and sleeps a little between
them, so accepts and the pipeline's writes go through in between; :func:`prune_all` does that
for every kind. :func:`run_pruner` repeats it every hour. Metric:
``septet_store_pruned_messages_total{stage="message|inbound|receipt|campaign_row"}``
(registered here; the gateway's other store metrics live in ``gateway.metrics``).

Must not be imported by actors or adapters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import lmdb
import msgpack
import trio
from prometheus_client import Counter

from actors import correlation as corr
from actors import messages as m
from actors.ingress import id_floor
from gateway._campaign_model import COUNTERS, DEFS, MSGS, ROWS, Campaign, add_counter
from gateway._store_ctx import _FINAL
from gateway._store_pipeline import (
    _ACCOUNT,
    _DUE,
    _P_CID,
    _P_CONN,
    _PARTS,
    _ST,
    _TIMEOUT,
)
from gateway.inbound import DB as INBOUND
from gateway.store import Store, u64

logger = logging.getLogger(__name__)

KINDS: Final = ("message", "inbound", "receipt", "campaign_row")
PRUNED: Final = Counter(
    "septet_store_pruned_messages",
    "Entries removed by retention, by kind: final messages (with their history and carrier-id "
    "rows), inbound messages, unmatched receipts, rows of finished campaigns.",
    ["stage"],  # prune_all runs one stage per kind, one after another
)
for _kind in KINDS:
    PRUNED.labels(stage=_kind)

DAY: Final = 86_400.0
DEFAULT_BATCH: Final = 500
"""Most messages one op looks at (and so removes). Measured here (delivered one-part messages,
other work running): ~8 µs a message, so ~4 ms an op of 500 against ~16-40 ms at 2,000; the
op runs in the writer's transaction, so its time is added to that commit's latency."""
PAUSE: Final = 0.05
"""Seconds between two ops of a pass: the writer commits other work in between."""
FIRST_PASS_AFTER: Final = 300.0
EVERY: Final = 3600.0

_ID_BASES: Final = (None, 10, 16)
"""Every way a connector may have indexed a submit id (``corr.ID_TYPES``): the pruner does not
know each connector's configured type, so it tries each key and deletes only the row that
names this message and part."""


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one :func:`op_prune` did.

    Attributes:
        messages: messages removed.
        after: the last id looked at when the op stopped at its ``limit`` (pass it as ``after``
            to the next op), or None when the range below ``before_id`` is exhausted.
    """

    messages: int
    after: str | None


def op_prune(txn: Any, store: Store, before_id: str, limit: int, *, after: str = "") -> Pruned:
    """Remove the final messages with ids below ``before_id`` (see the module docstring).

    Looks at no more than ``limit`` messages in id order, starting past ``after``. Returns
    :class:`Pruned` rather than a bare count: non-final messages stay, so the next op must
    start past them, not from the first id again.

    Args:
        txn: the write transaction (the op runs inside ``Store.write``).
        store: the store whose databases are used.
        before_id: messages with smaller ids are candidates (``id_floor(cut_off_time)``).
        limit: most messages looked at (so also removed) by this op; at least 1.
        after: the ``after`` of the previous op's result ("" for the first).
    """
    db_state = store.db(b"state")
    stop = before_id.encode()
    doomed: list[tuple[bytes, list[Any]]] = []
    seen = 0
    last = b""
    with txn.cursor(db=db_state) as cur:
        found = cur.set_range(after.encode() + b"\x00") if after else cur.first()
        while found:
            key = cur.key()
            if key >= stop:
                break
            if seen >= limit:
                return _delete_all(txn, store, doomed, last.decode())
            seen += 1
            last = key
            rec = msgpack.unpackb(cur.value(), raw=False)
            if rec[_ST] in _FINAL:
                doomed.append((key, rec))
            found = cur.next()
    return _delete_all(txn, store, doomed, None)


def _delete_all(
    txn: Any, store: Store, doomed: list[tuple[bytes, list[Any]]], after: str | None
) -> Pruned:
    dbs = _Dbs(store)
    for key, rec in doomed:
        _delete(txn, dbs, key, rec)
    return Pruned(len(doomed), after)


class _Dbs:
    """The handles one op uses (``cb_done`` only when the callback outbox registered it)."""

    def __init__(self, store: Store) -> None:
        (
            self.messages,
            self.state,
            self.history,
            self.outbox,
            self.timeouts,
            self.inflight,
            self.carriers,
        ) = (
            store.db(n)
            for n in (
                b"messages",
                b"state",
                b"history",
                b"outbox",
                b"timeouts",
                b"inflight",
                b"carriers",
            )
        )
        self.cb_done = store._dbs.get(b"cb_done")  # optional: no StoreError when absent


def _delete(txn: Any, dbs: _Dbs, key: bytes, rec: list[Any]) -> None:
    """Remove message ``key`` (state row ``rec``) and every row that points to it."""
    delete = txn.delete
    delete(key, db=dbs.messages)
    delete(key, db=dbs.state)
    delete(rec[_ACCOUNT].encode() + b"\x00" + key, db=dbs.history)
    delete(key, db=dbs.inflight)
    if rec[_DUE]:
        delete(u64(rec[_DUE]) + key, db=dbs.outbox)
    if rec[_TIMEOUT]:
        delete(u64(rec[_TIMEOUT]) + key, db=dbs.timeouts)
    if dbs.cb_done is not None:
        delete(key, db=dbs.cb_done)
    msg_id = key.decode()
    for number, part in enumerate(rec[_PARTS], start=1):
        connector, carrier_id = part[_P_CONN], part[_P_CID]
        if not carrier_id:
            continue
        prefix = connector.encode() + b"\x00"
        for ckey in {prefix + corr.index_key(carrier_id, base) for base in _ID_BASES}:
            row = txn.get(ckey, db=dbs.carriers)
            if row is not None and msgpack.unpackb(row, raw=False) == [msg_id, number]:
                delete(ckey, db=dbs.carriers)


async def prune_final(
    store: Store,
    *,
    older_than_s: float,
    now: float,
    batch: int = DEFAULT_BATCH,
    pause: float = PAUSE,
) -> int:
    """Remove every final message accepted before ``now - older_than_s``, op by op.

    Each op looks at no more than ``batch`` messages; between ops the task sleeps ``pause``
    seconds so the writer commits accepts and pipeline work in between.

    Args:
        store: the open store.
        older_than_s: age in seconds; 0 or less removes nothing (keep forever).
        now: Unix time the age is measured from.
        batch: most messages per op (at least 1).
        pause: seconds between two ops.

    Returns:
        The number of messages removed (also added to ``septet_store_pruned_messages_total``).
    """
    if older_than_s <= 0:
        return 0
    before_id = id_floor(now - older_than_s)
    total, after = 0, ""
    while True:
        done: Pruned = await store.write(
            partial(_op, store=store, before_id=before_id, limit=max(1, batch), after=after)
        )
        total += done.messages
        PRUNED.labels(stage="message").inc(done.messages)
        if done.after is None:
            return total
        after = done.after
        await trio.sleep(pause)


def _op(txn: lmdb.Transaction, *, store: Store, before_id: str, limit: int, after: str) -> Pruned:
    return op_prune(txn, store, before_id, limit, after=after)


# ------------------------------------------------------------- inbound, receipts, campaign rows

FINISHED: Final = frozenset({"done", "cancelled"})
"""Campaign states whose rows may go (every other state is live, whatever its age)."""


@dataclass(frozen=True, slots=True)
class Swept:
    """What one op over a database keyed without time did.

    Attributes:
        removed: entries removed (inbound messages, receipts, campaign rows).
        after: the key the next op starts at (inclusive), or None when the database is done.
    """

    removed: int
    after: bytes | None


def op_prune_inbound(txn: Any, store: Store, before: float, limit: int, *,
                     after: bytes = b"") -> Swept:
    """Remove inbound messages received before ``before`` (Unix time), looking at no more
    than ``limit`` of them from key ``after`` on."""
    db = store._dbs.get(INBOUND)
    if db is None:
        return Swept(0, None)
    doomed: list[bytes] = []
    seen = 0
    with txn.cursor(db=db) as cur:
        found = cur.set_range(after) if after else cur.first()
        while found:
            if seen >= limit:
                _delete_keys(txn, db, doomed)
                return Swept(len(doomed), bytes(cur.key()))
            seen += 1
            if msgpack.unpackb(cur.value(), raw=False)[0] < before:
                doomed.append(bytes(cur.key()))
            found = cur.next()
    _delete_keys(txn, db, doomed)
    return Swept(len(doomed), None)


def op_prune_receipts(txn: Any, store: Store, before: float, limit: int, *,
                      after: bytes = b"") -> Swept:
    """Remove unknown receipts received before ``before``, then orphans parked before it.

    ``after`` starting with ``o`` continues in ``orphans``, with ``u`` in ``unknown`` (the rest
    is the key). An orphan is stored under each of its candidate keys and counted once.
    """
    db_unk, db_orph = store.db(b"unknown"), store.db(b"orphans")
    where, start = (after[:1], after[1:]) if after else (b"u", b"")
    seen = removed = 0
    if where == b"u":
        doomed: list[bytes] = []
        with txn.cursor(db=db_unk) as cur:
            found = cur.set_range(start) if start else cur.first()
            while found:
                if seen >= limit:
                    _delete_keys(txn, db_unk, doomed)
                    return Swept(len(doomed), b"u" + bytes(cur.key()))
                seen += 1
                receipt = m.decode(cur.value())
                if getattr(receipt, "received_at", before) < before:
                    doomed.append(bytes(cur.key()))
                found = cur.next()
        _delete_keys(txn, db_unk, doomed)
        removed, start = len(doomed), b""
    rewrite: list[tuple[bytes, list[Any]]] = []
    with txn.cursor(db=db_orph) as cur:
        found = cur.set_range(start) if start else cur.first()
        while found:
            if seen >= limit:
                next_key: bytes | None = b"o" + bytes(cur.key())
                break
            seen += 1
            key = bytes(cur.key())
            rows = msgpack.unpackb(cur.value(), raw=False)
            keep = [r for r in rows if r[0] >= before]
            if len(keep) < len(rows):
                removed += sum(1 for r in rows if r[0] < before and key.endswith(r[2][0]))
                rewrite.append((key, keep))
            found = cur.next()
        else:
            next_key = None
    for key, keep in rewrite:
        if keep:
            txn.put(key, msgpack.packb(keep, use_bin_type=True), db=db_orph)
        else:
            txn.delete(key, db=db_orph)
    return Swept(removed, next_key)


def op_prune_campaign_rows(txn: Any, store: Store, before: float, limit: int, *,
                           after: bytes = b"") -> Swept:
    """Remove the rows (``campaign_rows`` and ``campaign_msgs``) of campaigns finished before
    ``before``, looking at no more than ``limit`` records and rows together.

    ``after`` is the campaign key (``campaign_defs``) to start at, inclusive: a campaign with
    more rows than one op removes is continued by the next.
    """
    db_defs = store._dbs.get(DEFS)
    if db_defs is None:
        return Swept(0, None)
    db_rows, db_msgs, db_counters = store.db(ROWS), store.db(MSGS), store.db(COUNTERS)
    seen = removed = 0
    with txn.cursor(db=db_defs) as cur:
        found = cur.set_range(after) if after else cur.first()
        while found:
            if seen >= limit:
                return Swept(removed, bytes(cur.key()))
            seen += 1
            key = bytes(cur.key())
            c = Campaign.unpack(cur.value())
            ended = c.finished_at or c.created_at
            if c.state in FINISHED and 0 < ended < before:
                gone = _delete_rows(txn, db_rows, db_msgs, key + b"\x00", max(1, limit - seen))
                if gone:
                    add_counter(txn, db_counters, key.decode(), "pruned_rows", gone)
                removed += gone
                seen += gone
                if seen >= limit and _has_prefix(txn, db_rows, key + b"\x00"):
                    return Swept(removed, key)
            found = cur.next()
    return Swept(removed, None)


def _delete_rows(txn: Any, db_rows: Any, db_msgs: Any, prefix: bytes, limit: int) -> int:
    doomed: list[bytes] = []
    with txn.cursor(db=db_rows) as cur:
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(prefix) or len(doomed) >= limit:
                    break
                doomed.append(bytes(key))
    for key in doomed:
        txn.delete(key, db=db_rows)
        txn.delete(key, db=db_msgs)
    return len(doomed)


def _has_prefix(txn: Any, db: Any, prefix: bytes) -> bool:
    with txn.cursor(db=db) as cur:
        return bool(cur.set_range(prefix)) and bytes(cur.key()).startswith(prefix)


def _delete_keys(txn: Any, db: Any, keys: list[bytes]) -> None:
    for key in keys:
        txn.delete(key, db=db)


_SweepOp = Callable[..., Swept]
_SWEEPS: Final[tuple[tuple[str, _SweepOp], ...]] = (
    ("inbound", op_prune_inbound),
    ("receipt", op_prune_receipts),
    ("campaign_row", op_prune_campaign_rows),
)


async def sweep(store: Store, op: _SweepOp, *, kind: str, before: float,
                batch: int = DEFAULT_BATCH, pause: float = PAUSE) -> int:
    """Run ``op`` (one of the ``op_prune_*`` above) op after op until its database is done;
    how many entries it removed (also added to the metric under ``kind``)."""
    total, after = 0, b""
    while True:
        done: Swept = await store.write(
            partial(_sweep_op, op=op, store=store, before=before, limit=max(1, batch),
                    after=after))
        total += done.removed
        PRUNED.labels(stage=kind).inc(done.removed)
        if done.after is None:
            return total
        after = done.after
        await trio.sleep(pause)


def _sweep_op(txn: lmdb.Transaction, *, op: _SweepOp, store: Store, before: float, limit: int,
              after: bytes) -> Swept:
    return op(txn, store, before, limit, after=after)


async def prune_all(
    store: Store,
    *,
    older_than_s: float,
    now: float,
    batch: int = DEFAULT_BATCH,
    pause: float = PAUSE,
) -> dict[str, int]:
    """One retention pass over every kind (:data:`KINDS`): final messages, inbound messages,
    unmatched receipts, rows of finished campaigns, each older than ``now - older_than_s``.

    Returns:
        Entries removed per kind; all zero when ``older_than_s`` is 0 or less (keep forever).
    """
    removed = dict.fromkeys(KINDS, 0)
    if older_than_s <= 0:
        return removed
    removed["message"] = await prune_final(
        store, older_than_s=older_than_s, now=now, batch=batch, pause=pause)
    for kind, op in _SWEEPS:
        removed[kind] = await sweep(store, op, kind=kind, before=now - older_than_s,
                                    batch=batch, pause=pause)
    return removed


async def run_pruner(
    store: Store,
    *,
    retention_days: float,
    every: float = EVERY,
    first_after: float = FIRST_PASS_AFTER,
    batch: int = DEFAULT_BATCH,
    now: Callable[[], float] = time.time,
) -> None:
    """Every ``every`` seconds (the first pass ``first_after`` seconds after start), remove
    what is older than ``retention_days`` days (:func:`prune_all`). Returns at once when
    ``retention_days`` is 0 (keep forever)."""
    if retention_days <= 0:
        return
    await trio.sleep(first_after)
    while True:
        t0 = trio.current_time()
        removed = await prune_all(
            store, older_than_s=retention_days * DAY, now=now(), batch=batch
        )
        if any(removed.values()):
            logger.info(
                "retention: older than %g days removed in %.1f s: %s",
                retention_days,
                trio.current_time() - t0,
                ", ".join(f"{n} {kind}" for kind, n in removed.items()),
            )
        await trio.sleep(every)
