"""Errors internal to the adapters; mapped onto ``actors.errors`` before they reach an actor.

    ProtocolViolation                 the bytes on a connection broke the protocol
    ├── LocalProtocolViolation        we were asked to send something illegal (a bug or bad input)
    └── RemoteProtocolViolation       the peer sent something illegal
        └── InvalidPdu                one well-framed PDU whose body does not parse; the session
                                      answers it (generic_nack) and goes on

    InvalidReceipt(ValueError)        an HTTP provider's receipt body that cannot be read
    InvalidInbound(ValueError)        an HTTP provider's inbound (MO) body that cannot be read;
                                      names the field at fault

Retry decisions use the class, never the message text. ``to_carrier_error`` is the one place
that turns these into ``actors.errors`` classes.
"""

from __future__ import annotations

from actors.errors import CarrierError, PermanentCarrierError, TransientCarrierError


class ProtocolViolation(Exception):
    """Something on the wire broke the protocol."""


class LocalProtocolViolation(ProtocolViolation):
    """We were asked to encode or send something the protocol does not allow."""


class RemoteProtocolViolation(ProtocolViolation):
    """The peer sent bytes the protocol does not allow (the connection may be unusable)."""


class InvalidPdu(RemoteProtocolViolation):
    """A PDU whose framing is intact but whose body is malformed or whose command is unknown.

    Attributes:
        command_id: the command id from the header.
        sequence: the sequence number from the header (to answer with generic_nack).
        status: the SMPP error status that describes the fault (e.g. 0x03 ESME_RINVCMDID).
    """

    def __init__(self, reason: str, *, command_id: int, sequence: int, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.sequence = sequence
        self.status = status

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, InvalidPdu)
            and (self.reason, self.command_id, self.sequence, self.status)
            == (other.reason, other.command_id, other.sequence, other.status)
        )

    def __hash__(self) -> int:
        return hash((self.reason, self.command_id, self.sequence, self.status))


def to_carrier_error(exc: ProtocolViolation) -> CarrierError:
    """The ``actors.errors`` class for an adapter-internal error.

    A local violation is permanent for the part that caused it (resending the same bytes
    fails the same way); a remote one is transient (another connection may behave).
    """
    if isinstance(exc, LocalProtocolViolation):
        return PermanentCarrierError(str(exc), code="local_protocol_violation")
    return TransientCarrierError(str(exc), code="remote_protocol_violation")


class InvalidReceipt(ValueError):
    """A receipt posted by an HTTP provider that cannot be read (the route answers 400)."""


class InvalidInbound(ValueError):
    """An inbound (MO) message posted by an HTTP provider that cannot be read (the route
    answers 400 naming ``field``).

    Attributes:
        field: where in the body the fault is (``body``, ``from``, ``messages[2].text``).
        reason: what is wrong there (never the value itself: it may be a number or a text).
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
