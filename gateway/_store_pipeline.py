"""The pipeline's store operations: what ingress, the pump, the dispatcher and the correlator
write and read. Each ``op_*`` runs inside the group-committed write transaction; the decisions
(state moves, part folding, carrier-id keys) are the pure functions of ``actors.states`` and
``actors.correlation``. :class:`PipelineStore` wraps them behind ``actors.ports.PipelineStore``.

Key formats (docs/core.md has the full table):
    outbox / timeouts   u64 BE due ms || msg_id
    carriers, orphans   connector 0x00 carrier key (actors.correlation.index_key/lookup_keys)
    events              msg_id || u16 BE seq
    history             account 0x00 msg_id
    contacts            account 0x00 number
    campaigns           campaign 0x00 counter name
    receipts, unknown   u64 BE sequence
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import lmdb
import msgpack

from actors import correlation as corr
from actors import messages as m
from actors import states
from actors.correlation import PartRecord, StateRecord
from actors.ingress import due_key, due_ms
from actors.messages import FINAL_STATES, State
from actors.ports import Applied, InDoubtPolicy, Recovered
from gateway.store import Store, u64

EVENT_OF: Final[dict[str, str]] = {
    State.SENT: "SMS_SENT",
    State.DELIVERED: "SMS_DELIVERED",
    State.NOT_DELIVERED: "SMS_NOT_DELIVERED",
    State.NOT_SENT: "SMS_NOT_SENT",
}
_SEQ = itertools.count(time.time_ns())


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@dataclass(slots=True)
class _Ctx:
    """Handles and per-batch scratch of one correlation op."""

    txn: Any
    store: Store
    now: float
    timeout_s: float | None
    id_bases: Mapping[str, tuple[corr.IdBase, corr.IdBase]] = field(default_factory=dict)
    out: Applied = field(default_factory=Applied)
    cache: dict[bytes, tuple[StateRecord, _Msg]] = field(default_factory=dict)
    dirty: set[bytes] = field(default_factory=set)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def db(self, name: bytes) -> Any:
        return self.store._dbs[name]  # hot path: skip Store.db's error handling

    def load(self, msg_id: bytes) -> tuple[StateRecord, _Msg] | None:
        """The state record and (lazily decoded) message fields of ``msg_id``, cached."""
        hit = self.cache.get(msg_id)
        if hit is None:
            raw = self.txn.get(msg_id, db=self.db(b"state"))
            if raw is None:
                return None
            hit = (StateRecord.unpack(raw), _Msg(self.txn, self.db(b"messages"), msg_id))
            self.cache[msg_id] = hit
        return hit

    def flush(self) -> None:
        db = self.db(b"state")
        for key in self.dirty:
            self.txn.put(key, self.cache[key][0].pack(), db=db)
        for (campaign, name), n in self.counts.items():
            _count(self.txn, self.store, campaign, name, n)


class _Msg:
    """The fields of a stored Message the correlator needs, read off its wire row when first
    asked for (no dataclass built: this runs for every outcome and receipt)."""

    __slots__ = ("_txn", "_db", "_key", "_row")

    def __init__(self, txn: Any, db: Any, key: bytes) -> None:
        self._txn, self._db, self._key = txn, db, key
        self._row: list[Any] | None = None

    def _get(self, i: int) -> Any:
        row = self._row
        if row is None:
            body = self._txn.get(self._key, db=self._db)
            row = msgpack.unpackb(body, raw=False) if body is not None else [0, 0, "", "", ""]
            # [tag, version, msg_id, account, to, sender, text, policy, accepted_at, campaign,
            #  client_ref, callback_url, ...] (actors.messages.Message field order)
            if body is not None and (row[0] != m.Message.TAG or row[1] != m.Message.VERSION):
                row = m.to_wire(m.from_wire(row))
            row += [""] * (12 - len(row))
            self._row = row
        return row[i]

    msg_id = property(lambda self: self._get(2))
    account = property(lambda self: self._get(3))
    to = property(lambda self: self._get(4))
    campaign = property(lambda self: self._get(9))
    client_ref = property(lambda self: self._get(10))
    callback_url = property(lambda self: self._get(11))


# ------------------------------------------------------------------------------ ingress


def op_accept(
    txn: Any, store: Store, batch: Sequence[m.Message], also: Callable[[Any], None] | None
) -> None:
    """Store new messages: record, state ACCEPTED, outbox entry, history, campaign counter."""
    db_msg, db_state, db_out, db_hist = (store.db(n) for n in
                                         (b"messages", b"state", b"outbox", b"history"))
    campaigns: dict[str, int] = {}
    parts: dict[str, int] = {}
    for msg in batch:
        key = msg.msg_id.encode()
        if not txn.put(key, m.encode(msg), db=db_msg, overwrite=False):
            continue  # replay of an id already stored: idempotent
        record = StateRecord(State.ACCEPTED, parts=[PartRecord() for _ in range(max(1, msg.parts))],
                             at=msg.accepted_at, due=due_ms(msg))
        txn.put(key, record.pack(), db=db_state)
        txn.put(due_key(msg), b"", db=db_out)
        txn.put(msg.account.encode() + b"\x00" + key, b"", db=db_hist)
        if msg.campaign:
            campaigns[msg.campaign] = campaigns.get(msg.campaign, 0) + 1
            parts[msg.campaign] = parts.get(msg.campaign, 0) + max(1, msg.parts)
    for campaign, n in campaigns.items():
        _count(txn, store, campaign, "accepted", n)
        _count(txn, store, campaign, "parts", parts[campaign])  # campaign statistics (H8)
    if also is not None:
        also(txn)


def _count(txn: Any, store: Store, campaign: str, name: str, n: int = 1) -> None:
    key = campaign.encode() + b"\x00" + name.encode()
    db = store.db(b"campaigns")
    raw = txn.get(key, db=db)
    txn.put(key, _pack((msgpack.unpackb(raw) if raw else 0) + n), db=db)


# ------------------------------------------------------------------------------ pump reads


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


# ------------------------------------------------------------------------------ dispatcher


def op_mark_submitting(
    txn: Any, store: Store, parts: Sequence[m.SubmitPart], now: float
) -> list[bool]:
    """Mark parts SUBMITTING (in doubt if we crash now). Returns which parts may be sent."""
    ctx = _Ctx(txn, store, now, None)
    allowed: list[bool] = []
    for part in parts:
        key = part.msg_id.encode()
        hit = ctx.load(key)
        if hit is None:
            allowed.append(False)
            continue
        rec, _ = hit
        # The segmenter's split is the truth about the number of parts (ingress counted too).
        while len(rec.parts) < part.parts:
            rec.parts.append(PartRecord())
        if len(rec.parts) > part.parts and all(
                p.status == corr.PART_PENDING for p in rec.parts[part.parts:]):
            del rec.parts[part.parts:]
        p = rec.parts[part.part - 1] if 0 < part.part <= len(rec.parts) else None
        if p is None or State(rec.state) in FINAL_STATES or p.status != corr.PART_PENDING:
            allowed.append(False)
            continue
        p.status, p.at = corr.PART_SUBMITTING, now
        rec.attempts += 1
        rec.state = states.move(State(rec.state), State.SUBMITTING)[0]  # SENT stays SENT
        ctx.dirty.add(key)
        txn.put(key, b"", db=store.db(b"inflight"))
        allowed.append(True)
    ctx.flush()
    return allowed


# ------------------------------------------------------------------------------ correlator


def op_apply(
    txn: Any, store: Store, items: Sequence[m.Kind], receipt_keys: Sequence[bytes],
    now: float, timeout_s: float | None,
    id_bases: Mapping[str, tuple[corr.IdBase, corr.IdBase]] | None = None,
) -> Applied:
    """Apply submit outcomes, receipts and finished messages in order; persist the events.

    ``id_bases`` maps a connector to how it writes ids (``actors.correlation.ID_TYPES``);
    connectors not in it are guessed per id.
    """
    ctx = _Ctx(txn, store, now, timeout_s, id_bases or {})
    db_inbox = store.db(b"receipts")
    for key in receipt_keys:
        txn.delete(key, db=db_inbox)
    for item in items:
        match item:
            case m.PartSubmitted():
                _on_submitted(ctx, item)
            case m.PartFailed():
                _on_part_outcome(ctx, item.msg_id, item.part, corr.PART_REJECTED, item.code,
                                 item.reason, item.connector, "")
            case m.CarrierReceipt():
                _on_receipt(ctx, item)
            case m.StoredReceipt():
                txn.delete(item.inbox_key, db=db_inbox)
                _on_receipt(ctx, item)
            case m.MessageFinished():
                _on_finished(ctx, item)
            case _:
                ctx.out.ignored += 1
    ctx.flush()
    return ctx.out


def _on_submitted(ctx: _Ctx, item: m.PartSubmitted) -> None:
    _on_part_outcome(ctx, item.msg_id, item.part, corr.PART_ACCEPTED, "", "", item.connector,
                     item.carrier_id)
    if not item.carrier_id:
        return
    prefix = item.connector.encode() + b"\x00"
    submit_base = ctx.id_bases.get(item.connector, (None, None))[0]
    key = prefix + corr.index_key(item.carrier_id, submit_base)
    ctx.txn.put(key, _pack([item.msg_id, item.part]), db=ctx.db(b"carriers"))
    db_orph = ctx.db(b"orphans")
    parked = ctx.txn.get(key, db=db_orph)
    if parked is None:
        return
    # Receipts that arrived before this submit response. A receipt is parked under each of
    # its candidate keys, so one key's list may hold receipts of several ids (decimal 130
    # is also read as hex 0x82 = "#130"... and "82"): take only the rows whose most likely
    # key is this one, and remove just those rows from the other keys' lists, never whole
    # lists. A row parked here under a later reading stays until its own key lands (or the
    # orphan TTL moves it to the unknown receipts).
    mine_key = key[len(prefix):]
    keep, taken = [], []
    for row in msgpack.unpackb(parked, raw=False):
        (taken if row[2][0] == mine_key else keep).append(row)
    _put_rows(ctx, db_orph, key, keep)
    for row in taken:
        for k in row[2]:
            if k != mine_key:
                old = ctx.txn.get(prefix + k, db=db_orph)
                if old is not None:
                    rest = [r for r in msgpack.unpackb(old, raw=False) if r != row]
                    _put_rows(ctx, db_orph, prefix + k, rest)
        ctx.out.orphans_matched += 1
        receipt = m.from_wire(row[1])
        assert isinstance(receipt, m.CarrierReceipt)
        _apply_receipt(ctx, receipt, item.msg_id, item.part)


def _put_rows(ctx: _Ctx, db: Any, key: bytes, rows: list[Any]) -> None:
    if rows:
        ctx.txn.put(key, _pack(rows), db=db)
    else:
        ctx.txn.delete(key, db=db)


def _on_receipt(ctx: _Ctx, receipt: m.CarrierReceipt | m.StoredReceipt) -> None:
    prefix = receipt.connector.encode() + b"\x00"
    keys = corr.lookup_keys(receipt.carrier_id,
                            ctx.id_bases.get(receipt.connector, (None, None))[1])
    db_car = ctx.db(b"carriers")
    for i, k in enumerate(keys):
        hit = ctx.txn.get(prefix + k, db=db_car)
        if hit is not None:
            msg_id, part = msgpack.unpackb(hit, raw=False)
            if i and _part_done(ctx, msg_id, part):
                # A later reading of the id names a part already settled: that is an older
                # message sharing digits with this id, not this receipt's (whose submit
                # response has not landed yet). Keep looking, else park.
                continue
            _apply_receipt(ctx, receipt, msg_id, part)
            return
    # Not (yet) known: park it under every candidate key until the submit response lands.
    db_orph = ctx.db(b"orphans")
    if isinstance(receipt, m.StoredReceipt):
        receipt = m.CarrierReceipt(receipt.connector, receipt.carrier_id, receipt.state,
                                   receipt.error_code, receipt.received_at, receipt.done_at)
    entry = [ctx.now, m.to_wire(receipt), keys]
    for k in keys:
        old = ctx.txn.get(prefix + k, db=db_orph)
        rows = msgpack.unpackb(old, raw=False) if old else []
        rows.append(entry)
        ctx.txn.put(prefix + k, _pack(rows), db=db_orph)
    ctx.out.orphans_parked += 1


def _part_done(ctx: _Ctx, msg_id: str, part: int) -> bool:
    hit = ctx.load(msg_id.encode())
    if hit is None or not 0 < part <= len(hit[0].parts):
        return True
    return corr.part_is_final(hit[0].parts[part - 1].status)


def _apply_receipt(ctx: _Ctx, receipt: m.CarrierReceipt | m.StoredReceipt, msg_id: str,
                   part: int) -> None:
    hit = ctx.load(msg_id.encode())
    if hit is None or not 0 < part <= len(hit[0].parts):
        ctx.out.unknown += 1
        return
    p = hit[0].parts[part - 1]
    status = corr.receipt_part_status(receipt.state)
    if corr.part_is_final(p.status):
        ctx.out.duplicates += 1
        return
    ctx.out.matched += 1
    if status == corr.PART_ACCEPTED:
        return  # ENROUTE/ACCEPTD: intermediate, nothing to fold
    _on_part_outcome(ctx, m.MsgId(msg_id), part, status, receipt.error_code,
                     receipt.state, p.connector, p.carrier_id)


def _on_part_outcome(
    ctx: _Ctx, msg_id: str, part: int, status: str, code: str, reason: str,
    connector: str, carrier_id: str,
) -> None:
    key = msg_id.encode()
    hit = ctx.load(key)
    if hit is None:
        ctx.out.unknown += 1
        return
    rec, msg = hit
    while len(rec.parts) < part:
        rec.parts.append(PartRecord())
    p = rec.parts[part - 1]
    if corr.part_is_final(p.status) or (p.status == corr.PART_ACCEPTED and status ==
                                        corr.PART_ACCEPTED):
        ctx.out.ignored += 1  # a repeated submit outcome (receipt duplicates are counted apart)
        return
    p.status, p.code, p.at = status, code or p.code, ctx.now
    if connector:
        p.connector = connector
    if carrier_id:
        p.carrier_id = carrier_id
    ctx.dirty.add(key)
    target = corr.fold(rec.statuses())
    if target is not None:
        _move(ctx, key, rec, msg, target, code, reason if status != corr.PART_ACCEPTED else "",
              carrier_id or p.carrier_id)
    _maybe_release(ctx, key, rec, msg)


def _on_finished(ctx: _Ctx, item: m.MessageFinished) -> None:
    key = item.msg_id.encode()
    hit = ctx.load(key)
    if hit is None:
        ctx.out.unknown += 1
        return
    rec, msg = hit
    target = State(item.state)
    if target == State.NOT_DELIVERED:  # receipt timeout: open parts fail
        for p in rec.parts:
            if not corr.part_is_final(p.status):
                p.status, p.code = corr.PART_FAILED, item.code
    ctx.dirty.add(key)
    _move(ctx, key, rec, msg, target, item.code, item.reason, "")
    _maybe_release(ctx, key, rec, msg)


def _move(
    ctx: _Ctx, key: bytes, rec: StateRecord, msg: _Msg, target: State,
    code: str, reason: str, carrier_id: str,
) -> None:
    current = State(rec.state)
    if target == current:
        return
    if target in (State.DELIVERED, State.NOT_DELIVERED) and current != State.SENT:
        _move(ctx, key, rec, msg, State.SENT, "", "", carrier_id)  # SENT always comes first
        current = State(rec.state)
    new, refused = states.move(current, target)
    if refused:
        ctx.out.illegal += 1
        return
    rec.state, rec.at = new, ctx.now
    ctx.dirty.add(key)
    if new in (State.SENT, State.DELIVERED):
        code = reason = ""  # a success carries no error code (the part records keep theirs)
    if new in FINAL_STATES:
        rec.code, rec.reason = code, reason
    if new in EVENT_OF:
        _event(ctx, key, rec, msg, EVENT_OF[new], code, reason, carrier_id)
    if new == State.SENT:
        ctx.txn.put(msg.account.encode() + b"\x00" + msg.to.encode(), _pack(ctx.now),
                    db=ctx.db(b"contacts"))
        if ctx.timeout_s is not None:
            rec.timeout = int((ctx.now + ctx.timeout_s) * 1000)
            ctx.txn.put(u64(rec.timeout) + key, b"", db=ctx.db(b"timeouts"))
    elif new in FINAL_STATES and rec.timeout:
        ctx.txn.delete(u64(rec.timeout) + key, db=ctx.db(b"timeouts"))
        rec.timeout = 0


def _event(
    ctx: _Ctx, key: bytes, rec: StateRecord, msg: _Msg, event: str, code: str,
    reason: str, carrier_id: str,
) -> None:
    rec.seq += 1
    ctx.txn.put(key + rec.seq.to_bytes(2, "big"),
                _pack([event, ctx.now, code, reason, carrier_id]), db=ctx.db(b"events"))
    if msg.campaign:
        ck = (msg.campaign, event)
        ctx.counts[ck] = ctx.counts.get(ck, 0) + 1
        if event == "SMS_NOT_SENT":  # not sent by reason, for campaign statistics (H8)
            ck = (msg.campaign, f"SMS_NOT_SENT:{code}")
            ctx.counts[ck] = ctx.counts.get(ck, 0) + 1
    # The StatusEvent's wire row, built directly (a frozen dataclass per event costs µs).
    ctx.out.event_rows.append([
        m.StatusEvent.TAG, m.StatusEvent.VERSION, msg.msg_id, msg.account, event, rec.seq,
        ctx.now, carrier_id, msg.campaign, len(rec.parts), code, reason, msg.client_ref,
        msg.callback_url])


def _maybe_release(ctx: _Ctx, key: bytes, rec: StateRecord, msg: _Msg) -> None:
    """Leave the outbox once no part waits for submission (or the message is final)."""
    open_parts = any(p.status in (corr.PART_PENDING, corr.PART_SUBMITTING) for p in rec.parts)
    if rec.due and (not open_parts or rec.state in FINAL_STATES):
        ctx.txn.delete(u64(rec.due) + key, db=ctx.db(b"outbox"))
        ctx.txn.delete(key, db=ctx.db(b"inflight"))
        rec.due = 0
        ctx.out.released.append(msg.msg_id)


# ------------------------------------------------------------------------------ receipts


def op_park_receipts(txn: Any, store: Store, receipts: Sequence[m.CarrierReceipt]) -> list[bytes]:
    """Durable receipt inbox: store receipts before the connector acknowledges them."""
    db = store.db(b"receipts")
    keys = []
    for r in receipts:
        key = u64(next(_SEQ))
        txn.put(key, m.encode(r), db=db)
        keys.append(key)
    return keys


def read_receipt_inbox(store: Store, limit: int) -> list[tuple[bytes, m.CarrierReceipt]]:
    """Receipts stored but not yet correlated (replayed on start-up)."""
    out = []
    with store.read() as txn, txn.cursor(db=store.db(b"receipts")) as cur:
        for key, value in cur:
            if len(out) >= limit:
                break
            r = m.decode(value)
            assert isinstance(r, m.CarrierReceipt)
            out.append((key, r))
    return out


def read_timeouts(store: Store, now: float, limit: int) -> list[m.MsgId]:
    """Messages whose receipt wait ended at or before ``now``."""
    stop = u64(int(now * 1000) + 1)
    out = []
    with store.read() as txn, txn.cursor(db=store.db(b"timeouts")) as cur:
        for key in cur.iternext(keys=True, values=False):
            if key >= stop or len(out) >= limit:
                break
            out.append(m.MsgId(key[8:].decode()))
    return out


def op_expire_orphans(txn: Any, store: Store, older_than: float, limit: int) -> int:
    """Move orphans parked before ``older_than`` to the unknown receipts (kept, counted)."""
    db_orph, db_unk = store.db(b"orphans"), store.db(b"unknown")
    moved = 0
    doomed: list[bytes] = []
    with txn.cursor(db=db_orph) as cur:
        for key, value in cur:
            rows = msgpack.unpackb(value, raw=False)
            keep = [r for r in rows if r[0] >= older_than]
            if len(keep) == len(rows):
                continue
            for r in rows:
                if r[0] < older_than and key.endswith(r[2][0]):  # once, under its first key
                    txn.put(u64(next(_SEQ)), m.encode(m.from_wire(r[1])), db=db_unk)
                    moved += 1
            if keep:
                txn.put(key, _pack(keep), db=db_orph)
            else:
                doomed.append(key)
            if moved >= limit:
                break
    for key in doomed:
        txn.delete(key, db=db_orph)
    return moved


# ------------------------------------------------------------------------------ recovery


def op_recover(txn: Any, store: Store, policy: InDoubtPolicy, now: float) -> Recovered:
    """Settle parts that were in flight when the process stopped (the ``inflight`` db)."""
    ctx = _Ctx(txn, store, now, None)
    result = Recovered()
    db_inf = store.db(b"inflight")
    ids = [k for k in txn.cursor(db=db_inf).iternext(keys=True, values=False)]
    for key in ids:
        txn.delete(key, db=db_inf)
        hit = ctx.load(key)
        if hit is None:
            continue
        rec, msg = hit
        doubtful = [p for p in rec.parts if p.status == corr.PART_SUBMITTING]
        result.in_doubt += len(doubtful)
        if policy == "resend":
            for p in doubtful:
                p.status = corr.PART_PENDING
            if rec.state == State.SUBMITTING:
                rec.state = states.move(State.SUBMITTING, State.QUEUED)[0]
            ctx.dirty.add(key)
        else:
            for i, p in enumerate(rec.parts):
                if p.status == corr.PART_SUBMITTING:
                    _on_part_outcome(ctx, msg.msg_id, i + 1, corr.PART_REJECTED, "in_doubt",
                                     "submission outcome unknown after restart; not resent",
                                     p.connector, "")
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
        await self.store.write(lambda txn: op_accept(txn, self.store, batch, also), fail_fast=True)

    def read_due(self, cursor: bytes, now: float, limit: int,
                 skip: set[str]) -> tuple[list[m.Message], bytes, float | None]:
        return read_due(self.store, cursor, now, limit, skip)

    def outbox_size(self) -> int:
        return self.store.entries(b"outbox")

    async def mark_submitting(self, parts: Sequence[m.SubmitPart], now: float) -> list[bool]:
        return await self.store.write(lambda txn: op_mark_submitting(txn, self.store, parts, now))

    async def apply(self, items: Sequence[m.Kind], receipt_keys: Sequence[bytes],
                    now: float) -> Applied:
        return await self.store.write(
            lambda txn: op_apply(txn, self.store, items, receipt_keys, now, self.receipt_timeout,
                                 self.id_bases))

    async def park_receipts(self, receipts: Sequence[m.CarrierReceipt]) -> list[bytes]:
        return await self.store.write(lambda txn: op_park_receipts(txn, self.store, receipts))

    def receipt_inbox(self, limit: int) -> list[tuple[bytes, m.CarrierReceipt]]:
        return read_receipt_inbox(self.store, limit)

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
