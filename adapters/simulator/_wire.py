"""The simulator's hot path on the wire: what it reads and writes once per submitted part.

``decode`` is a ``Framer`` decoder (``adapters.smpp._framer``) that reads the two PDUs the
simulator gets once per part without building PDU objects: a submit_sm without TLVs becomes
``(sequence, source_addr, destination_addr, short_message, registered_delivery)`` and a
deliver_sm_resp with an empty message_id ``(sequence, command_status)``. Every other frame
(TLVs, a bad body, any other command) goes to ``decode_frame``, so a fault is named exactly
as before. The tuples hold what ``decode_frame`` would have put in those fields (a property
test checks). ``submit_sm_resp`` and ``receipt_deliver_sm`` write the two PDUs it sends
once per part. Sans-IO and pure. Must not import: trio, gateway, actors.
"""

from __future__ import annotations

from typing import Any, Final

from adapters.smpp._decode import SM_FIXED, decode_frame
from adapters.smpp._octets import (
    DELIVER_SM,
    DELIVER_SM_RESP,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    Buffer,
    pack_header,
    unpack_header,
    unpack_sm_tail,
)

FastSubmit = tuple[int, str, str, bytes, int]
"""(sequence, source_addr, destination_addr, short_message, registered_delivery)."""
FastDeliverResp = tuple[int, int]
"""(sequence, command_status) of a deliver_sm_resp."""


def decode(buf: Buffer, pos: int, end: int) -> Any:
    """A ``FastSubmit``, a ``FastDeliverResp`` or what ``decode_frame`` makes of the frame.

    ``buf[pos:end]`` is one frame whose command_length is ``end - pos`` (the framer's word).
    """
    _, command_id, status, seq = unpack_header(buf, pos)
    if command_id == SUBMIT_SM:
        m = SM_FIXED(buf, pos + 16, end)
        if m is not None:
            stop = m.end()
            registered, _, _, _, sm_length = unpack_sm_tail(buf, stop - 5)
            if stop + sm_length == end:  # no TLVs: decode_frame would set none either
                source, destination = m.group(4, 7)
                return (seq, source.decode("latin-1"), destination.decode("latin-1"),
                        bytes(buf[stop:end]), registered)
    elif command_id == DELIVER_SM_RESP and (
            end - pos == 16 or (end - pos == 17 and buf[pos + 16] == 0)):
        return (seq, status)
    return decode_frame(buf, pos, end)


def submit_sm_resp(sequence: int, status: int, message_id: str) -> bytes:
    """``encode_submit_sm_resp`` for an id of ours (ASCII, no NUL, under 65 octets)."""
    raw = message_id.encode("ascii")
    return pack_header(17 + len(raw), SUBMIT_SM_RESP, status, sequence) + raw + b"\0"


_SAFE: Final = bytes(b if 32 <= b < 127 else 63 for b in range(256))  # '?' for non-printables


def receipt_text(receipt_id: str, stat: str, err: int, submitted: bytes, done: bytes,
                 head: bytes) -> bytes:
    """The conventional receipt text (SMPP 3.4 appendix B); dates already YYMMDDhhmm."""
    return b"id:%s sub:001 dlvrd:%s submit date:%s done date:%s stat:%s err:%03d text:%s" % (
        receipt_id.encode("ascii"), b"001" if stat == "DELIVRD" else b"000", submitted, done,
        stat.encode("ascii"), err, head[:20].translate(_SAFE))


def receipt_deliver_sm(sequence: int, source: str, destination: str, text: bytes,
                       receipt_id: str, state: int | None, err: int) -> bytes:
    """A receipt deliver_sm (``state`` None: no TLVs); ``pdu.encode`` of the same ``DeliverSm``.

    Addresses were checked on submit (at most 20 octets), ids are ours: nothing can overflow.
    """
    body = b"\0\0\0%s\0\0\0%s\0\x04\0\0\0\0\0\0\0\0%c%s" % (
        source.encode("latin-1"), destination.encode("latin-1"), len(text), text)
    if state is not None:
        rid = receipt_id.encode("latin-1")
        body += b"\x00\x1e%c%c%s\0\x04\x27\x00\x01%c" % (
            (len(rid) + 1) >> 8, (len(rid) + 1) & 0xFF, rid, state)
        if err:
            body += b"\x04\x23\x00\x03\x03%c%c" % (err >> 8, err & 0xFF)  # 3 = GSM
    return pack_header(16 + len(body), DELIVER_SM, 0, sequence) + body
