"""Mobile-originated (MO) messages the simulated SMSC sends: a handset's reply as deliver_sm.

With ``SimulatorConfig.mo_reply`` set, a handset answers each message it receives (once, on the
message's last part) with that text. :func:`mo_parts` cuts the reply with ``codec.split`` (GSM
7-bit when the text allows, else UCS-2; concatenated with a UDH or SAR TLVs) and
:func:`encode_mo` writes one part as a deliver_sm with esm_class 0 (§4.6.1, §5.2.12). Pure.
Must not import gateway or actors.
"""

from __future__ import annotations

from typing import NamedTuple

from adapters.smpp import pdu as p
from codec import Policy, pack_septets, parse_udh, split
from codec.udh import find_concat, split_udh, udh_septets


class MoPart(NamedTuple):
    """One MO deliver_sm to send: from the handset (``source``) to our number."""

    source: str
    destination: str
    data_coding: int
    esm_class: int
    short_message: bytes
    sar: tuple[int, int, int] | None  # (reference, total, sequence) when concat is "sar"
    source_ton: int = 0  # type of number (§5.2.5): 1 international, 5 alphanumeric
    destination_ton: int = 0


_POLICY = Policy(mode="ucs2", max_parts=255, ref_bits=8, languages=())


def mo_parts(text: str, *, source: str, destination: str, reference: int,
             packed: bool = False, concat: str = "udh", source_ton: int = 0,
             destination_ton: int = 0) -> list[MoPart]:
    """The deliver_sm parts of ``text`` sent by ``source`` to ``destination`` (with their
    types of number)."""
    pieces = split(text, _POLICY, reference)
    out = []
    for index, piece in enumerate(pieces, 1):
        udh, body = piece.udh, piece.body
        sar = None
        if concat == "sar" and udh:
            sar = (reference & 0xFFFF, len(pieces), index)
            udh = b""
        if packed and piece.data_coding == 0:
            body = pack_septets(body, udh_septets(len(udh))[1] if udh else 0)
        esm_class = p.ESM_UDHI if udh else 0
        out.append(MoPart(source, destination, piece.data_coding, esm_class, udh + body, sar,
                          source_ton, destination_ton))
    return out


def last_part(pdu: p.SubmitSm) -> bool:
    """Whether ``pdu`` is a whole message or the last part of one (UDH or SAR)."""
    if pdu.sar_segment_seqnum is not None and pdu.sar_total_segments is not None:
        return pdu.sar_segment_seqnum == pdu.sar_total_segments
    if pdu.esm_class & p.ESM_UDHI and pdu.short_message:
        try:
            concat = find_concat(parse_udh(split_udh(pdu.short_message)[0]))
        except ValueError:  # a broken UDH: answer anyway
            return True
        return concat is None or concat.sequence == concat.total
    return True


def encode_mo(sequence: int, part: MoPart) -> bytes:
    """The deliver_sm of ``part`` with ``sequence``."""
    ref = total = seq = None
    if part.sar is not None:
        ref, total, seq = part.sar
    return p.encode(p.DeliverSm(
        sequence, source_addr=part.source, destination_addr=part.destination,
        source_addr_ton=part.source_ton, dest_addr_ton=part.destination_ton,
        short_message=part.short_message, esm_class=part.esm_class,
        data_coding=part.data_coding, sar_msg_ref_num=ref, sar_total_segments=total,
        sar_segment_seqnum=seq))
