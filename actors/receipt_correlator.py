"""The receipt correlator actor: the one place where part outcomes become message states.

Everything that decides a message's fate comes through its inbox, in batches: PartSubmitted /
PartFailed from the dispatcher, MessageFinished from the rate limiter and the segmenter, and
PendingReceipt from the receipt sink. A batch is applied in ONE store write
(``PipelineStore.apply``): carrier-id index, early receipts parked as orphans and matched when
their submit response lands, duplicates ignored, part statuses folded into the message state
through ``actors.states``, events persisted with a per-message sequence, campaign counters and
recent contacts updated. Only after that commit are the StatusEvents passed to the notifier
(in commit order), the ids that left the outbox released to the scheduler pump, and the sink
calls whose receipts the batch held woken.

Two timers run beside it, under the same lock so events stay in commit order: receipt
timeouts (a SENT message with no final receipt after ``receipt_timeout`` becomes
NOT_DELIVERED ``receipt_timeout``; ``None`` leaves it SENT) and orphan expiry (receipts
never matched within ``orphan_ttl`` move to the unknown receipts, kept and counted).

:func:`receipt_sink` builds the ``ReceiptSink`` connectors call. It hands the receipts to this
actor and returns once the commit that correlated them is durable, so they are stored and
correlated in one write (no separate inbox to write and then delete; a receipt that arrives
with its submit response can share that response's batch and its state-row update). A
connector acknowledges only receipts the sink has returned for, so one caught by a crash
before that is sent again by the carrier.

Must not import: gateway, adapters, lmdb.
"""

from __future__ import annotations

import itertools
import operator
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgpack
import trio

from actors import _metrics, messages
from actors._inbox import with_waiting
from actors.errors import StoreError
from actors.messages import (
    CarrierReceipt,
    CommitWaiter,
    MessageFinished,
    PendingReceipt,
    Released,
    State,
    StatusEvent,
)
from actors.ports import Applied, PipelineStore

__all__ = ["CorrelatorStats", "finish_committed", "receipt_sink", "run"]

MAX_BATCH = 4096
_PENDING_TAG, _PENDING_VERSION = PendingReceipt.TAG, PendingReceipt.VERSION
_RELEASED_TAG, _RELEASED_VERSION = Released.TAG, Released.VERSION
_EVENT_NAME = operator.itemgetter(2 + StatusEvent._fields.index("event"))

_tickets = itertools.count(1)
_waiting: dict[int, trio.Event] = {}
"""Sink calls waiting for the commit of their receipts, by ticket (a PendingReceipt field).
Only this module touches it: a sink call registers its ticket, the correlator sets the event
after the commit that applied the ticket's receipts. The channel still carries bytes only."""


@dataclass(slots=True)
class CorrelatorStats:
    """Counters of one correlator run (tests and benchmarks read them)."""

    batches: int = 0
    items: int = 0
    matched: int = 0
    duplicates: int = 0
    unknown: int = 0
    orphans_parked: int = 0
    orphans_matched: int = 0
    orphans_expired: int = 0
    illegal: int = 0
    events: int = 0
    timeouts: int = 0

    def add(self, a: Applied) -> None:
        self.matched += a.matched
        self.duplicates += a.duplicates
        self.unknown += a.unknown
        self.orphans_parked += a.orphans_parked
        self.orphans_matched += a.orphans_matched
        self.illegal += a.illegal
        self.events += len(a.event_rows)


def receipt_sink(
    store: PipelineStore, correlator: trio.abc.SendChannel[bytes]
) -> Callable[[Sequence[CarrierReceipt]], Awaitable[None]]:
    """The ``ReceiptSink`` for connectors: returns once the receipts are durably correlated.

    ``store`` is the correlator's (kept for the signature every caller uses; the correlator
    does the write).

    Raises:
        StoreError: the correlator has stopped (shutting down): nothing was stored, so the
            connector must not acknowledge.
    """
    del store

    async def sink(receipts: Sequence[CarrierReceipt]) -> None:
        if not receipts:
            return
        ticket = next(_tickets)
        done = _waiting[ticket] = trio.Event()
        try:
            # PendingReceipt wire rows built directly (encode_batch's output, without a
            # PendingReceipt per receipt): (tag, version, ticket) + the CarrierReceipt's
            # fields, which are PendingReceipt's after the ticket (0.5 -> 0.15 µs a row)
            head = (_PENDING_TAG, _PENDING_VERSION, ticket)
            rows = [head + r for r in receipts]
            try:
                await correlator.send(msgpack.packb(rows, use_bin_type=True))
            except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
                raise StoreError("the correlator has stopped; receipts not stored") from exc
            await done.wait()
        finally:
            _waiting.pop(ticket, None)

    return sink


async def finish_committed(correlator: trio.abc.SendChannel[bytes],
                           items: Sequence[MessageFinished]) -> None:
    """Hand ``items`` to the correlator and return once the commit that applied them is
    durable (their events persisted and passed to the notifier; a move the store refused is
    applied as nothing).

    Raises:
        trio.ClosedResourceError, trio.BrokenResourceError: the correlator's inbox is closed;
            nothing was handed over.
    """
    ticket = next(_tickets)
    done = _waiting[ticket] = trio.Event()
    try:
        await correlator.send(messages.encode_batch([*items, CommitWaiter(ticket)]))
        await done.wait()
    finally:
        _waiting.pop(ticket, None)


