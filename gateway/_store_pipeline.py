"""The pipeline's store operations: what ingress, the pump, the dispatcher and the correlator
write and read. This module holds the dispatcher's, the correlator's and recovery's ops and
:class:`PipelineStore`; the ingress op is in ``gateway._store_accept``, the inline reads in
``gateway._store_reads``, the row layout, packers and write helpers in ``gateway._store_rows``
(all importable from here too). Each ``op_*`` runs inside the group-committed write
transaction; the decisions (state moves, part folding, carrier-id keys) are the pure
functions of ``actors.states`` and ``actors.correlation``. :class:`PipelineStore` wraps them behind ``actors.ports.PipelineStore``.

Key formats (docs/core.md has the full table):
    outbox / timeouts   u64 BE due ms || msg_id
    carriers, orphans   connector 0x00 carrier key (actors.correlation.index_key/lookup_keys)
    history             account 0x00 msg_id
    contacts            account 0x00 number
    campaigns           account 0x00 campaign 0x00 counter name
    unknown             u64 BE sequence
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
from actors.messages import FINAL_STATES, ReceiptState, State
from actors.ports import Applied, InDoubtPolicy, Recovered

# The ingress op and the inline reads live in their own modules; their names stay importable
# from here (the writer process, tests and older callers use them through this module).
from gateway._store_accept import op_accept, records_of, split_messages
from gateway._store_reads import cursor_after_end, read_due, read_timeouts
from gateway._store_rows import (
    _ACCOUNT,
    _AT,
    _ATTEMPTS,
    _CALLBACK_URL,
    _CAMPAIGN,
    _CLIENT_REF,
    _CODE,
    _DUE,
    _EVENTS,
    _NSEQ,
    _P_AT,
    _P_CID,
    _P_CODE,
    _P_CONN,
    _P_STATUS,
    _PARTS,
    _REASON,
    _ST,
    _TIMEOUT,
    _TO,
    Dbs,
    _count,
    _new_part,
    _pack,
    _put_all,
    _unpack,
    _unpackb,
    row_packer,
)
from gateway.store import Store, u64

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

EVENT_OF: Final[dict[State, str]] = {
    State.SENT: "SMS_SENT",
    State.DELIVERED: "SMS_DELIVERED",
    State.NOT_DELIVERED: "SMS_NOT_DELIVERED",
    State.NOT_SENT: "SMS_NOT_SENT",
}
_SEQ = itertools.count(time.time_ns())
_EVENT_HEAD: Final = (m.StatusEvent.TAG, m.StatusEvent.VERSION)


_OPEN: Final = (corr.PART_PENDING, corr.PART_SUBMITTING)

# Plain-string views of actors.states / actors.correlation, derived from them at import (the
# rows hold plain strings; State(...) and Enum.value cost ~0.5 µs each on the hot path).
_MOVES: Final[dict[tuple[str, str], tuple[str, bool]]] = {
    (a.value, b.value): (states.move(a, b)[0].value, states.move(a, b)[1])
    for a in State for b in State}
_FINAL: Final = frozenset(s.value for s in FINAL_STATES)
_EVENT: Final[dict[str, str]] = {k.value: v for k, v in EVENT_OF.items()}
_SENT, _DELIVERED, _NOT_DELIVERED, _NOT_SENT = State.SENT.value, State.DELIVERED.value, \
    State.NOT_DELIVERED.value, State.NOT_SENT.value
_AFTER_SENT: Final = frozenset({_DELIVERED, _NOT_DELIVERED})
_SUCCESS: Final = frozenset({_SENT, _DELIVERED})
_STATUSES: Final = (corr.PART_PENDING, corr.PART_SUBMITTING, corr.PART_ACCEPTED,
                    corr.PART_DELIVERED, corr.PART_FAILED, corr.PART_REJECTED)
_PART_FINAL: Final = frozenset(s for s in _STATUSES if corr.part_is_final(s))
_RECEIPT_STATUS: Final[dict[str, str]] = {
    s.value: corr.receipt_part_status(s.value) for s in ReceiptState}
"""receipt_part_status() of the exact ReceiptState words (others go through the function)."""
_FOLD_ONE: Final[dict[str, str | None]] = {
    s: (None if (t := corr.fold([s])) is None else t.value) for s in _STATUSES}
"""fold() of a one-part message (the common case), by part status."""


@dataclass(slots=True)
class _Ctx:
    """Handles and per-batch scratch of one correlation op."""

    txn: Any
    store: Dbs
    now: float
    timeout_s: float | None
    id_bases: Mapping[str, tuple[corr.IdBase, corr.IdBase]] = field(default_factory=dict)
    out: Applied = field(default_factory=Applied)
    cache: dict[bytes, list[Any]] = field(default_factory=dict)
    dirty: set[bytes] = field(default_factory=set)
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (account,
    # campaign, counter name): the campaigns db key is built once per batch, by flush
    orphans: bool | None = None  # may the orphans db hold entries? (None: not looked yet)
    db_state: Any = None
    db_carriers: Any = None
    db_orphans: Any = None
    db_contacts: Any = None
    db_outbox: Any = None
    db_inflight: Any = None
    db_timeouts: Any = None
    now_packed: bytes = b""  # the contacts value (last SENT time) of this batch
    # Rows put by :meth:`flush` in one putmulti per db (see _put_all); nothing in an op reads
    # contacts or inflight, and carriers are read through ``carriers`` (:meth:`carrier`).
    contacts: list[tuple[bytes, bytes]] = field(default_factory=list)
    inflight: list[tuple[bytes, bytes]] = field(default_factory=list)
    carriers: dict[bytes, bytes] = field(default_factory=dict)
    timeouts: dict[bytes, bytes] = field(default_factory=dict)  # see _move

    def __post_init__(self) -> None:
        dbs = self.store._dbs  # hot path: skip Store.db's error handling
        self.db_state, self.db_carriers, self.db_orphans = (
            dbs[b"state"], dbs[b"carriers"], dbs[b"orphans"])
        self.db_contacts, self.db_outbox, self.db_inflight, self.db_timeouts = (
            dbs[b"contacts"], dbs[b"outbox"], dbs[b"inflight"], dbs[b"timeouts"])
        self.now_packed = _pack(self.now)

    def load(self, key: bytes) -> list[Any] | None:
        """The state row of ``key`` (a msg_id), cached until the next :meth:`flush`."""
        row = self.cache.get(key)
        if row is None:
            raw = self.txn.get(key, None, self.db_state)  # positional: see _NO_OVERWRITE
            if raw is None:
                return None
            row = self.cache[key] = _unpackb(raw, raw=False)
        return row

    def carrier(self, key: bytes) -> bytes | None:
        """The ``carriers`` row of ``key``, as put so far in this op."""
        row = self.carriers.get(key)
        return self.txn.get(key, None, self.db_carriers) if row is None else row

    def flush(self) -> None:
        """Write the changed state rows, the rows put since the last flush and the campaign
        counts, then forget the rows read (the transaction has them now: a later load reads
        them back)."""
        txn, cache, pack = self.txn, self.cache, row_packer()
        _put_all(txn, self.db_state, [(key, pack(cache[key])) for key in sorted(self.dirty)])
        _put_all(txn, self.db_carriers, list(self.carriers.items()))
        _put_all(txn, self.db_contacts, self.contacts)
        _put_all(txn, self.db_inflight, self.inflight)
        _put_all(txn, self.db_timeouts, list(self.timeouts.items()))
        for (account, campaign, name), n in self.counts.items():
            _count(txn, self.store, f"{account}\x00{campaign}", name, n)
        cache.clear()
        self.dirty.clear()
        self.counts.clear()
        self.carriers.clear()
        self.contacts.clear()
        self.inflight.clear()
        self.timeouts.clear()


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


# ------------------------------------------------------------------------------ correlator


_APPLY_CHUNK: Final = 512
"""op_apply writes its changed rows back every this many items: a correlator batch holds up to
4096, and working on all their rows at once cost ~20 % more per item (measured: cache and GC
work grow with the rows held)."""


def op_apply(
    txn: Any, store: Dbs, items: Sequence[m.Kind], now: float, timeout_s: float | None,
    id_bases: Mapping[str, tuple[corr.IdBase, corr.IdBase]] | None = None,
) -> Applied:
    """Apply submit outcomes, receipts and finished messages in order; persist the events.

    ``id_bases`` maps a connector to how it writes ids (``actors.correlation.ID_TYPES``);
    connectors not in it are guessed per id.
    """
    ctx = _Ctx(txn, store, now, timeout_s, id_bases or {})
    for start in range(0, len(items), _APPLY_CHUNK):
        for item in items[start:start + _APPLY_CHUNK]:
            kind = type(item)
            if kind is m.PartSubmitted:
                _on_submitted(ctx, item)  # type: ignore[arg-type]
            elif kind is m.PendingReceipt:
                _on_receipt(ctx, item)  # type: ignore[arg-type]
            elif kind is m.PartFailed:
                _on_failed(ctx, item)  # type: ignore[arg-type]
            elif kind is m.CarrierReceipt:
                _on_receipt(ctx, item)  # type: ignore[arg-type]
            elif kind is m.MessageFinished:
                _on_finished(ctx, item)  # type: ignore[arg-type]
            elif kind is m.CommitWaiter:
                pass  # the correlator wakes its caller after this commit
            else:
                ctx.out.ignored += 1
        ctx.flush()
    return ctx.out


def _on_failed(ctx: _Ctx, item: m.PartFailed) -> None:
    key = item.msg_id.encode()
    rec = ctx.load(key)
    if rec is None:
        ctx.out.unknown += 1
        return
    _on_part_outcome(ctx, key, rec, item.part, corr.PART_REJECTED, item.code, item.reason,
                     item.connector, "")


def _on_submitted(ctx: _Ctx, item: m.PartSubmitted) -> None:
    msg_key = item.msg_id.encode()
    rec = ctx.load(msg_key)
    if rec is None:
        ctx.out.unknown += 1
    else:
        _on_part_outcome(ctx, msg_key, rec, item.part, corr.PART_ACCEPTED, "", "",
                         item.connector, item.carrier_id)
    if not item.carrier_id:
        return
    prefix = item.connector.encode() + b"\x00"
    submit_base = ctx.id_bases.get(item.connector, (None, None))[0]
    key = prefix + corr.index_key(item.carrier_id, submit_base)
    ctx.carriers[key] = _pack([item.msg_id, item.part])  # put by flush
    db_orph = ctx.db_orphans
    if ctx.orphans is None:  # once per batch: usually nothing is parked, skip the lookups
        ctx.orphans = ctx.txn.stat(db_orph)["entries"] > 0
    if not ctx.orphans:
        return
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
    keep: list[Any] = []
    taken: list[Any] = []
    for row in _unpack(parked):
        (taken if row[2][0] == mine_key else keep).append(row)
    _put_rows(ctx, db_orph, key, keep)
    for row in taken:
        for k in row[2]:
            if k != mine_key:
                old = ctx.txn.get(prefix + k, db=db_orph)
                if old is not None:
                    rest = [r for r in _unpack(old) if r != row]
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


def _on_receipt(ctx: _Ctx, receipt: m.CarrierReceipt | m.PendingReceipt) -> None:
    prefix = receipt.connector.encode() + b"\x00"
    base = ctx.id_bases.get(receipt.connector, (None, None))[1]
    hit = ctx.carrier(prefix + corr.primary_key(receipt.carrier_id, base))
    if hit is not None:  # the common case: the first candidate (see below) is indexed
        msg_id, part = _unpack(hit)
        _apply_receipt(ctx, receipt, msg_id, part)
        return
    keys = corr.lookup_keys(receipt.carrier_id, base)
    for k in keys[1:]:  # keys[0] was looked up above
        hit = ctx.carrier(prefix + k)
        if hit is not None:
            msg_id, part = _unpack(hit)
            if _part_done(ctx, msg_id, part):
                # A later reading of the id names a part already settled: that is an older
                # message sharing digits with this id, not this receipt's (whose submit
                # response has not landed yet). Keep looking, else park.
                continue
            _apply_receipt(ctx, receipt, msg_id, part)
            return
    # Not (yet) known: park it under every candidate key until the submit response lands.
    db_orph = ctx.db_orphans
    if isinstance(receipt, m.PendingReceipt):
        receipt = m.CarrierReceipt(receipt.connector, receipt.carrier_id, receipt.state,
                                   receipt.error_code, receipt.received_at, receipt.done_at)
    entry = [ctx.now, m.to_wire(receipt), keys]
    ctx.orphans = True
    for k in keys:
        old = ctx.txn.get(prefix + k, db=db_orph)
        rows = _unpack(old) if old else []
        rows.append(entry)
        ctx.txn.put(prefix + k, _pack(rows), db=db_orph)
    ctx.out.orphans_parked += 1


def _part_done(ctx: _Ctx, msg_id: str, part: int) -> bool:
    rec = ctx.load(msg_id.encode())
    if rec is None or not 0 < part <= len(rec[_PARTS]):
        return True
    return rec[_PARTS][part - 1][_P_STATUS] in _PART_FINAL


def _apply_receipt(ctx: _Ctx, receipt: m.CarrierReceipt | m.PendingReceipt, msg_id: str,
                   part: int) -> None:
    key = msg_id.encode()
    rec = ctx.load(key)
    if rec is None or not 0 < part <= len(rec[_PARTS]):
        ctx.out.unknown += 1
        return
    p = rec[_PARTS][part - 1]
    if p[_P_STATUS] in _PART_FINAL:
        ctx.out.duplicates += 1
        return
    ctx.out.matched += 1
    ctx.out.receipt_lags.append(ctx.now - p[_P_AT])  # p's at: when its submit answer landed
    state = receipt.state
    status = _RECEIPT_STATUS.get(state) or corr.receipt_part_status(state)
    if status == corr.PART_ACCEPTED:
        return  # ENROUTE/ACCEPTD: intermediate, nothing to fold
    _on_part_outcome(ctx, key, rec, part, status, receipt.error_code, state, p[_P_CONN],
                     p[_P_CID])


def _on_part_outcome(
    ctx: _Ctx, key: bytes, rec: list[Any], part: int, status: str, code: str, reason: str,
    connector: str, carrier_id: str,
) -> None:
    """Record a part's outcome in the state row ``rec`` of ``key`` and fold it."""
    rparts = rec[_PARTS]
    while len(rparts) < part:
        rparts.append(_new_part())
    p = rparts[part - 1]
    old = p[_P_STATUS]
    if old in _PART_FINAL or (old == corr.PART_ACCEPTED and status == corr.PART_ACCEPTED):
        ctx.out.ignored += 1  # a repeated submit outcome (receipt duplicates are counted apart)
        return
    p[_P_STATUS], p[_P_AT] = status, ctx.now
    if code:
        p[_P_CODE] = code
    if connector:
        p[_P_CONN] = connector
    if carrier_id:
        p[_P_CID] = carrier_id
    ctx.dirty.add(key)
    target = (_FOLD_ONE[status] if len(rparts) == 1 else
              _value(corr.fold([q[_P_STATUS] for q in rparts])))
    if target is not None:
        _move(ctx, key, rec, target, code, reason if status != corr.PART_ACCEPTED else "",
              carrier_id or p[_P_CID])
    _maybe_release(ctx, key, rec)


