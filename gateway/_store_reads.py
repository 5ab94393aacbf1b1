"""The pipeline's store reads that run inline on the event loop (read snapshots, no writer):
the pump's due outbox entries and the correlator's receipt timeouts."""

from __future__ import annotations

from collections.abc import Sequence

from actors import messages as m
from actors._wire import array_of
from gateway.store import Store, u64

__all__ = ["cursor_after_end", "read_due", "read_timeouts"]


def read_due(
    store: Store, cursor: bytes, now: float, limit: int, skip: set[str] | frozenset[str]
) -> tuple[Sequence[m.Message], bytes, float | None]:
    """Due outbox entries from ``cursor`` on, in key order, skipping ids in ``skip``.

    The records are fetched with one ``getmulti`` (one GIL release, not one a message) and
    decoded as one batch: a record is a batch row's bytes (``messages.encode``), so joined
    under an array header they are the channel item the pump hands on, and the
    :class:`~actors._wire.WireBatch` returned keeps them (the hop packs nothing). 2.2 -> 1.5
    µs a message read, and no pack at the hop (measured, bench/RESULTS_oneproc.md).

    Returns:
        ``(messages, next_cursor, next_due)``: at most ``limit`` messages; the key to resume
        from; the due time of the first entry not yet due (None if there is none).
    """
    now_key = u64(int(now * 1000) + 1)
    ids: list[bytes] = []
    next_due: float | None = None
    resume = cursor_after_end()
    with store.read() as txn:
        with txn.cursor(db=store.db(b"outbox")) as cur:
            if not cur.set_range(cursor):
                return [], resume, None
            for key in cur.iternext(keys=True, values=False):
                if key >= now_key:
                    next_due = int.from_bytes(key[:8], "big") / 1000
                    resume = key
                    break
                if len(ids) >= limit:
                    resume = key
                    break
                msg_id = key[8:]
                if msg_id.decode() not in skip:
                    ids.append(msg_id)
        if not ids:
            return [], resume, next_due
        with txn.cursor(db=store.db(b"messages")) as cur:
            found = cur.getmulti(ids)  # one call (one GIL release), not one get an id
    # (an id without a record is left out by getmulti, as a missing record was before)
    batch = array_of([body for _, body in found])
    return m.decode_wire_batch_of(m.Message, batch), resume, next_due


def cursor_after_end() -> bytes:
    """A cursor past every key (nothing left to read until something lowers it)."""
    return b"\xff" * 9


def read_timeouts(store: Store, now: float, limit: int) -> list[m.MsgId]:
    """Messages whose receipt wait ended at or before ``now``."""
    stop = u64(int(now * 1000) + 1)
    out: list[m.MsgId] = []
    with store.read() as txn, txn.cursor(db=store.db(b"timeouts")) as cur:
        for key in cur.iternext(keys=True, values=False):
            if key >= stop or len(out) >= limit:
                break
            out.append(m.MsgId(key[8:].decode()))
    return out
