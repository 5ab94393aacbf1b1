"""``SmppCarrier``: the trio driver around ``EsmeSession`` that satisfies ``actors.ports.Carrier``.

It owns the sockets and nothing else of substance: the session decides, this moves bytes.
``submit_many`` encodes its parts once and appends them to one queue shared by the
connector's ``binds`` connections (``_queue``). Per connection three tasks run in one nursery:

* the reader: bytes -> session -> results; then it refills the window from the queue and
  writes everything queued in ONE send (the window's round trip bounds throughput, so this
  happens before receipts are looked at); deliver_sm go to the receipt task;
* the writer: the session's timers (response deadlines, keep-alive), throttle pauses, and
  parts queued while the reader was idle;
* the receipt task: parses receipts and mobile-originated (MO) messages, hands them to their
  sinks and acknowledges them only after the sink returns (``_deliveries``).

``run`` keeps every connection bound, reconnecting with exponential back-off; binding and
unbinding one connection live in ``_link``. ``submit_many`` never raises per part: each part
gets a ``SubmitResult``; throttling (0x58, 0x14) pauses sending and re-queues the part without
failing it until the part's deadline.

Must not import: gateway, any actor module.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from actors.messages import SubmitPart
from actors.ports import ReceiptSink, SubmitResult
from adapters.errors import LocalProtocolViolation
from adapters.smpp import _metrics
from adapters.smpp import pdu as p
from adapters.smpp._deliveries import Delivered, Deliveries
from adapters.smpp._link import NETWORK_ERRORS, READ_SIZE, Link, bind, goodbye
from adapters.smpp._queue import NOT_BOUND, Call, Item, SubmitQueue, result
from adapters.smpp._stats import CarrierStats
from adapters.smpp.inbound import InboundSink
from adapters.smpp.session import (
    Closed,
    DeliverReceived,
    EsmeSession,
    Event,
    RequestTimedOut,
    SubmitAnswered,
)
from adapters.smpp.submit import Concat, PartEncoder, SubmitOptions

__all__ = ["CarrierStats", "SmppCarrier"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)  # identity semantics: a connector is a resource, usable as a dict key
class SmppCarrier:
    """An SMPP 3.4 connector (one bind). See the module docstring and docs/carriers.md.

    Args:
        name: connector name (stored with every carrier id, used as metrics label).
        host, port, system_id, password: where and as whom to bind.
        window: most submit_sm awaiting a response, per bind.
        binds: connections kept bound at once; they share one queue of parts.
        packed_gsm7: pack GSM 7-bit bodies (default: one septet per octet, as most SMSCs want).
        concat: "udh" (UDH in short_message, UDHI set) or "sar" (SAR TLVs).
        bind_mode: "transceiver" (receipts on the same bind) or "transmitter".
        submit_timeout: the deadline of every part, from ``submit_many`` to its result.
        response_timeout: how long one PDU may wait for its response.
        extra_transient: vendor command_status values to treat as transient.
        sink_timeout: the receipt and inbound sinks' deadline; past it the deliver_sm are
            refused (0x64) so that the SMSC sends them again.
        inbound: where mobile-originated messages go (``adapters.smpp.inbound``); None
            acknowledges and drops them (counted in ``other_deliveries``).
        clock: wall clock for ``CarrierReceipt.received_at``.
    """

    name: str
    host: str
    port: int
    system_id: str
    password: str
    window: int = 64
    binds: int = 1
    packed_gsm7: bool = False
    concat: Concat = "udh"
    bind_mode: p.BindMode = "transceiver"
    system_type: str = ""
    registered_delivery: int = 1
    submit_timeout: float = 30.0
    response_timeout: float = 10.0
    connect_timeout: float = 5.0
    enquire_link_interval: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    throttle_min: float = 0.02
    throttle_max: float = 1.0
    extra_transient: frozenset[int] = frozenset()
    sink_timeout: float = 30.0
    inbound: InboundSink | None = None
    clock: Callable[[], float] = time.time
    stats: CarrierStats = field(default_factory=CarrierStats)
    latency_samples: list[float] | None = None  # when a list: submit->response seconds (bench)

    def __post_init__(self) -> None:
        self._options = SubmitOptions(self.concat, self.packed_gsm7, self.registered_delivery)
        self._encode = PartEncoder(self._options).encode
        self._links: list[Link] = []
        self._queue = SubmitQueue(self.stats, throttle_min=self.throttle_min,
                                  throttle_max=self.throttle_max,
                                  extra_transient=self.extra_transient,
                                  latency_samples=self.latency_samples)
        self._deliveries = Deliveries(self.name, inbound=self.inbound,
                                      packed_gsm7=self.packed_gsm7,
                                      sink_timeout=self.sink_timeout, clock=self.clock,
                                      stats=self.stats)
        _metrics.track(self)  # septet_smpp_window_in_use / _size, read at scrape time

    def window_usage(self) -> tuple[int, int]:
        """(submit_sm awaiting a response on the bound connections, ``window`` × ``binds``)."""
        return sum(link.session.in_flight for link in self._links), self.window * self.binds

    # -- Carrier protocol ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return any(link.session.bound for link in self._links)

    def _ring(self) -> None:
        for link in self._links:
            link.bell.ring()

    async def submit_many(self, parts: Sequence[SubmitPart]) -> list[SubmitResult]:
        """Submit ``parts`` (pipelined up to ``window`` per bind); one result per part, in order."""
        if not parts:
            return []
        if not self.ready:
            return [NOT_BOUND] * len(parts)
        call = Call(len(parts))
        deadline = trio.current_time() + self.submit_timeout
        pending = self._queue.pending
        encode = self._encode
        for index, part in enumerate(parts):
            try:
                frame = encode(part)
            except LocalProtocolViolation as exc:
                call.set(index, result(str(exc), "local_protocol_violation", transient=False))
                continue
            pending.append(Item(frame, call, index, deadline))
        self.stats.submitted += len(parts)
        self._ring()
        try:
            # The writers resolve every item by its deadline; the margin is a safety net.
            with trio.move_on_at(deadline + self.response_timeout + 1.0):
                await call.done.wait()
        finally:
            call.cancelled = True
        timeout = result("timeout", "timeout", transient=True, in_doubt=True)
        return [r if r is not None else timeout for r in call.results]

    async def run(
        self,
        receipts: ReceiptSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep ``binds`` connections bound (each reconnecting with back-off); feed receipts.

        Reports started as soon as one bind succeeds or every bind made its first attempt.
        """
        attempted: set[int] = set()
        started = False

        def first_attempt_done(index: int, bound: bool) -> None:
            nonlocal started
            attempted.add(index)
            if not started and (bound or len(attempted) == self.binds):
                started = True
                task_status.started()

        async with trio.open_nursery() as nursery:
            for index in range(self.binds):
                nursery.start_soon(self._keep_bound, index, receipts, first_attempt_done)

    async def _keep_bound(self, index: int, receipts: ReceiptSink,
                          first_attempt_done: Callable[[int, bool], None]) -> None:
        backoff = self.reconnect_min

        def bound() -> None:
            nonlocal backoff
            backoff = self.reconnect_min
            first_attempt_done(index, True)

        while True:
            try:
                reason = await self._connect_and_serve(receipts, bound)
            except* NETWORK_ERRORS as group:
                reason = f"{type(group.exceptions[0]).__name__}: {group.exceptions[0]}"
            logger.warning("smpp %s: connection %d ended (%s); reconnecting in %.1fs", self.name,
                           index, reason, backoff, extra={"carrier": self.name})
            first_attempt_done(index, False)
            if not self.ready:  # no other bind can take the queue: fail it now, not later
                self._queue.fail_all("connection lost", "connection_lost")
            # Not actors.backoff.delay: adapters may not import it (STYLE.md §1), and this one
            # draws from [0.5, 1) of the wait, reset by a bind rather than counted per attempt.
            await trio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, self.reconnect_max)

    def statistics(self) -> dict[str, Any]:
        """Counters plus the window in use and the parts waiting for it."""
        return {
            **{k: getattr(self.stats, k) for k in self.stats.__dataclass_fields__},
            "in_flight": sum(link.session.in_flight for link in self._links),
            "pending": len(self._queue.pending),
            "bound": sum(link.session.bound for link in self._links),
            "ready": self.ready,
        }

    # -- connection ------------------------------------------------------------------------

    async def _connect_and_serve(self, sink: ReceiptSink, on_bound: Callable[[], None]) -> str:
        """One connection from connect to close; returns why it ended."""
        with trio.fail_after(self.connect_timeout):
            stream = await trio.open_tcp_stream(self.host, self.port)
        self.stats.connects += 1
        async with stream:
            session = EsmeSession(now=trio.current_time(), window=self.window,
                                  response_timeout=self.response_timeout,
                                  enquire_link_interval=self.enquire_link_interval,
                                  receipt_fields=True)
            link = Link(session, stream)
            early = await bind(link, name=self.name, mode=self.bind_mode,
                               system_id=self.system_id, password=self.password,
                               system_type=self.system_type,
                               response_timeout=self.response_timeout)
            if early is None:
                return "bind refused"
            self._links.append(link)
            self.stats.binds += 1
            logger.info("smpp %s: bound as %s", self.name, self.bind_mode,
                        extra={"carrier": self.name})
            on_bound()
            send, recv = trio.open_memory_channel[list[Delivered]](64)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, link)
                    nursery.start_soon(self._deliveries.serve, link, recv, sink)
                    async with send:
                        await self._read_loop(link, send, early)
                    nursery.cancel_scope.cancel()
            finally:
                self._links.remove(link)
                await goodbye(link, self._handle)
                self._handle(link, session.connection_lost(), trio.current_time(), None)
                self._ring()  # the other binds take over the queue
            return link.close_reason

    # -- the read and write loops ----------------------------------------------------------

    async def _read_loop(self, link: Link, deliveries: trio.abc.SendChannel[list[Delivered]],
                         early: list[Event]) -> None:
        """Handle ``early`` (what arrived with bind_resp), then every read until the close."""
        events = early
        pending = self._queue.pending
        while True:
            batch: list[Delivered] = []
            now = trio.current_time()
            closed = self._handle(link, events, now, batch)
            # Refill the window and write before anything else: receipts can wait a little,
            # the round trip of the window is what bounds throughput.
            await self._flush(link, now)
            if pending:  # parts left (window full or paused): the writer times them
                link.bell.ring()
            if batch:
                await deliveries.send(batch)
            if closed:
                return
            data = await link.stream.receive_some(READ_SIZE)
            if not data:
                return
            events = link.session.receive_data(data, trio.current_time())

    async def _flush(self, link: Link, now: float) -> None:
        """Move pending parts into the window and write everything queued in one send."""
        queue = self._queue
        pending = queue.pending
        session = link.session
        room = session.submit_room
        if pending and room and now >= queue.paused_until:
            frames: list[bytes] = []
            items: list[Item] = []
            while pending and room:
                item = pending.popleft()
                if not item.call.cancelled:
                    item.sent_at = now
                    frames.append(item.frame)
                    items.append(item)
                    room -= 1
            session.submit_encoded_many(frames, items, now=now)
        data = session.data_to_send()
        if data:
            await link.send(data)

    async def _write_loop(self, link: Link) -> None:
        """Timers (response deadlines, keep-alive, throttle pauses) and new submits."""
        queue = self._queue
        pending = queue.pending
        session = link.session
        while True:
            wake = session.next_deadline()
            if pending:
                wake = min(wake, pending[0].deadline)
                if session.can_submit:
                    # Room in the window but parts still queued: only a throttle pause holds
                    # them. Wake when it ends (at once if it ended while we were busy).
                    wake = min(wake, queue.paused_until)
            await link.bell.wait_until(wake)
            now = trio.current_time()
            if self._handle(link, session.tick(now), now, None):
                return
            queue.expire(now)
            await self._flush(link, now)

    def _handle(self, link: Link, events: list[Event], now: float,
                deliveries: list[Delivered] | None) -> bool:
        """Apply session events; returns True when the session closed."""
        closed = False
        answered = self._queue.answered
        for event in events:
            if type(event) is SubmitAnswered:
                answered(event, now)
            elif type(event) is DeliverReceived:
                if deliveries is not None:  # else: not acknowledged, so the SMSC resends it
                    deliveries.append(event.pdu)
            elif type(event) is RequestTimedOut:
                item: Item = event.token
                self.stats.in_doubt += 1
                item.call.set(item.index, result("no response", "timeout", transient=True,
                                                 in_doubt=True))
            elif type(event) is Closed:
                link.close_reason = event.reason
                closed = True
        return closed
