"""The ESME side of an SMPP 3.4 session as a sans-IO state machine.

Theory of operation
-------------------
The driver (``client.py``) owns the socket. It calls ``bind``/``submit``/``acknowledge``/
``unbind`` to queue PDUs, ``receive_data(data, now)`` with every chunk read, ``tick(now)``
when ``next_deadline()`` passes, and writes ``data_to_send()`` in one send. Events come back
as values. Time is always an argument (``now``, monotonic seconds); nothing here sleeps.

States and transitions (``TRANSITIONS`` is the table the code reads; SMPP v3.4 §2.2-2.3):

    state        input                        next state   spec
    OPEN         send bind_*                  BINDING      §4.1.1/§4.1.3/§4.1.5
    BINDING      bind_*_resp ok               BOUND        §4.1.2
    BINDING      bind_*_resp error / nack     CLOSED       §4.1.2, §4.3
    BOUND        send unbind                  UNBINDING    §4.2.1
    BOUND        receive unbind               CLOSED       §4.2.1 (we answer unbind_resp)
    UNBINDING    unbind_resp                  CLOSED       §4.2.2
    any          enquire_link unanswered      CLOSED       §4.11 (link is dead)
    any          broken framing               CLOSED       §3.1 (stream cannot resync)

Rules that hold in every state:
  * Sequence numbers run 1..0x7FFFFFFF and wrap (§5.1.4 / §3.2).
  * At most ``window`` submit_sm are outstanding (§2.5, "windowing"); each outstanding
    request has a response deadline of ``now + response_timeout``; past it the request is
    given up (``RequestTimedOut``; for a submit this is "in doubt": the SMSC may have it).
  * After ``enquire_link_interval`` without receiving anything, an enquire_link goes out
    (§4.11); if it is not answered within ``response_timeout`` the link is declared dead.
  * Incoming enquire_link and unbind are answered here; deliver_sm is handed up as an event
    and answered only when the driver calls ``acknowledge`` (after the receipt is stored).
  * A malformed request from the SMSC gets generic_nack with the status the decoder chose
    (§4.3); a malformed response resolves its request as failed; the session goes on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, NamedTuple

from adapters.errors import InvalidPdu, LocalProtocolViolation, RemoteProtocolViolation
from adapters.smpp import _fast
from adapters.smpp import pdu as p
from adapters.smpp import status as st
from adapters.smpp._fast import ReceiptFields


class State(Enum):
    OPEN = "OPEN"
    BINDING = "BINDING"
    BOUND = "BOUND"
    UNBINDING = "UNBINDING"
    CLOSED = "CLOSED"


TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (State.OPEN, "send_bind"): State.BINDING,
    (State.BINDING, "bind_ok"): State.BOUND,
    (State.BINDING, "bind_failed"): State.CLOSED,
    (State.BOUND, "send_unbind"): State.UNBINDING,
    (State.BOUND, "peer_unbind"): State.CLOSED,
    (State.UNBINDING, "peer_unbind"): State.CLOSED,
    (State.UNBINDING, "unbind_resp"): State.CLOSED,
}
"""(state, input) -> next state. Link death and broken framing close from any state."""


# --------------------------------------------------------------------------------------------
# Events handed to the driver.


@dataclass(frozen=True, slots=True)
class Bound:
    """The bind succeeded."""

    mode: p.BindMode
    system_id: str


@dataclass(frozen=True, slots=True)
class BindFailed:
    """The SMSC refused the bind (bad password, too many binds...)."""

    status: int


class SubmitAnswered(NamedTuple):
    """A submit_sm got its response (or a generic_nack, or a response we could not parse).

    A NamedTuple rather than a frozen dataclass, as is ``DeliverReceived``: one is made per
    PDU on the client's hot path and a tuple is made in about half the time.
    """

    sequence: int
    token: Any
    status: int
    message_id: str
    malformed: bool = False


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """No response within ``response_timeout``; ``token`` is the submit's token (or None)."""

    sequence: int
    token: Any


