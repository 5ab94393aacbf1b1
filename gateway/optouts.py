"""Opt-outs (the suppression list): numbers an account must not send to again.

Theory of operation
-------------------
One LMDB database (registered in ``gateway.store.STORE_DATABASES`` on import)::

    optouts   account 0x00 number (E.164, "+" and digits) -> msgpack [at, source]

``at`` is when the number opted out (Unix seconds) and ``source`` how: ``"api"`` (the
account's upstream system, ``PUT /v1/optouts/{number}``), ``"keyword"`` (the handset replied
STOP: ``gateway.inbound``) or another label the API was given (``"import"``, ``"crm"``...).
An account's numbers read in key order, so a page is one ordered range read.

Writes are ops run by the store's group-committed writer (:func:`op_add`, :func:`op_remove`:
``await store.write(op)``), so an opt-out is durable when the API answers, and the keyword
path adds one in the same transaction that stores the STOP message. Reads are inline.

Enforcement: the rate limiter asks :meth:`OptOutList.opted_out` for every message it admits
(``actors.ports.OptOuts``). Most accounts have no opt-out at all, so that answer must cost no
LMDB read for them: every ``OptOutList`` over one store shares a :class:`Presence`, the set of
accounts with at least one opt-out, read from the store at first use (a skip scan: one seek
per such account) and kept exact by every change made in this process. Only a message of an
account in that set reads LMDB (one ``get``). Staleness rule: a change made by ANOTHER process
on the same store (a second gateway process, a tool) reaches this one within ``refresh``
seconds (the set is read again when a message is admitted that long after the last read);
changes through this process are seen at once (an addition is put in the set before its write
is queued, and the set is checked against the store again once it has committed).

Keywords: :class:`Keywords` reads an inbound message's text as a STOP or START reply (the
whole text, trimmed of surrounding spaces, punctuation and symbols, NFKC-normalised and
case-folded, must be one of the keywords). ``gateway.inbound.op_store`` calls
:func:`apply_reply` for each routed message it stores: the sender (read as E.164 by
:func:`sender_e164`) goes on the list, or a START lifts a keyword opt-out (only those: one the
upstream recorded is the upstream's to lift).

Must not be imported by actors or adapters (they see it through ``actors.ports.OptOuts``).
"""

from __future__ import annotations

import logging
import time
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Literal

import lmdb
import msgpack

from gateway.logs import mask_number
from gateway.store import STORE_DATABASES
from gateway.validation import Invalid, NumberNormaliser, valid_international

logger = logging.getLogger(__name__)

DB: Final = b"optouts"
if DB not in STORE_DATABASES:
    STORE_DATABASES.append(DB)

API: Final = "api"
KEYWORD: Final = "keyword"
REFRESH_SECONDS: Final = 5.0
"""How stale this process's view of which accounts have opt-outs may be, for changes made by
another process (see the module docstring)."""


DEFAULT_STOP: Final = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
                       "PARAR", "SAIR", "CANCELAR")
"""Replies that opt a number out: the usual English set (CTIA's) and the Portuguese ones
Brazilian and Portuguese handsets send."""
DEFAULT_START: Final = ("START", "UNSTOP")
"""Replies that undo a keyword opt-out. Not "YES": people answer yes to everything."""


# ------------------------------------------------------------------------------ keywords

Verdict = Literal["stop", "start"]


