"""The supervisor: wires the store, the actors and the carriers into one running gateway.

::

    accept ─commit─▶ gate ─wake─▶ pump ─▶ rate_limiter ─▶ segmenter ─▶ dispatcher ─▶ carriers
                   (LMDB outbox)   ▲        │ finished      │ finished    │ outcomes    │ receipts
                                   └─ Released ─ receipt_correlator ◀─────┴─────────────┘
                                                     │ StatusEvent
                                                     ▼
                                                  notifier

Start-up (:meth:`Gateway.run`): recovery first (the store is the truth): parts that were in
flight when the process died are settled by the in-doubt policy (``resend``, the default,
re-queues them: at-least-once; ``mark_unknown`` ends them NOT_SENT ``in_doubt``), counted
in ``septet_core_in_doubt_parts_total``; receipts left in the durable inbox are replayed by
the correlator; the pump starts at the beginning of the outbox, so every message not yet
SENT is re-queued and passes through the rate limiter again (deadlines re-checked).

Shutdown (:meth:`Gateway.stop`) is data-driven with a deadline: the ingress gate closes,
the pump stops taking work and closes its outbox, each stage drains and closes the next
one; once the dispatcher is done the carriers are stopped and the receipt sink closed, so
the correlator and the notifier drain in turn. Whatever is not done when ``grace`` runs out
is cancelled; it is all in the store and recovered at the next start.

Back-pressure: ``accept`` raises :class:`Saturated` when the writer queue is full or the
outbox holds more than ``max_outbox`` messages; waiting messages live in LMDB, so memory
stays flat however many wait.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import lmdb
import trio

from actors import (
    _metrics,
    dispatcher,
    ports,
    rate_limiter,
    receipt_correlator,
    scheduler,
    segmenter,
)
from actors.dispatcher import RetryPolicy
from actors.errors import StoreError
from actors.ingress import IngressGate, MsgIdFactory
from actors.messages import Message, MessageFinished, MsgId, State, encode_batch, with_wire
from actors.ports import Carrier, InDoubtPolicy
from actors.routing import RouteTable
from actors.shaping import ShapingRules, single_connector
from gateway import errors, metrics
from gateway._store_defer import defer_messages
from gateway._store_pipeline import PipelineStore
from gateway.optouts import OptOutList
from gateway.store import Store

__all__ = ["CoreSettings", "Gateway", "Saturated", "open_gateway", "shaping_rules"]

logger = logging.getLogger(__name__)

Saturated = errors.Saturated
NotifierRun = Callable[..., Awaitable[None]]
"""``notifier(inbox, task_status=...)``: e.g. ``partial(actors.notifier.run, outbox=..., ...)``."""


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """Knobs of the core pipeline (gateway/config.py maps its file onto these)."""

    in_doubt: InDoubtPolicy = "resend"
    routes: Mapping[str, Sequence[str]] | None = None  # None: every carrier, in order, for all
    shaping: ShapingRules = field(default_factory=ShapingRules)
    retry: RetryPolicy = RetryPolicy()  # noqa: RUF009 - frozen: one shared default is safe
    max_inflight: int = 20_000  # messages the pump has handed on and not yet released
    # a window or campaign slice further away than this (seconds): the rate limiter hands
    # the message back and the pump stores it under that time, freeing its in-flight slot
    defer_beyond: float = 300.0
    # a place in a lane's bucket queue further from the front than this (seconds): handed
    # back the same way, so one account's backlog never fills the pump's in-flight set
    queue_beyond: float = 10.0
    # no connector of a message's route up: the rate limiter hands it back (for as long as
    # the route has been down, 0.5 s up to this many seconds) instead of passing it to a
    # dispatcher that can only wait with it
    not_ready_recheck: float = 30.0
    batch: int = 512  # most messages per channel item
    buffer: int = 4  # channel items buffered between stages
    dispatcher_concurrency: int = 8
    receipt_timeout: float | None = 48 * 3600.0  # None: a SENT message stays SENT
    orphan_ttl: float = 3600.0
    # connector -> how it writes message ids: auto | decimal | hex | hex-submit | hex-receipt
    # (actors.correlation.ID_TYPES; Kannel's msg-id-type). auto guesses per id.
    carrier_id_types: Mapping[str, str] = field(default_factory=dict)
    max_outbox: int = 5_000_000  # accept refuses (Saturated) above this many waiting
    grace: float = 10.0  # graceful shutdown deadline, seconds


class Gateway:
    """The running core. Use :func:`open_gateway` (or ``nursery.start(gateway.run)``)."""

    def __init__(
        self,
        store: Store,
        carriers: Sequence[Carrier],
        settings: CoreSettings = CoreSettings(),
        *,
        notifier: NotifierRun | None = None,
        now: Callable[[], float] = time.time,
        pipeline: ports.PipelineStore | None = None,
        optouts: ports.OptOuts | None = None,
    ) -> None:
        """``pipeline``: the store view the actors use; default a thread-writer
        :class:`PipelineStore` on ``store`` (``gateway._store_process`` builds the other one).
        ``optouts``: the opt-out lists the rate limiter enforces; default
        :class:`~gateway.optouts.OptOutList` on ``store`` (which every list of this process
        on the same store keeps current)."""
        self.store = store
        self.optouts: ports.OptOuts = optouts if optouts is not None else OptOutList(
            store, now=now)
        self.pipeline: ports.PipelineStore = pipeline or PipelineStore(
            store, receipt_timeout=settings.receipt_timeout, id_types=settings.carrier_id_types)
        self.carriers = {c.name: c for c in carriers}
        self.settings = settings
        self.new_msg_id = MsgIdFactory(now)
        self.correlator_stats = receipt_correlator.CorrelatorStats()
        self.in_doubt = 0
        self._notifier = notifier
        self._now = now
        self._gate: IngressGate | None = None
        self._recovered = False
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._nurseries: list[trio.Nursery] = []  # where the actors run (for liveness())
        self._finish_send: trio.MemorySendChannel[bytes] | None = None  # into the correlator

    # -------------------------------------------------------------------------- public

    @property
    def ready(self) -> bool:
        """Recovered, and at least one carrier can submit."""
        return self._recovered and any(c.ready for c in self.carriers.values())

    async def accept(self, batch: Sequence[Message], *, also: Callable[[Any], None] | None = None
                     ) -> list[MsgId]:
        """Commit ``batch`` durably, then pass it into the pipeline.

        Messages with an empty ``msg_id`` get one. ``also`` runs in the same transaction (the
        HTTP layer stores the idempotency answer with it).

        Returns:
            The message ids, once committed.

        Raises:
            Saturated: too much waits already; nothing was stored.
            StoreError: the commit failed; nothing was stored.
        """
        self._check_saturation()
        # packed once: the writer process's request and the ingress gate's channel item
        # reuse these bytes
        msgs = with_wire(m if m.msg_id else _with_id(m, self.new_msg_id()) for m in batch)
        await self.pipeline.accept(msgs, also)
        _metrics.MESSAGES_ACCEPTED.inc(len(msgs))
        if self._gate is not None:
            await self._gate.committed(msgs)
        return [m.msg_id for m in msgs]

    async def finish(self, items: Sequence[MessageFinished]) -> None:
        """End messages decided outside the actors (e.g. a cancelled campaign's queued ones).

        While the pipeline runs the items go into the correlator's inbox, as the rate
        limiter's and the segmenter's do: the correlator applies them in order with
        everything else, persists each status event (with its seq) and passes it to the
        notifier. Before start or after shutdown they are applied to the store directly: the
        events are persisted, but no notifier runs to receive them. A move that is not legal
        any more (the message was SENT or is final meanwhile) is refused by the store.
        Returns once they are handed over (:meth:`cancel` waits for their commit).
        """
        await self._finish(items, committed=False)

    async def cancel(self, msg_ids: Sequence[str], *,
                     reason: str = "cancelled by the client") -> None:
        """End each of ``msg_ids`` NOT_SENT ``cancelled`` if no part of it has reached a
        carrier, and return once that is committed.

        A message still ACCEPTED or QUEUED (waiting for its ``send_at``, its turn in the rate
        limiter, or a route) ends NOT_SENT with code ``cancelled``: its SMS_NOT_SENT event is
        persisted and handed to the notifier, its outbox entry goes, and a copy still moving
        through the actors is refused at the dispatcher's mark. A message with a part handed
        to a carrier (or being handed: SUBMITTING), or final already, is left as it is: read
        it back to see which. Unknown ids are ignored.

        Raises:
            StoreError: the store could not commit (not running: the direct write failed).
        """
        now = self._now()
        await self._finish([MessageFinished(MsgId(i), State.NOT_SENT.value, "cancelled",
                                            reason, now) for i in msg_ids], committed=True)

    async def _finish(self, items: Sequence[MessageFinished], *, committed: bool) -> None:
        """Into the correlator's inbox while the pipeline runs (``committed``: and wait for
        the commit), else straight into the store."""
        if not items:
            return
        send = self._finish_send
        if send is not None:
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                if committed:
                    await receipt_correlator.finish_committed(send, items)
                else:
                    await send.send(encode_batch(items))
                return
        await self.pipeline.apply(list(items), self._now())

    def liveness(self) -> dict[str, Any]:
        """Per actor, whether its task is running; per carrier, whether it is bound.

        ``healthy`` is False only when the pipeline has started and an actor task is gone
        (while recovering or shutting down the missing tasks are expected).
        """
        running = {t.name for n in self._nurseries for t in n.child_tasks}
        expected = {a: f"actors.{a}.run" for a in _ACTORS[:-1]}
        if self._notifier is not None:
            expected["notifier"] = _task_name(self._notifier)
        actors = {a: name in running for a, name in expected.items()}
        return {"healthy": not self._recovered or all(actors.values()), "actors": actors,
                "carriers": {name: bool(c.ready) for name, c in self.carriers.items()}}

    def stop(self) -> None:
        """Ask for a graceful shutdown (returns at once; ``run`` returns when done)."""
        self._stop.set()

    # -------------------------------------------------------------------------- running

    def _check_saturation(self) -> None:
        if self._stop.is_set():
            raise Saturated(5.0, "shutting down")
        if self.store.write_queue_full:
            raise Saturated(0.5, "store writer queue is full")
        waiting = self.pipeline.outbox_size()
        if waiting >= self.settings.max_outbox:
            raise Saturated(min(60.0, max(1.0, waiting / 20_000)), "too many messages waiting")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, start every actor and carrier, run until :meth:`stop`, then drain."""
        s = self.settings
        recovered = await self.pipeline.recover(s.in_doubt, self._now())
        self.in_doubt = recovered.in_doubt
        if recovered.in_doubt:
            _metrics.IN_DOUBT.labels(s.in_doubt).inc(recovered.in_doubt)
            logger.warning("recovery: %d parts were in flight (policy %s)", recovered.in_doubt,
                           s.in_doubt)
        _metrics.IN_DOUBT_LAST_START.set(recovered.in_doubt)
        ch = _Channels.open(s.buffer)
        _bind_metrics(self, ch)
        routes = RouteTable.from_mapping(s.routes or {"": list(self.carriers)})
        async with trio.open_nursery() as outer:
            self._nurseries = [outer]
            await self._start_tail(outer, ch, recovered.events)
            sink_send = ch.corr_send.clone()
            finish_send = self._finish_send = ch.corr_send.clone()  # for finish()
            async with trio.open_nursery() as carriers_n:
                sink = receipt_correlator.receipt_sink(self.pipeline, sink_send)
                for c in self.carriers.values():
                    await carriers_n.start(partial(c.run, sink))
                carriers_n.start_soon(metrics.watch_event_loop)  # cancelled with the carriers
                async with trio.open_nursery() as head:
                    self._nurseries.append(head)
                    await self._start_head(head, ch, routes)
                    await ch.corr_send.aclose()  # every producer holds its own clone now
                    self._recovered = True
                    task_status.started()
                    await self._stop.wait()
                    self._recovered = False
                    assert self._gate is not None
                    await self._gate.aclose()  # data-driven: the pump ends, then each stage
                    head.cancel_scope.deadline = trio.current_time() + s.grace
                carriers_n.cancel_scope.cancel()
            self._finish_send = None  # finish() applies directly from now on
            await finish_send.aclose()
            await sink_send.aclose()  # the last producer: the correlator drains and ends
            outer.cancel_scope.deadline = trio.current_time() + s.grace
        self._stopped.set()

    async def _start_tail(self, nursery: trio.Nursery, ch: _Channels,
                          recovered_events: list[Any]) -> None:
        if self._notifier is not None:
            await nursery.start(self._notifier, ch.events_recv)
        else:
            nursery.start_soon(_drain, ch.events_recv)
        if recovered_events:
            from actors import messages

            await ch.events_send.send(messages.encode_batch(recovered_events))
        await nursery.start(partial(
            receipt_correlator.run, ch.corr_recv, ch.events_send, ch.released_send.clone(),
            store=self.pipeline, receipt_timeout=self.settings.receipt_timeout,
            orphan_ttl=self.settings.orphan_ttl, now=self._now, stats=self.correlator_stats))

    async def _start_head(self, nursery: trio.Nursery, ch: _Channels, routes: RouteTable) -> None:
        s = self.settings
        await nursery.start(partial(
            dispatcher.run, ch.parts_recv, ch.corr_send.clone(), carriers=self.carriers,
            routes=routes, store=self.pipeline, feedback=ch.feedback_send,
            released=ch.released_send, retry=s.retry, concurrency=s.dispatcher_concurrency,
            now=self._now))
        await nursery.start(partial(
            segmenter.run, ch.released_msgs_recv, ch.parts_send, ch.corr_send.clone(),
            now=self._now))
        await nursery.start(partial(
            rate_limiter.run, ch.due_recv, ch.released_msgs_send, ch.corr_send.clone(),
            rules=shaping_rules(s.shaping, routes), contacts=self.pipeline,
            optouts=self.optouts, feedback=ch.feedback_recv, now=self._now,
            deferred=ch.deferred_send, defer_beyond=s.defer_beyond,
            queue_beyond=s.queue_beyond,
            route_wait=RouteReadiness(routes, self.carriers, longest=s.not_ready_recheck)))
        await nursery.start(partial(
            scheduler.run, ch.wake_recv, ch.released_recv, ch.due_send, store=self.pipeline,
            max_inflight=s.max_inflight, batch=s.batch, now=self._now,
            deferred=ch.deferred_recv, reschedule=partial(defer_messages, self.store)))
        self._gate = IngressGate(ch.wake_send)


