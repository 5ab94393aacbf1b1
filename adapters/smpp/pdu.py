"""SMPP 3.4 PDUs: the dataclasses, ``encode(pdu) -> bytes`` and an incremental ``Framer``.

Sans-IO and pure: bytes in, PDU objects out (or an error), no sockets, clocks or logging.
Covers what an ESME and an SMSC exchange (SMPP v3.4 §4): bind_transmitter/receiver/
transceiver (+resp), outbind, submit_sm (+resp), deliver_sm (+resp), enquire_link (+resp),
unbind (+resp), generic_nack; and the optional TLVs (§5.3.2) that matter for SMS:
receipted_message_id, message_state, network_error_code, sar_msg_ref_num,
sar_total_segments, sar_segment_seqnum, message_payload, user_message_reference,
sc_interface_version. Other TLVs are kept verbatim in ``extra_tlvs``.

Errors: a PDU that cannot be encoded raises ``LocalProtocolViolation``; a broken frame
(command_length < 16 or above the limit) raises ``RemoteProtocolViolation`` from
``Framer.feed`` (the stream is lost); a well-framed PDU whose body is malformed or whose
command is unknown comes back from ``feed`` as an ``InvalidPdu`` *value* in the list, in
order, so the session can answer it with generic_nack and keep going (§3.3, §4.3).

Text fields (C-Octet strings) are decoded as latin-1 so no byte value is ever lost.
Must not import: trio, gateway, actors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from adapters.errors import InvalidPdu, LocalProtocolViolation, RemoteProtocolViolation
from adapters.smpp import status as st

# Command ids, SMPP v3.4 §5.1.2.1.
GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_RECEIVER_RESP: Final = 0x80000001
BIND_TRANSMITTER: Final = 0x00000002
BIND_TRANSMITTER_RESP: Final = 0x80000002
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
RESPONSE_BIT: Final = 0x80000000

# TLV tags, SMPP v3.4 §5.3.2.
TAG_RECEIPTED_MESSAGE_ID: Final = 0x001E
TAG_USER_MESSAGE_REFERENCE: Final = 0x0204
TAG_SAR_MSG_REF_NUM: Final = 0x020C
TAG_SAR_TOTAL_SEGMENTS: Final = 0x020E
TAG_SAR_SEGMENT_SEQNUM: Final = 0x020F
TAG_SC_INTERFACE_VERSION: Final = 0x0210
TAG_NETWORK_ERROR_CODE: Final = 0x0423
TAG_MESSAGE_PAYLOAD: Final = 0x0424
TAG_MESSAGE_STATE: Final = 0x0427

HEADER_LENGTH: Final = 16
MAX_PDU_LENGTH: Final = 70_000  # message_payload may carry up to 64 KiB (§5.3.2.32)
MAX_SHORT_MESSAGE: Final = 254  # §5.2.22; longer content goes in message_payload

ESM_UDHI: Final = 0x40  # esm_class bit 6: short_message starts with a UDH (§5.2.12)
ESM_DELIVERY_RECEIPT: Final = 0x04  # esm_class bits 5-2 = 0001: SMSC delivery receipt

BindMode: TypeAlias = Literal["transmitter", "receiver", "transceiver"]
_BIND_IDS: Final[dict[str, int]] = {
    "receiver": BIND_RECEIVER,
    "transmitter": BIND_TRANSMITTER,
    "transceiver": BIND_TRANSCEIVER,
}
_BIND_MODES: Final[dict[int, BindMode]] = {
    BIND_RECEIVER: "receiver",
    BIND_TRANSMITTER: "transmitter",
    BIND_TRANSCEIVER: "transceiver",
    BIND_RECEIVER_RESP: "receiver",
    BIND_TRANSMITTER_RESP: "transmitter",
    BIND_TRANSCEIVER_RESP: "transceiver",
}

_HEADER: Final = struct.Struct(">IIII")
_U32: Final = struct.Struct(">I")
_TLV_HEAD: Final = struct.Struct(">HH")
# The fixed octets of submit_sm/deliver_sm after destination_addr (§4.4.1).
_SM_FLAGS: Final = struct.Struct(">BBB")  # esm_class, protocol_id, priority_flag
_SM_TAIL: Final = struct.Struct(">BBBBB")  # registered_delivery .. sm_length


# --------------------------------------------------------------------------------------------
# PDU classes. Requests carry no command_status (it is always 0 on a request, §3.2).


@dataclass(slots=True)
class BindRequest:
    """bind_transmitter / bind_receiver / bind_transceiver (§4.1.1, §4.1.3, §4.1.5)."""

    mode: BindMode
    sequence: int
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True)
class BindResponse:
    """bind_*_resp (§4.1.2); the body may be absent when status is non-zero."""

    mode: BindMode
    sequence: int
    status: int = 0
    system_id: str = ""
    sc_interface_version: int | None = None


@dataclass(slots=True)
class Outbind:
    """outbind (§4.1.7): the SMSC asks the ESME to bind as a receiver."""

    sequence: int
    system_id: str = ""
    password: str = ""


@dataclass(slots=True)
class _ShortMessagePdu:
    """The body shared by submit_sm (§4.4.1) and deliver_sm (§4.6.1), with the TLVs we use."""

    sequence: int
    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    receipted_message_id: str | None = None
    message_state: int | None = None
    network_error_code: bytes | None = None  # 3 octets: network type, error code (2)
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_payload: bytes | None = None
    user_message_reference: int | None = None
    extra_tlvs: tuple[tuple[int, bytes], ...] = ()


@dataclass(slots=True)
class SubmitSm(_ShortMessagePdu):
    """submit_sm (§4.4.1)."""


@dataclass(slots=True)
class DeliverSm(_ShortMessagePdu):
    """deliver_sm (§4.6.1): a mobile-originated message or, with esm_class 0x04, a receipt."""

    @property
    def is_receipt(self) -> bool:
        """True when esm_class marks an SMSC delivery receipt (§5.2.12, bits 5-2 = 0001)."""
        return (self.esm_class & 0x3C) == ESM_DELIVERY_RECEIPT


@dataclass(slots=True)
class SubmitSmResp:
    """submit_sm_resp (§4.4.2); message_id is the SMSC's id for the part, verbatim."""

    sequence: int
    status: int = 0
    message_id: str = ""


