"""The notifier's sender tasks: each takes a request's worth of entries from its endpoint's lane,
sends it under the request deadline and hands the decisions to the acker.

:class:`_Lane` is one endpoint's ready entries and the tasks serving it; :class:`_Senders` is
the sender-task layer of the notifier's delivery object (``actors._notifier_delivery``), over
the acker layer (``actors._notifier_acker``). How the tasks are started, parked, retired and
given deadlines is told in ``_Delivery``'s docstring; the breaker is asked before every request
(``callbacks_policy.Endpoints``).

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from actors._notifier_acker import _Acker, decide
from actors.callbacks_policy import BreakerState, Endpoints, RetryPolicy
from actors.ports import CallbackEntry, CallbackResult, CallbackSender, Settlement

logger = logging.getLogger("actors.notifier")  # the actor's name, as before the split

_LINGER: Final = 5.0
"""Seconds an idle sender task waits for more work before it ends."""

_DEADLINE_SLACK: Final = 0.25
"""A request's deadline is ``request_timeout`` plus at most this (or 5 % of it if less)."""

_new = tuple.__new__  # Settlement(e, "delivered") without the Python-level __new__: half the cost

_TIMED_OUT: Final = CallbackResult(ok=False, error="timeout")


@dataclass(slots=True, eq=False)
class _Lane:
    """One endpoint (scheme://host:port): its ready entries and the sender tasks serving it.

    ``queues`` holds the entries read from the outbox per target ``(url, secret)`` (a request
    goes to one URL with one secret), in due order, never an empty deque. Idle sender tasks
    park in ``lot``; ``retire`` asks that many of them to end (the overall cap wants their
    slots for another endpoint).
    """

    endpoint: str
    queues: dict[tuple[str, bytes], deque[CallbackEntry]] = field(default_factory=dict)
    waiting: int = 0
    workers: int = 0
    retire: int = 0
    partial: bool = False  # an under-full request of this endpoint is in flight
    lot: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)



class _Senders(_Acker):
    """The sender tasks: the middle layer of ``_Delivery``, which sets every attribute named
    here in its ``__init__`` (the annotations are what this layer reads and writes)."""

    _sender: CallbackSender
    _policy: RetryPolicy
    _rand: Callable[[], float]
    _endpoints: Endpoints
    _lanes: dict[str, _Lane]
    _waiting: int  # entries in the lanes
    _workers: int  # sender tasks alive

    async def _worker(self, lane: _Lane) -> None:
        """Send requests for ``lane`` until it has been empty for ``_LINGER`` seconds."""
        timeout = self._policy.request_timeout
        slack = min(_DEADLINE_SLACK, timeout / 20)
        job: tuple[tuple[str, bytes], list[CallbackEntry], bool] | None = None
        try:
            while True:
                with trio.CancelScope() as scope:  # its deadline is moved, it is rarely replaced
                    while True:
                        job = self._take(lane)
                        if job is None:
                            if lane.retire:
                                lane.retire -= 1
                                return
                            scope.deadline = trio.current_time() + _LINGER
                            await lane.lot.park()
                            if scope.cancel_called:  # the linger ran out as we were woken
                                break
                            continue
                        (url, secret), chunk, _partial = job
                        # Moved only when it would give this request less than ``timeout``
                        # or more than ``timeout + slack`` (a trio deadline change costs
                        # more than the rest of a request's bookkeeping together).
                        start = trio.current_time()
                        if not start + timeout <= scope.deadline <= start + timeout + slack:
                            scope.deadline = start + timeout + slack
                        result = await self._sender.send(url, secret, [e.event for e in chunk])
                        self._finish(lane, job, result)
                        job = None
                        if scope.cancel_called:  # the deadline passed as the answer came
                            break
                if job is not None:  # the request's deadline passed
                    self._finish(lane, job, _TIMED_OUT)
                    job = None
                elif not lane.waiting and scope.cancel_called:
                    return  # idle for _LINGER
        finally:
            lane.workers -= 1
            self._workers -= 1
            if job is not None:  # cancelled with a request in flight (shutdown)
                lane.partial = lane.partial and not job[2]
            if not lane.workers and not lane.waiting and self._lanes.get(lane.endpoint) is lane:
                del self._lanes[lane.endpoint]
            self._wake.set()  # a slot is free: a lane waiting for one gets it

    def _take(self, lane: _Lane) -> tuple[tuple[str, bytes], list[CallbackEntry], bool] | None:
        """The next request's entries of ``lane``, if the partial rule and the breaker allow."""
        size = self._policy.batch_size
        for target, queue in lane.queues.items():
            partial = len(queue) < size
            if partial and lane.partial:
                continue  # one under-full request per endpoint in flight (batched mode)
            t = self._now()
            if not self._endpoints.acquire(lane.endpoint, t):
                breaker = self._endpoints.get(lane.endpoint).breaker
                if breaker.state is BreakerState.OPEN:
                    # All at the cooldown's end: the first becomes the half-open probe, the rest
                    # wait for its outcome instead of trickling in one by one.
                    self._postpone(lane, breaker.retry_at(t))
                return None  # else a half-open probe runs: its task takes the rest after it
            if size == 1:
                chunk = [queue.popleft()]
            else:
                chunk = [queue.popleft() for _ in range(min(size, len(queue)))]
            if not queue:
                del lane.queues[target]
            lane.waiting -= len(chunk)
            self._waiting -= len(chunk)
            partial = partial and size > 1
            if partial:
                lane.partial = True
            self.stats.requests += 1
            self.stats.in_flight += 1
            return target, chunk, partial
        return None

    def _postpone(self, lane: _Lane, at: float) -> None:
        postponed = [Settlement(e, "postpone", at=at) for q in lane.queues.values() for e in q]
        lane.queues.clear()
        lane.waiting -= len(postponed)
        self._waiting -= len(postponed)
        self._decide(postponed)

    def _finish(self, lane: _Lane, job: tuple[tuple[str, bytes], list[CallbackEntry], bool],
                result: CallbackResult) -> None:
        """Feed the breaker, count, and hand the decisions about ``job`` to the acker."""
        _target, chunk, partial = job
        if partial:
            lane.partial = False
        t = self._now()
        self.stats.in_flight -= 1
        if result.ok:  # the common case, without a decide() call per event
            self._endpoints.release(lane.endpoint, ok=True, now=t)
            self._tally[0] += 1
            self._tally[2] += len(chunk)
            self._lags += [t - e.event.at for e in chunk]
            self._decide([_new(Settlement, (e, "delivered", 0.0, "")) for e in chunk])
        else:
            breaker = self._endpoints.get(lane.endpoint).breaker
            was_open = breaker.state is BreakerState.OPEN
            self._endpoints.release(lane.endpoint, ok=result.permanent, now=t)
            self._tally[1] += 1
            self._tally[3] += len(chunk)
            logger.debug("callback to %s failed: %s", lane.endpoint, result.error or result.status)
            if breaker.state is BreakerState.OPEN and not was_open:
                logger.warning("callbacks to %s paused for %.0f s after repeated failures (%s)",
                               lane.endpoint, breaker.current_cooldown,
                               result.error or result.status)
            self._decide([decide(e, result, policy=self._policy, now=t, rand=self._rand())
                          for e in chunk])
        # More than this task's next request waits (a probe succeeded, a partial request
        # ended): wake parked ones for it.
        if lane.lot and lane.waiting > self._policy.batch_size:
            lane.lot.unpark(count=(lane.waiting - 1) // self._policy.batch_size)
