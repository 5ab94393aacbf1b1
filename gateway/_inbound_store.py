"""The LMDB side of inbound (MO) messages: the databases, the one write op that stores parts
and messages, the row form, and the purges. ``gateway.inbound`` (the book) drives it.

Databases (registered in ``gateway.store.STORE_DATABASES`` on import):

    inbound        account 0x00 id -> msgpack [received_at, connector, source, destination,
                                               text, encoding, parts]
    inbound_parts  connector 0x00 source 0x00 group seq u8
                   -> msgpack [received_at, destination, encoding, text, provider_id]
    inbound_seen   connector 0x00 provider_id -> msgpack [seen_at, account, id]
    inbound_seen_age  u64 seen_at (whole seconds) connector 0x00 provider_id -> b""

``group`` is ``ref_bits u8 reference u16 total u8`` for a UDH or SAR reference (8 or 16 bits)
and ``ref_bits u8 reference u64 total u8`` for an HTTP provider's (``ref_bits`` 64: a hash of
its string reference, ``adapters.http_inbound.HTTP_REF_BITS``); the first octet tells them
apart, so the two forms never share a prefix. Rows written before ``provider_id`` existed have
four fields (read as ""). Every group is keyed by its connector and sender, so parts of
different senders or connectors never mix.

:func:`op_store` runs inside ONE write transaction: a whole message is stored at once; a part
of a concatenated message is kept in ``inbound_parts`` until its group is complete, and the
call that brings the last part joins the group with ``codec.reassemble``, stores the message
and removes the parts (a part sent again overwrites itself). A message or part named by its
provider id is first looked up in ``inbound_seen`` and skipped when there; else the id is
recorded in the same transaction, so two copies in one commit still store one. A part's id is
recorded when the part is kept (``account`` and ``id`` "" while its message is incomplete) and
given its message's account and id when the group is joined (its ``seen_at`` unchanged), so a
part the provider sends again is a duplicate before its message is whole and after (it never
starts a new group that would wait for the parts purge).
``inbound_seen_age`` orders the ids by time so that :func:`purge_seen` removes the old ones
without reading the rest; :func:`purge_parts` removes incomplete groups.

``id`` is a 16-digit decimal sequence (the ``meta`` key ``inbound_seq``): arrival order, so
an account's messages read oldest first by key.

Pure LMDB and msgpack; no metrics, no logging (the book counts and logs). Must not be
imported by actors or adapters, nor from outside ``gateway.inbound`` (which re-exports the
public names).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, NamedTuple

import lmdb
import msgpack

from actors.messages import StatusEvent
from adapters.smpp.inbound import InboundPart
from codec import CodecError, reassemble
from codec.receive import ReceivedPart
from codec.udh import Concat
from gateway import optouts
from gateway.callback_outbox import inbound_msg_id
from gateway.callbacks import inbound_event
from gateway.optouts import Replies
from gateway.store import STORE_DATABASES, u64

DB: Final = b"inbound"
PARTS: Final = b"inbound_parts"
SEEN: Final = b"inbound_seen"
SEEN_AGE: Final = b"inbound_seen_age"
for _name in (DB, PARTS, SEEN, SEEN_AGE):
    if _name not in STORE_DATABASES:
        STORE_DATABASES.append(_name)

_SEQ_KEY: Final = b"inbound_seq"
_GROUP: Final = struct.Struct(">BHB")
_WIDE_GROUP: Final = struct.Struct(">BQB")  # ref_bits > 16: an HTTP provider's hashed reference
PART_TTL: Final = 24 * 3600.0
"""Seconds an incomplete concatenated message waits for its missing parts."""
SEEN_TTL: Final = 7 * 24 * 3600.0
"""Seconds a provider's message id is remembered (its webhook retries end well before)."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One stored inbound message (parts joined)."""

    id: str
    account: str
    received_at: float
    connector: str
    source: str
    destination: str
    text: str
    encoding: str
    parts: int


