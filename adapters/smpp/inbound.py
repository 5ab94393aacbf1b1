"""Mobile-originated (MO) messages: a non-receipt deliver_sm turned into an ``InboundPart``.

A deliver_sm whose esm_class is not a delivery receipt (SMPP 3.4 §4.6.1, §5.2.12) carries a
message a handset sent to one of our numbers. :func:`parse_mo` decodes it with ``codec``
(``decode_part``: GSM 7-bit unpacked or packed per the connector's setting, UCS-2, Latin-1 for
data_coding 0x03, ASCII for 0x01) and keeps the concatenation reference, from the UDH
(esm_class UDHI, TS 23.040 §9.2.3.24.1/.8) or from the SAR TLVs (§5.3.2.22-24), so the parts of
a long message can be joined later.

Parts are NOT joined here. Each part goes to the inbound sink as it arrives and is
acknowledged once the sink has stored it; the store joins them when the last one is in
(``gateway.inbound``). Holding parts in memory unacknowledged until their message is complete
would deadlock an SMSC that delivers with a window of one (common for MO), and acknowledging
parts held only in memory would lose them in a crash. See docs/carriers.md.

Pure, no I/O. Must not import: gateway, any actor module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, NamedTuple

from adapters.smpp import pdu as p
from codec import CodecError, Concat, decode_part

ENCODINGS: Final[dict[int, str]] = {0: "gsm7", 1: "ascii", 3: "latin1", 8: "ucs2"}
ESME_RX_P_APPN: Final = 0x65  # "ESME receiver permanent app error": do not resend (§5.1.3)


class InboundPart(NamedTuple):
    """One received MO message, or one part of a concatenated one.

    Attributes:
        connector: the connector it came in on.
        source: the sender's number (the handset), as the SMSC wrote it.
        destination: our number it was sent to, as the SMSC wrote it.
        text: the decoded text of this part.
        received_at: wall-clock time (Unix seconds) it reached us.
        encoding: "gsm7", "ucs2", "latin1" or "ascii"; "utf-8" for a text an HTTP provider
            handed over already decoded (adapters.http_inbound).
        concat: None for a whole message; else (reference, total, sequence, ref_bits) with
            ref_bits 8 or 16 (UDH), 16 (SAR), or 64: an HTTP provider's reference, hashed
            (``adapters.http_inbound``).
    """

    connector: str
    source: str
    destination: str
    text: str
    received_at: float
    encoding: str
    concat: Concat | None = None


InboundSink = Callable[[Sequence[InboundPart]], Awaitable[None]]
"""Called by a connector with MO parts; returns once they are durably stored. The connector
answers deliver_sm_resp only after it returns, and a non-zero status when it raises."""


class InvalidMo(ValueError):
    """A deliver_sm whose content cannot be decoded (unknown data_coding, broken UDH)."""


def _encoding(data_coding: int) -> str:
    if data_coding in (0xF0, 0xF1, 0xF2, 0xF3):  # GSM 7-bit with message class (TS 23.038 §4)
        return "gsm7"
    return ENCODINGS.get(data_coding, "")


def parse_mo(pdu: p.DeliverSm, *, connector: str, received_at: float,
             packed_gsm7: bool = False) -> InboundPart:
    """Decode the MO message in ``pdu`` (not a receipt).

    Args:
        pdu: the deliver_sm.
        connector: the connector's name, kept with the part.
        received_at: wall-clock time of arrival.
        packed_gsm7: the connector's GSM 7-bit bodies are packed (8 septets in 7 octets).

    Raises:
        InvalidMo: unsupported data_coding, malformed UDH or payload.
    """
    payload = pdu.message_payload if pdu.message_payload is not None else pdu.short_message
    encoding = _encoding(pdu.data_coding)
    if not encoding:
        raise InvalidMo(f"unsupported data_coding 0x{pdu.data_coding:02X}")
    try:
        part = decode_part(payload, pdu.data_coding, udhi=bool(pdu.esm_class & p.ESM_UDHI),
                           packed=packed_gsm7)
    except CodecError as exc:
        raise InvalidMo(str(exc)) from exc
    concat = part.concat if part.concat is not None else _sar(pdu)
    if concat is not None and not 1 <= concat.sequence <= concat.total:
        raise InvalidMo(f"part {concat.sequence} of {concat.total}")
    if concat is not None and concat.total == 1:
        concat = None  # a "concatenated" message of one part is a whole message
    return InboundPart(connector, _address(pdu.source_addr, pdu.source_addr_ton),
                       _address(pdu.destination_addr, pdu.dest_addr_ton), part.text,
                       received_at, encoding, concat)


def _address(addr: str, ton: int) -> str:
    """An international number (TON 1, §5.2.5) gets its "+" back, as we submit it without."""
    return "+" + addr if ton == 1 and addr.isdigit() else addr


def _sar(pdu: p.DeliverSm) -> Concat | None:
    """The SAR TLVs (§5.3.2.22-24) as a ``Concat``, when all three are present."""
    if pdu.sar_msg_ref_num is None or pdu.sar_total_segments is None \
            or pdu.sar_segment_seqnum is None:
        return None
    return Concat(pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum, 16)