class RouteReadiness:
    """The rate limiter's ``route_wait(to, now)``: 0.0 when a connector that destination
    ``to``'s route may use is up (or it has no route: the dispatcher ends such a message
    ``routing_failed``), else how long to leave it in the durable schedule before looking
    again: as long as the route has been down so far, from ``shortest`` up to ``longest``
    seconds. A connector still binding after a start, or back after a blip, costs its
    messages half a second; an outage of an hour, a store write for each waiting message every
    ``longest`` seconds.

    Which connectors are down is looked up at most every ``every`` seconds of ``now``, so
    while all are up (the usual case) a message costs two comparisons, not a route lookup.
    """

    def __init__(self, routes: RouteTable, carriers: Mapping[str, Carrier], *,
                 shortest: float = 0.5, longest: float = 30.0, every: float = 0.05) -> None:
        self._routes, self._carriers, self._every = routes, carriers, every
        self._shortest, self._longest = shortest, longest
        self._down: dict[str, float] = {}  # connector -> when it was first seen down
        self._next = -math.inf

    def __call__(self, to: str, now: float) -> float:
        if not self._next - self._every <= now < self._next:  # due, or the clock stepped back
            self._look(now)
        if not self._down:
            return 0.0
        candidates = self._routes.candidates(to)
        if not candidates:
            return 0.0
        since = -math.inf  # when the last of its connectors went down
        for name in candidates:
            if name in self._carriers and name not in self._down:
                return 0.0
            since = max(since, self._down.get(name, now))
        return min(self._longest, max(self._shortest, now - since))

    def _look(self, now: float) -> None:
        down = self._down
        for name, carrier in self._carriers.items():
            if carrier.ready:
                down.pop(name, None)
            else:
                down.setdefault(name, now)
        self._next = now + self._every