def normalise_keyword(text: str) -> str:
    """``text`` as keywords are compared: NFKC, case-folded, internal runs of spaces made
    one, and without the spaces, punctuation, symbols and invisible characters around it."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    start, end = 0, len(folded)
    while start < end and _edge(folded[start]):
        start += 1
    while end > start and _edge(folded[end - 1]):
        end -= 1
    return " ".join(folded[start:end].split())


def _edge(char: str) -> bool:
    """Whitespace, punctuation, symbols (emoji), separators and control/format characters."""
    return char.isspace() or unicodedata.category(char)[0] in "PSZC"


@dataclass(frozen=True, slots=True)
class Keywords:
    """The STOP and START keywords (compared in their :func:`normalise_keyword` form)."""

    stop: frozenset[str] = frozenset(normalise_keyword(k) for k in DEFAULT_STOP)
    start: frozenset[str] = frozenset(normalise_keyword(k) for k in DEFAULT_START)

    @classmethod
    def of(cls, stop: Iterable[str], start: Iterable[str]) -> Keywords:
        """Keywords from words as configured (normalised here; empty ones dropped)."""
        s = frozenset(w for w in map(normalise_keyword, stop) if w)
        t = frozenset(w for w in map(normalise_keyword, start) if w) - s
        return cls(s, t)

    def verdict(self, text: str) -> Verdict | None:
        """``"stop"``, ``"start"`` or None (an ordinary message)."""
        if not (self.stop or self.start):
            return None
        word = normalise_keyword(text)
        if word in self.stop:
            return "stop"
        if word in self.start:
            return "start"
        return None


NO_KEYWORDS: Final = Keywords(frozenset(), frozenset())


@dataclass(frozen=True, slots=True)
class OptOut:
    """One number on an account's opt-out list."""

    account: str
    number: str
    at: float
    source: str


def key(account: str, number: str) -> bytes:
    """The ``optouts`` key of (account, number)."""
    return account.encode() + b"\x00" + number.encode()


# ------------------------------------------------------------------------------ write ops


def op_add(txn: lmdb.Transaction, *, db: Any, account: str, number: str, at: float,
           source: str) -> tuple[OptOut, bool]:
    """Put ``number`` on ``account``'s list unless it is there; (the record, whether added).

    An existing record is left as it is (the first opt-out's time and source stand), so
    adding is idempotent."""
    k = key(account, number)
    old = txn.get(k, db=db)
    if old is not None:
        return _record(account, number, old), False
    txn.put(k, msgpack.packb([at, source]), db=db)
    return OptOut(account, number, at, source), True


def op_add_many(txn: lmdb.Transaction, *, db: Any, account: str, numbers: Sequence[str],
                at: float, source: str) -> list[tuple[OptOut, bool]]:
    """:func:`op_add` for each of ``numbers``, in order."""
    return [op_add(txn, db=db, account=account, number=n, at=at, source=source)
            for n in numbers]


def op_remove(txn: lmdb.Transaction, *, db: Any, account: str, number: str,
              source: str | None = None) -> OptOut | None:
    """Take ``number`` off ``account``'s list; the record removed, or None when it was not
    there (or, given ``source``, was recorded with another source: left in place)."""
    k = key(account, number)
    old = txn.get(k, db=db)
    if old is None:
        return None
    record = _record(account, number, old)
    if source is not None and record.source != source:
        return None
    txn.delete(k, db=db)
    return record


def has_any(txn: lmdb.Transaction, db: Any, account: str) -> bool:
    """Whether ``account`` has at least one opt-out (one seek)."""
    prefix = account.encode() + b"\x00"
    cur = txn.cursor(db=db)
    return bool(cur.set_range(prefix)) and bytes(cur.key()).startswith(prefix)


def accounts_with_any(txn: lmdb.Transaction, db: Any) -> set[str]:
    """Every account with at least one opt-out: one seek per such account (a skip scan)."""
    found: set[str] = set()
    cur = txn.cursor(db=db)
    ok = cur.first()
    while ok:
        name = bytes(cur.key()).partition(b"\x00")[0]
        found.add(name.decode())
        ok = cur.set_range(name + b"\x01")  # past every "name 0x00 ..." key
    return found


def _record(account: str, number: str, value: bytes | memoryview) -> OptOut:
    at, source = msgpack.unpackb(value)
    return OptOut(account, number, float(at), str(source))


# ------------------------------------------------------------------------------ replies


@dataclass(slots=True)
class Replies:
    """What ``gateway.inbound.op_store`` needs to apply STOP/START replies, and what it did
    (``changed``: accounts whose list may have changed; ``outcomes``: stop / start /
    unreadable counts)."""

    db: Any
    keywords: Keywords
    prefixes: Mapping[str, str]  # account -> default country prefix
    numbers: NumberNormaliser
    changed: set[str] = field(default_factory=set)
    outcomes: dict[str, int] = field(default_factory=dict)


