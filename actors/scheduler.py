"""The scheduler pump: the durable outbox, in due order, into the rate limiter.

Theory of operation
-------------------
Messages that wait (a future ``send_at``, or a backlog) live in the store's outbox, keyed
``due ms || msg_id``, never in memory: that is what keeps RSS flat with a million waiting. The
pump keeps a bounded *in-flight* set (ids handed on and not yet released by the correlator)
and a *cursor* with one invariant: every outbox key below the cursor is in flight or not yet
due-and-unread only if it was registered below via :meth:`Pump.missed`. It reads due
entries from the cursor in key order, in batches bounded by its free room.

Fast path: ingress hands over each just-committed batch (``wake``). The pump takes the
messages that are due directly, without re-reading them, while it has room; the rest it
leaves in the store, lowering the cursor to their keys, and reads in order later. While the
pump is behind on the outbox (its last read did not find everything due), messages taken
this way overtake the older backlog, so they may hold at most half the window
(``overtaking``), those of one account at most a fortieth (500 of 20,000), and reads leave a
tenth of it free for them (``read_room``): a one-time password is not queued behind a bulk
send that the rate limiter will hand back anyway, the bulk send's own later batches cannot
take the room it needs, and the backlog keeps the rest. A
:class:`~actors.messages.Released` for an id frees its slot.

Every message passes on to the rate limiter, which does expiry (``not_after``) and shaping.
A message the limiter would hold for long (a send window or campaign slice far away) comes
back on ``deferred`` with its new ``send_at``: the pump has ``reschedule`` move its outbox
entry durably, then frees its slot and registers the new key below the cursor
(:meth:`Pump.deferred`), so held messages never fill the in-flight set for hours.
Closing ``wake`` is the shutdown signal: the pump stops taking work and closes its outbox;
whatever still waits stays in the store for the next start (deferrals the limiter sends while
draining are still stored).

Must not import: gateway, adapters, lmdb.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field

import msgpack
import trio

from actors import _metrics, messages
from actors._inbox import with_waiting
from actors._wire import WireBatch, join_arrays
from actors.ingress import due_key
from actors.messages import Message, Released
from actors.ports import PipelineStore

__all__ = ["Pump", "run"]

_REL_TAG, _REL_VERSION = Released.TAG, Released.VERSION
_REL_ARITY = 2 + len(Released._fields)
_FAST = _metrics.PUMP_RELEASED.labels("fast")
_STORE = _metrics.PUMP_RELEASED.labels("store")


@dataclass(slots=True)
class Pump:
    """The pump's state and decisions (no I/O; the store read is passed in)."""

    max_inflight: int
    cursor: bytes = b""
    caught_up: bool = False
    inflight: set[str] = field(default_factory=set)
    # what to hand on, in order, in chunks as they came (a whole ingress batch stays one
    # chunk: a WireBatch whose bytes go on as they are, see take)
    ready: deque[Sequence[Message]] = field(default_factory=deque)
    next_due: float | None = None
    # ids taken on the fast path while the pump was behind on the outbox (a subset of
    # ``inflight``), with their accounts: they may hold at most half the window, so the
    # backlog keeps the rest, and one account at most a fortieth, so a bulk send arriving
    # while behind cannot take the room another account's next message needs
    overtaking: dict[str, str] = field(default_factory=dict)
    overtaking_by_account: dict[str, int] = field(default_factory=dict)

    @property
    def room(self) -> int:
        return self.max_inflight - len(self.inflight)  # ``ready`` ids are in ``inflight`` too

    def offered(self, batch: Sequence[Message], now: float) -> None:
        """Ingress committed ``batch``: take what fits now, remember the rest by key."""
        room = self.room
        behind = not self.caught_up
        if behind:
            room = min(room, self.max_inflight // 2 - len(self.overtaking))
        taken: list[Message] = []
        for msg in batch:
            if msg.msg_id in self.inflight:
                continue
            due = max(msg.send_at, msg.accepted_at)
            if len(taken) < room and due <= now and (not behind or self._overtake(msg)):
                self.inflight.add(msg.msg_id)
                taken.append(msg)
            else:
                self.missed(due_key(msg), due)
        if taken:  # a WireBatch taken whole stays itself (immutable; keeps its bytes)
            whole = isinstance(batch, WireBatch) and len(taken) == len(batch)
            self.ready.append(batch if whole else taken)
        _FAST.inc(len(taken))

    def missed(self, key: bytes, due: float) -> None:
        """An entry at ``key`` was not taken: make the next read start at or before it."""
        self.cursor = min(self.cursor, key)
        if due > 0 and (self.next_due is None or due < self.next_due):
            self.next_due = due
        self.caught_up = False

    def _overtake(self, msg: Message) -> bool:
        """Count ``msg`` as overtaking the backlog, unless its account already holds its share
        (a fortieth of the window); whether it may go now."""
        counts = self.overtaking_by_account
        n = counts.get(msg.account, 0)
        if n >= max(1, self.max_inflight // 40):
            return False
        counts[msg.account] = n + 1
        self.overtaking[msg.msg_id] = msg.account
        return True

    def _done_overtaking(self, msg_id: str) -> None:
        account = self.overtaking.pop(msg_id, None)
        if account is not None:
            counts = self.overtaking_by_account
            counts[account] -= 1
            if not counts[account]:
                del counts[account]

    def released(self, msg_ids: list[str]) -> None:
        self.inflight.difference_update(msg_ids)
        if self.overtaking:
            for msg_id in msg_ids:
                self._done_overtaking(msg_id)

    def deferred(self, batch: list[Message]) -> None:
        """The limiter handed ``batch`` back, already stored under its new due time (its
        ``send_at``): free their slots and read them again when due."""
        for msg in batch:
            self.inflight.discard(msg.msg_id)
            self._done_overtaking(msg.msg_id)
            self.missed(due_key(msg), max(msg.send_at, msg.accepted_at))

    @property
    def read_room(self) -> int:
        """Room for reads: they leave a tenth of the window free for messages that overtake,
        else a backlog read fills it and the next one-time password finds no room and waits
        in the outbox behind the backlog after all."""
        return self.room - self.max_inflight // 10

    def should_read(self, now: float) -> bool:
        return self.read_room > 0 and (
            not self.caught_up or (self.next_due is not None and self.next_due <= now))

    def read(self, store: PipelineStore, now: float, batch: int) -> None:
        """Read due entries from the store into ``ready``."""
        limit = min(self.read_room, batch)
        found, cursor, next_due = store.read_due(self.cursor, now, limit, self.inflight)
        for msg in found:
            self.inflight.add(msg.msg_id)
        if found:
            self.ready.append(found)
        _STORE.inc(len(found))
        self.cursor = cursor
        self.next_due = next_due
        self.caught_up = len(found) < limit

    def take(self, batch: int) -> Sequence[Message]:
        """Up to ``batch`` ready messages, oldest first (call only when ``ready``).

        Whole chunks while they fit; chunks that all kept their channel bytes come out as one
        WireBatch of those bytes joined, so the hop on packs nothing (0.4 µs a message).
        """
        ready = self.ready
        chunks: list[Sequence[Message]] = []
        total = 0
        while ready and total + len(ready[0]) <= batch:
            chunks.append(ready.popleft())
            total += len(chunks[-1])
        if not chunks:  # the first chunk alone is more than a batch: split it
            first = ready[0]
            ready[0] = first[batch:]
            return first[:batch]
        if len(chunks) == 1:
            return chunks[0]
        out = [msg for chunk in chunks for msg in chunk]
        wires = [c.wire for c in chunks if isinstance(c, WireBatch)]
        return WireBatch(out, join_arrays(wires)) if len(wires) == len(chunks) else out


async def run(
    wake: trio.abc.ReceiveChannel[bytes],
    released: trio.abc.ReceiveChannel[bytes],
    outbox: trio.abc.SendChannel[bytes],
    *,
    store: PipelineStore,
    max_inflight: int = 20_000,
    batch: int = 512,
    now: Callable[[], float] = time.time,
    deferred: trio.abc.ReceiveChannel[bytes] | None = None,
    reschedule: Callable[[Sequence[Message]], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Feed due messages from the outbox (and ingress' fast path) to ``outbox``.

    Args:
        wake: msgpack batches of Message just committed by ingress; closing it stops the pump.
        released: msgpack batches of Released from the correlator and dispatcher.
        outbox: msgpack batches of Message for the rate limiter.
        store: the durable outbox.
        max_inflight: bound of messages handed on and not yet released.
        batch: most messages per outgoing item and per store read.
        deferred: msgpack batches of Message the rate limiter hands back, ``send_at`` set to
            when they may go; read until the limiter closes it.
        reschedule: stores such a batch under its new due times (durable on return);
            required with ``deferred``.

    Raises:
        ValueError: ``deferred`` without ``reschedule``.
    """
    if deferred is not None and reschedule is None:
        raise ValueError("deferred needs reschedule")
    pump = Pump(max_inflight)
    kick = trio.Event()

    def poke() -> None:
        nonlocal kick
        kick.set()

    deferrals_done = trio.Event()
    async with wake, released, outbox, _maybe(deferred), trio.open_nursery() as nursery:
        nursery.start_soon(_take_releases, released, pump, poke)
        if deferred is not None and reschedule is not None:
            nursery.start_soon(_take_deferrals, deferred, pump, reschedule, poke, deferrals_done)
        else:
            deferrals_done.set()
        task_status.started()
        ingress = trio.Event()
        nursery.start_soon(_take_wakes, wake, pump, now, poke, ingress)
        while not ingress.is_set() or pump.ready:
            if pump.should_read(now()):
                pump.read(store, now(), batch)
            if pump.ready:
                await outbox.send(messages.encode_batch(pump.take(batch)))
                _metrics.PUMP_INFLIGHT.set(len(pump.inflight))
                continue
            if ingress.is_set():
                break
            kick = trio.Event()
            # Full: only a release (or deferral) can make room, and it pokes. Without this the
            # loop spun (a zero wait) whenever the in-flight set was full and something was due.
            full = pump.room <= 0
            wait = 3600.0 if pump.next_due is None or full else max(0.0, pump.next_due - now())
            with trio.move_on_after(min(wait, 1.0) if pump.caught_up else wait):
                await kick.wait()
        await outbox.aclose()  # the limiter drains; what it defers meanwhile is still stored
        await deferrals_done.wait()
        nursery.cancel_scope.cancel()


def _maybe(channel: trio.abc.AsyncResource | None) -> AbstractAsyncContextManager[object]:
    return channel if channel is not None else nullcontext()


async def _take_deferrals(
    deferred: trio.abc.ReceiveChannel[bytes], pump: Pump,
    reschedule: Callable[[Sequence[Message]], Awaitable[object]], poke: Callable[[], None],
    done: trio.Event,
) -> None:
    async for item in deferred:
        batch = messages.decode_batch_of(Message, item)
        await reschedule(batch)  # durable first: a slot freed earlier could re-read the old key
        pump.deferred(batch)
        _metrics.PUMP_INFLIGHT.set(len(pump.inflight))
        poke()
    done.set()


async def _take_wakes(
    wake: trio.abc.ReceiveChannel[bytes], pump: Pump, now: Callable[[], float],
    poke: Callable[[], None], ended: trio.Event,
) -> None:
    async for item in wake:
        # Every commit already waiting is offered before the loop is poked: when commits come
        # fast the pump wakes once for several and hands them on as one item (take joins
        # them), instead of once per commit.
        t = now()
        for data in with_waiting(wake, item):
            # keeps the bytes: a batch taken whole is handed on without packing it again
            pump.offered(messages.decode_wire_batch_of(Message, data), t)
        poke()
    ended.set()
    poke()


def _released_ids(item: bytes) -> list[str]:
    """The msg_ids of a batch of Released, read off the wire rows (no Released built)."""
    rows = msgpack.unpackb(item, raw=False, use_list=False)
    if type(rows) is tuple:
        ids = [r[2] for r in rows if type(r) is tuple and len(r) == _REL_ARITY
               and r[0] == _REL_TAG and r[1] == _REL_VERSION]  # a comprehension, not all(...)
        if len(ids) == len(rows):
            return ids
    return [r.msg_id for r in messages.decode_batch_of(Released, item)]  # checks, upgrades


async def _take_releases(
    released: trio.abc.ReceiveChannel[bytes], pump: Pump, poke: Callable[[], None]
) -> None:
    async for item in released:
        for data in with_waiting(released, item):  # one poke for all that waits
            pump.released(_released_ids(data))
        _metrics.PUMP_INFLIGHT.set(len(pump.inflight))
        poke()
