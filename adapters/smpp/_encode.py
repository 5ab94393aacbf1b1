"""SMPP 3.4 encoding: ``encode(pdu) -> bytes``, header included, and two hot-path shortcuts.

Owns the body layout of every PDU on the way out (§4). A field that does not fit the spec
raises ``LocalProtocolViolation``. Sans-IO and pure; package-internal (``adapters.smpp.pdu``
re-exports the public names). Must not import: trio, gateway, actors.
"""

from __future__ import annotations

import struct

from adapters.errors import LocalProtocolViolation
from adapters.smpp._octets import (
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    GENERIC_NACK,
    HEADER_LENGTH,
    OUTBIND,
    RESPONSE_BIT,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    UNBIND,
    UNBIND_RESP,
    byte,
    cstr,
    frame,
    pack_header,
    pack_sm_flags,
    pack_sm_tail,
)
from adapters.smpp._pdus import (
    BIND_IDS,
    MAX_SHORT_MESSAGE,
    BindRequest,
    BindResponse,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    ShortMessagePdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from adapters.smpp._tlv import encode_bind_resp_tlvs, encode_sm_tlvs


def _encode_sm(pdu: ShortMessagePdu, command_id: int) -> bytes:
    sm = pdu.short_message
    if len(sm) > MAX_SHORT_MESSAGE:
        raise LocalProtocolViolation("short_message over 254 octets: use message_payload")
    try:
        body = b"".join(
            (
                cstr(pdu.service_type, 6, "service_type"),
                bytes((pdu.source_addr_ton, pdu.source_addr_npi)),
                cstr(pdu.source_addr, 21, "source_addr"),
                bytes((pdu.dest_addr_ton, pdu.dest_addr_npi)),
                cstr(pdu.destination_addr, 21, "destination_addr"),
                pack_sm_flags(pdu.esm_class, pdu.protocol_id, pdu.priority_flag),
                cstr(pdu.schedule_delivery_time, 17, "schedule_delivery_time"),
                cstr(pdu.validity_period, 17, "validity_period"),
                pack_sm_tail(
                    pdu.registered_delivery,
                    pdu.replace_if_present_flag,
                    pdu.data_coding,
                    pdu.sm_default_msg_id,
                    len(sm),
                ),
                sm,
                encode_sm_tlvs(pdu),
            )
        )
    except (struct.error, ValueError, OverflowError) as exc:  # an int field out of range
        raise LocalProtocolViolation(f"field out of range: {exc}") from exc
    return frame(command_id, 0, pdu.sequence, body)


def encode_submit_sm_resp(sequence: int, status: int, message_id: str) -> bytes:
    """``encode(SubmitSmResp(...))`` without building the object (simulator hot path)."""
    body = cstr(message_id, 65, "message_id")
    return pack_header(HEADER_LENGTH + len(body), SUBMIT_SM_RESP, status, sequence) + body


def encode_deliver_sm_resp(sequence: int, status: int = 0) -> bytes:
    """``encode(DeliverSmResp(sequence, status))`` without building the object (client hot path)."""
    return pack_header(HEADER_LENGTH + 1, DELIVER_SM_RESP, status, sequence) + b"\0"


def encode(pdu: Pdu) -> bytes:
    """The wire bytes of ``pdu``, header included.

    Raises:
        LocalProtocolViolation: a field does not fit the spec (too long, out of range).
    """
    match pdu:
        case SubmitSm():
            return _encode_sm(pdu, SUBMIT_SM)
        case SubmitSmResp():
            return frame(SUBMIT_SM_RESP, pdu.status, pdu.sequence, cstr(pdu.message_id, 65, "id"))
        case DeliverSm():
            return _encode_sm(pdu, DELIVER_SM)
        case DeliverSmResp():
            body = cstr(pdu.message_id, 65, "message_id")
            return frame(DELIVER_SM_RESP, pdu.status, pdu.sequence, body)
        case EnquireLink():
            return frame(ENQUIRE_LINK, 0, pdu.sequence, b"")
        case EnquireLinkResp():
            return frame(ENQUIRE_LINK_RESP, pdu.status, pdu.sequence, b"")
        case BindRequest():
            return frame(BIND_IDS[pdu.mode], 0, pdu.sequence, _bind_body(pdu))
        case BindResponse():
            body = cstr(pdu.system_id, 16, "system_id") + encode_bind_resp_tlvs(pdu)
            return frame(BIND_IDS[pdu.mode] | RESPONSE_BIT, pdu.status, pdu.sequence, body)
        case Outbind():
            body = cstr(pdu.system_id, 16, "system_id") + cstr(pdu.password, 9, "password")
            return frame(OUTBIND, 0, pdu.sequence, body)
        case Unbind():
            return frame(UNBIND, 0, pdu.sequence, b"")
        case UnbindResp():
            return frame(UNBIND_RESP, pdu.status, pdu.sequence, b"")
        case GenericNack():
            return frame(GENERIC_NACK, pdu.status, pdu.sequence, b"")
    raise LocalProtocolViolation(f"not a PDU: {type(pdu).__name__}")


def _bind_body(pdu: BindRequest) -> bytes:
    return b"".join(
        (
            cstr(pdu.system_id, 16, "system_id"),
            cstr(pdu.password, 9, "password"),
            cstr(pdu.system_type, 13, "system_type"),
            bytes(
                (
                    byte(pdu.interface_version, "interface_version"),
                    byte(pdu.addr_ton, "addr_ton"),
                    byte(pdu.addr_npi, "addr_npi"),
                )
            ),
            cstr(pdu.address_range, 41, "address_range"),
        )
    )