def shaping_rules(rules: ShapingRules, routes: RouteTable) -> ShapingRules:
    """``rules`` charging each message to the connector the dispatcher prefers for it.

    The limiter's per-connector buckets and throttle feedback are keyed by connector name, so
    its ``route`` must name the same connector the dispatcher will use: the first candidate
    of the route table (``"default"`` for a destination without a route). Fail-over moves a
    part elsewhere later; the preferred connector is the one charged. An explicit
    ``rules.route`` is kept.
    """
    if rules.route is not single_connector:
        return rules

    def route(to: str) -> str:
        candidates = routes.candidates(to)
        return candidates[0] if candidates else "default"

    return replace(rules, route=route)


_ACTORS = ("scheduler", "rate_limiter", "segmenter", "dispatcher", "receipt_correlator",
           "notifier")


def _task_name(fn: Any) -> str:
    """The name trio gives a task running ``fn`` (a partial is named after its function)."""
    while isinstance(fn, partial):
        fn = fn.func
    return f"{fn.__module__}.{fn.__qualname__}"


@dataclass(slots=True)
class _Channels:
    wake_send: trio.MemorySendChannel[bytes]
    wake_recv: trio.MemoryReceiveChannel[bytes]
    released_send: trio.MemorySendChannel[bytes]
    released_recv: trio.MemoryReceiveChannel[bytes]
    due_send: trio.MemorySendChannel[bytes]
    due_recv: trio.MemoryReceiveChannel[bytes]
    released_msgs_send: trio.MemorySendChannel[bytes]
    released_msgs_recv: trio.MemoryReceiveChannel[bytes]
    parts_send: trio.MemorySendChannel[bytes]
    parts_recv: trio.MemoryReceiveChannel[bytes]
    feedback_send: trio.MemorySendChannel[bytes]
    feedback_recv: trio.MemoryReceiveChannel[bytes]
    corr_send: trio.MemorySendChannel[bytes]
    corr_recv: trio.MemoryReceiveChannel[bytes]
    events_send: trio.MemorySendChannel[bytes]
    events_recv: trio.MemoryReceiveChannel[bytes]
    deferred_send: trio.MemorySendChannel[bytes]  # rate limiter -> pump: long waits to store
    deferred_recv: trio.MemoryReceiveChannel[bytes]

    @classmethod
    def open(cls, buffer: int) -> _Channels:
        pairs: list[Any] = []
        # wake: ingress batches (many concurrent HTTP requests); released: small id batches
        for size in (64, 64, buffer, buffer, buffer, 64, 16, 16, buffer):
            pairs.extend(trio.open_memory_channel[bytes](size))
        return cls(*pairs)