def _on_finished(ctx: _Ctx, item: m.MessageFinished) -> None:
    key = item.msg_id.encode()
    rec = ctx.load(key)
    if rec is None:
        ctx.out.unknown += 1
        return
    target = State(item.state).value
    if target == _NOT_SENT and any(p[_P_STATUS] != corr.PART_PENDING for p in rec[_PARTS]):
        # NOT_SENT says no part reached a carrier: once one was handed over (or may have
        # been: SUBMITTING), a cancel or a late expiry must not say otherwise. The message
        # ends through its parts' outcomes instead.
        ctx.out.ignored += 1
        return
    if target == _NOT_DELIVERED:  # receipt timeout: open parts fail
        for p in rec[_PARTS]:
            if not corr.part_is_final(p[_P_STATUS]):
                p[_P_STATUS], p[_P_CODE] = corr.PART_FAILED, item.code
    ctx.dirty.add(key)
    _move(ctx, key, rec, target, item.code, item.reason, "")
    _maybe_release(ctx, key, rec)


def _value(state: State | None) -> str | None:
    return None if state is None else state.value


def _move(
    ctx: _Ctx, key: bytes, rec: list[Any], target: str,
    code: str, reason: str, carrier_id: str,
) -> None:
    current = rec[_ST]
    if target == current:
        return
    if target in _AFTER_SENT and current != _SENT:
        _move(ctx, key, rec, _SENT, "", "", carrier_id)  # SENT always comes first
        current = rec[_ST]
    new, refused = _MOVES[current, target]
    if refused:
        ctx.out.illegal += 1
        return
    rec[_ST], rec[_AT] = new, ctx.now
    ctx.dirty.add(key)
    if new in _SUCCESS:
        code = reason = ""  # a success carries no error code (the part records keep theirs)
    if new in _FINAL:
        rec[_CODE], rec[_REASON] = code, reason
    event = _EVENT.get(new)
    if event is not None:
        _event(ctx, key, rec, event, code, reason, carrier_id)
    if new == _SENT:
        ctx.contacts.append((rec[_ACCOUNT].encode() + b"\x00" + rec[_TO].encode(),
                             ctx.now_packed))  # put by flush
        if ctx.timeout_s is not None:
            rec[_TIMEOUT] = int((ctx.now + ctx.timeout_s) * 1000)
            ctx.timeouts[u64(rec[_TIMEOUT]) + key] = b""  # put by flush
    elif new in _FINAL and rec[_TIMEOUT]:
        # A message turns SENT once, so a key still pending (SENT and final in one chunk) was
        # never put: dropping it is the put and the delete, neither done.
        tkey = u64(rec[_TIMEOUT]) + key
        if ctx.timeouts.pop(tkey, None) is None:
            ctx.txn.delete(tkey, db=ctx.db_timeouts)
        rec[_TIMEOUT] = 0


