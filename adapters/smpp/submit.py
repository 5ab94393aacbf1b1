"""Turning a ``SubmitPart`` into submit_sm bytes, per connector options (pure, no I/O).

Concatenation: ``concat="udh"`` (default) sends ``part.udh + body`` in short_message with
esm_class UDHI (0x40, SMPP 3.4 §5.2.12); ``concat="sar"`` removes the concatenation
information element (IEI 0x00 or 0x08, 3GPP TS 23.040 §9.2.3.24.1/.8) from the UDH and sends
sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs (§5.3.2.22-24) built from
``concat_ref``/``parts``/``part``; any other IE (national language shift) stays in the UDH.
GSM 7-bit bodies arrive one septet per octet; ``packed_gsm7=True`` packs them with the fill
bits that align the first septet after the UDH (TS 23.038 §6.1.2.1.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from actors.messages import SubmitPart
from adapters.errors import LocalProtocolViolation
from adapters.smpp import pdu as p
from codec import CodecError, InvalidUDH, pack_septets, parse_udh

Concat = Literal["udh", "sar"]
_CONCAT_IES: Final = frozenset({0x00, 0x08})


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """Per-connector choices for building submit_sm."""

    concat: Concat = "udh"
    packed_gsm7: bool = False
    registered_delivery: int = 1
    service_type: str = ""
    dest_ton: int = 1
    dest_npi: int = 1


def strip_concat(udh: bytes) -> bytes:
    """``udh`` without its concatenation IE; b"" when nothing else is left.

    Raises:
        LocalProtocolViolation: the UDH's lengths do not add up.
    """
    try:
        ies = parse_udh(udh)
    except InvalidUDH as exc:
        raise LocalProtocolViolation(f"bad UDH: {exc}") from exc
    kept = b"".join(bytes((iei, len(data))) + data for iei, data in ies if iei not in _CONCAT_IES)
    return bytes((len(kept),)) + kept if kept else b""


def source_address(sender: str) -> tuple[int, int, str]:
    """(ton, npi, address) for a sender id (§5.2.5-5.2.6).

    Alphanumeric: TON 5 (alphanumeric), NPI 0. Digits longer than 8: TON 1 (international),
    NPI 1 (E.164), without '+'. Short codes: TON 3 (network specific), NPI 0.
    """
    digits = sender.removeprefix("+")
    if not digits.isdigit():
        return 5, 0, sender
    if len(digits) > 8:
        return 1, 1, digits
    return 3, 0, digits


def build_submit(part: SubmitPart, options: SubmitOptions) -> p.SubmitSm:
    """The submit_sm for ``part`` (sequence 0; the session assigns it).

    Raises:
        LocalProtocolViolation: the part cannot be expressed (bad UDH, bad septets).
    """
    udh = part.udh
    sar: tuple[int, int, int] | None = None
    if options.concat == "sar" and part.parts > 1:
        udh = strip_concat(udh)
        sar = (part.concat_ref & 0xFFFF, part.parts, part.part)
    body = part.body
    if options.packed_gsm7 and part.data_coding == 0:
        fill = (7 - (len(udh) * 8) % 7) % 7
        try:
            body = pack_septets(body, fill)
        except CodecError as exc:
            raise LocalProtocolViolation(f"GSM 7-bit body does not pack: {exc}") from exc
    message = udh + body
    payload = None
    if len(message) > p.MAX_SHORT_MESSAGE:  # §5.3.2.32: long content goes in message_payload
        payload, message = message, b""
    ton, npi, source = source_address(part.sender)
    pdu = p.SubmitSm(
        0,
        source,
        part.to.removeprefix("+"),
        message,
        options.service_type,
        ton,
        npi,
        options.dest_ton,
        options.dest_npi,
        p.ESM_UDHI if udh else 0,
        registered_delivery=options.registered_delivery,
        data_coding=part.data_coding,
        message_payload=payload,
    )
    if sar is not None:
        pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum = sar
    return pdu


_HEAD: Final = struct.Struct(">IIII")


@lru_cache(maxsize=1024)
def _source_cstr(sender: str) -> bytes | None:
    ton, npi, address = source_address(sender)
    if len(address) > 20 or not address.isascii() or "\0" in address:
        return None
    return bytes((ton, npi)) + address.encode("ascii") + b"\0"


def encode_part(part: SubmitPart, options: SubmitOptions) -> bytes:
    """``build_submit`` encoded (sequence 0, patched in by ``EsmeSession.submit_encoded``).

    The common case (UDH concatenation, plain addresses, short_message under 255 octets) is
    assembled directly; anything else goes through ``build_submit`` and ``pdu.encode``, which
    produce the same bytes (a test checks both ways agree).
    """
    dest = part.to.removeprefix("+")
    source = _source_cstr(part.sender)
    udh = part.udh
    body = part.body
    if (
        source is None
        or len(dest) > 20
        or not dest.isascii()
        or "\0" in dest
        or (options.concat == "sar" and part.parts > 1)
        or (options.packed_gsm7 and part.data_coding == 0)
        or len(udh) + len(body) > p.MAX_SHORT_MESSAGE
        or len(options.service_type) > 5
        or not 0 <= part.data_coding <= 0xFF
    ):
        return p.encode(build_submit(part, options))
    message = udh + body
    fields = b"".join((
        options.service_type.encode("latin-1"), b"\0",
        source,
        bytes((options.dest_ton, options.dest_npi)), dest.encode("ascii"), b"\0",
        bytes((p.ESM_UDHI if udh else 0, 0, 0, 0, 0, options.registered_delivery, 0,
               part.data_coding, 0, len(message))),
        message,
    ))
    return _HEAD.pack(16 + len(fields), p.SUBMIT_SM, 0, 0) + fields


class PartEncoder:
    """``encode_part`` for one connector's ``options``, faster: the octets from service_type
    to dest_addr_npi, which every part of one sender shares, are built once per sender.

    ``encode(part) == encode_part(part, options)`` for every part (a property test checks);
    what the short-cut does not cover goes to ``encode_part`` itself.
    """

    __slots__ = ("_heads", "_options", "_packed", "_registered", "_sar")

    def __init__(self, options: SubmitOptions) -> None:
        self._options = options
        self._heads: dict[str, bytes] = {}
        self._sar = options.concat == "sar"
        self._packed = options.packed_gsm7
        self._registered = options.registered_delivery

    def _head(self, sender: str) -> bytes:
        """service_type .. dest_addr_npi for ``sender``; b"" when it needs ``encode_part``."""
        options = self._options
        source = _source_cstr(sender)
        service_type = options.service_type
        head = b""
        if (source is not None and len(service_type) <= 5 and service_type.isascii()
                and "\0" not in service_type and 0 <= options.dest_ton <= 0xFF
                and 0 <= options.dest_npi <= 0xFF and 0 <= self._registered <= 0xFF):
            head = (service_type.encode("ascii") + b"\0" + source
                    + bytes((options.dest_ton, options.dest_npi)))
        if len(self._heads) >= 1024:  # senders are few; bound the memory anyway
            self._heads.clear()
        self._heads[sender] = head
        return head

    def encode(self, part: SubmitPart) -> bytes:
        """The submit_sm of ``part`` with sequence 0 (``EsmeSession.submit_encoded`` sets it)."""
        head = self._heads.get(part.sender)
        if head is None:
            head = self._head(part.sender)
        dest = part.to.removeprefix("+")
        udh = part.udh
        message = udh + part.body
        coding = part.data_coding
        if (
            not head
            or len(dest) > 20
            or not dest.isascii()
            or "\0" in dest
            or len(message) > p.MAX_SHORT_MESSAGE
            or not 0 <= coding <= 0xFF
            or (self._sar and part.parts > 1)
            or (self._packed and coding == 0)
        ):
            return encode_part(part, self._options)
        return b"%s%s%s\0%c\0\0\0\0%c\0%c\0%c%s" % (
            _HEAD.pack(27 + len(head) + len(dest) + len(message), p.SUBMIT_SM, 0, 0), head,
            dest.encode("ascii"), p.ESM_UDHI if udh else 0, self._registered, coding,
            len(message), message)
