"""The correlator's store ops: submit outcomes, receipts (matched, parked as orphans until
their submit response lands, expired to the unknown receipts) and finished messages applied to
the state rows in one transaction per batch, with the status events and campaign counts they
make. The decisions are the pure functions of ``actors.states`` and ``actors.correlation``;
the rows and packers are ``gateway._store_rows``'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgpack

from actors import correlation as corr
from actors import messages as m
from actors.messages import State
from actors.ports import Applied
from gateway._store_ctx import (
    _AFTER_SENT,
    _EVENT,
    _EVENT_HEAD,
    _FINAL,
    _FOLD_ONE,
    _MOVES,
    _NOT_DELIVERED,
    _NOT_SENT,
    _OPEN,
    _PART_FINAL,
    _RECEIPT_STATUS,
    _SENT,
    _SEQ,
    _SUCCESS,
    _Ctx,
)
from gateway._store_rows import (
    _ACCOUNT,
    _AT,
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
    _new_part,
    _pack,
    _unpack,
)
from gateway.store import u64

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

