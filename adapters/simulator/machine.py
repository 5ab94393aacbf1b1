"""The SMSC side of one SMPP connection as a sans-IO machine (the simulator's brain).

Theory of operation
-------------------
``receive_data(data, now)`` consumes what the ESME sent and queues answers; ``poll(now)``
returns the bytes due by ``now`` (delayed submit_sm_resp, receipts as deliver_sm) and
``next_deadline()`` says when to call it again. ``drop`` asks the driver to cut the
connection at once without writing (an injected disconnect or broken framing); ``closing``
asks it to write what is queued and then close (after unbind).

    state     input                        answer / next state                    spec
    OPEN      bind_* (credentials ok)      bind_*_resp ok -> BOUND                §4.1
    OPEN      bind_* (bad credentials)     bind_*_resp ESME_RINVPASWD             §4.1.2
    OPEN      submit_sm                    submit_sm_resp ESME_RINVBNDSTS         §2.3
    BOUND     bind_*                       bind_*_resp ESME_RALYBND               §5.1.3
    BOUND     submit_sm (tx/trx)           submit_sm_resp (id, throttled, error)  §4.4
    BOUND     submit_sm (receiver bind)    submit_sm_resp ESME_RINVBNDSTS         §2.3
    BOUND     deliver_sm_resp              receipt acknowledged                   §4.6.2
    any       enquire_link                 enquire_link_resp                      §4.11
    any       unbind                       unbind_resp, then close                §4.2
    any       malformed request            generic_nack (status from the decoder) §4.3
    any       broken framing               drop                                   §3.1

Receipts (§5.2.12 esm_class 0x04, appendix B text format) go back on the bind that
submitted, when it is a transceiver, at most ``config.window`` unacknowledged. One not
acknowledged within ``redeliver_after``, or refused with a non-zero deliver_sm_resp, is sent
again: the SMSC never drops a receipt, so only an ESME that acknowledges before storing can.
Mobile-originated replies (``config.mo_reply``, ``adapters.simulator.mo``) are deliver_sm too:
they share the receipts' window, redelivery and hold-for-the-next-bind rules, and have their
own counters (``mo_sent``, ``mo_acked``, ``mo_redelivered``).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from typing import Final

from adapters.errors import InvalidPdu, RemoteProtocolViolation
from adapters.simulator import _wire
from adapters.simulator.config import Delivery, PartKey, SimulatorState
from adapters.simulator.mo import MoPart, encode_mo, last_part, mo_parts
from adapters.smpp import pdu as p
from adapters.smpp import status as st

MESSAGE_STATES: Final[dict[str, int]] = {  # §5.2.28
    "ENROUTE": 1,
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
}
_ERRORS: Final[dict[str, int]] = {"DELIVRD": 0, "EXPIRED": 0x0FE, "UNDELIV": 0x001, "REJECTD": 0x00B}

_RESP: Final = 0
_RECEIPT: Final = 1  # a deliver_sm: a receipt tuple or an MoPart
_PERMANENT_REFUSAL: Final = 0x65  # ESME_RX_P_APPN (§5.1.3)


class SmscSession:
    """One connection, SMSC side. ``shared`` carries the config, counters, ids and RNG."""

    skip_heap = True
    """A receipt due at once goes straight to ``_ready`` when the heap would hand it out next
    anyway; False sends every one through the heap (the reference a test compares with)."""

    def __init__(self, shared: SimulatorState, *, now: float) -> None:
        self.shared = shared
        self.config = shared.config
        self.mode: p.BindMode | None = None
        self.system_id = ""
        self.drop = False
        self.closing = False
        self._framer = p.Framer()
        self._out: list[bytes] = []
        self._heap: list[tuple[float, int, int, object]] = []
        self._counter = 0
        self._sequence = 0
        self._pending_resps = 0
        self._unsent_resps = 0  # answers queued in _out, lost if the connection drops now
        # deliver_sm sequence -> (receipt, deadline) awaiting deliver_sm_resp
        self._unacked: dict[int, tuple[Delivery, float]] = {}
        # (sequence, deadline) in sending order, so in deadline order: the oldest unacknowledged
        # receipt is found at the front (acknowledged ones are skipped lazily), not by a scan
        self._sent: deque[tuple[int, float]] = deque()
        # receipts due while the window was full, in due order: sent as acks free slots
        self._ready: deque[Delivery] = deque()
        self._thresholds = self._outcome_thresholds()
        self._mo_numbers = {n.lstrip("+") for n in self.config.mo_numbers}  # "+" or not
        # The MO reply needs the whole submit_sm (its UDH, TONs): then every frame is decoded
        # in full; else submit_sm and deliver_sm_resp come as plain tuples (``_wire``).
        self._decode = p.decode_frame if self.config.mo_reply else _wire.decode
        self._instant = (self.config.latency <= 0 and not self.config.latency_jitter)
        shared.stats.connections += 1

    def _outcome_thresholds(self) -> list[tuple[float, str]]:
        total = sum(w for _, w in self.config.outcomes) or 1.0
        acc = 0.0
        out = []
        for stat, weight in self.config.outcomes:
            acc += weight / total
            out.append((acc, stat))
        return out

    # -- output ----------------------------------------------------------------------------

    def _schedule(self, due: float, kind: int, item: object) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (due, self._counter, kind, item))

    def next_deadline(self) -> float:
        deadline = self._heap[0][0] if self._heap else float("inf")
        if self._ready and len(self._unacked) < self.config.window:
            return float("-inf")  # receipts due and room in the window: now
        # A full window waits for an ack (read, then poll at once), not for a time.
        return min(deadline, self._oldest_unacked())  # resent first: all wait redeliver_after

    def _oldest_unacked(self) -> float:
        """Deadline of the oldest receipt awaiting its deliver_sm_resp (inf: none)."""
        sent, unacked = self._sent, self._unacked
        while sent:
            seq, at = sent[0]
            entry = unacked.get(seq)
            if entry is not None and entry[1] == at:
                return at
            sent.popleft()  # acknowledged (or sent again under a new deadline)
        return float("inf")

    def poll(self, now: float) -> bytes:
        """The bytes due by ``now``: answers first, then receipts within the window."""
        self._redeliver(now)
        heap = self._heap
        ready = self._ready
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if entry[2] == _RESP:
                self._pending_resps -= 1
                self._out.append(entry[3])  # type: ignore[arg-type]
            else:
                ready.append(entry[3])  # type: ignore[arg-type]
        window = self.config.window
        if ready and len(self._unacked) < window:
            done = _date_octets(self.shared.wall())  # one "done date" for this pass's receipts
            while ready and len(self._unacked) < window:  # the rest waits for acks to free slots
                self._send_receipt(ready.popleft(), now, done)
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        self._unsent_resps = 0
        return data

    def _redeliver(self, now: float) -> None:
        while self._oldest_unacked() <= now:
            seq, _ = self._sent.popleft()
            receipt, _ = self._unacked.pop(seq)
            if type(receipt) is MoPart:
                self.shared.stats.mo_redelivered += 1
            else:
                self.shared.stats.receipts_redelivered += 1
            self._schedule(now, _RECEIPT, receipt)

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Consume bytes from the ESME; answers are queued for ``poll``."""
        if self.drop:
            return
        try:
            pdus = self._framer.feed(data, self._decode)
        except RemoteProtocolViolation:
            self.drop = True
            return
        for pdu in pdus:
            kind = type(pdu)
            if kind is tuple:  # _wire's: a submit_sm without TLVs, or a deliver_sm_resp
                if len(pdu) == 2:
                    self._delivered(*pdu)
                    continue
                seq, source, destination, message, registered = pdu
                self._submit(seq, source, destination, message, 0, 0, registered, now, None)
            elif kind is p.SubmitSm:
                content = pdu.short_message or pdu.message_payload or b""
                self._submit(pdu.sequence, pdu.source_addr, pdu.destination_addr, content,
                             pdu.sar_msg_ref_num or 0, pdu.sar_segment_seqnum or 0,
                             pdu.registered_delivery, now, pdu)
            elif kind is p.DeliverSmResp:
                self._delivered(pdu.sequence, pdu.status)
                continue
            else:
                self._other(pdu)
                continue
            if self.drop:  # _submit may set it; mypy keeps the narrowing from the top
                return  # type: ignore[unreachable, unused-ignore]  # only with warn_unreachable

    def _reply(self, data: bytes) -> None:
        self._out.append(data)

    def _other(self, pdu: p.Pdu | InvalidPdu) -> None:
        stats = self.shared.stats
        match pdu:
            case p.BindRequest():
                self._bind(pdu)
            case p.EnquireLink():
                stats.enquire_links += 1
                self._reply(p.encode(p.EnquireLinkResp(pdu.sequence)))
            case p.Unbind():
                stats.unbinds += 1
                self._reply(p.encode(p.UnbindResp(pdu.sequence)))
                self.closing = True
            case p.EnquireLinkResp() | p.UnbindResp() | p.GenericNack():
                pass
            case InvalidPdu():
                stats.generic_nacks_sent += 1
                self._reply(p.encode(p.GenericNack(pdu.sequence, pdu.status)))
            case _:
                stats.generic_nacks_sent += 1
                self._reply(p.encode(p.GenericNack(pdu.sequence, st.ESME_RINVCMDID)))

    def _bind(self, pdu: p.BindRequest) -> None:
        cfg = self.config
        if self.mode is not None:
            status = st.ESME_RALYBND
        elif cfg.system_id and pdu.system_id != cfg.system_id:
            status = 0x0F  # ESME_RINVSYSID
        elif cfg.password and pdu.password != cfg.password:
            status = st.ESME_RINVPASWD
        else:
            status = st.ESME_ROK
            self.mode = pdu.mode
            self.system_id = pdu.system_id
            self.shared.stats.binds += 1
            if pdu.mode != "transmitter":
                for receipt in self.shared.held.pop(pdu.system_id, []):
                    self._schedule(0.0, _RECEIPT, receipt)
        if status:
            self.shared.stats.bind_failures += 1
        resp = p.BindResponse(pdu.mode, pdu.sequence, status, "SEPTETSIM" if not status else "",
                              0x34 if not status else None)
        self._reply(p.encode(resp))

    def _submit(self, seq: int, source: str, destination: str, content: bytes, sar_ref: int,
                sar_seq: int, registered: int, now: float, pdu: p.SubmitSm | None) -> None:
        """Answer one submit_sm; ``pdu`` is the decoded PDU, None when read by ``_wire``
        (never when an MO reply is configured, which needs it)."""
        shared = self.shared
        stats = shared.stats
        cfg = self.config
        rng = shared.rng
        stats.submits_received += 1
        key: PartKey = (destination, content, sar_ref, sar_seq)
        received = stats.received
        received[key] = received.get(key, 0) + 1  # Counter's ``+= 1`` without __missing__
        if cfg.disconnect_rate and rng.random() < cfg.disconnect_rate:
            stats.disconnects_injected += 1
            stats.submits_unanswered += 1 + self._pending_resps + self._unsent_resps
            self.drop = True
            return
        if self.mode is None or self.mode == "receiver":
            return self._answer(seq, st.ESME_RINVBNDSTS, "", now)
        if len(destination) > 20 or not destination:  # §5.2.9: 21 with NUL
            stats.submits_rejected += 1
            return self._answer(seq, st.ESME_RINVDSTADR, "", now)
        if len(source) > 20:
            stats.submits_rejected += 1
            return self._answer(seq, st.ESME_RINVSRCADR, "", now)
        if self._pending_resps >= cfg.window:
            stats.submits_throttled += 1
            return self._answer(seq, st.ESME_RMSGQFUL, "", now)
        if shared.bucket is not None and not shared.bucket.take(now):
            stats.submits_throttled += 1
            return self._answer(seq, st.ESME_RTHROTTLED, "", now)
        if cfg.submit_error_rate and rng.random() < cfg.submit_error_rate:
            stats.submits_rejected += 1
            return self._answer(seq, cfg.submit_error_status, "", now)
        number = shared.allocate_id()
        stats.submits_accepted += 1
        accepted = stats.accepted
        accepted[key] = accepted.get(key, 0) + 1
        resp_id = f"{number:X}" if cfg.id_format != "decimal" else str(number)
        if self._instant:  # answered in this pass: no delay to draw, nothing to schedule
            self._unsent_resps += 1
            self._out.append(_wire.submit_sm_resp(seq, st.ESME_ROK, resp_id))
        else:
            self._answer(seq, st.ESME_ROK, resp_id, now)
        if cfg.receipts and registered & 0x03 and self.mode == "transceiver":
            receipt_id = f"{number:X}" if cfg.id_format == "hex" else str(number)
            delay = cfg.receipt_delay_min
            if cfg.receipt_delay_max > delay:
                delay += rng.random() * (cfg.receipt_delay_max - delay)
            receipt = (receipt_id, source, destination, content[:20], shared.wall(),
                       self._outcome(rng.random()))
            due = now + delay
            heap = self._heap
            if self.skip_heap and due <= now and (not heap or heap[0][0] > due):
                # Due now and everything scheduled is due later: the heap would hand this one
                # out next (poll moves what is due into ``_ready`` in due order): skip it.
                self._ready.append(receipt)
            else:
                self._schedule(due, _RECEIPT, receipt)
        if cfg.mo_reply and pdu is not None and self.mode == "transceiver" and last_part(pdu) and (
                not cfg.mo_numbers or destination.lstrip("+") in self._mo_numbers):
            # The handset answers: from the submit's destination to its sender.
            for part in mo_parts(cfg.mo_reply, source=destination,
                                 destination=source, reference=number,
                                 packed=cfg.mo_packed_gsm7, concat=cfg.mo_concat,
                                 source_ton=pdu.dest_addr_ton,
                                 destination_ton=pdu.source_addr_ton):
                self._schedule(now + cfg.mo_delay, _RECEIPT, part)

    def _answer(self, seq: int, status: int, message_id: str, now: float) -> None:
        data = p.encode_submit_sm_resp(seq, status, message_id)
        delay = self.config.latency
        if self.config.latency_jitter:
            delay += self.shared.rng.random() * self.config.latency_jitter
        if delay <= 0:
            self._unsent_resps += 1
            self._out.append(data)
        else:
            self._pending_resps += 1
            stats = self.shared.stats
            stats.peak_pending_responses = max(stats.peak_pending_responses, self._pending_resps)
            self._schedule(now + delay, _RESP, data)

    def _outcome(self, draw: float) -> str:
        for threshold, stat in self._thresholds:
            if draw < threshold:
                return stat
        return self._thresholds[-1][1]

    # -- receipts --------------------------------------------------------------------------

    def _send_receipt(self, receipt: Delivery, now: float, done: bytes) -> None:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        if isinstance(receipt, MoPart):  # an MO message, not a receipt
            self._out.append(encode_mo(self._sequence, receipt))
            self.shared.stats.mo_sent += 1
            self._track(receipt, now)
            return
        receipt_id, source, dest, head, submitted, stat = receipt
        err = _ERRORS.get(stat, 0)
        text = _wire.receipt_text(receipt_id, stat, err, _date_octets(submitted), done, head)
        state = MESSAGE_STATES.get(stat, 7) if self.config.receipt_tlvs else None
        # The handset is the receipt's source, our ESME's sender its destination.
        self._out.append(_wire.receipt_deliver_sm(self._sequence, dest, source, text, receipt_id,
                                                  state, err))
        self._track(receipt, now)
        self.shared.stats.receipts_sent += 1

    def _track(self, delivery: Delivery, now: float) -> None:
        """Await the deliver_sm_resp of the deliver_sm just queued (redelivered past it)."""
        deadline = now + self.config.redeliver_after
        self._unacked[self._sequence] = (delivery, deadline)
        self._sent.append((self._sequence, deadline))

    def connection_lost(self) -> None:
        """The connection is gone: keep its receipts not yet acknowledged (sent or not) for
        the next receiving bind of the same system_id."""
        if self.mode in (None, "transmitter"):
            return
        pending = [receipt for receipt, _ in self._unacked.values()]  # sent first: oldest
        pending += self._ready
        pending += [entry[3] for entry in sorted(self._heap)  # type: ignore[misc]
                    if entry[2] == _RECEIPT]
        if pending:
            self.shared.held.setdefault(self.system_id, []).extend(pending)
        self._heap = [entry for entry in self._heap if entry[2] != _RECEIPT]
        heapq.heapify(self._heap)
        self._unacked.clear()
        self._sent.clear()
        self._ready.clear()

    def _delivered(self, sequence: int, status: int) -> None:
        """The deliver_sm_resp for ``sequence`` came back with ``status``."""
        entry = self._unacked.pop(sequence, None)
        if entry is None:
            return
        stats = self.shared.stats
        mo = type(entry[0]) is MoPart
        if status == st.ESME_ROK:
            if mo:
                stats.mo_acked += 1
            else:
                stats.receipts_acked += 1
        elif status == _PERMANENT_REFUSAL and mo:  # the ESME says resending cannot help
            stats.mo_refused += 1
        else:  # the ESME could not take it: send it again later
            if mo:
                stats.mo_redelivered += 1
            else:
                stats.receipts_redelivered += 1
            self._schedule(entry[1], _RECEIPT, entry[0])