@dataclass(slots=True)
class DeliverSmResp:
    """deliver_sm_resp (§4.6.2); message_id is unused and NULL."""

    sequence: int
    status: int = 0
    message_id: str = ""


@dataclass(slots=True)
class EnquireLink:
    """enquire_link (§4.11.1)."""

    sequence: int


@dataclass(slots=True)
class EnquireLinkResp:
    """enquire_link_resp (§4.11.2)."""

    sequence: int
    status: int = 0


@dataclass(slots=True)
class Unbind:
    """unbind (§4.2.1)."""

    sequence: int


@dataclass(slots=True)
class UnbindResp:
    """unbind_resp (§4.2.2)."""

    sequence: int
    status: int = 0


@dataclass(slots=True)
class GenericNack:
    """generic_nack (§4.3.1): the answer to a PDU that could not be understood."""

    sequence: int
    status: int = 0


Pdu: TypeAlias = (
    BindRequest
    | BindResponse
    | Outbind
    | SubmitSm
    | DeliverSm
    | SubmitSmResp
    | DeliverSmResp
    | EnquireLink
    | EnquireLinkResp
    | Unbind
    | UnbindResp
    | GenericNack
)

# --------------------------------------------------------------------------------------------
# Encoding.


def _cstr(value: str, max_octets: int, field: str) -> bytes:
    """A C-Octet string (§3.1) of at most ``max_octets`` including the NUL."""
    raw = value.encode("latin-1", "strict") if value.isascii() else _latin1(value, field)
    if len(raw) >= max_octets or 0 in raw:
        raise LocalProtocolViolation(f"{field} must be under {max_octets} octets without NUL")
    return raw + b"\0"


