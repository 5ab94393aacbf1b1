"""The notifier's delivery: the scheduling loop that reads due outbox entries into lanes.

:class:`_Delivery` is the object ``actors.notifier.run`` drives: it holds all the state of one
notifier's delivery, and its scheduling loop is the top of three layers (sender tasks in
``actors._notifier_senders``, settling in ``actors._notifier_acker``).

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from actors._notifier_senders import _Lane, _Senders
from actors.callbacks_policy import Endpoints, RetryPolicy, endpoint_of
from actors.messages import StatusEvent
from actors.ports import CallbackOutbox, CallbackSender, Settlement

if TYPE_CHECKING:
    from actors.notifier import EndpointFor, NotifierStats


class _Delivery(_Senders):
    """The scheduling loop, the sender tasks and the acker of one notifier.

    Entries read from the outbox wait in their endpoint's :class:`_Lane` until one of its
    sender tasks takes them; every key read stays in ``_held`` until its settlement is
    written, so a refill never reads it twice. The outbox is read again only when something
    may have changed there (``_dirty``: an enqueue, a settlement, a due time reached, the poll
    interval) and fewer than half of ``scan_limit`` entries are waiting.

    A sender task is long-lived: it takes a request's worth of entries from its lane, sends
    them under the request deadline (one cancel scope per task, whose deadline is moved only
    when it falls outside ``[timeout, timeout + slack]`` from the request's start: not a
    scope per request, nor two deadline changes per request), hands the decisions to the
    acker (a list and an event, no channel) and takes the next, until its lane has been
    empty for ``_LINGER`` seconds. This replaced a task, a cancel scope and a results-channel
    round trip per request (bench/RESULTS_notifier.md). An endpoint
    has at most ``per_endpoint`` of them and the notifier at most ``max_in_flight``, each
    with at most one request in flight, so those caps hold without counting requests; the
    breaker is asked before every request. The scheduling loop starts or wakes sender tasks
    when it puts entries in a lane; a finished request does not wake it.
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
        self._lanes: dict[str, _Lane] = {}
        self._waiting = 0  # entries in the lanes
        self._workers = 0  # sender tasks alive
        self._starved: dict[str, _Lane] = {}  # lanes that wait for a slot under max_in_flight
        self._dirty = True  # the outbox may hold due entries not read yet
        self._next_due = math.inf  # due time of the first entry not due at the last read
        self._full_read_at = -math.inf
        self._wake = trio.Event()
        self._settled = trio.Event()
        self._decided: list[Settlement] = []  # waiting for the acker
        self._decided_event = trio.Event()
        # Prometheus tallies, flushed by the acker (one inc per counter per settle write)
        self._tally = [0, 0, 0, 0]  # requests ok, requests failed, events ok, events failed
        self._lags: list[float] = []
        self._nursery: trio.Nursery | None = None

    async def enqueue(self, events: Sequence[StatusEvent]) -> None:
        wanted: Sequence[StatusEvent] = [e for e in events if self._endpoint_for(e) is not None]
        if len(wanted) == len(events):
            wanted = events  # as it came: a WireBatch keeps its bytes for the write
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
            self._nursery = nursery
            nursery.start_soon(self._acker)
            task_status.started()
            while True:
                self._wake = trio.Event()
                wait = min(self._schedule(), self._policy.poll_interval)
                with trio.move_on_after(wait):
                    await self._wake.wait()

    # ------------------------------------------------------------------ scheduling loop

    def _schedule(self) -> float:
        """One pass: read the outbox if needed and put sender tasks on what was read.

        Returns how long to sleep unless woken (by an enqueue, a settlement, a poke).
        """
        t = self._now()
        if t - self._full_read_at >= self._policy.poll_interval or t >= self._next_due:
            self._dirty = True  # poll: entries written by someone else (a replay) show up
        if self._starved:
            starved, self._starved = self._starved, {}
            for lane in starved.values():
                self._staff(lane)
        if self._dirty:
            if self._waiting >= max(1, self._policy.scan_limit // 2):
                return math.inf  # enough read ahead: the next settlement wakes us
            self._read(t)
            if self._dirty:
                return 0.0
        return max(0.001, min(self._next_due, self._full_read_at + self._policy.poll_interval)
                   - self._now())  # 1 ms floor: never spin on an entry that is not due yet

    def _read(self, t: float) -> None:
        """Move due entries from the outbox into the lanes (up to ``scan_limit`` waiting)."""
        limit = self._policy.scan_limit - self._waiting
        entries = self._outbox.due(t, limit=limit, skip=self._held)
        self._dirty = len(entries) >= limit  # more may be due behind these
        if not self._dirty:
            upcoming = self._outbox.next_due_after(t)
            self._next_due = math.inf if upcoming is None else upcoming
            self._full_read_at = t
        touched: dict[str, _Lane] = {}
        settlements: list[Settlement] = []
        lanes, held, endpoint_for = self._lanes, self._held, self._endpoint_for
        max_age = self._policy.max_age  # RetryPolicy.expired, inline
        for entry in entries:
            held.add(entry.key)
            target = endpoint_for(entry.event)
            if target is None:
                settlements.append(Settlement(entry, "dropped"))
            elif t > entry.first_attempt_at + max_age:
                # Also for never-tried entries: a breaker open for a day postpones without trying.
                settlements.append(Settlement(entry, "dead", error="retry window over"))
            else:
                endpoint = endpoint_of(target[0])
                lane = lanes.get(endpoint)
                if lane is None:
                    lane = lanes[endpoint] = _Lane(endpoint)
                queue = lane.queues.get(target)
                if queue is None:
                    queue = lane.queues[target] = deque()
                queue.append(entry)
                lane.waiting += 1
                touched[endpoint] = lane
        self._waiting += len(entries) - len(settlements)
        if settlements:
            self._decide(settlements)
        for lane in touched.values():
            self._staff(lane)

    def _staff(self, lane: _Lane) -> None:
        """Wake idle sender tasks of ``lane``, or start new ones, for the requests waiting."""
        size = self._policy.batch_size
        if lane.partial and lane.waiting < size:
            return  # the under-full request's task takes them when its answer is in
        need = -(-lane.waiting // size)  # requests' worth waiting
        if lane.lot:
            need -= len(lane.lot.unpark(count=need))
        spawn = min(need, self._policy.per_endpoint - lane.workers)
        while spawn > 0:
            if self._workers >= self._policy.max_in_flight:
                self._starved[lane.endpoint] = lane
                self._retire_idle(spawn)
                return  # a task that ends wakes the loop, which staffs the lane again
            assert self._nursery is not None
            lane.workers += 1
            self._workers += 1
            spawn -= 1
            self._nursery.start_soon(self._worker, lane)

    def _retire_idle(self, count: int) -> None:
        """The overall cap is reached: ask up to ``count`` idle tasks of idle lanes to end."""
        for lane in self._lanes.values():
            idle = len(lane.lot) - lane.retire
            if idle > 0 and not lane.waiting:
                n = min(idle, count)
                lane.retire += n
                lane.lot.unpark(count=n)
                count -= n
                if not count:
                    return
