"""Inbound (mobile-originated) messages: stored in LMDB, routed to an account by our number.

Theory of operation
-------------------
Connectors hand ``adapters.smpp.inbound.InboundPart`` values to :meth:`InboundBook.sink` and
acknowledge them to the SMSC only after it returns. One call is ONE write (group-committed with
everything else): a whole message is stored at once; a part of a concatenated message is kept
in ``inbound_parts`` until its group is complete, and the write that brings the last part
joins the group with ``codec.reassemble``, stores the message and removes the parts. So every
acknowledged part is on disk, and the SMSC can deliver parts one at a time (window 1) without
waiting for the whole message. A part sent again (its answer was lost) overwrites itself.

Routing: the destination (our number) is looked up in the ``[[inbound]]`` routes of the
configuration, digits only (``+351912000000`` and ``351912000000`` are the same number). A
message with no route is stored under no account (the empty name; no API key reaches it) and
counted: ``septet_inbound_messages_total{routed="no"}``.

Duplicates: an HTTP provider retries its webhook when our answer is lost, so a message it
posts may come twice. When it names the message (``inbound_id_path``), :meth:`InboundBook.store`
is given that id, and the write that stores the message also records it in ``inbound_seen``;
a message whose (connector, provider id) is already there is neither stored nor pushed again
(counted in ``InboundBook.duplicates``). The check and the record are in the one write, so two
copies racing in one commit, or in one body, still store one. The same holds for a PART an HTTP
provider sends on its own (``adapters.http_inbound``: Vonage's ``concat-*`` fields; its
reference is hashed to 64 bits and keyed beside connector and sender): its id is recorded when
the part is kept and pointed at the joined message when the group completes, so a copy is a
duplicate before and after the message is whole. Ids are kept ``SEEN_TTL`` (a
provider retries for hours, not weeks); ``inbound_seen_age`` orders them by time so that
:func:`purge_seen` removes the old ones without reading the rest.

Push (``SMS_RECEIVED``): given a callback outbox and the notifier's ``endpoint_for``, the
book asks, before its write, which of the accounts the parts route to have a URL for inbound
messages (``inbound_url``, else ``callback_url``), and the write that stores such an account's
message also puts its push into the callback outbox (``CallbackOutbox.enqueue_in``). So an MO
acknowledged to the SMSC always has its push durable too; the notifier delivers it with the
status callbacks' signing, retries, breaker and dead letters (docs/callbacks.md).

Opt-out replies (docs/optouts.md): when a routed message's whole text is a STOP keyword
(``gateway.optouts.Keywords``: trimmed, punctuation around it and case ignored), the write
that stores it also puts its sender on the account's opt-out list (``gateway.optouts``,
source ``"keyword"``); a START keyword takes off an opt-out a keyword made (never one the
account's upstream system recorded: only that system may lift its own). The sender is read as
E.164: digits as the SMSC writes an international number (``351912345678``), with "+" or
"00", else as a national number with the account's default country prefix; a reply from a
number that cannot be read so is stored but changes no list (logged, the number masked, and
counted in ``InboundBook.optout_replies["unreadable"]`` and
``septet_inbound_optout_replies_total``). The message is stored and pushed
as any other.

Reads: :meth:`InboundBook.page` lists an account's messages oldest first (ids are arrival
order); incomplete groups older than ``PART_TTL`` are removed by :func:`purge_parts` (the
serve command runs it hourly).

The LMDB layout, the write op and the purges are in ``gateway._inbound_store``; its public
names are re-exported here (``DB``, ``PARTS``, ``SEEN``, ``SEEN_AGE``, ``PART_TTL``,
``SEEN_TTL``, ``InboundMessage``, ``op_store``, ``purge_parts``, ``purge_seen``).

Must not be imported by actors or adapters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any, Final

import lmdb
from prometheus_client import Counter

from actors.messages import StatusEvent
from adapters.smpp.inbound import InboundPart
from gateway import optouts
from gateway._inbound_store import (
    DB,
    PART_TTL,
    PARTS,
    SEEN,
    SEEN_AGE,
    SEEN_TTL,
    InboundMessage,
    decode_message,
    op_store,
    open_dbs,
    purge_parts,
    purge_seen,
)
from gateway.accounts import AccountBook
from gateway.callback_outbox import CallbackOutbox
from gateway.callbacks import inbound_event
from gateway.optouts import Keywords, OptOutList, Replies
from gateway.validation import NumberNormaliser

logger = logging.getLogger(__name__)

MESSAGES: Final = Counter(
    "septet_inbound_messages", "Inbound (MO) messages stored, by whether a route named their "
    "account", ["routed"])
OPTOUT_REPLIES: Final = Counter(
    "septet_inbound_optout_replies", "Inbound replies read as opt-out keywords: stop (the sender "
    "put on the account's list), start (taken off), unreadable (a sender number that could not "
    "be read: stored, no list changed)", ["outcome"])
DUPLICATES: Final = Counter(
    "septet_inbound_duplicates", "Inbound (MO) messages an HTTP provider sent again (same "
    "provider id on the same connector): neither stored nor pushed a second time", ["carrier"])


def digits(number: str) -> str:
    """The routing form of a number: without its leading "+"."""
    return number.removeprefix("+")


class Router:
    """Our numbers -> account, from the ``[[inbound]]`` routes (number, account) pairs."""

    def __init__(self, routes: Mapping[str, str] | Sequence[tuple[str, str]] = ()) -> None:
        pairs = routes.items() if isinstance(routes, Mapping) else routes
        self._table = {digits(number): account for number, account in pairs}

    def account(self, destination: str) -> str | None:
        return self._table.get(digits(destination))


EndpointFor = Callable[[StatusEvent], "tuple[str, bytes] | None"]


def _enqueue_push(outbox: CallbackOutbox, txn: lmdb.Transaction, event: StatusEvent, *,
                  now: float) -> None:
    outbox.enqueue_in(txn, [event], now=now)


class InboundBook:
    """Stores inbound parts and messages; reads an account's messages.

    Args:
        store: the gateway store.
        router: our numbers -> account.
        outbox: the callback outbox the notifier delivers from (the same instance); with
            ``endpoint_for``, messages of accounts with a URL are pushed as ``SMS_RECEIVED``.
        endpoint_for: the notifier's ``event -> (url, secret) | None``.
        now: wall clock (Unix seconds) for the push's first attempt.
        keywords: the STOP/START keywords (``[optouts]``); ``optouts.NO_KEYWORDS``: none.
    """

    def __init__(self, store: Any, router: Router | None = None, *,
                 outbox: CallbackOutbox | None = None, endpoint_for: EndpointFor | None = None,
                 now: Callable[[], float] = time.time, keywords: Keywords | None = None
                 ) -> None:
        self._store = store
        self._router = router or Router()
        self._outbox, self._endpoint_for, self._now = outbox, endpoint_for, now
        self._keywords = Keywords() if keywords is None else keywords
        self._numbers = NumberNormaliser(1000)  # used by the write ops only (one at a time)
        self.stored = 0
        self.unrouted = 0
        self.pushed = 0
        self.duplicates = 0
        self.optout_replies: dict[str, int] = {}  # outcome (stop, start, unreadable) -> count

    def _pushing(self, parts: Sequence[InboundPart]) -> set[str]:
        """The accounts among those ``parts`` route to that want their messages pushed."""
        if self._outbox is None or self._endpoint_for is None:
            return set()
        accounts = {self._router.account(p.destination) for p in parts}
        return {a for a in accounts
                if a and self._endpoint_for(inbound_event("", a, 0.0, "")) is not None}

    async def sink(self, parts: Sequence[InboundPart]) -> None:
        """The connectors' inbound sink: durable (push included) when it returns."""
        await self.store(parts)

    async def store(self, parts: Sequence[InboundPart], provider_ids: Sequence[str] = (), *,
                    fail_fast: bool = False) -> int:
        """Store ``parts`` (pushes included) in one write; durable when it returns.

        Args:
            parts: whole messages or parts of concatenated ones.
            provider_ids: the provider's id of each part, in order ("" or absent: none); a
                whole message whose (connector, id) is already stored is skipped.
            fail_fast: raise StoreError at once when the store cannot commit (a caller that
                answers a client: the HTTP webhook), instead of waiting for it to recover.

        Returns:
            How many of ``parts`` were skipped as duplicates.

        Raises:
            StoreError: the store is closed, or (``fail_fast``) it cannot commit now.
        """
        if not parts:
            return 0
        dbs = open_dbs(self._store)
        push, now, outbox = self._pushing(parts), self._now(), self._outbox
        enqueue = None if not push or outbox is None else partial(_enqueue_push, outbox, now=now)
        replies = self._replies(parts)
        with outbox.writing(now) if enqueue is not None and outbox is not None else nullcontext():
            op = partial(op_store, dbs=dbs, parts=list(parts), route=self._router.account,
                         push=push, enqueue=enqueue, provider_ids=list(provider_ids), now=now,
                         replies=replies)
            accounts = await self._store.write(op, fail_fast=fail_fast)
        if replies is not None:
            self._replied(replies)
        duplicates: int = accounts.count(None)
        accounts = [a for a in accounts if a is not None]
        if duplicates:
            self.duplicates += duplicates
            DUPLICATES.labels(parts[0].connector).inc(duplicates)
            logger.info("inbound: %d duplicate messages skipped (connector %s)", duplicates,
                        parts[0].connector)
        if enqueue is not None and outbox is not None:
            outbox.doorbell.ring()  # committed: the notifier sends it now, not at its next poll
        self.pushed += sum(a in push for a in accounts)
        for account in accounts:
            routed = "yes" if account else "no"
            MESSAGES.labels(routed=routed).inc()
            self.stored += 1
            self.unrouted += account == ""
        if accounts:
            logger.debug("inbound: %d messages stored (%d parts)", len(accounts), len(parts))
        return duplicates

    def _replies(self, parts: Sequence[InboundPart]) -> Replies | None:
        """What the write needs to apply STOP/START replies among ``parts``; None when none
        of them can be one (no keywords, or no routed whole message is a keyword)."""
        k = self._keywords
        if not (k.stop or k.start):
            return None
        accounts = {a for p in parts if (a := self._router.account(p.destination))
                    and (p.concat is not None or k.verdict(p.text) is not None)}
        if not accounts:
            return None
        book = AccountBook(self._store)
        prefixes = {a: acct.default_prefix if (acct := book.get(a)) else "" for a in accounts}
        return Replies(self._store.db(optouts.DB), k, prefixes, self._numbers)

    def _replied(self, replies: Replies) -> None:
        """After the write: count what the replies did; the opt-out presence is synced."""
        if replies.changed:
            lists = OptOutList(self._store)
            for account in replies.changed:
                lists.sync(account)
        for outcome, n in replies.outcomes.items():
            self.optout_replies[outcome] = self.optout_replies.get(outcome, 0) + n
            OPTOUT_REPLIES.labels(outcome).inc(n)
            logger.info("inbound: %d opt-out replies: %s", n, outcome)

    def get(self, account: str, msg_id: str) -> InboundMessage | None:
        """``account``'s message ``msg_id``, or None."""
        with self._store.read() as txn:
            value = txn.get(account.encode() + b"\x00" + msg_id.encode(), db=self._store.db(DB))
        return None if value is None else decode_message(account, msg_id, value)

    def page(self, account: str, *, after: str | None = None, limit: int = 100,
             max_scan: int = 10_000, since: float | None = None, to: str | None = None,
             sender: str | None = None) -> tuple[list[InboundMessage], str | None]:
        """Up to ``limit`` of ``account``'s messages after id ``after``, oldest first.

        Reads at most ``max_scan`` records. Returns (messages, cursor): the cursor is the id
        of the last record read (pass it as ``after`` for what follows), None when nothing
        after ``after`` was read.
        """
        prefix = account.encode() + b"\x00"
        start = prefix + (after.encode() if after else b"")
        found: list[InboundMessage] = []
        last: str | None = None
        with self._store.read() as txn:
            cur = txn.cursor(db=self._store.db(DB))
            ok = cur.set_range(start)
            scanned = 0
            while ok and scanned < max_scan and len(found) < limit:
                key = bytes(cur.key())
                if not key.startswith(prefix):
                    break
                if key != start or not after:
                    scanned += 1
                    msg = decode_message(account, key[len(prefix):].decode(), cur.value())
                    last = msg.id
                    if _matches(msg, since, to, sender):
                        found.append(msg)
                ok = cur.next()
        return found, last


def _matches(msg: InboundMessage, since: float | None, to: str | None,
             sender: str | None) -> bool:
    return ((since is None or msg.received_at >= since)
            and (to is None or digits(msg.destination) == digits(to))
            and (sender is None or digits(msg.source) == digits(sender)))


__all__ = [
    "DB", "DUPLICATES", "MESSAGES", "OPTOUT_REPLIES", "PARTS", "PART_TTL", "SEEN", "SEEN_AGE",
    "SEEN_TTL", "EndpointFor", "InboundBook", "InboundMessage", "Router", "digits", "op_store",
    "purge_parts", "purge_seen",
]
