"""The notifier's acker: what becomes of a callback after a request, and the write that says so.

:func:`decide` is the pure decision for one entry after a request: delivered, retried at a
jittered back-off time, or dead-lettered (permanent failure, retry window over).
:class:`_Acker` is the settling layer of the notifier's delivery object
(``actors._notifier_delivery._Delivery``): sender tasks hand it their decisions
(:meth:`_Acker._decide`: a list and an event, no channel), and its one task records everything
decided since its last write in ONE outbox write, then counts it (``NotifierStats``, and the
Prometheus counters and lag histogram, fed through :func:`observe_many`).

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import trio

from actors import _metrics
from actors.callbacks_policy import RetryPolicy
from actors.ports import CallbackEntry, CallbackOutbox, CallbackResult, Settlement

if TYPE_CHECKING:
    from actors.notifier import NotifierStats

logger = logging.getLogger("actors.notifier")  # the actor's name, as before the split


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


class _Acker:
    """Settling: the bottom layer of ``_Delivery``, which sets every attribute named here in its
    ``__init__`` (the annotations are what this layer reads and writes)."""

    stats: NotifierStats
    _outbox: CallbackOutbox
    _now: Callable[[], float]
    _held: set[bytes]
    _dirty: bool
    _wake: trio.Event
    _settled: trio.Event
    _decided: list[Settlement]  # waiting for the acker
    _decided_event: trio.Event
    _tally: list[int]  # requests ok, requests failed, events ok, events failed
    _lags: list[float]

    def _decide(self, settlements: list[Settlement]) -> None:
        """Hand ``settlements`` to the acker."""
        self._decided += settlements
        self._decided_event.set()

    async def _acker(self) -> None:
        """Settle what the sender tasks decided: everything waiting goes into one outbox write."""
        while True:
            await self._decided_event.wait()
            self._decided_event = trio.Event()
            settlements, self._decided = self._decided, []
            self._flush_metrics()
            await self._record(settlements, self._now())
            self._held.difference_update([s.entry.key for s in settlements])
            self._dirty = True  # retries rescheduled, next seqs released
            self._settled.set()
            self._settled = trio.Event()
            self._wake.set()

    def _flush_metrics(self) -> None:
        """Prometheus: the requests, events and (answered 2xx) lags tallied since the last."""
        ok_requests, failed_requests, ok_events, failed_events = self._tally
        self._tally = [0, 0, 0, 0]
        lags, self._lags = self._lags, []
        if ok_requests:
            _REQUESTS["ok"].inc(ok_requests)
            _EVENTS["ok"].inc(ok_events)
        if failed_requests:
            _REQUESTS["failed"].inc(failed_requests)
            _EVENTS["failed"].inc(failed_events)
        if lags:
            observe_many(_metrics.CALLBACK_LAG, [max(0.0, lag) for lag in lags])

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
