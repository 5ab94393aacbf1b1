"""Standard Webhooks signatures: sign a callback, verify one, read an account's secret.

``webhook-signature`` = ``"v1," + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))``
(https://www.standardwebhooks.com/). Pure; the HMAC key pads are kept per secret so that
signing a callback costs two SHA-256 state copies instead of a key set-up. Part of
``gateway.callbacks`` (which re-exports these names); imports nothing of ours.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from typing import Any, Final

SECRET_PREFIX: Final = "whsec_"


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    inner, outer = _hmac_pads(secret)
    inner = inner.copy()
    inner.update(f"{msg_id}.{timestamp}.".encode())
    inner.update(body)
    outer = outer.copy()
    outer.update(inner.digest())
    return "v1," + base64.b64encode(outer.digest()).decode()


@functools.lru_cache(maxsize=1024)
def _hmac_pads(secret: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the HMAC key's inner and outer pads (RFC 2104), kept per secret:
    copying them is half the cost of ``hmac.digest``, which sets the key up on every call
    (OpenSSL 3). ``sign`` equals ``hmac.digest(secret, ..., "sha256")`` (a test checks)."""
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in key)),
            hashlib.sha256(bytes(b ^ 0x5C for b in key)))


def verify(secret: bytes, headers: dict[str, str], body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """Receiver-side check (used by tests and shown in the docs): signature and timestamp."""
    try:
        timestamp = int(headers["webhook-timestamp"])
        expected = sign(secret, headers["webhook-id"], timestamp, body).split(",", 1)[1]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
    return any(hmac.compare_digest(expected, g) for g in given)


def secret_bytes(secret: str) -> bytes:
    """An account's callback secret as HMAC key: ``whsec_<base64>`` decoded, else its UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()