def _latin1(value: str, field: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolViolation(f"{field} is not representable in octets") from exc


def _byte(value: int, field: str) -> int:
    if not 0 <= value <= 0xFF:
        raise LocalProtocolViolation(f"{field}={value} does not fit one octet")
    return value


def _frame(command_id: int, status: int, sequence: int, body: bytes) -> bytes:
    if not 0 <= sequence <= 0xFFFFFFFF or not 0 <= status <= 0xFFFFFFFF:
        raise LocalProtocolViolation("sequence and status are 32-bit unsigned")
    return _HEADER.pack(HEADER_LENGTH + len(body), command_id, status, sequence) + body


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise LocalProtocolViolation(f"TLV 0x{tag:04X} longer than 65535 octets")
    return _TLV_HEAD.pack(tag, len(value)) + value


def _sm_tlvs(pdu: _ShortMessagePdu) -> bytes:
    out: list[bytes] = []
    if pdu.user_message_reference is not None:
        out.append(_tlv(TAG_USER_MESSAGE_REFERENCE, struct.pack(">H", pdu.user_message_reference)))
    if pdu.sar_msg_ref_num is not None:
        out.append(_tlv(TAG_SAR_MSG_REF_NUM, struct.pack(">H", pdu.sar_msg_ref_num)))
    if pdu.sar_total_segments is not None:
        out.append(_tlv(TAG_SAR_TOTAL_SEGMENTS, bytes((_byte(pdu.sar_total_segments, "sar"),))))
    if pdu.sar_segment_seqnum is not None:
        out.append(_tlv(TAG_SAR_SEGMENT_SEQNUM, bytes((_byte(pdu.sar_segment_seqnum, "sar"),))))
    if pdu.receipted_message_id is not None:
        out.append(_tlv(TAG_RECEIPTED_MESSAGE_ID, _cstr(pdu.receipted_message_id, 65, "id")))
    if pdu.message_state is not None:
        out.append(_tlv(TAG_MESSAGE_STATE, bytes((_byte(pdu.message_state, "state"),))))
    if pdu.network_error_code is not None:
        if len(pdu.network_error_code) != 3:
            raise LocalProtocolViolation("network_error_code is 3 octets")
        out.append(_tlv(TAG_NETWORK_ERROR_CODE, pdu.network_error_code))
    if pdu.message_payload is not None:
        out.append(_tlv(TAG_MESSAGE_PAYLOAD, pdu.message_payload))
    out.extend(_tlv(tag, value) for tag, value in pdu.extra_tlvs)
    return b"".join(out)


def _encode_sm(pdu: _ShortMessagePdu, command_id: int) -> bytes:
    sm = pdu.short_message
    if len(sm) > MAX_SHORT_MESSAGE:
        raise LocalProtocolViolation("short_message over 254 octets: use message_payload")
    try:
        body = b"".join(
            (
                _cstr(pdu.service_type, 6, "service_type"),
                bytes((pdu.source_addr_ton, pdu.source_addr_npi)),
                _cstr(pdu.source_addr, 21, "source_addr"),
                bytes((pdu.dest_addr_ton, pdu.dest_addr_npi)),
                _cstr(pdu.destination_addr, 21, "destination_addr"),
                _SM_FLAGS.pack(pdu.esm_class, pdu.protocol_id, pdu.priority_flag),
                _cstr(pdu.schedule_delivery_time, 17, "schedule_delivery_time"),
                _cstr(pdu.validity_period, 17, "validity_period"),
                _SM_TAIL.pack(
                    pdu.registered_delivery,
                    pdu.replace_if_present_flag,
                    pdu.data_coding,
                    pdu.sm_default_msg_id,
                    len(sm),
                ),
                sm,
                _sm_tlvs(pdu),
            )
        )
    except (struct.error, ValueError, OverflowError) as exc:
        if isinstance(exc, LocalProtocolViolation):
            raise
        raise LocalProtocolViolation(f"field out of range: {exc}") from exc
    return _frame(command_id, 0, pdu.sequence, body)


def encode_submit_sm_resp(sequence: int, status: int, message_id: str) -> bytes:
    """``encode(SubmitSmResp(...))`` without building the object (simulator hot path)."""
    body = _cstr(message_id, 65, "message_id")
    return _HEADER.pack(HEADER_LENGTH + len(body), SUBMIT_SM_RESP, status, sequence) + body


def encode_deliver_sm_resp(sequence: int, status: int = 0) -> bytes:
    """``encode(DeliverSmResp(sequence, status))`` without building the object (client hot path)."""
    return _HEADER.pack(HEADER_LENGTH + 1, DELIVER_SM_RESP, status, sequence) + b"\0"


def encode(pdu: Pdu) -> bytes:
    """The wire bytes of ``pdu``, header included.

    Raises:
        LocalProtocolViolation: a field does not fit the spec (too long, out of range).
    """
    match pdu:
        case SubmitSm():
            return _encode_sm(pdu, SUBMIT_SM)
        case SubmitSmResp():
            return _frame(SUBMIT_SM_RESP, pdu.status, pdu.sequence, _cstr(pdu.message_id, 65, "id"))
        case DeliverSm():
            return _encode_sm(pdu, DELIVER_SM)
        case DeliverSmResp():
            body = _cstr(pdu.message_id, 65, "message_id")
            return _frame(DELIVER_SM_RESP, pdu.status, pdu.sequence, body)
        case EnquireLink():
            return _frame(ENQUIRE_LINK, 0, pdu.sequence, b"")
        case EnquireLinkResp():
            return _frame(ENQUIRE_LINK_RESP, pdu.status, pdu.sequence, b"")
        case BindRequest():
            return _frame(_BIND_IDS[pdu.mode], 0, pdu.sequence, _bind_body(pdu))
        case BindResponse():
            body = _cstr(pdu.system_id, 16, "system_id")
            if pdu.sc_interface_version is not None:
                version = _byte(pdu.sc_interface_version, "sc_interface_version")
                body += _tlv(TAG_SC_INTERFACE_VERSION, bytes((version,)))
            return _frame(_BIND_IDS[pdu.mode] | RESPONSE_BIT, pdu.status, pdu.sequence, body)
        case Outbind():
            body = _cstr(pdu.system_id, 16, "system_id") + _cstr(pdu.password, 9, "password")
            return _frame(OUTBIND, 0, pdu.sequence, body)
        case Unbind():
            return _frame(UNBIND, 0, pdu.sequence, b"")
        case UnbindResp():
            return _frame(UNBIND_RESP, pdu.status, pdu.sequence, b"")
        case GenericNack():
            return _frame(GENERIC_NACK, pdu.status, pdu.sequence, b"")
    raise LocalProtocolViolation(f"not a PDU: {type(pdu).__name__}")


def _bind_body(pdu: BindRequest) -> bytes:
    return b"".join(
        (
            _cstr(pdu.system_id, 16, "system_id"),
            _cstr(pdu.password, 9, "password"),
            _cstr(pdu.system_type, 13, "system_type"),
            bytes(
                (
                    _byte(pdu.interface_version, "interface_version"),
                    _byte(pdu.addr_ton, "addr_ton"),
                    _byte(pdu.addr_npi, "addr_npi"),
                )
            ),
            _cstr(pdu.address_range, 41, "address_range"),
        )
    )


# --------------------------------------------------------------------------------------------
# Decoding. Each decoder reads ``buf[pos:end]`` (bytes or bytearray) and raises ValueError,
# IndexError or struct.error on malformed input; ``decode_frame`` turns those into InvalidPdu.

Buffer: TypeAlias = bytes | bytearray


def _read_cstr(buf: Buffer, pos: int, end: int) -> tuple[str, int]:
    nul = buf.index(0, pos, end)  # ValueError when the terminator is missing
    return buf[pos:nul].decode("latin-1"), nul + 1


def _decode_sm(cls: type[_ShortMessagePdu], buf: Buffer, pos: int, end: int, seq: int) -> Pdu:
    # Inlined C-Octet reads: this is the hot path of both the client (deliver_sm) and the
    # simulator (submit_sm). ``index`` raises ValueError when a NUL is missing.
    index = buf.index
    nul = index(0, pos, end)
    service_type = buf[pos:nul].decode("latin-1")
    pos = nul + 3
    src_ton, src_npi = buf[nul + 1], buf[nul + 2]
    nul = index(0, pos, end)
    source_addr = buf[pos:nul].decode("latin-1")
    pos = nul + 3
    dst_ton, dst_npi = buf[nul + 1], buf[nul + 2]
    nul = index(0, pos, end)
    destination_addr = buf[pos:nul].decode("latin-1")
    esm_class, protocol_id, priority_flag = buf[nul + 1], buf[nul + 2], buf[nul + 3]
    pos = nul + 4
    nul = index(0, pos, end)
    schedule = buf[pos:nul].decode("latin-1") if nul > pos else ""
    pos = nul + 1
    nul = index(0, pos, end)
    validity = buf[pos:nul].decode("latin-1") if nul > pos else ""
    pos = nul + 1
    if pos + 5 > end:
        raise ValueError("body ends inside the fixed fields")
    registered, replace, data_coding, default_id, sm_length = _SM_TAIL.unpack_from(buf, pos)
    pos += 5
    if pos + sm_length > end:
        raise ValueError("sm_length runs past the end of the PDU")
    pdu = cls(
        seq,
        source_addr,
        destination_addr,
        bytes(buf[pos : pos + sm_length]),
        service_type,
        src_ton,
        src_npi,
        dst_ton,
        dst_npi,
        esm_class,
        protocol_id,
        priority_flag,
        schedule,
        validity,
        registered,
        replace,
        data_coding,
        default_id,
    )
    pos += sm_length
    if pos < end:
        _decode_tlvs(pdu, buf, pos, end)
    return pdu  # type: ignore[return-value]


def _decode_tlvs(pdu: _ShortMessagePdu, buf: Buffer, pos: int, end: int) -> None:
    extra: list[tuple[int, bytes]] = []
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated TLV header")
        tag, length = _TLV_HEAD.unpack_from(buf, pos)
        pos += 4
        if pos + length > end:
            raise ValueError(f"TLV 0x{tag:04X} runs past the end of the PDU")
        value = bytes(buf[pos : pos + length])
        pos += length
        if tag == TAG_RECEIPTED_MESSAGE_ID:
            pdu.receipted_message_id = value.split(b"\0", 1)[0].decode("latin-1")
        elif tag == TAG_MESSAGE_STATE:
            pdu.message_state = _one_octet(value, tag)
        elif tag == TAG_NETWORK_ERROR_CODE:
            if length != 3:
                raise ValueError("network_error_code must be 3 octets")
            pdu.network_error_code = value
        elif tag == TAG_SAR_MSG_REF_NUM:
            pdu.sar_msg_ref_num = _two_octets(value, tag)
        elif tag == TAG_SAR_TOTAL_SEGMENTS:
            pdu.sar_total_segments = _one_octet(value, tag)
        elif tag == TAG_SAR_SEGMENT_SEQNUM:
            pdu.sar_segment_seqnum = _one_octet(value, tag)
        elif tag == TAG_MESSAGE_PAYLOAD:
            pdu.message_payload = value
        elif tag == TAG_USER_MESSAGE_REFERENCE:
            pdu.user_message_reference = _two_octets(value, tag)
        else:
            extra.append((tag, value))
    pdu.extra_tlvs = tuple(extra)


def _one_octet(value: bytes, tag: int) -> int:
    if len(value) != 1:
        raise ValueError(f"TLV 0x{tag:04X} must be 1 octet")
    return value[0]


def _two_octets(value: bytes, tag: int) -> int:
    if len(value) != 2:
        raise ValueError(f"TLV 0x{tag:04X} must be 2 octets")
    return (value[0] << 8) | value[1]


def _decode_body(command_id: int, status: int, seq: int, buf: Buffer, pos: int, end: int) -> Pdu:
    if command_id == SUBMIT_SM_RESP or command_id == DELIVER_SM_RESP:
        message_id = _read_cstr(buf, pos, end)[0] if pos < end else ""
        if command_id == SUBMIT_SM_RESP:
            return SubmitSmResp(seq, status, message_id)
        return DeliverSmResp(seq, status, message_id)
    if command_id == SUBMIT_SM:
        return _decode_sm(SubmitSm, buf, pos, end, seq)
    if command_id == DELIVER_SM:
        return _decode_sm(DeliverSm, buf, pos, end, seq)
    if pos == end and command_id in _EMPTY:
        return _EMPTY[command_id](seq, status)
    if command_id in (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER):
        system_id, pos = _read_cstr(buf, pos, end)
        password, pos = _read_cstr(buf, pos, end)
        system_type, pos = _read_cstr(buf, pos, end)
        version, ton, npi = buf[pos], buf[pos + 1], buf[pos + 2]
        address_range, pos = _read_cstr(buf, pos + 3, end)
        mode = _BIND_MODES[command_id]
        return BindRequest(mode, seq, system_id, password, system_type, version, ton, npi,
                           address_range)
    if command_id in (BIND_RECEIVER_RESP, BIND_TRANSMITTER_RESP, BIND_TRANSCEIVER_RESP):
        return _decode_bind_resp(command_id, status, seq, buf, pos, end)
    if command_id == OUTBIND:
        system_id, pos = _read_cstr(buf, pos, end)
        password, pos = _read_cstr(buf, pos, end)
        return Outbind(seq, system_id, password)
    raise _UnknownCommand


def _decode_bind_resp(command_id: int, status: int, seq: int, buf: Buffer, pos: int,
                      end: int) -> BindResponse:
    mode = _BIND_MODES[command_id]
    if pos == end:  # no body on an error response (§4.1.2)
        return BindResponse(mode, seq, status)
    system_id, pos = _read_cstr(buf, pos, end)
    version = None
    while pos + 4 <= end:
        tag, length = _TLV_HEAD.unpack_from(buf, pos)
        if pos + 4 + length > end:
            raise ValueError("TLV runs past the end of the PDU")
        if tag == TAG_SC_INTERFACE_VERSION:
            version = _one_octet(bytes(buf[pos + 4 : pos + 4 + length]), tag)
        pos += 4 + length
    if pos != end:
        raise ValueError("trailing octets after the TLVs")
    return BindResponse(mode, seq, status, system_id, version)


class _UnknownCommand(Exception):
    pass


def _enquire_link(seq: int, status: int) -> EnquireLink:
    return EnquireLink(seq)


def _unbind(seq: int, status: int) -> Unbind:
    return Unbind(seq)


# Header-only PDUs: (sequence, status) -> PDU.
_EMPTY: Final[dict[int, Callable[[int, int], Pdu]]] = {
    ENQUIRE_LINK: _enquire_link,
    ENQUIRE_LINK_RESP: EnquireLinkResp,
    UNBIND: _unbind,
    UNBIND_RESP: UnbindResp,
    GENERIC_NACK: GenericNack,
}


def decode_frame(buf: Buffer, pos: int = 0, end: int | None = None) -> Pdu:
    """Decode the one PDU in ``buf[pos:end]``, whose header says it is ``end - pos`` long.

    Raises:
        InvalidPdu: unknown command id or malformed body (the frame itself is sound).
        RemoteProtocolViolation: the length field disagrees with the frame.
    """
    end = len(buf) if end is None else end
    if end - pos < HEADER_LENGTH:
        raise RemoteProtocolViolation("a PDU is at least 16 octets")
    length, command_id, status, seq = _HEADER.unpack_from(buf, pos)
    if length != end - pos:
        raise RemoteProtocolViolation(f"command_length {length} but frame is {end - pos} octets")
    try:
        return _decode_body(command_id, status, seq, buf, pos + HEADER_LENGTH, end)
    except _UnknownCommand:
        raise InvalidPdu(f"unsupported command_id 0x{command_id:08X}", command_id=command_id,
                         sequence=seq, status=st.ESME_RINVCMDID) from None
    except (ValueError, IndexError, struct.error) as exc:
        raise InvalidPdu(f"malformed 0x{command_id:08X}: {exc}", command_id=command_id,
                         sequence=seq, status=st.ESME_RINVMSGLEN) from None


def decode(data: bytes) -> Pdu:
    """Decode exactly one whole PDU (a convenience over ``decode_frame``)."""
    return decode_frame(data, 0, len(data))


class Framer:
    """Splits a byte stream into PDUs as bytes arrive (§3.1: command_length frames each PDU).

    ``feed(data)`` returns every complete PDU in order; a well-framed PDU that does not parse
    is returned as an ``InvalidPdu`` value in its place. A frame length below 16 or above
    ``max_length`` raises ``RemoteProtocolViolation``: the stream cannot be resynchronised
    and the connection must close. After that, every ``feed`` raises again.
    """

    __slots__ = ("_buffer", "_max_length", "_broken")

    def __init__(self, max_length: int = MAX_PDU_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_length = max_length
        self._broken = ""

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a complete PDU."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Pdu | InvalidPdu]:
        """Add ``data`` and return the PDUs it completes."""
        if self._broken:
            raise RemoteProtocolViolation(self._broken)
        if self._buffer:
            self._buffer += data
            buf: Buffer = self._buffer
        else:
            buf = data
        out: list[Pdu | InvalidPdu] = []
        pos = 0
        size = len(buf)
        unpack = _U32.unpack_from
        while size - pos >= HEADER_LENGTH:
            length = unpack(buf, pos)[0]
            if length < HEADER_LENGTH or length > self._max_length:
                self._broken = f"command_length {length} is not a valid PDU length"
                raise RemoteProtocolViolation(self._broken)
            if size - pos < length:
                break
            try:
                out.append(decode_frame(buf, pos, pos + length))
            except InvalidPdu as exc:
                out.append(exc)
            pos += length
        if buf is self._buffer:
            del self._buffer[:pos]
        elif pos < size:
            self._buffer += data[pos:]
        return out
