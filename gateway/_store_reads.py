"""The pipeline's store reads that run inline on the event loop (read snapshots, no writer):
the pump's due outbox entries and the correlator's receipt timeouts."""

from __future__ import annotations

from actors import messages as m
from gateway.store import Store, u64

__all__ = ["cursor_after_end", "read_due", "read_timeouts"]


def read_due(
    store: Store, cursor: bytes, now: float, limit: int, skip: set[str] | frozenset[str]
) -> tuple[list[m.Message], bytes, float | None]:
    """Due outbox entries from ``cursor`` on, in key order, skipping ids in ``skip``.

    Returns:
        ``(messages, next_cursor, next_due)``: at most ``limit`` messages; the key to resume
        from; the due time of the first entry not yet due (None if there is none).
    """
    now_key = u64(int(now * 1000) + 1)
    out: list[m.Message] = []
    next_due: float | None = None
    db_msg = store.db(b"messages")
    with store.read() as txn, txn.cursor(db=store.db(b"outbox")) as cur:
        if not cur.set_range(cursor):
            return out, cursor_after_end(), None
        for key in cur.iternext(keys=True, values=False):
            if key >= now_key:
                next_due = int.from_bytes(key[:8], "big") / 1000
                return out, key, next_due
            if len(out) >= limit:
                return out, key, None
            msg_id = key[8:].decode()
            if msg_id in skip:
                continue
            body = txn.get(key[8:], db=db_msg)
            if body is not None:
                msg = m.decode(body)
                assert isinstance(msg, m.Message)
                out.append(msg)
        return out, cursor_after_end(), next_due


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