class DeliverReceived(NamedTuple):
    """A deliver_sm arrived; call ``acknowledge(pdu.sequence)`` once it is handled.

    ``pdu`` is a ``ReceiptFields`` (what ``parse_receipt`` would read from it) for a receipt
    of the common shape when the session was made with ``receipt_fields=True``.
    """

    pdu: p.DeliverSm | ReceiptFields


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over (unbound, link dead, or the peer broke the protocol)."""

    reason: str


@dataclass(frozen=True, slots=True)
class OutbindReceived:
    """The SMSC asked us to bind as a receiver (§4.1.7)."""

    system_id: str


Event = Bound | BindFailed | SubmitAnswered | RequestTimedOut | DeliverReceived | Closed | OutbindReceived

_BIND = 0
_SUBMIT = 1
_ENQUIRE = 2
_UNBIND = 3
MAX_SEQUENCE: Final = 0x7FFFFFFF
_SEQ: Final = struct.Struct(">I")


class EsmeSession:
    """One SMPP connection seen from the ESME (client) side. See the module docstring."""

    def __init__(
        self,
        *,
        now: float,
        window: int = 64,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        receipt_fields: bool = False,
    ) -> None:
        self.state = State.OPEN
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.mode: p.BindMode | None = None
        self._framer = p.Framer()
        # submit_sm_resp come as (sequence, status, message_id) tuples, receipts maybe as
        # ReceiptFields; everything else as decode_frame makes it (adapters.smpp._fast)
        self._decode = _fast.decode_with_receipts if receipt_fields else _fast.decode
        self._out: list[bytes] = []
        self._sequence = 0
        # sequence -> [kind, token, deadline]; insertion order is deadline order because the
        # timeout is fixed and ``now`` is monotonic, so the earliest deadline is the first key.
        self._outstanding: dict[int, list[Any]] = {}
        self._submits = 0
        self._last_received = now
        self._enquire_pending = False

    # -- state ---------------------------------------------------------------------------

    def _move(self, event: str) -> None:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise LocalProtocolViolation(f"{event} is not allowed in state {self.state.value}")
        self.state = nxt

    @property
    def bound(self) -> bool:
        return self.state is State.BOUND

    @property
    def can_submit(self) -> bool:
        """Bound in a mode that may submit, with room in the window."""
        return self.state is State.BOUND and self.mode != "receiver" and self._submits < self.window

    @property
    def submit_room(self) -> int:
        """How many submit_sm may be queued now (0 unless ``can_submit``)."""
        if self.state is not State.BOUND or self.mode == "receiver":
            return 0
        return max(0, self.window - self._submits)

    @property
    def window_free(self) -> int:
        return self.window - self._submits if self.state is State.BOUND else 0

    @property
    def in_flight(self) -> int:
        """submit_sm sent and not yet answered."""
        return self._submits

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % MAX_SEQUENCE + 1
        return self._sequence

    def _request(self, pdu: p.Pdu, kind: int, token: Any, now: float) -> int:
        self._out.append(p.encode(pdu))
        self._outstanding[pdu.sequence] = [kind, token, now + self.response_timeout]
        return pdu.sequence

    # -- commands --------------------------------------------------------------------------

    def bind(self, mode: p.BindMode, system_id: str, password: str, *, now: float,
             system_type: str = "", address_range: str = "") -> None:
        """Queue a bind_<mode> (OPEN -> BINDING)."""
        self._move("send_bind")
        self.mode = mode
        pdu = p.BindRequest(mode, self._next_sequence(), system_id, password, system_type,
                            0x34, 0, 0, address_range)
        self._request(pdu, _BIND, None, now)

    def submit(self, pdu: p.SubmitSm, *, now: float, token: Any = None) -> int:
        """Queue a submit_sm, assigning its sequence number; returns the sequence.

        Raises:
            LocalProtocolViolation: not bound for submitting, window full, or a bad field.
        """
        if not self.can_submit:
            raise LocalProtocolViolation(f"cannot submit in {self.state.value} (window or bind)")
        pdu.sequence = self._next_sequence()
        self._request(pdu, _SUBMIT, token, now)
        self._submits += 1
        return pdu.sequence

    def submit_encoded(self, frame: bytes, *, now: float, token: Any = None) -> int:
        """Like ``submit`` for a submit_sm already encoded (with any sequence number).

        The fast path: the driver encodes each part once and only the sequence is patched in.
        """
        if not self.can_submit:
            raise LocalProtocolViolation(f"cannot submit in {self.state.value} (window or bind)")
        seq = self._next_sequence()
        self._out.append(frame[:12] + _SEQ.pack(seq) + frame[16:])
        self._outstanding[seq] = [_SUBMIT, token, now + self.response_timeout]
        self._submits += 1
        return seq

    def submit_encoded_many(self, frames: list[bytes], tokens: list[Any], *, now: float) -> None:
        """``submit_encoded`` for each frame with its token, in order, in one call (the
        driver's window refill): the same octets, sequences and deadlines.

        Raises:
            LocalProtocolViolation: more frames than ``submit_room``.
        """
        if len(frames) > self.submit_room:
            raise LocalProtocolViolation(f"cannot submit {len(frames)} in {self.state.value} "
                                         "(window or bind)")
        out = self._out
        outstanding = self._outstanding
        deadline = now + self.response_timeout
        pack = _SEQ.pack
        seq = self._sequence
        for frame, token in zip(frames, tokens, strict=True):
            seq = seq % MAX_SEQUENCE + 1
            out.append(frame[:12] + pack(seq) + frame[16:])
            outstanding[seq] = [_SUBMIT, token, deadline]
        self._sequence = seq
        self._submits += len(frames)

    def acknowledge(self, sequence: int, status: int = st.ESME_ROK) -> None:
        """Queue the deliver_sm_resp for the deliver_sm with ``sequence``."""
        if self.state is not State.CLOSED:
            self._out.append(p.encode_deliver_sm_resp(sequence, status))

    def acknowledge_all(self, sequences: list[int], status: int = st.ESME_ROK) -> None:
        """``acknowledge`` each of ``sequences`` with the same ``status``, in order."""
        if self.state is not State.CLOSED:
            encode = p.encode_deliver_sm_resp
            self._out += [encode(sequence, status) for sequence in sequences]

    def unbind(self, *, now: float) -> None:
        """Queue an unbind (BOUND -> UNBINDING)."""
        self._move("send_unbind")
        self._request(p.Unbind(self._next_sequence()), _UNBIND, None, now)

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one buffer for one socket write."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def connection_lost(self) -> list[Event]:
        """The socket is gone: every outstanding submit is abandoned (in doubt)."""
        events = self._abandon()
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            events.append(Closed("connection lost"))
        return events

    def _abandon(self) -> list[Event]:
        events: list[Event] = [
            RequestTimedOut(seq, entry[1])
            for seq, entry in self._outstanding.items()
            if entry[0] == _SUBMIT
        ]
        self._outstanding.clear()
        self._submits = 0
        return events

    # -- time ------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When ``tick`` next has work: the earliest response deadline or the keep-alive."""
        deadline = float("inf")
        for entry in self._outstanding.values():
            deadline = entry[2]
            break
        if self.state is State.BOUND and not self._enquire_pending:
            deadline = min(deadline, self._last_received + self.enquire_link_interval)
        return deadline

    def tick(self, now: float) -> list[Event]:
        """Expire overdue requests and send the keep-alive when due."""
        events: list[Event] = []
        expired = []
        for seq, entry in self._outstanding.items():
            if entry[2] > now:
                break
            expired.append(seq)
        for seq in expired:
            kind, token, _ = self._outstanding.pop(seq)
            if kind == _SUBMIT:
                self._submits -= 1
                events.append(RequestTimedOut(seq, token))
            elif self.state is not State.CLOSED:
                # An unanswered bind, enquire_link or unbind means the link is dead (§4.11).
                events.extend(self._close("no response to a session request"))
        if (
            self.state is State.BOUND
            and not self._enquire_pending
            and now >= self._last_received + self.enquire_link_interval
        ):
            self._enquire_pending = True
            self._request(p.EnquireLink(self._next_sequence()), _ENQUIRE, None, now)
        return events

    def _close(self, reason: str) -> list[Event]:
        events = self._abandon()
        self.state = State.CLOSED
        events.append(Closed(reason))
        return events

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the socket; returns the events they cause.

        A broken frame closes the session (``Closed`` event) rather than raising.
        """
        if self.state is State.CLOSED:
            return []
        try:
            pdus = self._framer.feed(data, self._decode)
        except RemoteProtocolViolation as exc:
            return self._close(str(exc))
        self._last_received = now
        events: list[Event] = []
        for pdu in pdus:
            kind = type(pdu)
            if kind is tuple:  # a submit_sm_resp: (sequence, status, message_id)
                self._answer(pdu[0], pdu[1], pdu[2], False, events)
            elif kind is ReceiptFields or kind is p.DeliverSm:
                events.append(DeliverReceived(pdu))
            else:
                self._other(pdu, events)
        return events

    def _answer(self, seq: int, status: int, message_id: str, malformed: bool,
                events: list[Event]) -> None:
        entry = self._outstanding.pop(seq, None)
        if entry is None:
            return  # a late answer to a request we already gave up on: ignore (§2.5)
        kind, token, _ = entry
        if kind == _SUBMIT:
            self._submits -= 1
            events.append(SubmitAnswered(seq, token, status, message_id, malformed))
        elif kind == _BIND:
            if status == st.ESME_ROK:
                self._move("bind_ok")
                assert self.mode is not None
                events.append(Bound(self.mode, message_id))
            else:
                self._move("bind_failed")
                events.append(BindFailed(status))
                events.extend(self._close(f"bind refused: {st.name(status)}"))
        elif kind == _ENQUIRE:
            self._enquire_pending = False
        elif kind == _UNBIND:
            self._move("unbind_resp")
            events.extend(self._close("unbound"))

    def _other(self, pdu: p.Pdu | InvalidPdu, events: list[Event]) -> None:
        match pdu:
            case p.EnquireLink():
                self._out.append(p.encode(p.EnquireLinkResp(pdu.sequence)))
            case p.SubmitSmResp():  # ``_fast.decode`` reads these as tuples; kept for safety
                self._answer(pdu.sequence, pdu.status, pdu.message_id, False, events)
            case p.EnquireLinkResp() | p.UnbindResp():
                self._answer(pdu.sequence, pdu.status, "", False, events)
            case p.BindResponse():
                self._answer(pdu.sequence, pdu.status, pdu.system_id, False, events)
            case p.GenericNack():
                self._answer(pdu.sequence, pdu.status or st.ESME_RSYSERR, "", False, events)
            case p.Unbind():
                self._out.append(p.encode(p.UnbindResp(pdu.sequence)))
                if self.state in (State.BOUND, State.UNBINDING):
                    self._move("peer_unbind")
                events.extend(self._close("unbound by the SMSC"))
            case p.Outbind():
                events.append(OutbindReceived(pdu.system_id))
            case InvalidPdu():
                if pdu.command_id & p.RESPONSE_BIT:
                    self._answer(pdu.sequence, pdu.status, "", True, events)
                else:
                    self._out.append(p.encode(p.GenericNack(pdu.sequence, pdu.status)))
            case _:
                # A request an SMSC must not send to an ESME (submit_sm, bind...): §4.3.
                self._out.append(p.encode(p.GenericNack(pdu.sequence, st.ESME_RINVCMDID)))
