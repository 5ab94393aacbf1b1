"""SMPP 3.4 decoding: ``decode_frame`` turns one framed PDU into its dataclass.

Owns the body layout of every PDU on the way in (§4). Body decoders read ``buf[pos:end]``
(bytes or bytearray) and raise ValueError, IndexError or struct.error on malformed input;
``decode_frame`` turns those into an ``InvalidPdu`` carrying the status for the generic_nack
(§3.3, §4.3). Sans-IO and pure; package-internal (``adapters.smpp.pdu`` re-exports the
public names). Must not import: trio, gateway, actors.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Final, TypeVar

from adapters.errors import InvalidPdu, RemoteProtocolViolation
from adapters.smpp import status as st
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
    Buffer,
    read_cstr,
    unpack_header,
    unpack_sm_tail,
)
from adapters.smpp._pdus import (
    BIND_MODES,
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
from adapters.smpp._tlv import decode_bind_resp_tlvs, decode_sm_tlvs

_Sm = TypeVar("_Sm", SubmitSm, DeliverSm)


# The fixed fields of submit_sm/deliver_sm (§4.4.1, §4.6.1) up to sm_length, in one C call:
# service_type, source ton/npi, source_addr, dest ton/npi, destination_addr, esm_class,
# protocol_id, priority_flag, schedule_delivery_time, validity_period, then registered_delivery,
# replace_if_present_flag, data_coding, sm_default_msg_id and sm_length (the last 5 octets).
# Each ``[^\0]*\0`` is a C-Octet string up to its first NUL, as ``read_cstr`` reads it.
SM_FIXED: Final = re.compile(
    rb"([^\0]*)\0(.)(.)([^\0]*)\0(.)(.)([^\0]*)\0(.)(.)(.)([^\0]*)\0([^\0]*)\0.....", re.DOTALL
).match


def _decode_sm(cls: type[_Sm], buf: Buffer, pos: int, end: int, seq: int) -> _Sm:
    # The hot path of both the client (deliver_sm receipts) and the simulator (submit_sm): one
    # regex match reads every fixed field; what it does not match (a missing NUL, a body that
    # ends inside the fixed fields) goes to ``_decode_sm_general``, which says what is wrong.
    m = SM_FIXED(buf, pos, end)
    if m is None:
        return _decode_sm_general(cls, buf, pos, end, seq)
    (service_type, src_ton, src_npi, source_addr, dst_ton, dst_npi, destination_addr,
     esm_class, protocol_id, priority_flag, schedule, validity) = m.groups()
    return _finish_sm(
        cls, seq, buf, m.end(), end, source_addr.decode("latin-1"),
        destination_addr.decode("latin-1"), service_type.decode("latin-1"), src_ton[0],
        src_npi[0], dst_ton[0], dst_npi[0], esm_class[0], protocol_id[0], priority_flag[0],
        schedule.decode("latin-1"), validity.decode("latin-1"))


def _decode_sm_general(cls: type[_Sm], buf: Buffer, pos: int, end: int, seq: int) -> _Sm:
    # The field-by-field reference of ``_decode_sm`` (equal for every input, a property test
    # checks). ``index`` raises ValueError when a NUL is missing.
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
    return _finish_sm(cls, seq, buf, pos + 5, end, source_addr, destination_addr, service_type,
                      src_ton, src_npi, dst_ton, dst_npi, esm_class, protocol_id, priority_flag,
                      schedule, validity)


def _finish_sm(cls: type[_Sm], seq: int, buf: Buffer, pos: int, end: int, source_addr: str,
               destination_addr: str, service_type: str, src_ton: int, src_npi: int,
               dst_ton: int, dst_npi: int, esm_class: int, protocol_id: int,
               priority_flag: int, schedule: str, validity: str) -> _Sm:
    """The PDU from its C-Octet fields: ``pos`` is just past the fixed fields, whose last five
    octets (registered_delivery .. sm_length) are read here, then the message and the TLVs."""
    registered, replace, data_coding, default_id, sm_length = unpack_sm_tail(buf, pos - 5)
    if pos + sm_length > end:
        raise ValueError("sm_length runs past the end of the PDU")
    pdu = cls(seq, source_addr, destination_addr, bytes(buf[pos : pos + sm_length]),
              service_type, src_ton, src_npi, dst_ton, dst_npi, esm_class, protocol_id,
              priority_flag, schedule, validity, registered, replace, data_coding, default_id)
    pos += sm_length
    if pos < end:
        decode_sm_tlvs(pdu, buf, pos, end)
    return pdu


def _decode_body(command_id: int, status: int, seq: int, buf: Buffer, pos: int, end: int) -> Pdu:
    if command_id == SUBMIT_SM_RESP or command_id == DELIVER_SM_RESP:
        message_id = read_cstr(buf, pos, end)[0] if pos < end else ""
        if command_id == SUBMIT_SM_RESP:
            return SubmitSmResp(seq, status, message_id)
        return DeliverSmResp(seq, status, message_id)
    if command_id == SUBMIT_SM:
        return _decode_sm(SubmitSm, buf, pos, end, seq)
    if command_id == DELIVER_SM:
        return _decode_sm(DeliverSm, buf, pos, end, seq)
    if pos == end and command_id in _EMPTY:
        return _EMPTY[command_id](seq, status)
    mode = BIND_MODES.get(command_id)
    if mode is not None:
        if command_id & RESPONSE_BIT:
            return _decode_bind_resp(mode, status, seq, buf, pos, end)
        return _decode_bind(mode, seq, buf, pos, end)
    if command_id == OUTBIND:
        system_id, pos = read_cstr(buf, pos, end)
        password, pos = read_cstr(buf, pos, end)
        return Outbind(seq, system_id, password)
    raise _UnknownCommand


def _decode_bind(mode: BindMode, seq: int, buf: Buffer, pos: int, end: int) -> BindRequest:
    system_id, pos = read_cstr(buf, pos, end)
    password, pos = read_cstr(buf, pos, end)
    system_type, pos = read_cstr(buf, pos, end)
    version, ton, npi = buf[pos], buf[pos + 1], buf[pos + 2]
    address_range, pos = read_cstr(buf, pos + 3, end)
    return BindRequest(mode, seq, system_id, password, system_type, version, ton, npi,
                       address_range)


def _decode_bind_resp(mode: BindMode, status: int, seq: int, buf: Buffer, pos: int,
                      end: int) -> BindResponse:
    if pos == end:  # no body on an error response (§4.1.2)
        return BindResponse(mode, seq, status)
    system_id, pos = read_cstr(buf, pos, end)
    pdu = BindResponse(mode, seq, status, system_id)
    decode_bind_resp_tlvs(pdu, buf, pos, end)
    return pdu


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
    length, command_id, status, seq = unpack_header(buf, pos)
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
