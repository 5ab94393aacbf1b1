"""The submit queue of one ``SmppCarrier``: parts waiting for a window, and each part's outcome.

``submit_many`` makes one ``Call`` per invocation and one ``Item`` per encoded part; the items
wait in ``SubmitQueue.pending`` (shared by every bind of the connector) until a connection's
window has room. ``SubmitQueue`` then turns what happens to an item into its ``SubmitResult``:
an answer (``answered``), its deadline passing while queued (``expire``) or every connection
lost (``fail_all``). Throttling (§5.1.3, 0x58/0x14) puts the part back at the head of the
queue and pauses sending (``paused_until``) with an exponential back-off, without failing the
part until its deadline. No I/O here beyond setting a ``trio.Event``; the client's loops own
the sockets and read ``pending`` / ``paused_until`` directly on their hot paths.

Must not import: gateway, any actor module.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from actors.ports import SubmitResult
from adapters.smpp import status as st
from adapters.smpp._stats import CarrierStats
from adapters.smpp.session import SubmitAnswered


class Call:
    """One ``submit_many`` call: its results fill in as answers come, then ``done`` fires."""

    __slots__ = ("cancelled", "done", "remaining", "results")

    def __init__(self, n: int) -> None:
        self.results: list[SubmitResult | None] = [None] * n
        self.remaining = n
        self.done = trio.Event()
        self.cancelled = False

    def set(self, index: int, result: SubmitResult) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


@dataclass(slots=True)
class Item:
    """A part waiting for, or in, the window."""

    frame: bytes
    call: Call
    index: int
    deadline: float
    slowed_by: int = 0  # the last slow-down status (0x58/0x14) this part got, if any
    sent_at: float = 0.0


def result(error: str, code: str, *, transient: bool, in_doubt: bool = False) -> SubmitResult:
    """A failed part's ``SubmitResult``."""
    return SubmitResult(error=error, code=code, transient=transient, in_doubt=in_doubt)


NOT_BOUND = result("not bound", "not_bound", transient=True)


class SubmitQueue:
    """The parts waiting for a window, the throttle pause, and the outcome of each part.

    Args:
        stats: the carrier's counters (accepted, rejected, throttled, in_doubt).
        throttle_min, throttle_max: the first and the longest pause after a slow-down status.
        extra_transient: vendor command_status values to treat as transient.
        latency_samples: when a list, submit->response seconds are appended (bench).
    """

    __slots__ = (
        "_extra_transient",
        "_latency_samples",
        "_stats",
        "_throttle",
        "_throttle_max",
        "_throttle_min",
        "paused_until",
        "pending",
    )

    def __init__(self, stats: CarrierStats, *, throttle_min: float, throttle_max: float,
                 extra_transient: frozenset[int], latency_samples: list[float] | None) -> None:
        self.pending: deque[Item] = deque()
        self.paused_until = 0.0  # no part goes into a window before this (trio time)
        self._throttle = throttle_min
        self._throttle_min = throttle_min
        self._throttle_max = throttle_max
        self._extra_transient = extra_transient
        self._stats = stats
        self._latency_samples = latency_samples

    def answered(self, event: SubmitAnswered, now: float) -> None:
        """Resolve the part ``event`` answers, or queue it again when throttled (§5.1.3)."""
        item: Item = event.token
        status = event.status
        stats = self._stats
        if self._latency_samples is not None:
            self._latency_samples.append(now - item.sent_at)
        if status == st.ESME_ROK and not event.malformed:
            stats.accepted += 1
            self._throttle = self._throttle_min
            item.call.set(item.index, SubmitResult(carrier_id=event.message_id))
        elif status in st.SLOW_DOWN and now < item.deadline and not item.call.cancelled:
            # §5.1.3: slow down and send again; the part is not failed (until its deadline).
            stats.throttled += 1
            item.slowed_by = status
            if now >= self.paused_until:
                self.paused_until = now + self._throttle
                self._throttle = min(self._throttle * 2, self._throttle_max)
            self.pending.appendleft(item)
        elif event.malformed:
            stats.in_doubt += 1
            item.call.set(item.index, result("malformed response", "remote_protocol_violation",
                                             transient=True, in_doubt=True))
        else:
            stats.rejected += 1
            item.call.set(item.index, result(st.name(status), st.code(status),
                                             transient=st.is_transient(status,
                                                                       self._extra_transient)))

    def expire(self, now: float) -> None:
        """Fail the queued parts whose deadline passed or whose call gave up."""
        pending = self.pending
        while pending and (pending[0].deadline <= now or pending[0].call.cancelled):
            item = pending.popleft()
            if item.slowed_by:  # still throttled at its deadline: say so (rate feedback)
                failure = result(st.name(item.slowed_by), st.code(item.slowed_by), transient=True)
            else:
                failure = result("deadline passed before sending", "timeout", transient=True)
            item.call.set(item.index, failure)

    def fail_all(self, error: str, code: str) -> None:
        """Fail every queued part (transient): no connection is left to send it."""
        while self.pending:
            item = self.pending.popleft()
            item.call.set(item.index, result(error, code, transient=True))