def decode_message(account: str, msg_id: str, value: bytes) -> InboundMessage:
    """The message stored under ``account 0x00 msg_id`` with ``value`` (the ``inbound`` row)."""
    received_at, connector, source, destination, text, encoding, parts = msgpack.unpackb(value)
    return InboundMessage(msg_id, account, received_at, connector, source, destination, text,
                          encoding, parts)


class Dbs(NamedTuple):
    """The database handles :func:`op_store` writes to."""

    messages: Any
    parts: Any
    meta: Any
    seen: Any = None
    seen_age: Any = None


def open_dbs(store: Any) -> Dbs:
    """The handles of ``store`` (``gateway.store.Store``) for :func:`op_store`."""
    return Dbs(*(store.db(n) for n in (DB, PARTS, b"meta", SEEN, SEEN_AGE)))


def op_store(txn: lmdb.Transaction, *, dbs: Dbs, parts: list[InboundPart],
             route: Callable[[str], str | None], push: Container[str] = (),
             enqueue: Callable[[lmdb.Transaction, StatusEvent], None] | None = None,
             provider_ids: Sequence[str] = (), now: float = 0.0,
             replies: Replies | None = None) -> list[str | None]:
    """Store whole messages and parts; returns the account ("" = unrouted) of each message
    stored (a part completing its group stores its message), and None for each whole message
    skipped because its ``provider_ids`` entry was already seen on its connector (ids are
    recorded at ``now``). A message of an account in ``push`` also goes to ``enqueue`` (the
    callback outbox), in this same transaction; with ``replies``, a routed STOP/START reply
    changes its account's opt-out list, in this same transaction too."""
    stored: list[str | None] = []
    if replies is not None:  # the batch may run again (map full): count it once
        replies.changed.clear()
        replies.outcomes.clear()
    for index, part in enumerate(parts):
        provider_id = provider_ids[index] if index < len(provider_ids) else ""
        seen_key = _seen_key(part.connector, provider_id) if provider_id else b""
        if seen_key and txn.get(seen_key, db=dbs.seen) is not None:
            stored.append(None)
            continue
        if part.concat is None:
            message, count, seen_keys = part, 1, [seen_key] if seen_key else []
        else:
            whole = _add_part(txn, dbs.parts, part, provider_id)
            if whole is None:
                if seen_key:  # kept: a copy of it is a duplicate from now on
                    _mark_seen(txn, dbs, seen_key, now, "", "")
                continue
            message, count, seen_keys = whole
        account = route(message.destination) or ""
        msg_id = _put_message(txn, dbs, account, message, count)
        for key in seen_keys:
            _mark_seen(txn, dbs, key, now, account, msg_id)
        if enqueue is not None and account in push:
            enqueue(txn, inbound_event(inbound_msg_id(msg_id), account, message.received_at,
                                       message.connector))
        if replies is not None and account:
            optouts.apply_reply(txn, replies, account, message.source, message.text,
                                message.received_at)
        stored.append(account)
    return stored


def _seen_key(connector: str, provider_id: str) -> bytes:
    return connector.encode() + b"\x00" + provider_id.encode("utf-8", "surrogatepass")


def _mark_seen(txn: lmdb.Transaction, dbs: Dbs, key: bytes, now: float, account: str,
               msg_id: str) -> None:
    """Record ``key`` as seen with its message; a key already recorded (a part kept before its
    message was whole) keeps its ``seen_at``, so its ``inbound_seen_age`` entry stays right."""
    old = txn.get(key, db=dbs.seen)
    seen_at = msgpack.unpackb(old)[0] if old is not None else now
    txn.put(key, msgpack.packb([seen_at, account, msg_id]), db=dbs.seen)
    if old is None:
        txn.put(u64(max(0, int(now))) + key, b"", db=dbs.seen_age)