def _bind_metrics(gateway: Gateway, ch: _Channels) -> None:
    """Point the operational gauges at this gateway (queue depths, readiness, the store)."""
    for stage, recv in (("scheduler", ch.wake_recv), ("rate_limiter", ch.due_recv),
                        ("segmenter", ch.released_msgs_recv), ("dispatcher", ch.parts_recv),
                        ("correlator", ch.corr_recv), ("notifier", ch.events_recv)):
        _metrics.QUEUE_DEPTH.labels(stage).set_function(
            partial(lambda r: r.statistics().current_buffer_used, recv))
    for name, carrier in gateway.carriers.items():
        _metrics.CARRIER_READY.labels(name).set_function(partial(lambda c: int(c.ready), carrier))
    _metrics.CORE_READY.set_function(lambda: int(gateway.ready))
    _metrics.OUTBOX.set_function(partial(_or_zero, gateway.pipeline.outbox_size))
    _metrics.OUTBOX_AGE.set_function(partial(_or_zero, partial(_oldest_due_age, gateway)))
    metrics.bind_store(gateway.store)


def _or_zero(read: Callable[[], float]) -> float:
    """``read()``, or 0 once the store is closed (a scrape must never fail)."""
    try:
        return read()
    except (lmdb.Error, StoreError):  # the store closed under a late scrape
        return 0.0


