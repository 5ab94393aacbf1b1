"""The pipeline's store operations: what ingress, the pump, the dispatcher and the correlator
write and read. This module holds the dispatcher's and recovery's ops and
:class:`PipelineStore`; the correlator's ops are in ``gateway._store_correlate``, the ingress
op in ``gateway._store_accept``, the inline reads in ``gateway._store_reads``, the row
layout, packers and write helpers in ``gateway._store_rows``, what the ops share in
``gateway._store_ctx`` (all importable from here too). Each ``op_*`` runs inside the
group-committed write transaction; the decisions (state moves, part folding, carrier-id keys)
are the pure functions of ``actors.states`` and ``actors.correlation``.
:class:`PipelineStore` wraps them behind ``actors.ports.PipelineStore``.

Key formats (docs/core.md has the full table):
    outbox / timeouts   u64 BE due ms || msg_id
    carriers, orphans   connector 0x00 carrier key (actors.correlation.index_key/lookup_keys)
    history             account 0x00 msg_id
    contacts            account 0x00 number
    campaigns           account 0x00 campaign 0x00 counter name
    unknown             u64 BE sequence
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lmdb
import msgpack

from actors import correlation as corr
from actors import messages as m
from actors import states
from actors.messages import State
from actors.ports import Applied, InDoubtPolicy, Recovered

# The ingress op, the correlator's ops and the inline reads live in their own modules; their
# names stay importable from here (the writer process, tests and older callers use them so).
from gateway._store_accept import op_accept, records_of, split_messages
from gateway._store_correlate import _on_part_outcome, op_apply, op_expire_orphans
from gateway._store_ctx import (
    _FINAL,
    _MOVES,
    EVENT_OF,
    _Ctx,
)
from gateway._store_reads import cursor_after_end, read_due, read_timeouts
from gateway._store_rows import (
    _ACCOUNT,
    _ATTEMPTS,
    _DUE,
    _P_AT,
    _P_CID,
    _P_CONN,
    _P_STATUS,
    _PARTS,
    _ST,
    _TIMEOUT,
    Dbs,
    _new_part,
)
from gateway.store import Store

__all__ = [
    "EVENT_OF",
    # the state row's layout (gateway._store_rows), as gateway.retention imports it from here
    "_ACCOUNT",
    "_DUE",
    "_PARTS",
    "_P_CID",
    "_P_CONN",
    "_ST",
    "_TIMEOUT",
    "Dbs",
    "PipelineStore",
    "cursor_after_end",
    "op_accept",
    "op_apply",
    "op_expire_orphans",
    "op_mark_submitting",
    "op_recover",
    "read_due",
    "read_timeouts",
    "records_of",
    "split_messages",
]

# ------------------------------------------------------------------------------ dispatcher


def op_mark_submitting(
    txn: Any, store: Dbs, parts: Sequence[m.SubmitPart], now: float
) -> list[bool]:
    """Mark parts SUBMITTING (in doubt if we crash now). Returns which parts may be sent."""
    ctx = _Ctx(txn, store, now, None)
    allowed: list[bool] = []
    submitting = State.SUBMITTING.value
    pending = corr.PART_PENDING
    for part in parts:
        key = part.msg_id.encode()
        rec = ctx.load(key)
        if rec is None:
            allowed.append(False)
            continue
        rparts = rec[_PARTS]
        n = part.parts
        # The segmenter's split is the truth about the number of parts (ingress counted too).
        while len(rparts) < n:
            rparts.append(_new_part())
        if len(rparts) > n and all(p[_P_STATUS] == pending for p in rparts[n:]):
            del rparts[n:]
        p = rparts[part.part - 1] if 0 < part.part <= len(rparts) else None
        if p is None or rec[_ST] in _FINAL or p[_P_STATUS] != pending:
            allowed.append(False)
            continue
        p[_P_STATUS], p[_P_AT] = corr.PART_SUBMITTING, now
        rec[_ATTEMPTS] += 1
        if rec[_ST] != submitting:
            rec[_ST] = _MOVES[rec[_ST], submitting][0]  # SENT stays SENT
        ctx.dirty.add(key)
        ctx.inflight.append((key, b""))
        allowed.append(True)
    ctx.flush()
    return allowed


# ------------------------------------------------------------------------------ recovery


def op_recover(txn: Any, store: Dbs, policy: InDoubtPolicy, now: float) -> Recovered:
    """Settle parts that were in flight when the process stopped (the ``inflight`` db)."""
    ctx = _Ctx(txn, store, now, None)
    result = Recovered()
    db_inf = store.db(b"inflight")
    ids = [k for k in txn.cursor(db=db_inf).iternext(keys=True, values=False)]
    for key in ids:
        txn.delete(key, db=db_inf)
        rec = ctx.load(key)
        if rec is None:
            continue
        doubtful = [p for p in rec[_PARTS] if p[_P_STATUS] == corr.PART_SUBMITTING]
        result.in_doubt += len(doubtful)
        if policy == "resend":
            for p in doubtful:
                p[_P_STATUS] = corr.PART_PENDING
            if rec[_ST] == State.SUBMITTING:
                rec[_ST] = states.move(State.SUBMITTING, State.QUEUED)[0].value
            ctx.dirty.add(key)
        else:
            for i, p in enumerate(rec[_PARTS]):
                if p[_P_STATUS] == corr.PART_SUBMITTING:
                    _on_part_outcome(ctx, key, rec, i + 1, corr.PART_REJECTED, "in_doubt",
                                     "submission outcome unknown after restart; not resent",
                                     p[_P_CONN], "")
    ctx.flush()
    result.events = ctx.out.events
    return result


class PipelineStore:
    """``actors.ports.PipelineStore`` on top of :class:`gateway.store.Store`."""

    def __init__(self, store: Store, *, receipt_timeout: float | None = 48 * 3600,
                 id_types: Mapping[str, str] | None = None) -> None:
        """``id_types``: connector → ``actors.correlation.ID_TYPES`` name (default auto).

        Raises:
            ValueError: an unknown id type.
        """
        self.store = store
        self.receipt_timeout = receipt_timeout
        bad = {c: t for c, t in (id_types or {}).items() if t not in corr.ID_TYPES}
        if bad:
            raise ValueError(f"unknown carrier id types {bad}; one of {', '.join(corr.ID_TYPES)}")
        self.id_bases = {c: corr.ID_TYPES[t] for c, t in (id_types or {}).items()}

    async def accept(self, batch: Sequence[m.Message],
                     also: Callable[[lmdb.Transaction], None] | None = None) -> None:
        """Store ``batch`` (see :func:`op_accept`). A :class:`actors._wire.WireBatch` (e.g.
        ``messages.with_wire(batch)``, whose wire the ingress gate then sends on without
        packing again) gives its records by slicing, not packing (:func:`records_of`)."""
        store = self.store

        def op(txn: lmdb.Transaction) -> None:
            op_accept(txn, store, batch, also, records_of(batch))

        await store.write(op, fail_fast=True)

    def read_due(self, cursor: bytes, now: float, limit: int,
                 skip: set[str]) -> tuple[Sequence[m.Message], bytes, float | None]:
        return read_due(self.store, cursor, now, limit, skip)

    def outbox_size(self) -> int:
        return self.store.entries(b"outbox")

    async def mark_submitting(self, parts: Sequence[m.SubmitPart], now: float) -> list[bool]:
        return await self.store.write(lambda txn: op_mark_submitting(txn, self.store, parts, now))

    async def apply(self, items: Sequence[m.Kind], now: float) -> Applied:
        return await self.store.write(
            lambda txn: op_apply(txn, self.store, items, now, self.receipt_timeout,
                                 self.id_bases))

    def timeouts_due(self, now: float, limit: int) -> list[m.MsgId]:
        return read_timeouts(self.store, now, limit)

    async def expire_orphans(self, older_than: float, limit: int) -> int:
        return await self.store.write(
            lambda txn: op_expire_orphans(txn, self.store, older_than, limit))

    async def recover(self, policy: InDoubtPolicy, now: float) -> Recovered:
        return await self.store.write(lambda txn: op_recover(txn, self.store, policy, now))

    def last_contacted(self, account: str, number: str) -> float | None:
        with self.store.read() as txn:
            raw = txn.get(account.encode() + b"\x00" + number.encode(),
                          db=self.store.db(b"contacts"))
        return None if raw is None else float(msgpack.unpackb(raw))
