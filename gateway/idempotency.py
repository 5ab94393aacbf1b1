"""Idempotency keys of ``POST /v1/messages``, scoped per account, kept for ``ttl`` (≥ 72 h).

A client that did not see our answer (timeout, dropped connection) sends the same request
again with the same ``Idempotency-Key`` header and must not create a second message:

* same key, same request (method, path and body bytes hashed) → the first answer, replayed
  byte for byte (status and body), with ``Idempotent-Replayed: true``;
* same key, different request → 422;
* same key while the first request is still being handled → 409 (retry later).

Records live in the store's ``idempotency`` database:
    account 0x00 key → msgpack [created_at, request_sha256, status, content_type, body]
Only final answers are kept: 2xx and 4xx. A 5xx/503 (saturated, store failure) is not kept, so
the retry the client is told to make can succeed.

In-flight requests are tracked in this process's memory: with several worker processes two
copies of a request racing on different workers are both handled; see docs/api.md.

No crash window: for an accepted submission the record is written by :meth:`record_op` inside
the very transaction that stores the messages (``Gateway.accept(..., also=op)``), so either
both are durable or neither is. Refusals (4xx) are recorded in a transaction of their own.

Must not import: gateway.api, gateway.http.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

DB: Final = b"idempotency"
MAX_KEY_LENGTH: Final = 255


@dataclass(frozen=True, slots=True)
class Stored:
    """A kept answer."""

    status: int
    content_type: str
    body: bytes


class InFlight(Exception):
    """The same key is being handled right now (answer 409)."""


class Mismatch(Exception):
    """The key was used before with a different request (answer 422)."""


def request_hash(method: str, path: str, body: bytes) -> bytes:
    h = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n")
    h.update(body)
    return h.digest()


class IdempotencyBook:
    """Lookup, in-flight tracking and recording of idempotent answers."""

    def __init__(self, store: Any, *, ttl_seconds: float = 96 * 3600,
                 now: Callable[[], float] = time.time) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._now = now
        self._in_flight: set[bytes] = set()

    @staticmethod
    def _key(account: str, key: str) -> bytes:
        return account.encode() + b"\x00" + key.encode("utf-8", "surrogatepass")

    def begin(self, account: str, key: str, digest: bytes) -> Stored | None:
        """Claim ``key`` for a request with hash ``digest``.

        Returns:
            The stored answer to replay, or None when the caller must handle the request and
            then call :meth:`finish` (or :meth:`abandon`).

        Raises:
            InFlight: the key is being handled.
            Mismatch: the key was used with another request.
        """
        k = self._key(account, key)
        if k in self._in_flight:
            raise InFlight(key)
        with self._store.read() as txn:
            raw = txn.get(k, db=self._store.db(DB))
        if raw is not None:
            created, stored_digest, status, ctype, body = msgpack.unpackb(raw)
            if created + self._ttl > self._now():
                if stored_digest != digest:
                    raise Mismatch(key)
                return Stored(status, ctype, body)
        self._in_flight.add(k)
        return None

    def record_op(self, account: str, key: str, digest: bytes,
                  stored: Stored) -> Callable[[Any], None]:
        """A store op writing the answer of ``key``: pass it to ``Gateway.accept(also=...)`` so
        the record commits in the same transaction as the messages it answers for."""
        k = self._key(account, key)
        record = msgpack.packb([self._now(), digest, stored.status, stored.content_type,
                                stored.body])
        db = self._store.db(DB)
        return lambda txn: txn.put(k, record, db=db)

    async def finish(self, account: str, key: str, digest: bytes, stored: Stored) -> None:
        """Record the final answer of a claimed key (unless 5xx) and release it."""
        try:
            if 200 <= stored.status < 500:
                await self._store.write(self.record_op(account, key, digest, stored))
        finally:
            self.release(account, key)

    def release(self, account: str, key: str) -> None:
        """Release a claimed key (after its record committed, or after a 5xx)."""
        self._in_flight.discard(self._key(account, key))

    async def purge(self, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` expired records; returns how many. Run periodically."""
        cutoff = self._now() - self._ttl
        db = self._store.db(DB)

        def op(txn: Any) -> int:
            cur = txn.cursor(db=db)
            doomed = [k for k, v in cur.iternext() if msgpack.unpackb(v)[0] < cutoff][:limit]
            for k in doomed:
                txn.delete(k, db=db)
            return len(doomed)

        return int(await self._store.write(op))