def sender_e164(source: str, default_prefix: str, numbers: NumberNormaliser) -> str | None:
    """The handset's number as E.164, or None: digits as an SMSC writes an international
    number first, then ``+``/``00`` forms, then a national number with ``default_prefix``."""
    raw = source.strip()
    if raw.isascii() and raw.isdigit() and not raw.startswith("0") and valid_international(raw):
        return "+" + raw
    try:
        return numbers.normalise(raw, default_prefix)
    except Invalid:
        return None


def apply_reply(txn: lmdb.Transaction, replies: Replies, account: str, source: str,
                text: str, at: float) -> None:
    """An op step (``gateway.inbound.op_store``): if ``text``, received at ``at`` from
    ``source`` for ``account``, is a STOP reply, put the sender on the list (source
    ``"keyword"``); a START reply lifts a keyword opt-out. Records what it did in
    ``replies``."""
    verdict = replies.keywords.verdict(text)
    if verdict is None:
        return
    number = sender_e164(source, replies.prefixes.get(account, ""), replies.numbers)
    if number is None:
        outcome = "unreadable"
        logger.warning("opt-outs: a %s reply from %s could not be read as a number",
                       verdict, mask_number(source))
    elif verdict == "stop":
        outcome = verdict
        op_add(txn, db=replies.db, account=account, number=number, at=at, source=KEYWORD)
    else:
        outcome = verdict
        op_remove(txn, db=replies.db, account=account, number=number, source=KEYWORD)
    if number is not None:
        replies.changed.add(account)
    replies.outcomes[outcome] = replies.outcomes.get(outcome, 0) + 1


# ------------------------------------------------------------------------------ presence


@dataclass(slots=True)
class Presence:
    """The accounts of one store that have at least one opt-out, as this process knows them.

    ``loaded_at`` is the monotonic time of the last full read (None: never read);
    ``adding`` counts, per account, the additions written and not yet synced (a refresh
    that reads the store before they commit must keep their account in the set)."""

    accounts: set[str] = field(default_factory=set)
    loaded_at: float | None = None
    adding: dict[str, int] = field(default_factory=dict)


_PRESENCE: Final[weakref.WeakKeyDictionary[Any, Presence]] = weakref.WeakKeyDictionary()


def presence_of(store: Any) -> Presence:
    """The :class:`Presence` every ``OptOutList`` over ``store`` shares."""
    p = _PRESENCE.get(store)
    if p is None:
        p = _PRESENCE[store] = Presence()
    return p


# ------------------------------------------------------------------------------ the list


