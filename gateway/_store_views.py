"""Read-side views of the store for the HTTP API: one message with its events, account history.

Both are inline reads over one snapshot; a message's events are kept in its state row. History
keys are ``account 0x00 msg_id`` and message ids sort in acceptance order (their first 10
characters are the acceptance time in ms), so a time window is an id range and a page is one
ordered range read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors import messages
from actors.correlation import StateRecord
from actors.ingress import id_floor

if TYPE_CHECKING:
    from gateway.store import Store


@dataclass(frozen=True, slots=True)
class PartView:
    """One part: 1-based number, status letter (see actors.correlation), carrier and its id."""

    part: int
    status: str
    connector: str
    carrier_id: str
    code: str
    at: float


@dataclass(frozen=True, slots=True)
class EventView:
    """One status event as stored (and as sent upstream)."""

    seq: int
    event: str
    at: float
    code: str
    reason: str
    carrier_id: str


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message, its current state and, from ``get_message``, every event in order."""

    message: messages.Message
    state: str
    code: str
    reason: str
    updated_at: float
    parts: tuple[PartView, ...]
    events: tuple[EventView, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of an account's messages (oldest first) and the cursor of the next page."""

    items: tuple[MessageView, ...]
    cursor: str | None


def _view(message: messages.Message, record: StateRecord, *, events: bool) -> MessageView:
    parts = tuple(
        PartView(i + 1, p.status, p.connector, p.carrier_id, p.code, p.at)
        for i, p in enumerate(record.parts)
    )
    return MessageView(message, record.state, record.code, record.reason, record.at, parts,
                       _events(record) if events else ())


def _events(record: StateRecord) -> tuple[EventView, ...]:
    """The events kept in the state row; the n-th has seq n."""
    return tuple(EventView(seq, event, at, code, reason, carrier_id)
                 for seq, (event, at, code, reason, carrier_id)
                 in enumerate(record.events, start=1))


def get_message(store: Store, msg_id: str) -> MessageView | None:
    """The message ``msg_id`` with its state, parts and events, or None if unknown."""
    key = msg_id.encode()
    with store.read() as txn:
        raw = txn.get(key, db=store.db(b"messages"))
        state = txn.get(key, db=store.db(b"state"))
        if raw is None or state is None:
            return None
        message = messages.decode(raw)
        assert isinstance(message, messages.Message)
        return _view(message, StateRecord.unpack(state), events=True)


def scan_account(
    store: Store,
    account: str,
    *,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> HistoryPage:
    """Messages of ``account`` accepted in ``[since, until)``, oldest first, at most ``limit``.

    ``cursor`` is the ``cursor`` of the previous page (the last id returned); pages never
    repeat or skip a message. Events are not included (use :func:`get_message`).
    """
    prefix = account.encode() + b"\x00"
    start = prefix + (id_floor(since).encode() if since else b"")
    if cursor:
        start = max(start, prefix + cursor.encode() + b"\x00")
    stop = prefix + id_floor(until).encode() if until else prefix[:-1] + b"\x01"
    items: list[MessageView] = []
    last: str | None = None
    with store.read() as txn, txn.cursor(db=store.db(b"history")) as cur:
        if cur.set_range(start):
            for key, _ in cur:
                if key >= stop or len(items) >= limit:
                    break
                msg_id = key[len(prefix):]
                raw = txn.get(msg_id, db=store.db(b"messages"))
                state = txn.get(msg_id, db=store.db(b"state"))
                if raw is None or state is None:
                    continue
                message = messages.decode(raw)
                assert isinstance(message, messages.Message)
                items.append(_view(message, StateRecord.unpack(state), events=False))
                last = msg_id.decode()
    more = len(items) >= limit
    return HistoryPage(tuple(items), last if more else None)
