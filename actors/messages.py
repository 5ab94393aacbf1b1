"""Every message kind that travels between actors, and its msgpack form.

Channels carry *batches*: one channel item is the msgpack encoding of a list of messages
(DESIGN.md §1), so a hop costs the same for one message or five hundred. The same bytes are
what the store keeps, so a record read back from LMDB decodes with the same functions.

Wire form of one message: ``[tag, version, field1, field2, ...]`` with msgpack-native field
types only (str, int, float, bool, bytes, None, lists). A schema change bumps ``VERSION`` of
that kind and keeps a decoder for the previous one (see ``_UPGRADES``).

Must not import: trio, lmdb, httpx, gateway, adapters. Pure data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Any, Final, NamedTuple, NewType, TypeVar

import msgpack

from actors._wire import WireBatch, join_arrays

MsgId = NewType("MsgId", str)
CarrierId = NewType("CarrierId", str)


class State(StrEnum):
    """Message states of DESIGN.md §3. Final states are absorbing."""

    ACCEPTED = "ACCEPTED"
    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    NOT_DELIVERED = "NOT_DELIVERED"
    NOT_SENT = "NOT_SENT"


FINAL_STATES: Final = frozenset({State.DELIVERED, State.NOT_DELIVERED, State.NOT_SENT})


class ReceiptState(StrEnum):
    """Carrier-side part states, as SMPP 3.4 §5.2.28 message_state and receipt ``stat:`` name them."""

    ENROUTE = "ENROUTE"
    DELIVRD = "DELIVRD"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"
    UNDELIV = "UNDELIV"
    ACCEPTD = "ACCEPTD"
    UNKNOWN = "UNKNOWN"
    REJECTD = "REJECTD"


def _constant(value: Callable[[], int]) -> int:
    """Make a class constant of a message kind: ``TAG`` and ``VERSION`` are plain ints on the class.

    ``typing.NamedTuple`` turns only *annotated* names into fields and keeps a plain
    ``TAG = 1`` as a class attribute, but mypy reads every assignment in the body as a field
    (python/mypy#3959) and ``ClassVar`` is refused there by both. A decorated function is the
    one class-body statement both read the same way: the class gets the int itself, so an
    instance carries nothing more and ``_fields`` stays the wire fields.
    """
    return value()


# --------------------------------------------------------------------------------------------
# Message kinds. Field order is the wire order: append new fields at the end with a default
# and bump VERSION.


class Message(NamedTuple):
    """An accepted submission: what ingress stores and what flows to rate_limiter and segmenter.

    Times are Unix seconds (float). ``send_at``/``not_after`` of 0 mean "now"/"no deadline".
    ``policy`` is the codec encoding policy name (transliterate, ucs2, gsm7-strict, national).
    """

    @_constant
    def TAG() -> int:
        return 1

    @_constant
    def VERSION() -> int:
        return 1

    msg_id: MsgId
    account: str
    to: str
    sender: str
    text: str
    policy: str
    accepted_at: float
    campaign: str = ""
    client_ref: str = ""
    callback_url: str = ""
    send_at: float = 0.0
    not_after: float = 0.0
    max_parts: int = 5
    parts: int = 1  # as codec.count found at ingress; rate shaping charges segments
    encoding: str = "gsm7"  # as codec.count chose at ingress


class SubmitPart(NamedTuple):
    """One carrier payload, made by the segmenter with ``codec.split``.

    ``body`` is GSM 7-bit as one septet per octet (unpacked) for data_coding 0, or UTF-16BE
    for data_coding 8; an adapter configured for packed GSM7 packs it itself (with the fill
    bits the UDH needs). ``udh`` is the user data header (empty for a single part): an adapter
    sends it in short_message with UDHI set, or replaces it with SAR TLVs built from
    ``concat_ref``/``part``/``parts``.
    """

    @_constant
    def TAG() -> int:
        return 2

    @_constant
    def VERSION() -> int:
        return 1

    msg_id: MsgId
    part: int  # 1-based
    parts: int
    to: str
    sender: str
    data_coding: int
    udh: bytes
    body: bytes
    concat_ref: int
    account: str = ""
    attempt: int = 0


class PartSubmitted(NamedTuple):
    """Event: the carrier accepted a part and gave it ``carrier_id``."""

    @_constant
    def TAG() -> int:
        return 3

    @_constant
    def VERSION() -> int:
        return 1

    msg_id: MsgId
    part: int
    parts: int
    connector: str
    carrier_id: CarrierId
    at: float


class PartFailed(NamedTuple):
    """Event: a part could not be submitted and will not be retried (or ran out of retries)."""

    @_constant
    def TAG() -> int:
        return 4

    @_constant
    def VERSION() -> int:
        return 1

    msg_id: MsgId
    part: int
    parts: int
    connector: str
    code: str
    reason: str
    at: float


class CarrierReceipt(NamedTuple):
    """A delivery receipt as a connector received it, before correlation.

    ``carrier_id`` is exactly as the carrier wrote it; correlation normalises it.
    """

    @_constant
    def TAG() -> int:
        return 5

    @_constant
    def VERSION() -> int:
        return 1

    connector: str
    carrier_id: str
    state: str  # a ReceiptState value
    error_code: str
    received_at: float
    done_at: float = 0.0


class MessageFinished(NamedTuple):
    """Event: a message reached a final state before or without carrier receipts.

    Used for NOT_SENT outcomes decided inside Septet (expired, recently_contacted,
    too_many_parts, routing_failed, carrier rejection) and for receipt timeouts.
    """

    @_constant
    def TAG() -> int:
        return 6

    @_constant
    def VERSION() -> int:
        return 1

    msg_id: MsgId
    state: str  # a State value
    code: str
    reason: str
    at: float


class StatusEvent(NamedTuple):
    """Event for upstream: SMS_SENT, SMS_NOT_SENT, SMS_DELIVERED or SMS_NOT_DELIVERED.

    ``seq`` increases per message, so a receiver can order events however they arrive.
    """

    @_constant
    def TAG() -> int:
        return 7

    @_constant
    def VERSION() -> int:
        return 1

    msg_id: MsgId
    account: str
    event: str
    seq: int
    at: float
    carrier_id: str = ""
    campaign: str = ""
    parts: int = 0
    error_code: str = ""
    reason: str = ""
    client_ref: str = ""
    callback_url: str = ""


class ConnectorThrottled(NamedTuple):
    """Feedback from the dispatcher: a connector answered "throttled" (e.g. SMPP 0x58, 0x14).

    The rate limiter lowers that connector's rate for a while and lets it recover by itself.
    """

    @_constant
    def TAG() -> int:
        return 8

    @_constant
    def VERSION() -> int:
        return 1

    connector: str
    at: float


class PendingReceipt(NamedTuple):
    """A CarrierReceipt the receipt sink hands the correlator, not yet stored anywhere.

    The sink call that handed it over waits until the commit that correlates it (matched,
    parked as an orphan or kept as unknown) and only then returns, so a connector
    acknowledges a receipt only once it is durable. ``ticket`` names that waiting call; it
    means nothing outside the running process. (Tag 9 was StoredReceipt, a receipt already
    in a durable inbox: retired, never stored.)
    """

    @_constant
    def TAG() -> int:
        return 11

    @_constant
    def VERSION() -> int:
        return 1

    ticket: int
    connector: str
    carrier_id: str
    state: str
    error_code: str
    received_at: float
    done_at: float = 0.0


class Released(NamedTuple):
    """Event for the scheduler pump: ``msg_id`` left the outbox (SENT, final or nothing to do),
    so it no longer occupies the pump's in-flight window."""

    @_constant
    def TAG() -> int:
        return 10

    @_constant
    def VERSION() -> int:
        return 1

    msg_id: MsgId
    at: float = 0.0


class CommitWaiter(NamedTuple):
    """A mark in the receipt correlator's inbox: the caller named by ``ticket`` is woken once
    the commit that applied everything before it (in the same or an earlier batch) is durable.
    Like PendingReceipt's ticket, it means nothing outside the running process."""

    @_constant
    def TAG() -> int:
        return 12

    @_constant
    def VERSION() -> int:
        return 1

    ticket: int


Kind = (
    Message
    | SubmitPart
    | PartSubmitted
    | PartFailed
    | CarrierReceipt
    | MessageFinished
    | StatusEvent
    | ConnectorThrottled
    | Released
    | PendingReceipt
    | CommitWaiter
)
KINDS: Final[tuple[type[Any], ...]] = (
    Message,
    SubmitPart,
    PartSubmitted,
    PartFailed,
    CarrierReceipt,
    MessageFinished,
    StatusEvent,
    ConnectorThrottled,
    Released,
    PendingReceipt,
    CommitWaiter,
)

# --------------------------------------------------------------------------------------------
# Encoding. Kinds are NamedTuples rather than frozen dataclasses: every message is decoded at
# every hop, and building a tuple costs ~0.2 us where a frozen dataclass's __init__ costs ~1.6 us
# (measured here, 15 fields); a tuple also packs to a msgpack array as it is.

_T = TypeVar("_T")
_BY_TAG: Final[dict[int, type[Any]]] = {k.TAG: k for k in KINDS}
_ARITY: Final[dict[int, int]] = {k.TAG: len(k._fields) for k in KINDS}
# (tag, old version) -> function turning the old field list into the current one.
_UPGRADES: Final[dict[tuple[int, int], Callable[[list[Any]], list[Any]]]] = {}
_new: Final = tuple.__new__


class DecodeError(ValueError):
    """Bytes that are not a message or batch of a known kind and version."""


def to_wire(message: Kind) -> list[Any]:
    """The msgpack-native list form of one message: ``[tag, version, *fields]``."""
    return [message.TAG, message.VERSION, *message]


def from_wire(row: Sequence[Any]) -> Kind:
    """Rebuild a message from its list form, upgrading older versions.

    Raises:
        DecodeError: unknown tag or version, or fields that do not fit the kind.
    """
    try:
        tag, version, *fields = row
        kind = _BY_TAG[tag]
    except (ValueError, TypeError, KeyError) as exc:
        raise DecodeError(f"not a message: {row!r:.80}") from exc
    if version == kind.VERSION and len(fields) == _ARITY[tag]:
        return _new(kind, fields)  # type: ignore[no-any-return]  # the hot path
    if version != kind.VERSION:
        upgrade = _UPGRADES.get((tag, version))
        if upgrade is None:
            raise DecodeError(f"{kind.__name__} version {version} is not known")
        fields = upgrade(fields)
    try:
        return kind(*fields)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise DecodeError(f"{kind.__name__}: {exc}") from exc


def encode(message: Kind) -> bytes:
    """One message as msgpack bytes (the form a store record takes)."""
    data: bytes = msgpack.packb(to_wire(message), use_bin_type=True)
    return data


def decode(data: bytes) -> Kind:
    """Inverse of :func:`encode`."""
    try:
        row = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise DecodeError("not msgpack") from exc
    return from_wire(row)


_HEAD: Final[dict[type[Any], tuple[int, int]]] = {k: (k.TAG, k.VERSION) for k in KINDS}


def encode_batch(messages: Iterable[Kind]) -> bytes:
    """A batch of messages as one msgpack item for a channel.

    Each row is ``(tag, version) + message``: the same msgpack array as :func:`to_wire`'s
    list (a tuple packs as an array), 0.48 -> 0.39 µs per Message (measured). A
    :class:`WireBatch` gives back the bytes it was decoded from, packing nothing.
    """
    if type(messages) is WireBatch:
        return messages.wire
    head = _HEAD
    data: bytes = msgpack.packb([head[type(m)] + m for m in messages], use_bin_type=True)
    return data


def with_wire(batch: Iterable[Kind]) -> WireBatch:
    """``batch`` packed once: a read-only sequence of its messages whose every later
    :func:`encode_batch` (a store call crossing to the writer process, the next channel hop)
    returns those bytes instead of packing again."""
    items = tuple(batch)
    return WireBatch(items, encode_batch(items))


def _rows(data: bytes) -> tuple[Any, ...]:
    """The rows of a batch, each a tuple (msgpack arrays as tuples unpack ~2x faster than
    lists, and every field of every kind is a scalar)."""
    try:
        rows = msgpack.unpackb(data, raw=False, use_list=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise DecodeError("not msgpack") from exc
    if not isinstance(rows, tuple):
        raise DecodeError("a batch is a list")
    return rows


def _decode_into(out: list[Kind], data: bytes) -> bool:
    """Append the messages of batch ``data`` to ``out``; True when every row was of its
    kind's current version (then ``data`` is exactly what encode_batch makes of them)."""
    append, by_tag, arity = out.append, _BY_TAG, _ARITY
    current = True
    for r in _rows(data):
        kind = by_tag.get(r[0]) if type(r) is tuple and len(r) > 2 and type(r[0]) is int else None
        if kind is not None and r[1] == kind.VERSION and len(r) == arity[r[0]] + 2:
            append(_new(kind, r[2:]))  # the hot path, as in from_wire
        else:
            append(from_wire(r))
            current = False
    return current


def decode_batch(data: bytes) -> list[Kind]:
    """Inverse of :func:`encode_batch`."""
    out: list[Kind] = []
    _decode_into(out, data)
    return out


def decode_batches(items: Sequence[bytes]) -> Sequence[Kind]:
    """The messages of the batches ``items``, in order, as one read-only sequence.

    When every row is of its kind's current version this is a :class:`WireBatch` holding the
    items joined, so encoding it again (a store call crossing to the writer process) packs
    nothing.
    """
    out: list[Kind] = []
    current = True
    for data in items:
        current = _decode_into(out, data) and current
    return WireBatch(out, join_arrays(items)) if current else out


def decode_batch_of(kind: type[_T], data: bytes) -> list[_T]:
    """Decode a batch that must hold only messages of ``kind``."""
    out, _ = _decode_of(kind, data)
    return out


def decode_wire_batch_of(kind: type[_T], data: bytes) -> Sequence[_T]:
    """:func:`decode_batch_of` as a read-only sequence: a :class:`WireBatch` keeping ``data``
    when every row is of the current version (see :func:`decode_batches`)."""
    out, current = _decode_of(kind, data)
    return WireBatch(out, data) if current else out


def decode_wire_batches_of(kind: type[_T], items: Sequence[bytes]) -> Sequence[_T]:
    """:func:`decode_wire_batch_of` for several channel items, in order, as one sequence: a
    :class:`WireBatch` of the items joined when every row is of the current version, so
    encoding it again (a store call crossing to the writer process) packs nothing."""
    if len(items) == 1:
        return decode_wire_batch_of(kind, items[0])
    out: list[_T] = []
    current = True
    for data in items:
        decoded, fresh = _decode_of(kind, data)
        out += decoded
        current = current and fresh
    return WireBatch(out, join_arrays(items)) if current else out


def _decode_of(kind: type[_T], data: bytes) -> tuple[list[_T], bool]:
    head = (kind.TAG, kind.VERSION)  # type: ignore[attr-defined]
    width = len(kind._fields) + 2  # type: ignore[attr-defined]
    out: list[_T] = []
    append = out.append
    current = True
    for r in _rows(data):
        if type(r) is tuple and len(r) == width and r[:2] == head:
            append(_new(kind, r[2:]))  # type: ignore[type-var]  # the hot path, as in from_wire
            continue
        m = from_wire(r)  # checks; upgrades an older version
        if not isinstance(m, kind):
            raise DecodeError(f"expected {kind.__name__}, got {type(m).__name__}")
        append(m)
        current = False
    return out, current