class OptOutList:
    """An account's opt-out list over the gateway store; also the rate limiter's
    ``actors.ports.OptOuts``.

    Args:
        store: the gateway store (``write``, ``read``, ``db``).
        now: wall clock (Unix seconds) for the time an opt-out is recorded.
        clock: monotonic clock, for the refresh of the presence set.
        refresh: seconds after which the presence set is read again (changes made by other
            processes); ``math.inf``: only at first use.
    """

    def __init__(self, store: Any, *, now: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic,
                 refresh: float = REFRESH_SECONDS) -> None:
        self._store = store
        self._now, self._clock, self._refresh = now, clock, refresh
        self._presence = presence_of(store)
        self._db: Any = None

    @property
    def db(self) -> Any:
        """The ``optouts`` database handle."""
        if self._db is None:
            self._db = self._store.db(DB)
        return self._db

    # -- enforcement (hot path) ---------------------------------------------------------

    def opted_out(self, account: str, number: str) -> bool:
        """Whether ``number`` is on ``account``'s list. No LMDB read for an account that
        has no opt-out; one ``get`` otherwise."""
        p = self._presence
        loaded = p.loaded_at
        if loaded is None or self._clock() - loaded >= self._refresh:
            self.refresh()
        if account not in p.accounts:
            return False
        # env.begin directly: store.read()'s context manager would double the cost (~0.4 us)
        txn = self._store.env.begin(db=self.db)
        try:
            return txn.get(key(account, number)) is not None
        finally:
            txn.abort()

    def refresh(self) -> None:
        """Read again which accounts have opt-outs (the whole presence set)."""
        started = self._clock()
        with self._store.read() as txn:
            found = accounts_with_any(txn, self.db)
        self._presence.accounts = found | self._presence.adding.keys()
        self._presence.loaded_at = started

    def sync(self, account: str) -> None:
        """Set ``account``'s presence from the store (after a committed change)."""
        with self._store.read() as txn:
            present = has_any(txn, self.db, account)
        if present or account in self._presence.adding:
            self._presence.accounts.add(account)
        else:
            self._presence.accounts.discard(account)

    # -- the list ------------------------------------------------------------------------

    async def add(self, account: str, number: str, *, source: str = API,
                  at: float | None = None, fail_fast: bool = False) -> tuple[OptOut, bool]:
        """Put ``number`` (E.164) on ``account``'s list; durable when it returns.

        Returns:
            (the record, True if it was added; False: it was there already, unchanged).

        Raises:
            StoreError: the store is closed, or (``fail_fast``) cannot commit now.
        """
        [done] = await self.add_many(account, [number], source=source, at=at,
                                     fail_fast=fail_fast)
        return done

    async def add_many(self, account: str, numbers: Sequence[str], *, source: str = API,
                       at: float | None = None, fail_fast: bool = False
                       ) -> list[tuple[OptOut, bool]]:
        """:meth:`add` for each of ``numbers`` (E.164), in ONE write; the results in order."""
        # In the set before the write is queued, and kept there by any refresh until it is
        # synced: enforced from the commit on.
        p = self._presence
        p.accounts.add(account)
        p.adding[account] = p.adding.get(account, 0) + 1
        op = partial(op_add_many, db=self.db, account=account, numbers=list(numbers),
                     at=self._now() if at is None else at, source=source)
        try:
            return await self._store.write(op, fail_fast=fail_fast)  # type: ignore[no-any-return]
        finally:
            left = p.adding.pop(account) - 1
            if left:
                p.adding[account] = left
            self.sync(account)

    async def remove(self, account: str, number: str, *, fail_fast: bool = False
                     ) -> OptOut | None:
        """Take ``number`` off ``account``'s list; the record removed, or None if absent."""
        op = partial(op_remove, db=self.db, account=account, number=number)
        removed: OptOut | None = await self._store.write(op, fail_fast=fail_fast)
        self.sync(account)
        return removed

    def get(self, account: str, number: str) -> OptOut | None:
        """``account``'s record of ``number``, or None."""
        with self._store.read() as txn:
            value = txn.get(key(account, number), db=self.db)
        return None if value is None else _record(account, number, value)

    def page(self, account: str, *, after: str | None = None, limit: int = 100,
             max_scan: int = 10_000, source: str | None = None, since: float | None = None
             ) -> tuple[list[OptOut], str | None]:
        """Up to ``limit`` of ``account``'s opt-outs after number ``after``, in number order.

        Reads at most ``max_scan`` records. Returns (records, cursor): the cursor is the
        number of the last record read (pass it as ``after``), None when the list has
        nothing more after the page.
        """
        prefix = account.encode() + b"\x00"
        start = prefix + (after.encode() + b"\x00" if after else b"")  # just past ``after``
        found: list[OptOut] = []
        last: str | None = None
        scanned = 0
        with self._store.read() as txn:
            cur = txn.cursor(db=self.db)
            ok = cur.set_range(start)
            while ok and bytes(cur.key()).startswith(prefix):
                if scanned >= max_scan or len(found) >= limit:
                    return found, last  # more follows
                scanned += 1
                record = _record(account, bytes(cur.key())[len(prefix):].decode(),
                                 cur.value())
                last = record.number
                if (source is None or record.source == source) and \
                        (since is None or record.at >= since):
                    found.append(record)
                ok = cur.next()
        return found, None
