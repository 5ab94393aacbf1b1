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
rows whose message is gone), the campaign's staged rows and row -> id references, contacts
(last SENT time per number, not per message), pending callbacks and dead letters (they carry
their own copy of the event), idempotency records (their own TTL). A receipt arriving later for
a pruned message finds no carrier row: it is parked as an orphan and, after the orphan TTL,
kept among the unknown receipts, like any receipt we cannot match.

:func:`prune_final` runs the ops one after another through ``Store.write`` (each op is one
bounded piece of one group commit, never one giant transaction) and sleeps a little between
them, so accepts and the pipeline's writes go through in between. :func:`run_pruner` repeats it
every hour. Metric: ``septet_store_pruned_messages_total`` (registered here; the gateway's
other store metrics live in ``gateway.metrics``).

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
from actors.ingress import id_floor
from gateway._store_pipeline import (
    _ACCOUNT,
    _DUE,
    _FINAL,
    _P_CID,
    _P_CONN,
    _PARTS,
    _ST,
    _TIMEOUT,
)
from gateway.store import Store, u64

logger = logging.getLogger(__name__)

PRUNED: Final = Counter(
    "septet_store_pruned_messages",
    "Final messages removed by retention (with their history and carrier-id rows).",
)

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
        PRUNED.inc(done.messages)
        if done.after is None:
            return total
        after = done.after
        await trio.sleep(pause)


def _op(txn: lmdb.Transaction, *, store: Store, before_id: str, limit: int, after: str) -> Pruned:
    return op_prune(txn, store, before_id, limit, after=after)


async def run_pruner(
    store: Store,
    *,
    retention_days: float,
    every: float = EVERY,
    first_after: float = FIRST_PASS_AFTER,
    batch: int = DEFAULT_BATCH,
    now: Callable[[], float] = time.time,
) -> None:
    """Every ``every`` seconds (the first pass ``first_after`` seconds after start), remove the
    final messages accepted more than ``retention_days`` days ago. Returns at once when
    ``retention_days`` is 0 (keep forever)."""
    if retention_days <= 0:
        return
    await trio.sleep(first_after)
    while True:
        t0 = trio.current_time()
        removed = await prune_final(
            store, older_than_s=retention_days * DAY, now=now(), batch=batch
        )
        if removed:
            logger.info(
                "retention: %d final messages older than %g days removed in %.1f s",
                removed,
                retention_days,
                trio.current_time() - t0,
            )
        await trio.sleep(every)
