"""The shaper: decides, for each message and instant, release now, hold, or finish NOT_SENT.

Theory of operation. Messages are grouped into *lanes*: a lane is every message that hits
the same buckets, windows and campaign (same account, sender, connector, campaign and matched
destination prefixes). A lane is FIFO, so one blocked key holds only its own lane, never
others. A message goes when, at ``now``: its send windows are open, its campaign slice and
campaign pace allow one more, and *every* bucket of its lane holds its segment count (the
tightest wins; nothing is taken unless all can be). A lane whose head cannot go is put on a
timer heap at the earliest instant it could, and stands in line for the bucket that held it
back (the first in line is owed its segments: see ``take_all``), so lanes sharing a bucket
are served in turn and long messages are not starved. A held message with a deadline sits on a
deadline heap and ends NOT_SENT/expired when that passes. The no-re-contact check runs at the
moment of release, against the store (``RecentContacts``) and the numbers released here.
Opt-outs (``OptOuts``) are checked first, when a message is admitted, before anything else
is judged or charged (an opted-out number ends NOT_SENT/opted_out), and once more when a
held message comes to the head of its lane, since a STOP may have come in meanwhile.

Messages come as rows (``_shaping_rows``: wire form, a fifth of the cost of message objects).
The per-key state (accounts, connectors, campaigns, buckets, lanes) is built and forgotten by
the :class:`~actors._shaping_lanes.LaneBook` the shaper extends; this module holds the
decisions: admit, poll, release, hold, hand back to the durable schedule, finish.

Must not import: trio, lmdb, httpx, gateway, adapters. Pure; time is an argument.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from itertools import count
from typing import Any, Final

from actors import messages
from actors._shaping_bucket import NEVER, take_all
from actors._shaping_lanes import LaneBook
from actors._shaping_rows import (
    ACCEPTED_AT,
    ACCOUNT,
    MSG_ID,
    NOT_AFTER,
    PARTS,
    SEND_AT,
    TO,
    Row,
    decode_rows,
    rows_from_batch,
)
from actors._shaping_rules import ShapingRules
from actors._shaping_state import Lane, reserve, unreserve
from actors.messages import MessageFinished, State
from actors.ports import OptOuts, RecentContacts

__all__ = ["OPTED_OUT", "SWEEP_EVERY", "SWEEP_LANES", "Row", "Shaper", "decode_rows",
           "rows_from_batch"]

logger = logging.getLogger(__name__)

SWEEP_EVERY: Final = 60.0  # seconds between sweeps of idle lanes, full buckets, old contacts
SWEEP_LANES: Final = 20_000  # ...or as soon as this many lanes exist
OPTED_OUT: Final = ("opted_out", "the recipient opted out")  # code, reason


class Shaper(LaneBook):
    """All shaping state of one limiter. Feed it with :meth:`admit` and :meth:`poll`.

    Outputs accumulate in ``released`` (rows to send on), ``finished`` (MessageFinished
    rows) and ``deferred`` (rows handed back to the durable schedule, ``send_at`` set to when
    they may go: a window or campaign slice more than ``defer_beyond`` seconds away, a
    place in its lane's queue more than ``queue_beyond`` seconds from the front, or a route
    with no connector up (``route_wait``: back when it says), so the store rather than memory
    keeps them); the caller empties all three after each call.
    """

    def __init__(self, rules: ShapingRules, contacts: RecentContacts | None = None, *,
                 defer_beyond: float = NEVER, queue_beyond: float = NEVER,
                 optouts: OptOuts | None = None,
                 route_wait: Callable[[str, float], float] | None = None) -> None:
        super().__init__(rules)
        self.defer_beyond = defer_beyond
        self.queue_beyond = queue_beyond
        # Only with a schedule to hand messages back to: without one, the dispatcher waits.
        self._route_wait = route_wait if defer_beyond != NEVER else None
        self.deferred: list[Row] = []
        self.contacts = contacts
        self._opted_out = None if optouts is None else optouts.opted_out
        self.max_held = rules.max_held
        self.released: list[Row] = []
        self.finished: list[Row] = []
        self.held = 0
        self._timers: list[tuple[float, int, Lane]] = []
        self._deadlines: list[tuple[float, int, list[Any]]] = []
        self._stale = 0
        self._seq = count()
        self._sent: dict[tuple[str, str], float] = {}  # (account, number) -> released at
        self._next_sweep = -NEVER

    # -- inputs ----------------------------------------------------------------------------

    def admit(self, row: Row, now: float) -> None:
        """Take one message: finish it, release it or hold it."""
        if self._opted_out is not None and self._opted_out(row[ACCOUNT], row[TO]):
            self._finish(row, *OPTED_OUT, now)  # before any bucket, window or slice
            return
        acct = self._accounts.get(row[ACCOUNT]) or self._account(row[ACCOUNT])
        deadline = row[NOT_AFTER]
        if acct.validity:
            v = row[ACCEPTED_AT] + acct.validity
            if not deadline or v < deadline:
                deadline = v
        if deadline and now >= deadline:
            self._finish(row, "expired", "deadline passed before sending", now)
            return
        if self._route_wait is not None and (down := self._route_wait(row[TO], now)):
            # No connector of its route is up: back to the durable schedule for a while,
            # not on to the dispatcher, where it would keep its slot in the scheduler pump's
            # in-flight set and, with enough of them, stop every other route too.
            self._defer(row, now + down, deadline)
            return
        try:
            lane = self._lane(row, acct, now)
        except Exception:  # the gateway's route function failed: one message, not the actor
            logger.exception("route failed", extra={"msg_id": row[MSG_ID]})
            self._finish(row, "routing_failed", "no connector for the destination", now)
            return
        if lane.queue:
            if not self._queue_too_long(lane, row, deadline, now):
                self._hold(lane, row, deadline)
            return
        w = self._try(lane, row, deadline, now)
        if w:
            self._hold(lane, row, deadline)
            self._schedule(lane, now + w)

    def poll(self, now: float) -> None:
        """Expire what passed its deadline and release what became due by ``now``."""
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            entry = heapq.heappop(dl)[2]
            if entry[0] is None:
                self._stale -= 1
                continue
            self._finish(entry[0], "expired", "deadline passed while waiting", now)
            entry[0] = None
            self.held -= 1
        for conn in self._connectors.values():
            conn.measure(now)
            if conn.temporary and (done := conn.recovered(now)) is not None:
                for lane in self._lanes.values():
                    if lane.conn is conn:
                        lane.buckets = tuple(b for b in lane.buckets if b is not done)
        timers = self._timers
        while timers and timers[0][0] <= now:
            lane = heapq.heappop(timers)[2]
            lane.scheduled = False
            self._drain(lane, now)
        if now >= self._next_sweep or len(self._lanes) > SWEEP_LANES:
            self._sweep(now)

    def throttled(self, connector: str, now: float) -> bool:
        """A carrier answered "throttled" on ``connector``: lower its rate.

        Returns False when nothing changed: the answer fell in the cooldown of an earlier
        one, or the connector has no limit (and ``adapt_without_limit`` is off; when on, it
        gets a temporary limit from its measured rate).
        """
        if self._single:
            # Without a route every message is charged to "default": a throttle from any
            # connector can only be answered there (give ``route`` to adapt per connector).
            connector = "default"
        conn = self._connectors.get(connector) or self._connector(connector, now)
        if conn.bucket is not None:
            return conn.bucket.throttled(now)
        if not conn.rules.adapt_without_limit:
            return False
        temporary = conn.install_temporary(now)
        for lane in self._lanes.values():
            if lane.conn is conn:
                lane.buckets = (*lane.buckets, temporary)
        return True

    def next_wake(self) -> float:
        """The earliest instant at which :meth:`poll` may have something to do (inf: none)."""
        t = self._timers[0][0] if self._timers else NEVER
        if self._deadlines and self._deadlines[0][0] < t:
            t = self._deadlines[0][0]
        return t

    def connector_rate(self, connector: str, now: float) -> float:
        """The rate in force on ``connector`` (segments/s; inf when it has no limit)."""
        conn = self._connectors.get(connector) or self._connector(connector, now)
        if conn.bucket is None:
            return NEVER
        return conn.bucket.base * conn.bucket.factor(now)

    def statistics(self) -> dict[str, int]:
        """Cheap snapshot: held messages, lanes, per-key buckets, remembered contacts."""
        return {"held": self.held, "lanes": len(self._lanes), "buckets": len(self._buckets),
                "contacts": len(self._sent)}

    # -- decisions -------------------------------------------------------------------------

    def _try(self, lane: Lane, row: Row, deadline: float, now: float) -> float:
        """Release, finish or defer ``row`` now (0.0), or say how long its lane must wait."""
        if lane.ckey and self._paused(lane.ckey):
            return self._pause(row, deadline, now)
        if lane.timed:
            w = 0.0
            for gate in lane.gates:
                w = gate.wait(now)
                if w:
                    break
            camp = lane.campaign
            if not w and camp is not None:
                w = camp.wait(now)
            if w:
                if w > self.defer_beyond and (not deadline or deadline > now + self.defer_beyond):
                    self._defer(row, now + w, deadline)
                    return 0.0
                return w
        else:
            camp = None
        n = row[PARTS] or 1
        if lane.recontact and self._recently_contacted(row, lane.recontact, now):
            self._finish(row, "recently_contacted", "number contacted within the window", now)
            return 0.0
        w, binding = take_all(lane.buckets, n, now, lane)
        if w:
            reserve(lane, binding, n)
            return w
        if lane.reserving is not None:
            unreserve(lane)
        if lane.recontact:
            key = (row[ACCOUNT], row[TO])
            self._sent.pop(key, None)  # re-insert at the end: the dict stays in time order
            self._sent[key] = now
        lane.conn.released += n
        if camp is not None:
            camp.charge(now)
        self.released.append(row)
        return 0.0

    def _paused(self, ckey: str) -> bool:
        rules = self._camp_rules.get(ckey)
        return rules is not None and rules.paused

    def _pause(self, row: Row, deadline: float, now: float) -> float:
        """A paused campaign's message: back to the durable schedule for ``pause_recheck``
        seconds (never held here: a paused list of any size must not fill ``max_held``), or,
        without a schedule to hand it to, held that long. Its deadline still applies."""
        recheck = self.rules.pause_recheck
        if self.defer_beyond != NEVER:
            self._defer(row, now + recheck, deadline)
            return 0.0
        return recheck

    def _recently_contacted(self, row: Row, window: float, now: float) -> bool:
        """Whether the store or this limiter sent to the number within ``window`` seconds.

        Judged when the message has passed its windows and campaign slice, just before its
        buckets are tried (a bucket wait is seconds; re-contact windows are hours).
        """
        key = (row[ACCOUNT], row[TO])
        last = self._sent.get(key)
        if self.contacts is not None:
            stored = self.contacts.last_contacted(key[0], key[1])
            if stored is not None and (last is None or stored > last):
                last = stored
        return last is not None and now - last < window

    def _drain(self, lane: Lane, now: float) -> None:
        q = lane.queue
        while q:
            entry = q[0]
            if entry[0] is not None:
                row = entry[0]
                if self._opted_out is not None and self._opted_out(row[ACCOUNT], row[TO]):
                    self._finish(row, *OPTED_OUT, now)  # a STOP came in while it was held
                else:
                    w = self._try(lane, row, entry[1], now)
                    if w:
                        self._schedule(lane, now + w)
                        return
                entry[0] = None
                self.held -= 1
                if entry[1]:
                    self._stale += 1
            q.popleft()
        unreserve(lane)  # nothing left to wait for: let others have the tokens

    def _queue_too_long(self, lane: Lane, row: Row, deadline: float, now: float) -> bool:
        """Defer ``row`` if its lane's queue would keep it more than ``queue_beyond`` seconds.

        Without this, one account's backlog behind a slow bucket (or a window opening
        within ``defer_beyond``) fills the scheduler pump's in-flight set, and everything
        accepted after it, any account's, waits behind it. The wait is the time until the
        lane's window or campaign slice opens plus the queue ahead at the slowest of the
        lane's buckets (a lower bound: a bucket shared with other lanes goes slower, a
        slice may hold back more than its head). Deferred messages get consecutive turns
        (``Lane.promised``), so a backlog comes back at the lane's rate, not all at once, and
        each comes back half a horizon before its turn: the lane is still fed then, and its
        queue short enough to hold it.
        """
        beyond = self.queue_beyond
        if beyond == NEVER:
            return False
        rate = min((b.rate for b in lane.buckets), default=NEVER)
        n = row[PARTS] or 1
        wait = len(lane.queue) * n / rate
        if lane.timed:  # a closed window or a spent campaign slice comes first
            closed = max((gate.wait(now) for gate in lane.gates), default=0.0)
            if lane.campaign is not None:
                closed = max(closed, lane.campaign.wait(now))
            wait += closed
        if wait <= beyond or (deadline and deadline <= now + beyond):
            return False  # short enough, or its deadline comes first: held (and expired) here
        turn = max(now + wait, lane.promised)
        back = turn - beyond / 2
        if not deadline or deadline > back:  # (one that expires first books no turn)
            lane.promised = turn + n / rate
        self._defer(row, back, deadline)
        return True

    def _hold(self, lane: Lane, row: Row, deadline: float) -> None:
        entry = [row, deadline]
        lane.queue.append(entry)
        self.held += 1
        if deadline:
            heapq.heappush(self._deadlines, (deadline, next(self._seq), entry))

    def _schedule(self, lane: Lane, when: float) -> None:
        if not lane.scheduled:
            lane.scheduled = True
            heapq.heappush(self._timers, (when, next(self._seq), lane))

    def _defer(self, row: Row, until: float, deadline: float) -> None:
        out = row.copy()
        out[SEND_AT] = min(until, deadline) if deadline else until
        self.deferred.append(out)

    def _finish(self, row: Row, code: str, reason: str, now: float) -> None:
        done = MessageFinished(row[MSG_ID], State.NOT_SENT.value, code, reason, now)
        self.finished.append(messages.to_wire(done))

    # -- sweeping ----------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Forget idle lanes, full per-key buckets, stale deadlines and contacts out of window."""
        self._next_sweep = now + SWEEP_EVERY
        self._forget_idle(now)
        if self._stale > len(self._deadlines) // 2:
            self._deadlines = [d for d in self._deadlines if d[2][0] is not None]
            heapq.heapify(self._deadlines)
            self._stale = 0
        horizon = now - self._longest_recontact
        for key, at in list(self._sent.items()):
            if at >= horizon:
                break
            del self._sent[key]
