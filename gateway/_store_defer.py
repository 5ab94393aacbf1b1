"""The store op behind the rate limiter's ``deferred`` channel: move a message's outbox entry
to a later due time.

The limiter hands back a message whose send window or campaign slice is far away, with its
``send_at`` set to the instant it may go (docs/shaping.md, "Long waits go back to the durable
schedule"). :func:`op_defer` moves that message's outbox key (``u64 BE due ms || msg_id``) to
the new due time and records it in the state row's ``due`` (what the correlator deletes when
the message leaves the outbox), in the same ``store.write`` transaction, so the scheduler pump
may free the message's in-flight slot as soon as the write returns and finds it again when it
is due, after a restart too. The message record itself is left as the client gave it.

Kept out of ``gateway._store_pipeline`` (the hot path) because deferral is rare: it builds a
``StateRecord`` per message rather than working on raw rows.

Must not be imported by actors (they get :func:`defer_messages` as a callable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.correlation import StateRecord
from actors.ingress import due_ms
from actors.messages import FINAL_STATES, Message, State
from gateway.store import Store, u64

__all__ = ["defer_messages", "op_defer"]


def op_defer(txn: Any, store: Store, batch: Sequence[Message]) -> int:
    """Move each message's outbox entry to ``due_ms(message)`` (its new ``send_at``).

    Messages that are gone, final or no longer in the outbox are skipped (a late deferral
    must not bring a message back).

    Returns:
        How many outbox entries moved.
    """
    db_state, db_out = store.db(b"state"), store.db(b"outbox")
    moved = 0
    for msg in batch:
        key = msg.msg_id.encode()
        raw = txn.get(key, db=db_state)
        if raw is None:
            continue
        rec = StateRecord.unpack(raw)
        if not rec.due or State(rec.state) in FINAL_STATES:
            continue
        due = due_ms(msg)
        if due == rec.due:
            continue
        if not txn.delete(u64(rec.due) + key, db=db_out):
            continue  # not in the outbox under its recorded key: leave it alone
        txn.put(u64(due) + key, b"", db=db_out)
        rec.due = due
        txn.put(key, rec.pack(), db=db_state)
        moved += 1
    return moved


async def defer_messages(store: Store, batch: Sequence[Message]) -> int:
    """Durably reschedule ``batch`` (one group-committed write); returns how many moved."""
    return await store.write(lambda txn: op_defer(txn, store, batch))
