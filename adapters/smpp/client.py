"""``SmppCarrier``: the trio driver around ``EsmeSession`` that satisfies ``actors.ports.Carrier``.

It owns the sockets and nothing else of substance: the session decides, this moves bytes.
``submit_many`` encodes its parts once and appends them to one queue shared by the
connector's ``binds`` connections. Per connection three tasks run in one nursery:

* the reader: bytes -> session -> results; then it refills the window from the queue and
  writes everything queued in ONE send (the window's round trip bounds throughput, so this
  happens before receipts are looked at); deliver_sm go to the receipt task;
* the writer: the session's timers (response deadlines, keep-alive), throttle pauses, and
  parts queued while the reader was idle;
* the receipt task: parses receipts and mobile-originated (MO) messages, hands them to their
  sinks and acknowledges them only after the sink returns (``adapters.smpp.inbound``).

``run`` keeps every connection bound, reconnecting with exponential back-off.
``submit_many`` never raises per part: each part gets a ``SubmitResult``; throttling (0x58,
0x14) pauses sending and re-queues the part without failing it until the part's deadline.

Must not import: gateway, any actor module.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from actors.messages import SubmitPart
from actors.ports import ReceiptSink, SubmitResult
from adapters._doorbell import Doorbell
from adapters.errors import LocalProtocolViolation, RemoteProtocolViolation
from adapters.smpp import _metrics
from adapters.smpp import pdu as p
from adapters.smpp import status as st
from adapters.smpp.inbound import (
    ESME_RX_P_APPN,
    InboundPart,
    InboundSink,
    InvalidMo,
    parse_mo,
)
from adapters.smpp.receipts import parse_receipt
from adapters.smpp.session import (
    BindFailed,
    Bound,
    Closed,
    DeliverReceived,
    EsmeSession,
    Event,
    RequestTimedOut,
    State,
    SubmitAnswered,
)
from adapters.smpp.submit import Concat, SubmitOptions, encode_part

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
_NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                   RemoteProtocolViolation)


class _Link:
    """One connection: its session, socket, wake-up bell and write lock."""

    __slots__ = ("session", "stream", "bell", "send_lock", "close_reason")

    def __init__(self, session: EsmeSession, stream: trio.SocketStream) -> None:
        self.session = session
        self.stream = stream
        self.bell = Doorbell()
        self.send_lock = trio.StrictFIFOLock()
        self.close_reason = "closed by the SMSC"

    async def send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send_all(data)


class _Call:
    """One ``submit_many`` call: its results fill in as answers come, then ``done`` fires."""

    __slots__ = ("results", "remaining", "done", "cancelled")

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
class _Item:
    """A part waiting for, or in, the window."""

    frame: bytes
    call: _Call
    index: int
    deadline: float
    slowed_by: int = 0  # the last slow-down status (0x58/0x14) this part got, if any
    sent_at: float = 0.0


@dataclass(slots=True)
class CarrierStats:
    """Cheap counters for metrics and the benchmark."""

    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    throttled: int = 0
    in_doubt: int = 0
    receipts: int = 0
    other_deliveries: int = 0  # MO acknowledged and dropped: no inbound sink
    inbound: int = 0  # MO parts stored by the inbound sink
    inbound_refused: int = 0  # MO parts refused (0x64) because the sink failed
    inbound_invalid: int = 0  # MO parts that cannot be decoded, refused for good (0x65)
    connects: int = 0
    binds: int = 0


def _result(error: str, code: str, *, transient: bool, in_doubt: bool = False) -> SubmitResult:
    return SubmitResult(error=error, code=code, transient=transient, in_doubt=in_doubt)


NOT_BOUND = _result("not bound", "not_bound", transient=True)


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
        self._links: list[_Link] = []
        self._pending: deque[_Item] = deque()
        self._paused_until = 0.0
        self._throttle = self.throttle_min
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
        call = _Call(len(parts))
        deadline = trio.current_time() + self.submit_timeout
        for index, part in enumerate(parts):
            try:
                frame = encode_part(part, self._options)
            except LocalProtocolViolation as exc:
                call.set(index, _result(str(exc), "local_protocol_violation", transient=False))
                continue
            self._pending.append(_Item(frame, call, index, deadline))
        self.stats.submitted += len(parts)
        self._ring()
        try:
            # The writers resolve every item by its deadline; the margin is a safety net.
            with trio.move_on_at(deadline + self.response_timeout + 1.0):
                await call.done.wait()
        finally:
            call.cancelled = True
        timeout = _result("timeout", "timeout", transient=True, in_doubt=True)
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
            except* _NETWORK_ERRORS as group:
                reason = f"{type(group.exceptions[0]).__name__}: {group.exceptions[0]}"
            logger.warning("smpp %s: connection %d ended (%s); reconnecting in %.1fs", self.name,
                           index, reason, backoff, extra={"carrier": self.name})
            first_attempt_done(index, False)
            if not self.ready:  # no other bind can take the queue: fail it now, not later
                self._fail_pending("connection lost", "connection_lost")
            await trio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, self.reconnect_max)

    def statistics(self) -> dict[str, Any]:
        """Counters plus the window in use and the parts waiting for it."""
        return {
            **{k: getattr(self.stats, k) for k in self.stats.__dataclass_fields__},
            "in_flight": sum(link.session.in_flight for link in self._links),
            "pending": len(self._pending),
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
                                  enquire_link_interval=self.enquire_link_interval)
            link = _Link(session, stream)
            early = await self._bind(link)
            if early is None:
                return "bind refused"
            self._links.append(link)
            self.stats.binds += 1
            logger.info("smpp %s: bound as %s", self.name, self.bind_mode,
                        extra={"carrier": self.name})
            on_bound()
            send, recv = trio.open_memory_channel[list[p.DeliverSm]](64)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, link)
                    nursery.start_soon(self._receipt_loop, link, recv, sink)
                    async with send:
                        await self._read_loop(link, send, early)
                    nursery.cancel_scope.cancel()
            finally:
                self._links.remove(link)
                await self._goodbye(link)
                self._handle(link, session.connection_lost(), trio.current_time(), None)
                self._ring()  # the other binds take over the queue
            return link.close_reason

    async def _bind(self, link: _Link) -> list[Event] | None:
        """Bind; returns the events that came after ``bind_resp`` in the same read (an SMSC
        sends receipts it held for us right after it: they are ours to acknowledge), or None
        when the bind is refused."""
        session = link.session
        session.bind(self.bind_mode, self.system_id, self.password, now=trio.current_time(),
                     system_type=self.system_type)
        await link.send(session.data_to_send())
        with trio.fail_after(self.response_timeout):
            while True:
                data = await link.stream.receive_some(READ_SIZE)
                if not data:
                    raise trio.BrokenResourceError("closed during bind")
                events = session.receive_data(data, trio.current_time())
                for i, event in enumerate(events):
                    if isinstance(event, Bound):
                        return events[i + 1:]
                    if isinstance(event, BindFailed):
                        logger.error("smpp %s: bind refused: %s", self.name,
                                     st.name(event.status), extra={"carrier": self.name})
                        return None
                    if isinstance(event, Closed):
                        raise trio.BrokenResourceError(event.reason)

    async def _goodbye(self, link: _Link) -> None:
        """On shutdown: let the window drain, then unbind (§4.2); bounded and shielded."""
        session = link.session
        if not session.bound:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await link.send(session.data_to_send())
                if session.in_flight:
                    await self._drain(link, lambda: session.in_flight > 0)
                session.unbind(now=trio.current_time())
                await link.send(session.data_to_send())
                await self._drain(link, lambda: session.state is State.UNBINDING)
            except (*_NETWORK_ERRORS, LocalProtocolViolation):
                pass

    async def _drain(self, link: _Link, condition: Callable[[], bool]) -> None:
        while condition():
            data = await link.stream.receive_some(READ_SIZE)
            if not data:
                return
            now = trio.current_time()
            self._handle(link, link.session.receive_data(data, now), now, None)

    # -- the three loops -------------------------------------------------------------------

    async def _read_loop(self, link: _Link, deliveries: trio.abc.SendChannel[list[p.DeliverSm]],
                         early: list[Event]) -> None:
        """Handle ``early`` (what arrived with bind_resp), then every read until the close."""
        events = early
        while True:
            batch: list[p.DeliverSm] = []
            now = trio.current_time()
            closed = self._handle(link, events, now, batch)
            # Refill the window and write before anything else: receipts can wait a little,
            # the round trip of the window is what bounds throughput.
            await self._flush(link, now)
            if self._pending:  # parts left (window full or paused): the writer times them
                link.bell.ring()
            if batch:
                await deliveries.send(batch)
            if closed:
                return
            data = await link.stream.receive_some(READ_SIZE)
            if not data:
                return
            events = link.session.receive_data(data, trio.current_time())

    async def _flush(self, link: _Link, now: float) -> None:
        """Move pending parts into the window and write everything queued in one send."""
        pending = self._pending
        session = link.session
        if now >= self._paused_until:
            while pending and session.can_submit:
                item = pending.popleft()
                if not item.call.cancelled:
                    item.sent_at = now
                    session.submit_encoded(item.frame, now=now, token=item)
        data = session.data_to_send()
        if data:
            await link.send(data)

    async def _write_loop(self, link: _Link) -> None:
        """Timers (response deadlines, keep-alive, throttle pauses) and new submits."""
        pending = self._pending
        session = link.session
        while True:
            wake = session.next_deadline()
            if pending:
                wake = min(wake, pending[0].deadline)
                if session.can_submit:
                    # Room in the window but parts still queued: only a throttle pause holds
                    # them. Wake when it ends (at once if it ended while we were busy).
                    wake = min(wake, self._paused_until)
            await link.bell.wait_until(wake)
            now = trio.current_time()
            if self._handle(link, session.tick(now), now, None):
                return
            self._expire_pending(now)
            await self._flush(link, now)

    async def _receipt_loop(self, link: _Link, recv: trio.MemoryReceiveChannel[list[p.DeliverSm]],
                            sink: ReceiptSink) -> None:
        async with recv:
            async for batch in recv:
                while True:  # drain what is waiting: one sink call for all of it
                    try:
                        batch += recv.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._store_and_acknowledge(link.session, batch, sink)
                link.bell.ring()

    async def _store_and_acknowledge(self, session: EsmeSession, batch: list[p.DeliverSm],
                                     sink: ReceiptSink) -> None:
        """Hand receipts and MO parts to their sinks; answer each deliver_sm after (§4.6.2)."""
        received_at = self.clock()
        receipts = []
        mo: list[tuple[int, InboundPart]] = []
        answers: dict[int, int] = {}  # sequence -> status, for what needs no sink
        for d in batch:
            receipt = parse_receipt(d, connector=self.name, received_at=received_at)
            if receipt is not None:
                receipts.append((d.sequence, receipt))
            elif self.inbound is None:
                self.stats.other_deliveries += 1  # MO without a sink: acknowledged, not kept
                answers[d.sequence] = st.ESME_ROK
            else:
                try:
                    mo.append((d.sequence, parse_mo(d, connector=self.name,
                                                    received_at=received_at,
                                                    packed_gsm7=self.packed_gsm7)))
                except InvalidMo as exc:  # resending cannot help: refuse it for good
                    logger.warning("smpp %s: MO refused: %s", self.name, exc,
                                   extra={"carrier": self.name})
                    self.stats.inbound_invalid += 1
                    answers[d.sequence] = ESME_RX_P_APPN
        if receipts:
            status = await self._to_sink(sink, [r for _, r in receipts], "receipt")
            self.stats.receipts += len(receipts) if status == st.ESME_ROK else 0
            answers.update((seq, status) for seq, _ in receipts)
        if mo:
            assert self.inbound is not None
            status = await self._to_sink(self.inbound, [m for _, m in mo], "inbound")
            if status == st.ESME_ROK:
                self.stats.inbound += len(mo)
            else:
                self.stats.inbound_refused += len(mo)
            answers.update((seq, status) for seq, _ in mo)
        for d in batch:
            session.acknowledge(d.sequence, answers[d.sequence])

    async def _to_sink(self, sink: Callable[[Any], Any], items: list[Any], what: str) -> int:
        """Call ``sink`` within ``sink_timeout``; the deliver_sm_resp status to answer with."""
        try:
            with trio.fail_after(self.sink_timeout):
                await sink(items)
        except Exception:  # not stored: refuse them so that the SMSC resends (§4.6.2)
            logger.exception("smpp %s: %s sink failed", self.name, what,
                             extra={"carrier": self.name})
            return st.ESME_RX_T_APPN
        return st.ESME_ROK

    # -- outcomes --------------------------------------------------------------------------

    def _handle(self, link: _Link, events: list[Event], now: float,
                deliveries: list[p.DeliverSm] | None) -> bool:
        """Apply session events; returns True when the session closed."""
        closed = False
        for event in events:
            if type(event) is SubmitAnswered:
                self._answered(event, now)
            elif type(event) is DeliverReceived:
                if deliveries is not None:  # else: not acknowledged, so the SMSC resends it
                    deliveries.append(event.pdu)
            elif type(event) is RequestTimedOut:
                item: _Item = event.token
                self.stats.in_doubt += 1
                item.call.set(item.index, _result("no response", "timeout", transient=True,
                                                  in_doubt=True))
            elif type(event) is Closed:
                link.close_reason = event.reason
                closed = True
        return closed

    def _answered(self, event: SubmitAnswered, now: float) -> None:
        item: _Item = event.token
        status = event.status
        if self.latency_samples is not None:
            self.latency_samples.append(now - item.sent_at)
        if status == st.ESME_ROK and not event.malformed:
            self.stats.accepted += 1
            self._throttle = self.throttle_min
            item.call.set(item.index, SubmitResult(carrier_id=event.message_id))
        elif status in st.SLOW_DOWN and now < item.deadline and not item.call.cancelled:
            # §5.1.3: slow down and send again; the part is not failed (until its deadline).
            self.stats.throttled += 1
            item.slowed_by = status
            if now >= self._paused_until:
                self._paused_until = now + self._throttle
                self._throttle = min(self._throttle * 2, self.throttle_max)
            self._pending.appendleft(item)
        elif event.malformed:
            self.stats.in_doubt += 1
            item.call.set(item.index, _result("malformed response", "remote_protocol_violation",
                                              transient=True, in_doubt=True))
        else:
            self.stats.rejected += 1
            item.call.set(item.index, _result(st.name(status), st.code(status),
                                              transient=st.is_transient(status,
                                                                        self.extra_transient)))

    def _expire_pending(self, now: float) -> None:
        pending = self._pending
        while pending and (pending[0].deadline <= now or pending[0].call.cancelled):
            item = pending.popleft()
            if item.slowed_by:  # still throttled at its deadline: say so (rate feedback)
                result = _result(st.name(item.slowed_by), st.code(item.slowed_by), transient=True)
            else:
                result = _result("deadline passed before sending", "timeout", transient=True)
            item.call.set(item.index, result)

    def _fail_pending(self, error: str, code: str) -> None:
        while self._pending:
            item = self._pending.popleft()
            item.call.set(item.index, _result(error, code, transient=True))
