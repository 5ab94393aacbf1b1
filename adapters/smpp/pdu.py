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

This module is the public face; the codec lives in package-internal modules, one job each:
``_octets`` (command ids, header, C-Octet strings), ``_pdus`` (the dataclasses), ``_tlv``
(TLV tags and codec), ``_encode``, ``_decode`` (body layouts out and in) and ``_framer``.
Must not import: trio, gateway, actors.
"""

from __future__ import annotations

from adapters.smpp._decode import decode, decode_frame
from adapters.smpp._encode import encode, encode_deliver_sm_resp, encode_submit_sm_resp
from adapters.smpp._framer import Framer
from adapters.smpp._octets import (
    BIND_RECEIVER,
    BIND_RECEIVER_RESP,
    BIND_TRANSCEIVER,
    BIND_TRANSCEIVER_RESP,
    BIND_TRANSMITTER,
    BIND_TRANSMITTER_RESP,
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    GENERIC_NACK,
    HEADER_LENGTH,
    MAX_PDU_LENGTH,
    OUTBIND,
    RESPONSE_BIT,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    UNBIND,
    UNBIND_RESP,
    Buffer,
)
from adapters.smpp._pdus import (
    ESM_DELIVERY_RECEIPT,
    ESM_UDHI,
    MAX_SHORT_MESSAGE,
    BindMode,
    BindRequest,
    BindResponse,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from adapters.smpp._tlv import (
    TAG_MESSAGE_PAYLOAD,
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    TAG_SAR_MSG_REF_NUM,
    TAG_SAR_SEGMENT_SEQNUM,
    TAG_SAR_TOTAL_SEGMENTS,
    TAG_SC_INTERFACE_VERSION,
    TAG_USER_MESSAGE_REFERENCE,
)

__all__ = [
    "BIND_RECEIVER",
    "BIND_RECEIVER_RESP",
    "BIND_TRANSCEIVER",
    "BIND_TRANSCEIVER_RESP",
    "BIND_TRANSMITTER",
    "BIND_TRANSMITTER_RESP",
    "DELIVER_SM",
    "DELIVER_SM_RESP",
    "ENQUIRE_LINK",
    "ENQUIRE_LINK_RESP",
    "ESM_DELIVERY_RECEIPT",
    "ESM_UDHI",
    "GENERIC_NACK",
    "HEADER_LENGTH",
    "MAX_PDU_LENGTH",
    "MAX_SHORT_MESSAGE",
    "OUTBIND",
    "RESPONSE_BIT",
    "SUBMIT_SM",
    "SUBMIT_SM_RESP",
    "TAG_MESSAGE_PAYLOAD",
    "TAG_MESSAGE_STATE",
    "TAG_NETWORK_ERROR_CODE",
    "TAG_RECEIPTED_MESSAGE_ID",
    "TAG_SAR_MSG_REF_NUM",
    "TAG_SAR_SEGMENT_SEQNUM",
    "TAG_SAR_TOTAL_SEGMENTS",
    "TAG_SC_INTERFACE_VERSION",
    "TAG_USER_MESSAGE_REFERENCE",
    "UNBIND",
    "UNBIND_RESP",
    "BindMode",
    "BindRequest",
    "BindResponse",
    "Buffer",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "Framer",
    "GenericNack",
    "Outbind",
    "Pdu",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "decode",
    "decode_frame",
    "encode",
    "encode_deliver_sm_resp",
    "encode_submit_sm_resp",
]