def _wake_sinks(items: Sequence[messages.Kind]) -> list[trio.Event]:
    """Wake the sink calls whose receipts ``items`` (just committed) held; return the events
    of the :func:`finish_committed` calls whose marks it held, to set once the batch's events
    are handed on."""
    waiters: list[trio.Event] = []
    for item in items:
        kind = type(item)
        if kind is PendingReceipt or kind is CommitWaiter:
            done = _waiting.pop(item.ticket, None)  # type: ignore[union-attr]
            if done is None:
                continue
            if kind is PendingReceipt:
                done.set()  # durable is all a connector needs before it acknowledges
            else:
                waiters.append(done)
    return waiters


class _Correlator:
    def __init__(self, store: PipelineStore, events: trio.abc.SendChannel[bytes] | None,
                 released: trio.abc.SendChannel[bytes] | None, now: Callable[[], float],
                 stats: CorrelatorStats) -> None:
        self.store, self.events, self.released, self.now = store, events, released, now
        self.stats = stats
        self.lock = trio.Lock()

    async def apply(self, items: Sequence[messages.Kind]) -> None:
        """Apply ``items`` in one commit, then pass on what it decided (in commit order)."""
        async with self.lock:
            t = self.now()
            applied = await self.store.apply(items, t)
            waiters = _wake_sinks(items)
            self._count(applied, len(items))
            if applied.event_rows and self.events is not None:
                # the rows are StatusEvent wire rows: this is encode_batch's output
                await self.events.send(msgpack.packb(applied.event_rows, use_bin_type=True))
            if applied.released and self.released is not None:
                try:
                    await self.released.send(msgpack.packb(  # encode_batch of Released
                        [[_RELEASED_TAG, _RELEASED_VERSION, i, t] for i in applied.released],
                        use_bin_type=True))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    self.released = None  # the pump has stopped (shutdown)
            for done in waiters:  # after the events are handed on: the caller may look
                done.set()

    def _count(self, a: Applied, n: int) -> None:
        self.stats.batches += 1
        self.stats.items += n
        self.stats.add(a)
        # Outcomes are disjoint: "matched" is on arrival, "orphan_matched" a parked receipt
        # matched later (Applied.matched counts both, as CorrelatorStats does).
        for outcome, value in (("matched", a.matched - a.orphans_matched),
                               ("duplicate", a.duplicates),
                               ("unknown", a.unknown), ("orphan", a.orphans_parked),
                               ("orphan_matched", a.orphans_matched)):
            if value:
                _metrics.RECEIPTS.labels(outcome).inc(value)
        if a.illegal:
            _metrics.ILLEGAL_TRANSITIONS.inc(a.illegal)
        if a.receipt_lags:
            _metrics.RECEIPT_LAG.observe_many(a.receipt_lags)
        # row: [tag, version, msg_id, account, event, ...]; counted in C (0.1 µs an event)
        for event, count in Counter(map(_EVENT_NAME, a.event_rows)).items():
            _metrics.STATUS_EVENTS.labels(event).inc(count)


async def run(
    inbox: trio.MemoryReceiveChannel[bytes],  # not trio.abc: run drains it with receive_nowait
    events: trio.abc.SendChannel[bytes] | None,
    released: trio.abc.SendChannel[bytes] | None,
    *,
    store: PipelineStore,
    receipt_timeout: float | None = 48 * 3600,
    orphan_ttl: float = 3600.0,
    tick: float = 1.0,
    now: Callable[[], float] = time.time,
    stats: CorrelatorStats | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Correlate until every producer has closed its clone of ``inbox``.

    Args:
        inbox: batches of PartSubmitted, PartFailed, MessageFinished, PendingReceipt.
        events: batches of StatusEvent for the notifier, sent after they are committed.
        released: batches of Released for the scheduler pump.
        receipt_timeout: None turns the receipt-timeout timer off (a SENT message stays
            SENT). Only None or not matters here: the deadline itself is recorded by the
            store, from the PipelineStore's own ``receipt_timeout``; pass the same value.
        orphan_ttl: seconds an unmatched receipt stays parked before it counts as unknown.
        tick: how often the timers look for due work.
    """
    corr = _Correlator(store, events, released, now, stats or CorrelatorStats())
    async with inbox, trio.open_nursery() as nursery:
        nursery.start_soon(_timers, corr, receipt_timeout, orphan_ttl, tick)
        task_status.started()
        async for item in inbox:
            items = with_waiting(inbox, item, MAX_BATCH)
            # one sequence keeping the items' bytes: apply's writer process re-sends them as
            # they are instead of packing the decoded messages again (~0.4 µs an item)
            await corr.apply(messages.decode_batches(items))
        nursery.cancel_scope.cancel()
    for ch in (events, released):
        if ch is not None:
            await ch.aclose()


async def _timers(corr: _Correlator, receipt_timeout: float | None, orphan_ttl: float,
                  tick: float) -> None:
    last_sweep = corr.now()
    sweep_every = min(orphan_ttl, 60.0)
    while True:
        await trio.sleep(tick if receipt_timeout is not None else sweep_every)
        t = corr.now()
        if receipt_timeout is not None:
            due = corr.store.timeouts_due(t, MAX_BATCH)
            if due:
                corr.stats.timeouts += len(due)
                _metrics.RECEIPT_TIMEOUTS.inc(len(due))
                await corr.apply([MessageFinished(i, State.NOT_DELIVERED.value, "receipt_timeout",
                                                  "no final receipt in time", t) for i in due])
        if t - last_sweep >= sweep_every:
            last_sweep = t
            async with corr.lock:
                corr.stats.orphans_expired += await corr.store.expire_orphans(t - orphan_ttl,
                                                                              MAX_BATCH)
