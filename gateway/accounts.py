"""Accounts and their API keys, kept in the store's ``accounts`` database.

Layout of ``accounts`` (keys are bytes):
    ``a:`` name      → msgpack [version, default_prefix, policy, max_parts, callback_url,
                                callback_secret, created_at, inbound_url]
                       (records written before inbound_url existed have 7 items: "")
    ``k:`` sha256(key) → msgpack [name, created_at, label, last_used]
                       (records written before last_used existed have 3 items: see below)
    ``m:last_used_since`` → msgpack float: when this store began recording key use (written
                       once, by the first ``septet serve`` of a version that records it)

API keys are 32 random bytes (``sk_`` + base64url); only their SHA-256 is stored. A key of
that entropy needs no slow hash (no dictionary to attack), and a plain digest lets a request be
authenticated by one LMDB lookup. Authentication results are cached in memory for a few seconds
so that the hot path is a dict lookup; a revoked key stops working within that time.

Inactivity expiry (``[api] key_inactivity_days``, default 60, 0 = never): a key last used on
UTC day D works until the end of day D + N and is refused from then on (:func:`expired`), with
its own reason (:meth:`AccountBook.expired`), so the client is told to ask for a new key.
Expired keys stay stored: ``septet accounts show NAME`` lists them with their last use, and
``septet accounts revoke`` removes one. They never come back to life; a new key is made with
``septet accounts key NAME``.

Recording use puts no write on the request path. Only a cache miss (at most one per key every
CACHE_SECONDS) reads the record; when its last-used day is older than today (UTC) the key is
noted in memory (``_used``), and :func:`record_key_use`, run by ``septet serve``, writes every
noted key in ONE group-committed write each FLUSH_SECONDS, and once more at shutdown (shielded,
bounded). A record is rewritten only when the day changes: at most one write per key per day.
A crash loses at most the last FLUSH_SECONDS of noted uses, which matters only to a key whose
single use of the day fell in that minute (its clock then starts a day earlier). A use served
from the cache across midnight is noted at the next miss, i.e. a few seconds later.

Records written before last_used existed (3 items) count as last used when the store began
recording use (``m:last_used_since``; "now" in a process that finds no such mark yet), or at
their creation if later. Not their creation time: use was never recorded before, so a key used
daily for a year would look a year idle, and an upgrade would lock every existing integration
out at once. Not "now at every read" either: a forgotten key would then never expire. From the
mark on, an old key gets the same N days as any other and is rewritten with its real last use
at its first use on a later day.

Must not import: gateway.api, gateway.http.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import msgpack
import trio

from actors.errors import StoreError
from gateway.config import POLICIES
from gateway.errors import AccountError
from gateway.ssrf import CallbackUrlRefused, parse_callback_url

DB: Final = b"accounts"
VERSION: Final = 1
KEY_PREFIX: Final = "sk_"
NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
CACHE_SECONDS: Final = 5.0
DAY: Final = 86_400.0
DEFAULT_INACTIVITY_DAYS: Final = 60
FLUSH_SECONDS: Final = 60.0  # how often noted key uses are written (record_key_use)
FLUSH_GRACE: Final = 5.0  # seconds the shutdown flush may take
_SINCE: Final = b"m:last_used_since"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Account:
    """An account and its per-account settings."""

    name: str
    default_prefix: str = ""  # calling code applied to numbers without one, e.g. "351"
    policy: str = "transliterate"  # codec encoding policy
    max_parts: int = 5
    callback_url: str = ""
    callback_secret: str = ""
    created_at: float = 0.0
    inbound_url: str = ""  # where inbound (MO) messages are pushed; "" = callback_url

    def to_bytes(self) -> bytes:
        return bytes(msgpack.packb([VERSION, self.default_prefix, self.policy, self.max_parts,
                                    self.callback_url, self.callback_secret, self.created_at,
                                    self.inbound_url]))

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Account:
        _version, prefix, policy, max_parts, url, secret, created, *rest = msgpack.unpackb(data)
        return cls(name, prefix, policy, max_parts, url, secret, created, *rest[:1])


def check_settings(account: Account) -> list[str]:
    """Every problem with an account's settings (empty when fine)."""
    errs = []
    if not NAME_RE.fullmatch(account.name):
        errs.append("name: 1-63 characters of a-z, 0-9, _ . - starting with a letter or digit")
    p = account.default_prefix.lstrip("+")
    if p and not (p.isascii() and p.isdigit() and len(p) <= 3):
        errs.append("default_prefix: a calling code of 1-3 digits, e.g. 351")
    if account.policy not in POLICIES:
        errs.append(f"policy: one of {', '.join(POLICIES)}")
    if not 1 <= account.max_parts <= 255:
        errs.append("max_parts: between 1 and 255")
    if account.inbound_url:
        try:  # syntax only: every request re-checks the address (gateway.callbacks)
            parse_callback_url(account.inbound_url)
        except CallbackUrlRefused as exc:
            errs.append(f"inbound_url: refused ({exc.reason})")
    return errs


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown of an API key (never the key): ``septet accounts show``."""

    key_id: str  # the first 12 hex digits of its SHA-256 (identifies it, reveals nothing)
    label: str
    created_at: float
    last_used: float
    expired: bool


def utc_day(t: float) -> int:
    """The UTC day number (days since 1970-01-01) of Unix time ``t``."""
    return int(t // DAY)


def expired(last_used: float, now: float, days: int) -> bool:
    """Whether a key last used at ``last_used`` is past an inactivity limit of ``days`` at
    ``now``: more than ``days`` UTC days lie between the day of its last use and today (used
    on day 0, it works through day ``days`` and is refused from day ``days`` + 1). ``days``
    0: never."""
    return days > 0 and utc_day(now) - utc_day(last_used) > days


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def new_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


_settings_version = 0


def _changed() -> None:
    global _settings_version
    _settings_version += 1


class AccountBook:
    """Accounts on top of a store (``db``, ``read``, ``write`` as in gateway.store)."""

    @property
    def version(self) -> int:
        """Bumped whenever any AccountBook of this process creates an account or changes its
        settings (the API and the notifier each hold their own book), so that caches of
        account settings (the notifier's endpoint cache) know to drop what they hold."""
        return _settings_version

    def __init__(self, store: Any, *, now: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 inactivity_days: int = DEFAULT_INACTIVITY_DAYS) -> None:
        self._store = store
        self._now = now
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, Account | None]] = {}
        # [api] key_inactivity_days: keys unused for longer are refused (0: never)
        self.inactivity_days = inactivity_days
        self._used: dict[bytes, float] = {}  # sha256(key) → a use not yet recorded (its time)
        self._expired: set[str] = set()  # keys the last lookup refused as expired
        self._since: float | None = None  # m:last_used_since, once read

    async def create(self, account: Account) -> str:
        """Create ``account`` and return its first API key (shown once, stored hashed).

        Raises:
            AccountError: the name is taken or a setting is invalid.
        """
        errs = check_settings(account)
        if errs:
            raise AccountError("; ".join(errs))
        account = replace(account, default_prefix=account.default_prefix.lstrip("+"),
                          created_at=account.created_at or self._now())
        key = new_key()
        db = self._store.db(DB)

        def op(txn: Any) -> bool:
            if not txn.put(b"a:" + account.name.encode(), account.to_bytes(), db=db,
                           overwrite=False):
                return False
            txn.put(b"k:" + hash_key(key), _key_record(account.name, account.created_at, "",
                                                       self._now()), db=db)
            return True

        if not await self._store.write(op):
            raise AccountError(f"account {account.name!r} already exists")
        _changed()
        return key

    async def add_key(self, name: str, label: str = "") -> str:
        """A further API key for an existing account."""
        if self.get(name) is None:
            raise AccountError(f"no account named {name!r}")
        key = new_key()
        db = self._store.db(DB)
        now = self._now()
        record = _key_record(name, now, label, now)
        await self._store.write(lambda txn: txn.put(b"k:" + hash_key(key), record, db=db))
        return key

    async def revoke_key(self, key: str) -> bool:
        """Remove an API key; True when it existed."""
        db = self._store.db(DB)
        self._cache.pop(key, None)
        self._expired.discard(key)
        self._used.pop(hash_key(key), None)
        return bool(await self._store.write(lambda txn: txn.delete(b"k:" + hash_key(key), db=db)))

    async def revoke_key_id(self, key_id: str) -> bool:
        """Remove the API key whose id (:attr:`KeyInfo.key_id`, as ``septet accounts show``
        lists it) is ``key_id``: how an operator removes a key nobody holds any more (an
        expired one). True when it existed."""
        if len(key_id) != 12 or not all(c in "0123456789abcdef" for c in key_id):
            return False
        db, prefix = self._store.db(DB), b"k:" + bytes.fromhex(key_id)

        def op(txn: Any) -> bool:
            cur = txn.cursor(db=db)
            if not cur.set_range(prefix) or not cur.key().startswith(prefix):
                return False
            return bool(cur.delete())

        self._cache.clear()
        return bool(await self._store.write(op))

    async def update(self, name: str, **settings: Any) -> Account:
        """Change settings of account ``name`` (default_prefix, policy, max_parts, callback_*)."""
        current = self.get(name)
        if current is None:
            raise AccountError(f"no account named {name!r}")
        try:
            updated = replace(current, **settings)
        except TypeError as exc:
            raise AccountError(str(exc)) from None
        errs = check_settings(updated)
        if errs:
            raise AccountError("; ".join(errs))
        db = self._store.db(DB)
        await self._store.write(lambda txn: txn.put(b"a:" + name.encode(), updated.to_bytes(), db=db))
        self._cache.clear()
        _changed()
        return updated

    def get(self, name: str) -> Account | None:
        with self._store.read() as txn:
            data = txn.get(b"a:" + name.encode(), db=self._store.db(DB))
        return None if data is None else Account.from_bytes(name, data)

    def names(self) -> list[str]:
        with self._store.read() as txn:
            cur = txn.cursor(db=self._store.db(DB))
            out = []
            if cur.set_range(b"a:"):
                for k in cur.iternext(values=False):
                    if not k.startswith(b"a:"):
                        break
                    out.append(k[2:].decode())
            return out

    def authenticate(self, key: str) -> Account | None:
        """The account owning API key ``key``, or None. Cached for CACHE_SECONDS."""
        now = self._monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        account = self._lookup(key) if key.startswith(KEY_PREFIX) else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + CACHE_SECONDS, account)
        return account

    def expired(self, key: str) -> bool:
        """Whether the last lookup of ``key`` (by :meth:`authenticate`, which then answered
        None) refused it for inactivity rather than as unknown: a dict lookup, for the 401's
        reason. Only a holder of the key can learn this."""
        return key in self._expired

    def _lookup(self, key: str) -> Account | None:
        """The cache miss: one read of the key and its account, then the inactivity check
        and, on a key's first use of a UTC day, a note for :meth:`flush`."""
        digest = hash_key(key)
        db = self._store.db(DB)
        with self._store.read() as txn:
            record = txn.get(b"k:" + digest, db=db)
            if record is None:
                self._expired.discard(key)  # (revoked since it expired: unknown now)
                return None
            name, created, _label, *rest = msgpack.unpackb(record)
            last = rest[0] if rest else max(created, self._tracking_since(txn))
            data = txn.get(b"a:" + name.encode(), db=db)
        if data is None:
            return None
        now = self._now()
        pending = self._used.get(digest)  # a use noted but not yet written
        age = int(now // DAY) - int((last if pending is None or pending < last else pending)
                                    // DAY)  # in UTC days, as expired() counts
        if age > self.inactivity_days > 0:
            if len(self._expired) > 10_000:
                self._expired.clear()
            self._expired.add(key)
            return None
        self._expired.discard(key)
        if age > 0 and pending is None:
            self._used[digest] = now
        return Account.from_bytes(name, data)

    def _tracking_since(self, txn: Any) -> float:
        """When this store began recording key use (legacy records' last use); "now" where
        no ``septet serve`` has marked it yet (:meth:`start_tracking`)."""
        if self._since is None:
            raw = txn.get(_SINCE, db=self._store.db(DB))
            if raw is None:
                return self._now()
            self._since = float(msgpack.unpackb(raw))
        return self._since

    async def start_tracking(self) -> float:
        """Mark when this store began recording key use, unless marked already (run by
        ``septet serve`` at start); returns the mark. See the module docstring."""
        db = self._store.db(DB)
        now = self._now()

        def op(txn: Any) -> float:
            if txn.put(_SINCE, msgpack.packb(now), db=db, overwrite=False):
                return now
            return float(msgpack.unpackb(txn.get(_SINCE, db=db)))

        self._since = await self._store.write(op)
        return self._since

    async def flush(self) -> int:
        """Write the key uses noted since the last flush in ONE store write; returns how many
        key records it rewrote. A record is rewritten only when its last-used day is older
        than the noted use's (at most once per key per day); revoked keys are skipped. Noted
        uses go back to the queue when the write does not happen (cancelled, store closed)."""
        if not self._used:
            return 0
        used, self._used = self._used, {}
        db = self._store.db(DB)

        def op(txn: Any) -> int:
            written = 0
            for digest, when in used.items():
                record = txn.get(b"k:" + digest, db=db)
                if record is None:
                    continue
                name, created, label, *rest = msgpack.unpackb(record)
                if rest and utc_day(rest[0]) >= utc_day(when):
                    continue
                txn.put(b"k:" + digest, _key_record(name, created, label, when), db=db)
                written += 1
            return written

        try:
            return int(await self._store.write(op))
        except BaseException:
            for digest, when in used.items():
                self._used[digest] = max(when, self._used.get(digest, when))
            raise

    def keys(self, name: str) -> list[KeyInfo]:
        """The API keys of account ``name`` (scans every key record: for the CLI)."""
        now, out = self._now(), []
        db = self._store.db(DB)
        with self._store.read() as txn:
            cur = txn.cursor(db=db)
            if cur.set_range(b"k:"):
                for k, v in cur:
                    if not k.startswith(b"k:"):
                        break
                    owner, created, label, *rest = msgpack.unpackb(v)
                    if owner != name:
                        continue
                    last = rest[0] if rest else max(created, self._tracking_since(txn))
                    out.append(KeyInfo(k[2:8].hex(), label, created, last,
                                       expired(last, now, self.inactivity_days)))
        return sorted(out, key=lambda i: i.created_at)


def _key_record(name: str, created_at: float, label: str, last_used: float) -> bytes:
    return bytes(msgpack.packb([name, created_at, label, last_used]))


async def record_key_use(book: AccountBook, *, every: float = FLUSH_SECONDS,
                         grace: float = FLUSH_GRACE,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Every ``every`` seconds, write the key uses ``book`` noted (:meth:`AccountBook.flush`);
    when cancelled (shutdown), flush once more, shielded, for at most ``grace`` seconds.
    Run by ``septet serve`` beside the API whose book it is."""
    task_status.started()
    try:
        while True:
            await trio.sleep(every)
            try:
                await book.flush()
            except StoreError as exc:  # closed: shutting down (the uses stay noted)
                logger.warning("API key use not recorded: %s", exc)
    finally:
        with trio.move_on_after(grace, shield=True):
            try:
                await book.flush()
            except StoreError as exc:
                logger.warning("API key use of the last minute not recorded: %s", exc)


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or "" when absent/malformed."""
    scheme, _, token = authorization.partition(" ")
    if scheme != "Bearer" and scheme.lower() != "bearer":  # the scheme is not a secret
        return ""
    return token.strip()
