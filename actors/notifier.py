"""The notifier actor: status callbacks upstream, from a durable outbox, retried, signed.

Theory of operation. The inbox carries msgpack batches of ``StatusEvent`` that the receipt
correlator has already persisted. For each batch the notifier first writes the events to the
callback outbox (one store write, idempotent per (msg_id, seq)) and only then delivers them, so
a crash loses nothing: on start-up whatever the outbox holds is simply due and gets sent.

Delivery is a scheduling loop over the outbox in due order:

* per message only the lowest pending ``seq`` is ever due (the outbox keeps later ones waiting
  until it is delivered or dead-lettered), so a receiver never sees seq 2 before seq 1;
* each due entry is grouped per callback URL (``batch_size`` events per request, 1 = one JSON
  object per request) and sent when its endpoint's concurrency cap and circuit breaker allow
  (``callbacks_policy.Endpoints``); entries of an endpoint whose breaker is open are postponed
  to the end of its cooldown without spending a retry;
* with ``batch_size`` > 1 an endpoint has at most one under-full request in flight (as Nagle's
  rule does for small segments): what is due while it runs waits for its answer (one round
  trip) and then goes in fuller requests, so under load a request carries many events and
  an idle endpoint still gets a lone event at once;
* a request has a deadline (``policy.request_timeout``, applied here at the call site);
* results are settled by one acker task that drains every finished request and records them in
  one outbox write (delivered, retry at a jittered back-off time, or dead-lettered once the
  retry window (24 h by default) is over or the failure is permanent).

Delivery is at-least-once across a crash (a request that succeeded just before a kill is sent
again); the ``webhook-id`` header is stable per (msg_id, seq) so receivers drop the repeat.
Entries someone else writes into the outbox (the inbound book's MO pushes, in its own
transaction) are read at the next poll, or at once when the writer rings the ``doorbell``
after its commit.

When the inbox closes the notifier keeps delivering what is due for ``policy.drain_timeout``
seconds and returns; the rest stays in the outbox for the next start.

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

import logging
import math
import random
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

from actors import _metrics
from actors.callbacks_policy import BreakerState, Endpoints, RetryPolicy, endpoint_of
from actors.messages import StatusEvent, decode_batch_of
from actors.ports import (
    CallbackEntry,
    CallbackOutbox,
    CallbackResult,
    CallbackSender,
    Settlement,
)

logger = logging.getLogger(__name__)

EndpointFor = Callable[[StatusEvent], "tuple[str, bytes] | None"]
"""Where a status goes: ``(url, secret)`` from the event's callback_url or its account's
default, or None when the account wants no callbacks."""


@dataclass(slots=True)
class NotifierStats:
    """Counters of one notifier (cheap snapshot for metrics and the benchmark)."""

    enqueued: int = 0
    delivered: int = 0
    retried: int = 0
    postponed: int = 0
    dead: int = 0
    dropped: int = 0
    requests: int = 0
    in_flight: int = 0


class Doorbell:
    """Wakes the running notifier when another writer has put due entries into its outbox.

    The writer rings after its write commits, from the event loop (``trio.Event`` is not
    thread-safe); with no notifier running a ring does nothing and the entry waits for the
    next start, which reads everything due.
    """

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def ring(self) -> None:
        """Tell every listening notifier that the outbox holds new entries."""
        for listener in self._listeners:
            listener()

    @contextmanager
    def listening(self, listener: Callable[[], None]) -> Iterator[None]:
        """Call ``listener`` on each ring while the block runs."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)


def decide(
    entry: CallbackEntry, result: CallbackResult, *, policy: RetryPolicy, now: float, rand: float
) -> Settlement:
    """What becomes of ``entry`` after a request that came to ``result``. Pure."""
    if result.ok:
        return Settlement(entry, "delivered")
    error = result.error or f"http {result.status}"
    if result.permanent:
        return Settlement(entry, "dead", error=error)
    at = policy.next_attempt_at(
        attempt=entry.attempt + 1, first_attempt_at=entry.first_attempt_at, now=now, rand=rand
    )
    if at is None:
        return Settlement(entry, "dead", error=f"retries exhausted: {error}")
    if result.retry_after > 0:
        at = max(at, now + min(result.retry_after, policy.max_delay))
    return Settlement(entry, "retry", at=at, error=error)