def _add_part(txn: lmdb.Transaction, db: Any, part: InboundPart, provider_id: str = ""
              ) -> tuple[InboundPart, int, list[bytes]] | None:
    """Keep ``part``; when its group is complete, remove the group and return it joined, its
    count and the ``inbound_seen`` keys of its parts' provider ids."""
    c = part.concat
    assert c is not None
    group = (_WIDE_GROUP.pack(c.ref_bits, c.reference & 0xFFFF_FFFF_FFFF_FFFF, c.total)
             if c.ref_bits > 16 else _GROUP.pack(c.ref_bits, c.reference & 0xFFFF, c.total))
    prefix = part.connector.encode() + b"\x00" + part.source.encode() + b"\x00" + group
    txn.put(prefix + bytes((c.sequence,)), msgpack.packb(
        [part.received_at, part.destination, part.encoding, part.text, provider_id]), db=db)
    rows = _scan(txn, db, prefix)
    if len(rows) < c.total:
        return None
    received = [ReceivedPart(row[3], (), Concat(c.reference, c.total, seq, c.ref_bits))
                for seq, row in rows]
    try:
        text = reassemble(received)
    except CodecError:  # sequence numbers outside 1..total: keep waiting (purged later)
        return None
    for seq, _ in rows:
        txn.delete(prefix + bytes((seq,)), db=db)
    latest = max(row[0] for _, row in rows)
    seen_keys = [_seen_key(part.connector, row[4]) for _, row in rows if len(row) > 4 and row[4]]
    return part._replace(text=text, received_at=latest, concat=None), c.total, seen_keys


def _scan(txn: lmdb.Transaction, db: Any, prefix: bytes) -> list[tuple[int, list[Any]]]:
    cur = txn.cursor(db=db)
    out = []
    ok = cur.set_range(prefix)
    while ok:
        key = bytes(cur.key())
        if not key.startswith(prefix) or len(key) != len(prefix) + 1:
            break
        out.append((key[-1], msgpack.unpackb(cur.value())))
        ok = cur.next()
    return out


def _put_message(txn: lmdb.Transaction, dbs: Dbs, account: str, part: InboundPart,
                 count: int) -> str:
    """Store one whole message under the next id; returns that id."""
    raw = txn.get(_SEQ_KEY, db=dbs.meta)
    seq = (int.from_bytes(raw, "big") if raw else 0) + 1
    txn.put(_SEQ_KEY, u64(seq), db=dbs.meta)
    msg_id = f"{seq:016d}"
    key = account.encode() + b"\x00" + msg_id.encode()
    txn.put(key, msgpack.packb([part.received_at, part.connector, part.source,
                                part.destination, part.text, part.encoding, count]),
            db=dbs.messages)
    return msg_id


async def purge_parts(store: Any, *, older_than: float, limit: int = 10_000) -> int:
    """Remove parts of incomplete messages received before ``older_than``; how many."""
    return int(await store.write(partial(_op_purge, db=store.db(PARTS), before=older_than,
                                         limit=limit)))


async def purge_seen(store: Any, *, older_than: float, limit: int = 10_000) -> int:
    """Forget providers' message ids recorded before ``older_than``; how many (at most
    ``limit``: call again while it returns ``limit``)."""
    return int(await store.write(partial(_op_purge_seen, seen=store.db(SEEN),
                                         age=store.db(SEEN_AGE), before=older_than,
                                         limit=limit)))


def _op_purge_seen(txn: lmdb.Transaction, *, seen: Any, age: Any, before: float,
                   limit: int) -> int:
    cur = txn.cursor(db=age)
    doomed: list[bytes] = []
    ok = cur.first()
    while ok and len(doomed) < limit:
        key = bytes(cur.key())
        if int.from_bytes(key[:8], "big") >= before:
            break  # keys are in time order: the rest are younger
        doomed.append(key)
        ok = cur.next()
    for key in doomed:
        txn.delete(key, db=age)
        txn.delete(key[8:], db=seen)
    return len(doomed)


def _op_purge(txn: lmdb.Transaction, *, db: Any, before: float, limit: int) -> int:
    cur = txn.cursor(db=db)
    stale: list[bytes] = []
    for key, value in cur:
        if len(stale) >= limit:
            break
        if msgpack.unpackb(value)[0] < before:
            stale.append(bytes(key))
    for key in stale:
        txn.delete(key, db=db)
    return len(stale)