def _event(
    ctx: _Ctx, key: bytes, rec: list[Any], event: str, code: str, reason: str,
    carrier_id: str,
) -> None:
    seq = rec[_NSEQ] = rec[_NSEQ] + 1
    rec[_EVENTS].append([event, ctx.now, code, reason, carrier_id])
    account, campaign = rec[_ACCOUNT], rec[_CAMPAIGN]
    if campaign:  # counters per account and campaign name (names are per account)
        counts = ctx.counts
        ck = (account, campaign, event)
        counts[ck] = counts.get(ck, 0) + 1
        if event == "SMS_NOT_SENT":  # not sent by reason, for campaign statistics (H8)
            ck = (account, campaign, f"SMS_NOT_SENT:{code}")
            counts[ck] = counts.get(ck, 0) + 1
    # The StatusEvent's wire row, built directly (a StatusEvent per event costs µs).
    ctx.out.event_rows.append([
        _EVENT_HEAD[0], _EVENT_HEAD[1], key.decode(), account, event, seq, ctx.now,
        carrier_id, campaign, len(rec[_PARTS]), code, reason, rec[_CLIENT_REF],
        rec[_CALLBACK_URL]])


def _maybe_release(ctx: _Ctx, key: bytes, rec: list[Any]) -> None:
    """Leave the outbox once no part waits for submission (or the message is final)."""
    due = rec[_DUE]
    if not due:
        return
    rparts = rec[_PARTS]
    if (rec[_ST] in _FINAL or (rparts[0][_P_STATUS] not in _OPEN if len(rparts) == 1 else
                               not any(p[_P_STATUS] in _OPEN for p in rparts))):
        delete = ctx.txn.delete  # delete(key, value, db): positional, see _NO_OVERWRITE
        delete(u64(due) + key, b"", ctx.db_outbox)
        delete(key, b"", ctx.db_inflight)
        rec[_DUE] = 0
        ctx.out.released.append(m.MsgId(key.decode()))


# ------------------------------------------------------------------------------ receipts


def op_expire_orphans(txn: Any, store: Dbs, older_than: float, limit: int) -> int:
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