_DATE_CACHE: dict[int, bytes] = {}


def _date_octets(at: float) -> bytes:
    """YYMMDDhhmm in UTC, as the receipt text uses (SMPP 3.4 appendix B), cached per minute."""
    minute = int(at // 60)
    text = _DATE_CACHE.get(minute)
    if text is None:
        if len(_DATE_CACHE) > 64:
            _DATE_CACHE.clear()
        text = time.strftime("%y%m%d%H%M", time.gmtime(minute * 60)).encode("ascii")
        _DATE_CACHE[minute] = text
    return text


def _smpp_date(at: float) -> str:
    """YYMMDDhhmm in UTC, as the receipt text uses (SMPP 3.4 appendix B)."""
    return _date_octets(at).decode("ascii")


def receipt_text(receipt_id: str, stat: str, err: int, submitted: float, done: float,
                 head: bytes) -> bytes:
    """The conventional receipt text (SMPP 3.4 appendix B)."""
    return _wire.receipt_text(receipt_id, stat, err, _date_octets(submitted), _date_octets(done),
                              head)


def encode_receipt(sequence: int, source: str, destination: str, text: bytes, receipt_id: str,
                   state: int | None, err: int) -> bytes:
    """A receipt deliver_sm; equal to ``pdu.encode(DeliverSm(...))`` (a test checks), built
    directly because the simulator sends one per accepted submit. ``state`` None: no TLVs.

    Addresses were checked on submit (at most 20 octets), ids are ours: nothing can overflow.
    """
    return _wire.receipt_deliver_sm(sequence, source, destination, text, receipt_id, state, err)
