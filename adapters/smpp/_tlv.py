"""SMPP 3.4 optional parameters (TLVs, §5.3): the tags we use and their codec.

Owns the TLV layout (2-octet tag, 2-octet length, value; §3.2.4), the tags the gateway reads
or writes (§5.3.2), and the mapping between those TLVs and the fields of submit_sm/deliver_sm
and bind_*_resp. A tag submit_sm/deliver_sm do not know is kept verbatim in ``extra_tlvs``;
bind_*_resp skips it. Decoders raise ``ValueError`` on malformed input, as every body
decoder does (``decode_frame`` turns it into ``InvalidPdu``).
Sans-IO and pure; package-internal. Must not import: trio, gateway, actors.
"""

from __future__ import annotations

import struct
from typing import Final

from adapters.errors import LocalProtocolViolation
from adapters.smpp._octets import Buffer, byte, cstr
from adapters.smpp._pdus import BindResponse, ShortMessagePdu

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

_TLV_HEAD: Final = struct.Struct(">HH")  # tag, length
_unpack_tlv_head: Final = _TLV_HEAD.unpack_from


def _tlv(tag: int, value: bytes) -> bytes:
    """One TLV on the wire."""
    if len(value) > 0xFFFF:
        raise LocalProtocolViolation(f"TLV 0x{tag:04X} longer than 65535 octets")
    return _TLV_HEAD.pack(tag, len(value)) + value


def encode_sm_tlvs(pdu: ShortMessagePdu) -> bytes:
    """The TLVs of a submit_sm/deliver_sm: its set optional fields, then ``extra_tlvs``."""
    out: list[bytes] = []
    if pdu.user_message_reference is not None:
        out.append(_tlv(TAG_USER_MESSAGE_REFERENCE, struct.pack(">H", pdu.user_message_reference)))
    if pdu.sar_msg_ref_num is not None:
        out.append(_tlv(TAG_SAR_MSG_REF_NUM, struct.pack(">H", pdu.sar_msg_ref_num)))
    if pdu.sar_total_segments is not None:
        out.append(_tlv(TAG_SAR_TOTAL_SEGMENTS, bytes((byte(pdu.sar_total_segments, "sar"),))))
    if pdu.sar_segment_seqnum is not None:
        out.append(_tlv(TAG_SAR_SEGMENT_SEQNUM, bytes((byte(pdu.sar_segment_seqnum, "sar"),))))
    if pdu.receipted_message_id is not None:
        out.append(_tlv(TAG_RECEIPTED_MESSAGE_ID, cstr(pdu.receipted_message_id, 65, "id")))
    if pdu.message_state is not None:
        out.append(_tlv(TAG_MESSAGE_STATE, bytes((byte(pdu.message_state, "state"),))))
    if pdu.network_error_code is not None:
        if len(pdu.network_error_code) != 3:
            raise LocalProtocolViolation("network_error_code is 3 octets")
        out.append(_tlv(TAG_NETWORK_ERROR_CODE, pdu.network_error_code))
    if pdu.message_payload is not None:
        out.append(_tlv(TAG_MESSAGE_PAYLOAD, pdu.message_payload))
    out.extend(_tlv(tag, value) for tag, value in pdu.extra_tlvs)
    return b"".join(out)


def decode_sm_tlvs(pdu: ShortMessagePdu, buf: Buffer, pos: int, end: int) -> None:
    """Set ``pdu``'s optional fields from the TLVs in ``buf[pos:end]``.

    Receipts carry two or three TLVs per PDU, so the common tags are read in place (no copy
    of the value, no helper call); a property test checks every TLV against the encoder.
    """
    extra: list[tuple[int, bytes]] | None = None
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated TLV header")
        tag, length = _unpack_tlv_head(buf, pos)
        pos += 4
        stop = pos + length
        if stop > end:
            raise ValueError(f"TLV 0x{tag:04X} runs past the end of the PDU")
        if tag == TAG_RECEIPTED_MESSAGE_ID:
            nul = buf.find(0, pos, stop)
            pdu.receipted_message_id = buf[pos : stop if nul < 0 else nul].decode("latin-1")
        elif tag == TAG_MESSAGE_STATE:
            if length != 1:
                raise ValueError(f"TLV 0x{tag:04X} must be 1 octet")
            pdu.message_state = buf[pos]
        elif tag == TAG_NETWORK_ERROR_CODE:
            if length != 3:
                raise ValueError("network_error_code must be 3 octets")
            pdu.network_error_code = bytes(buf[pos:stop])
        elif tag == TAG_SAR_MSG_REF_NUM:
            pdu.sar_msg_ref_num = _two_octets(bytes(buf[pos:stop]), tag)
        elif tag == TAG_SAR_TOTAL_SEGMENTS:
            pdu.sar_total_segments = _one_octet(bytes(buf[pos:stop]), tag)
        elif tag == TAG_SAR_SEGMENT_SEQNUM:
            pdu.sar_segment_seqnum = _one_octet(bytes(buf[pos:stop]), tag)
        elif tag == TAG_MESSAGE_PAYLOAD:
            pdu.message_payload = bytes(buf[pos:stop])
        elif tag == TAG_USER_MESSAGE_REFERENCE:
            pdu.user_message_reference = _two_octets(bytes(buf[pos:stop]), tag)
        else:
            if extra is None:
                extra = []
            extra.append((tag, bytes(buf[pos:stop])))
        pos = stop
    pdu.extra_tlvs = tuple(extra) if extra is not None else ()


def encode_bind_resp_tlvs(pdu: BindResponse) -> bytes:
    """The TLVs of a bind_*_resp: sc_interface_version when it is set (§4.1.2)."""
    if pdu.sc_interface_version is None:
        return b""
    version = byte(pdu.sc_interface_version, "sc_interface_version")
    return _tlv(TAG_SC_INTERFACE_VERSION, bytes((version,)))


def decode_bind_resp_tlvs(pdu: BindResponse, buf: Buffer, pos: int, end: int) -> None:
    """Set ``pdu.sc_interface_version`` from the TLVs in ``buf[pos:end]``; skip other tags."""
    while pos + 4 <= end:
        tag, length = _unpack_tlv_head(buf, pos)
        if pos + 4 + length > end:
            raise ValueError("TLV runs past the end of the PDU")
        if tag == TAG_SC_INTERFACE_VERSION:
            pdu.sc_interface_version = _one_octet(bytes(buf[pos + 4 : pos + 4 + length]), tag)
        pos += 4 + length
    if pos != end:
        raise ValueError("trailing octets after the TLVs")


def _one_octet(value: bytes, tag: int) -> int:
    if len(value) != 1:
        raise ValueError(f"TLV 0x{tag:04X} must be 1 octet")
    return value[0]


def _two_octets(value: bytes, tag: int) -> int:
    if len(value) != 2:
        raise ValueError(f"TLV 0x{tag:04X} must be 2 octets")
    return (value[0] << 8) | value[1]
