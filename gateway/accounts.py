"""Accounts and their API keys, kept in the store's ``accounts`` database.

Layout of ``accounts`` (keys are bytes):
    ``a:`` name      → msgpack [version, default_prefix, policy, max_parts, callback_url,
                                callback_secret, created_at, inbound_url]
                       (records written before inbound_url existed have 7 items: "")
    ``k:`` sha256(key) → msgpack [name, created_at, label]

API keys are 32 random bytes (``sk_`` + base64url); only their SHA-256 is stored. A key of
that entropy needs no slow hash (no dictionary to attack), and a plain digest lets a request be
authenticated by one LMDB lookup. Authentication results are cached in memory for a few seconds
so that the hot path is a dict lookup; a revoked key stops working within that time.

Must not import: gateway.api, gateway.http.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import msgpack

from gateway.config import POLICIES
from gateway.errors import AccountError
from gateway.ssrf import CallbackUrlRefused, parse_callback_url

DB: Final = b"accounts"
VERSION: Final = 1
KEY_PREFIX: Final = "sk_"
NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
CACHE_SECONDS: Final = 5.0


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
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._now = now
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, Account | None]] = {}

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
            txn.put(b"k:" + hash_key(key), msgpack.packb([account.name, account.created_at, ""]),
                    db=db)
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
        record = msgpack.packb([name, self._now(), label])
        await self._store.write(lambda txn: txn.put(b"k:" + hash_key(key), record, db=db))
        return key

    async def revoke_key(self, key: str) -> bool:
        """Remove an API key; True when it existed."""
        db = self._store.db(DB)
        self._cache.pop(key, None)
        return bool(await self._store.write(lambda txn: txn.delete(b"k:" + hash_key(key), db=db)))

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

    def _lookup(self, key: str) -> Account | None:
        digest = hash_key(key)
        db = self._store.db(DB)
        with self._store.read() as txn:
            record = txn.get(b"k:" + digest, db=db)
            if record is None:
                return None
            name = msgpack.unpackb(record)[0]
            data = txn.get(b"a:" + name.encode(), db=db)
        return None if data is None else Account.from_bytes(name, data)


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or "" when absent/malformed."""
    scheme, _, token = authorization.partition(" ")
    if scheme != "Bearer" and scheme.lower() != "bearer":  # the scheme is not a secret
        return ""
    return token.strip()
