"""Decoding of received parts (inbound messages, receipts) and reassembly of concatenated ones.

Handles SMPP ``data_coding`` 0 (GSM 7-bit, unpacked or packed, national shift IEs honoured), 8
(UCS-2 / UTF-16BE), 3 (Latin-1) and 1 (IA5/ASCII), with or without a UDH, and concatenation with
8- and 16-bit references arriving in any order (TS 23.040 §9.2.3.24.1/.8). Pure; standard
library only. ``Reassembler`` keeps state in the instance (no globals); forgetting stale groups
is the caller's job (it owns the clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

from codec import _national, gsm7, udh
from codec.errors import CodecError, InvalidUDH

_GSM7_DCS: Final = frozenset({0x00, 0xF0, 0xF1, 0xF2, 0xF3})


class ReceivedPart(NamedTuple):
    """One decoded part: its text, its UDH information elements and its concatenation IE."""

    text: str
    ies: tuple[udh.InformationElement, ...]
    concat: udh.Concat | None


def decode_part(
    payload: bytes,
    data_coding: int,
    *,
    udhi: bool = False,
    packed: bool = False,
    udl: int | None = None,
) -> ReceivedPart:
    """Decode one received short message payload.

    Args:
        payload: the user data (``short_message`` / ``message_payload``), UDH included if ``udhi``.
        data_coding: SMPP data_coding: 0 (or 0xF0-0xF3) GSM7, 8 UCS-2, 3 Latin-1, 1 ASCII.
        udhi: the payload starts with a UDH.
        packed: GSM7 septets are packed (air-interface form), not one per octet.
        udl: for packed GSM7, the TP-UDL in septets (header included). Without it the septet
            count is inferred; a final CR filling the last octet exactly is then taken as padding
            (TS 23.038 §6.1.2.3.1), so pass it when known.

    Raises:
        InvalidUDH: malformed header or a payload too short for it.
        CodecError: an unsupported data_coding or undecodable payload.
    """
    header, body = udh.split_udh(payload) if udhi else (b"", bytes(payload))
    ies = udh.parse_udh(header)
    concat = udh.find_concat(ies)
    if data_coding in _GSM7_DCS:
        septets = _unpack_body(header, body, udl) if packed else body
        alphabet = _national.alphabet_for(*udh.find_shifts(ies))
        return ReceivedPart(alphabet.decode(septets), ies, concat)
    if data_coding == 8:
        if len(body) % 2:
            raise CodecError("UCS-2 payload of an odd number of octets")
        # surrogatepass: another sender may have split a surrogate pair; reassembly rejoins it
        return ReceivedPart(body.decode("utf-16-be", "surrogatepass"), ies, concat)
    if data_coding in (1, 3):
        charset = "latin-1" if data_coding == 3 else "ascii"
        return ReceivedPart(body.decode(charset, "replace"), ies, concat)
    raise CodecError(f"unsupported data_coding {data_coding}")


def _unpack_body(header: bytes, body: bytes, udl: int | None) -> bytes:
    header_septets, fill = udh.udh_septets(len(header)) if header else (0, 0)
    if udl is not None:
        if udl < header_septets:
            raise InvalidUDH(f"UDL {udl} shorter than the {header_septets}-septet header")
        return gsm7.unpack_septets(body, udl - header_septets, fill)
    bits = 8 * len(body) - fill
    if bits <= 0:
        return b""
    septets = gsm7.unpack_septets(body, bits // 7, fill)
    if bits % 7 == 0 and septets.endswith(b"\r"):  # CR padding of 7 spare bits
        return septets[:-1]
    return septets


def reassemble(parts: Iterable[ReceivedPart]) -> str:
    """Join the parts of one concatenated message, given in any order.

    A lone part without a concatenation IE is returned as is.

    Raises:
        CodecError: parts of different messages, missing or conflicting duplicate parts.
    """
    parts = list(parts)
    if len(parts) == 1 and parts[0].concat is None:
        return parts[0].text
    if not parts or any(p.concat is None for p in parts):
        raise CodecError("reassembly needs concatenated parts")
    first = parts[0].concat
    assert first is not None
    by_seq: dict[int, str] = {}
    for part in parts:
        c = part.concat
        assert c is not None
        if (c.reference, c.total, c.ref_bits) != (first.reference, first.total, first.ref_bits):
            raise CodecError("parts of different concatenated messages")
        if by_seq.setdefault(c.sequence, part.text) != part.text:
            raise CodecError(f"two different parts numbered {c.sequence}")
    missing = [s for s in range(1, first.total + 1) if s not in by_seq]
    if missing:
        raise CodecError(f"parts {missing} of {first.total} missing")
    return _join([by_seq[s] for s in range(1, first.total + 1)])


def _join(texts: list[str]) -> str:
    # Rejoin a surrogate pair a sender split across parts; a truly lone surrogate becomes U+FFFD.
    return "".join(texts).encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")


class Reassembler:
    """Collects parts from many senders and returns each message when its last part arrives.

    Parts are grouped by (sender, reference, reference size, total). The instance holds the
    state; call :meth:`discard` for groups the caller's clock says are stale. At most
    ``max_groups`` incomplete groups are kept; past that the oldest is dropped, so a sender that
    never completes its messages cannot grow memory without bound.
    """

    def __init__(self, max_groups: int = 10_000) -> None:
        self._groups: dict[tuple[str, int, int, int], dict[int, ReceivedPart]] = {}
        self._max_groups = max_groups

    def add(self, sender: str, part: ReceivedPart) -> str | None:
        """Add a part; return the whole text once complete (a lone part returns at once)."""
        c = part.concat
        if c is None:
            return _join([part.text])
        key = (sender, c.reference, c.ref_bits, c.total)
        if key not in self._groups and len(self._groups) >= self._max_groups:
            del self._groups[next(iter(self._groups))]  # the oldest incomplete group
        group = self._groups.setdefault(key, {})
        group[c.sequence] = part
        if len(group) < c.total:
            return None
        del self._groups[key]
        return reassemble(group.values())

    def discard(self, sender: str) -> int:
        """Forget every incomplete group of ``sender``; returns how many were dropped."""
        stale = [k for k in self._groups if k[0] == sender]
        for key in stale:
            del self._groups[key]
        return len(stale)

    def __len__(self) -> int:
        """Incomplete groups held."""
        return len(self._groups)