async def run(
    inbox: trio.MemoryReceiveChannel[bytes],
    *,
    outbox: CallbackOutbox,
    sender: CallbackSender,
    policy: RetryPolicy,
    endpoint_for: EndpointFor,
    now: Callable[[], float] = time.time,
    rand: Callable[[], float] = random.random,
    stats: NotifierStats | None = None,
    doorbell: Doorbell | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Enqueue status events durably and deliver them as callbacks until the inbox closes.

    Args:
        inbox: msgpack batches of StatusEvent (already persisted upstream). Owned and closed.
        outbox: the durable callback outbox; resumed at start.
        sender: makes the signed HTTP requests.
        policy: retry, breaker, concurrency and batching settings.
        endpoint_for: ``event -> (url, secret) | None``; asked at enqueue and at each send.
        now: wall clock (Unix seconds); tests pass ``trio.current_time``.
        rand: uniform [0, 1) source for retry jitter.
        stats: counters to update, if the caller wants them.
        doorbell: rung by other writers of ``outbox`` after their commit (MO pushes), so
            their entries go out at once instead of at the next ``policy.poll_interval``.
    """
    delivery = _Delivery(outbox, sender, policy, endpoint_for, now, rand, stats or NotifierStats())
    async with inbox, trio.open_nursery() as nursery:
        with (doorbell or Doorbell()).listening(delivery.poke):
            await nursery.start(delivery.run)
            task_status.started()
            async for batch in inbox:
                events = decode_batch_of(StatusEvent, batch)
                while True:  # whatever else waits goes into the same outbox write
                    try:
                        events += decode_batch_of(StatusEvent, inbox.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await delivery.enqueue(events)
            await delivery.drain()
            nursery.cancel_scope.cancel()


class _Delivery:
    """The scheduling loop, the request tasks and the acker of one notifier.

    Entries read from the outbox wait in ``_ready`` (per target, in due order) until their
    endpoint has a free slot; every key read stays in ``_held`` until its settlement is
    written, so a refill never reads it twice. A scheduling pass therefore costs what it starts,
    and the outbox is read again only when something may have changed there (``_dirty``: an
    enqueue, a settlement, a due time reached, the poll interval) and fewer than half of
    ``scan_limit`` entries are waiting.
    """

    def __init__(
        self,
        outbox: CallbackOutbox,
        sender: CallbackSender,
        policy: RetryPolicy,
        endpoint_for: EndpointFor,
        now: Callable[[], float],
        rand: Callable[[], float],
        stats: NotifierStats,
    ) -> None:
        self._outbox, self._sender, self._policy = outbox, sender, policy
        self._endpoint_for, self._now, self._rand, self.stats = endpoint_for, now, rand, stats
        self._endpoints = Endpoints(policy)
        self._held: set[bytes] = set()  # outbox keys read and not yet settled
        self._ready: dict[tuple[str, bytes], deque[CallbackEntry]] = {}
        self._waiting = 0  # entries in _ready
        self._dirty = True  # the outbox may hold due entries not read yet
        self._next_due = math.inf  # due time of the first entry not due at the last read
        self._full_read_at = -math.inf
        self._requests = 0
        self._partial: set[str] = set()  # endpoints with an under-full request in flight
        self._wake = trio.Event()
        self._settled = trio.Event()
        # Bounded by max_in_flight: each request task sends exactly one item.
        self._results_in, self._results_out = trio.open_memory_channel[
            "tuple[list[bytes], list[Settlement]]"
        ](policy.max_in_flight)

    async def enqueue(self, events: list[StatusEvent]) -> None:
        wanted = [e for e in events if self._endpoint_for(e) is not None]
        self.stats.dropped += len(events) - len(wanted)
        if wanted:
            self.stats.enqueued += await self._outbox.enqueue(wanted, now=self._now())
            self._dirty = True
        self._wake.set()

    def poke(self) -> None:
        """Someone else wrote to the outbox: read it on the next pass, which starts now."""
        self._dirty = True
        self._wake.set()

    async def drain(self) -> None:
        """Deliver what is due for up to ``drain_timeout``; pending retries stay in the outbox."""
        with trio.move_on_after(self._policy.drain_timeout):
            while self._held or self._outbox.due(self._now(), limit=1, skip=self._held):
                with trio.move_on_after(0.05):
                    await self._settled.wait()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._acker)
            task_status.started()
            while True:
                self._wake = trio.Event()
                wait = min(await self._schedule(nursery), self._policy.poll_interval)
                with trio.move_on_after(wait):
                    await self._wake.wait()

    async def _schedule(self, nursery: trio.Nursery) -> float:
        """One pass: read the outbox if needed, start requests, settle what needs no request.

        Returns how long to sleep unless woken (by an enqueue or a finished request).
        """
        t = self._now()
        settlements: list[Settlement] = []
        if t - self._full_read_at >= self._policy.poll_interval or t >= self._next_due:
            self._dirty = True  # poll: entries written by someone else (a replay) show up
        if self._dirty and self._waiting < max(1, self._policy.scan_limit // 2):
            self._read(t, settlements)
        blocked = self._start_ready(nursery, settlements, t)
        if settlements:
            await self._record(settlements, t)
            self._held.difference_update(s.entry.key for s in settlements)
            self._dirty = True
        if blocked:
            return math.inf  # a finished request wakes us
        if self._dirty:
            return 0.0
        return max(0.001, min(self._next_due, self._full_read_at + self._policy.poll_interval)
                   - self._now())  # 1 ms floor: never spin on an entry that is not due yet

    def _read(self, t: float, settlements: list[Settlement]) -> None:
        """Move due entries from the outbox into ``_ready`` (up to ``scan_limit`` waiting)."""
        limit = self._policy.scan_limit - self._waiting
        entries = self._outbox.due(t, limit=limit, skip=self._held)
        self._dirty = len(entries) >= limit  # more may be due behind these
        if not self._dirty:
            upcoming = self._outbox.next_due_after(t)
            self._next_due = math.inf if upcoming is None else upcoming
            self._full_read_at = t
        for entry in entries:
            self._held.add(entry.key)
            target = self._endpoint_for(entry.event)
            if target is None:
                settlements.append(Settlement(entry, "dropped"))
            elif self._policy.expired(first_attempt_at=entry.first_attempt_at, now=t):
                # Also for never-tried entries: a breaker open for a day postpones without trying.
                settlements.append(Settlement(entry, "dead", error="retry window over"))
            else:
                queue = self._ready.get(target)
                if queue is None:
                    queue = self._ready[target] = deque()
                queue.append(entry)
                self._waiting += 1

    def _start_ready(self, nursery: trio.Nursery, settlements: list[Settlement], t: float) -> bool:
        """Start requests for waiting entries; True when a cap left some of them waiting."""
        blocked = False
        size = self._policy.batch_size
        for target in list(self._ready):
            queue = self._ready[target]
            url, secret = target
            endpoint = endpoint_of(url)
            while queue:
                if self._requests >= self._policy.max_in_flight:
                    return True
                partial = len(queue) < size
                if partial and endpoint in self._partial:
                    blocked = True  # the under-full request in flight wakes us when it ends
                    break
                if not self._endpoints.acquire(endpoint, t):
                    breaker = self._endpoints.get(endpoint).breaker
                    if breaker.state is not BreakerState.OPEN:
                        blocked = True  # cap reached or half-open probe running: a result wakes us
                        break
                    # All at the cooldown's end: the first becomes the half-open probe, the rest
                    # wait for its outcome (blocked, no spin) instead of trickling in one by one.
                    at = breaker.retry_at(t)
                    settlements += [Settlement(e, "postpone", at=at) for e in queue]
                    self._waiting -= len(queue)
                    queue.clear()
                    break
                chunk = [queue.popleft() for _ in range(min(size, len(queue)))]
                self._waiting -= len(chunk)
                self._requests += 1
                if partial and size > 1:
                    self._partial.add(endpoint)
                nursery.start_soon(self._send, url, secret, endpoint, chunk,
                                   partial and size > 1)
            if not queue:
                del self._ready[target]
        return blocked

    async def _send(self, url: str, secret: bytes, endpoint: str, chunk: list[CallbackEntry],
                    partial: bool = False) -> None:
        self.stats.requests += 1
        self.stats.in_flight += 1
        try:
            with trio.move_on_after(self._policy.request_timeout) as scope:
                result = await self._sender.send(url, secret, [e.event for e in chunk])
        finally:
            if partial:
                self._partial.discard(endpoint)
        if scope.cancelled_caught:
            result = CallbackResult(ok=False, error="timeout")
        t = self._now()
        breaker = self._endpoints.get(endpoint).breaker
        was_open = breaker.state is BreakerState.OPEN
        self._endpoints.release(endpoint, ok=result.ok or result.permanent, now=t)
        self._requests -= 1
        self.stats.in_flight -= 1
        _count_request(result.ok, chunk, t)
        self._wake.set()  # a slot is free; its entries stay in _held until settled
        if not result.ok:
            logger.debug("callback to %s failed: %s", endpoint, result.error or result.status)
            if breaker.state is BreakerState.OPEN and not was_open:
                logger.warning("callbacks to %s paused for %.0f s after repeated failures (%s)",
                               endpoint, breaker.current_cooldown, result.error or result.status)
        if result.ok:  # the common case, without a decide() call per event
            decided = [Settlement(e, "delivered") for e in chunk]
        else:
            decided = [
                decide(e, result, policy=self._policy, now=t, rand=self._rand()) for e in chunk
            ]
        await self._results_in.send(([e.key for e in chunk], decided))

    async def _acker(self) -> None:
        """Settle finished requests: everything waiting goes into one outbox write."""
        async with self._results_out:
            async for keys, settlements in self._results_out:
                while True:
                    try:
                        more_keys, more = self._results_out.receive_nowait()
                    except trio.WouldBlock:
                        break
                    keys.extend(more_keys)
                    settlements.extend(more)
                await self._record(settlements, self._now())
                self._held.difference_update(keys)
                self._dirty = True  # retries rescheduled, next seqs released
                self._settled.set()
                self._settled = trio.Event()
                self._wake.set()

    async def _record(self, settlements: Sequence[Settlement], t: float) -> None:
        await self._outbox.settle(settlements, now=t)
        for s in settlements:
            match s.outcome:
                case "delivered":
                    self.stats.delivered += 1
                case "retry":
                    self.stats.retried += 1
                case "postpone":
                    self.stats.postponed += 1
                case "dead":
                    self.stats.dead += 1
                    logger.warning("callback dead-lettered: %s", s.error, extra={"msg_id": s.entry.event.msg_id})
                case "dropped":
                    self.stats.dropped += 1


_REQUESTS = {r: _metrics.CALLBACK_REQUESTS.labels(r) for r in ("ok", "failed")}
_EVENTS = {r: _metrics.CALLBACK_EVENTS.labels(r) for r in ("ok", "failed")}


def _count_request(ok: bool, chunk: Sequence[CallbackEntry], t: float) -> None:
    """Prometheus: one callback request, its events, and (when answered 2xx) their lag."""
    result = "ok" if ok else "failed"
    _REQUESTS[result].inc()
    _EVENTS[result].inc(len(chunk))
    if ok:
        observe_many(_metrics.CALLBACK_LAG, [max(0.0, t - e.event.at) for e in chunk])


class _Histogram(Protocol):
    def observe(self, amount: float) -> None: ...


def observe_many(histogram: _Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every ``v``, with one lock per bucket touched.

    prometheus-client has no batch observe, and ``observe`` takes two locks per value (sum
    and bucket): about 0.8 µs per event of a 100-event request. This adds the values to the
    sum at once and counts each bucket once, through the client's own bucket values (the
    same ones ``observe`` increments: upper bounds ascending, the last +Inf, non-cumulative;
    prometheus-client 0.x). A histogram without them (another client version, a labelled
    parent) is observed value by value. A test checks both ways give the same samples.
    """
    if len(values) < 2:  # one lock per bucket touched saves nothing (one request per event)
        for v in values:
            histogram.observe(v)
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if (bounds is None or buckets is None or total is None or len(bounds) != len(buckets)
            or any(math.isnan(v) for v in values)):  # observe() counts NaN in no bucket
        for v in values:
            histogram.observe(v)
        return
    total.inc(sum(values))
    for index, n in Counter(bisect_left(bounds, v) for v in values).items():
        buckets[index].inc(n)