def _oldest_due_age(gateway: Gateway) -> float:
    """Seconds the first outbox entry (key: due ms, u64 big-endian, then msg_id) is overdue."""
    with gateway.store.read() as txn:
        cursor = txn.cursor(gateway.store.db(b"outbox"))
        if not cursor.first():
            return 0.0
        due = int.from_bytes(cursor.key()[:8], "big") / 1000
    return max(0.0, gateway._now() - due)


async def _drain(inbox: trio.abc.ReceiveChannel[bytes]) -> None:
    async with inbox:
        async for _ in inbox:
            pass


def _with_id(msg: Message, msg_id: MsgId) -> Message:
    return msg._replace(msg_id=msg_id)


@asynccontextmanager
async def open_gateway(
    store: Store,
    carriers: Sequence[Carrier],
    settings: CoreSettings = CoreSettings(),
    *,
    notifier: NotifierRun | None = None,
    now: Callable[[], float] = time.time,
    pipeline: ports.PipelineStore | None = None,
    optouts: ports.OptOuts | None = None,
) -> AsyncIterator[Gateway]:
    """Run a :class:`Gateway` for the duration of the block; leaving it shuts down gracefully."""
    gateway = Gateway(store, carriers, settings, notifier=notifier, now=now, pipeline=pipeline,
                      optouts=optouts)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        try:
            yield gateway
        finally:
            gateway.stop()
