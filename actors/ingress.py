"""Ingress: message ids, due keys and the admission of accepted batches into the pipeline.

Ingress is the first hop of DESIGN.md §1. ``Gateway.accept`` (gateway/app.py) commits a
batch to the store through the group-committing writer and only then hands it to
:class:`IngressGate`, which passes the just-committed batch to the scheduler pump (fast path:
the pump need not re-read what it was just given). Saturation (``Saturated``) is decided by
``Gateway`` itself before the commit. Everything else here is pure: message ids and outbox keys.

Message ids are time-ordered strings: 10 Crockford base32 characters of the acceptance time
in milliseconds (48 bits) followed by 8 characters of a per-process random node (8 bits) and
a counter (32 bits). Ids sort in acceptance order, so history scans are id-range reads.

Must not import: gateway, adapters, lmdb.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Final

import trio

from actors import messages
from actors.messages import Message, MsgId

__all__ = ["IngressGate", "MsgIdFactory", "due_key", "due_ms", "id_floor", "id_time"]

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INDEX: Final = {c: i for i, c in enumerate(_ALPHABET)}


_PAIRS: Final = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 characters


def _b32(value: int, width: int) -> str:
    """``value`` as ``width`` (even) Crockford base32 characters, most significant first."""
    out = []
    for shift in range(5 * (width - 2), -1, -10):
        out.append(_PAIRS[(value >> shift) & 1023])
    return "".join(out)


def id_floor(t: float) -> str:
    """The smallest id string of messages accepted at or after Unix time ``t``."""
    return _b32(max(0, math.floor(t * 1000)) & ((1 << 50) - 1), 10)


def id_time(msg_id: str) -> float:
    """Acceptance time (Unix seconds, ms precision) encoded in ``msg_id``."""
    value = 0
    for c in msg_id[:10]:
        value = value * 32 + _INDEX[c]
    return value / 1000


class MsgIdFactory:
    """Makes sortable message ids; monotonic even if the wall clock steps back."""

    def __init__(self, now: Callable[[], float] = time.time, node: int | None = None) -> None:
        self._now = now
        self._node = secrets.randbits(8) if node is None else node & 0xFF
        self._counter = secrets.randbits(31)
        self._last_ms = 0
        self._prefix_ms = -1
        self._prefix = ""

    def __call__(self) -> MsgId:
        now_ms = max(self._last_ms, math.floor(self._now() * 1000))
        self._last_ms = now_ms
        counter = self._counter = (self._counter + 1) & 0xFFFFFFFF
        if counter == 0:  # wrapped: move to the next ms so order still holds
            self._last_ms = now_ms = now_ms + 1
        if now_ms != self._prefix_ms:  # the time part changes once per ms, not per id
            self._prefix_ms, self._prefix = now_ms, _b32(now_ms, 10)
        low = (self._node << 32) | counter  # == _b32(low, 8), unrolled (once per message)
        return MsgId(self._prefix + _PAIRS[low >> 30 & 1023] + _PAIRS[low >> 20 & 1023]
                     + _PAIRS[low >> 10 & 1023] + _PAIRS[low & 1023])


def due_ms(message: Message) -> int:
    """When ``message`` is due, in ms: its ``send_at`` if later than acceptance."""
    return max(0, math.floor(max(message.send_at, message.accepted_at) * 1000))


def due_key(message: Message) -> bytes:
    """Outbox key: due time (u64 big-endian ms) followed by the message id."""
    return due_ms(message).to_bytes(8, "big") + message.msg_id.encode()


class IngressGate:
    """Hands committed batches to the scheduler pump (``closed`` once it stops taking them).

    ``wake`` is the pump's fast-path inbox (msgpack batches of Message). Sending waits when
    it is full: the batch is already durable, and the pump drains that channel quickly.
    """

    def __init__(self, wake: trio.abc.SendChannel[bytes]) -> None:
        self._wake = wake
        self.closed = False

    async def committed(self, batch: Sequence[Message]) -> None:
        """Pass a just-committed batch on (the pump re-reads the store if it has no room)."""
        if self.closed or not batch:
            return
        try:
            await self._wake.send(messages.encode_batch(batch))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.closed = True  # shutting down: the store has it, recovery re-queues it

    async def aclose(self) -> None:
        """Close the pump's fast-path inbox: the first step of a graceful shutdown."""
        self.closed = True
        await self._wake.aclose()
