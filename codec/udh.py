"""User data headers (TS 23.040 §9.2.3.24): build and parse, concatenation and national IEs.

A UDH here is the octet string that starts the user data: UDHL followed by the information
elements (IEs). ``b""`` means "no UDH". Pure functions, standard library only.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from codec.errors import InvalidUDH

IE_CONCAT_8: Final = 0x00  # §9.2.3.24.1  concatenated short messages, 8-bit reference
IE_CONCAT_16: Final = 0x08  # §9.2.3.24.8  concatenated short messages, 16-bit reference
IE_SINGLE_SHIFT: Final = 0x24  # §9.2.3.24.15 national language single shift
IE_LOCKING_SHIFT: Final = 0x25  # §9.2.3.24.16 national language locking shift

InformationElement = tuple[int, bytes]


class Concat(NamedTuple):
    """The concatenation IE of one part: reference, total parts, sequence number (1-based)."""

    reference: int
    total: int
    sequence: int
    ref_bits: int


def build_udh(ies: tuple[InformationElement, ...] | list[InformationElement]) -> bytes:
    """Build UDHL + IEs; no IEs gives ``b""``.

    Raises:
        InvalidUDH: an IEI or IE length outside one octet, or a header over 139 octets.
    """
    if not ies:
        return b""
    body = bytearray()
    for iei, data in ies:
        if not 0 <= iei <= 0xFF or len(data) > 0xFF:
            raise InvalidUDH(f"IE {iei!r} with {len(data)} octets does not fit the header")
        body += bytes((iei, len(data))) + data
    if len(body) > 138:
        raise InvalidUDH(f"header of {len(body) + 1} octets does not fit a short message")
    return bytes((len(body),)) + bytes(body)


def parse_udh(udh: bytes) -> tuple[InformationElement, ...]:
    """Parse a UDH (UDHL first, exactly that long) into its IEs, in order.

    Raises:
        InvalidUDH: UDHL disagrees with the length, or an IE runs past the end.
    """
    if not udh:
        return ()
    if udh[0] != len(udh) - 1:
        raise InvalidUDH(f"UDHL {udh[0]} disagrees with a header of {len(udh)} octets")
    ies: list[InformationElement] = []
    pos = 1
    while pos < len(udh):
        if pos + 2 > len(udh) or pos + 2 + udh[pos + 1] > len(udh):
            raise InvalidUDH(f"information element at offset {pos} runs past the header")
        length = udh[pos + 1]
        ies.append((udh[pos], bytes(udh[pos + 2 : pos + 2 + length])))
        pos += 2 + length
    return tuple(ies)


def split_udh(user_data: bytes) -> tuple[bytes, bytes]:
    """Split user data whose UDHI is set into (UDH, the rest).

    Raises:
        InvalidUDH: the user data is empty or shorter than its UDHL says.
    """
    if not user_data or user_data[0] + 1 > len(user_data):
        raise InvalidUDH("user data too short for its header")
    end = user_data[0] + 1
    return bytes(user_data[:end]), bytes(user_data[end:])


def concat_ie(reference: int, total: int, sequence: int, ref_bits: int) -> InformationElement:
    """The concatenation IE for one part (8- or 16-bit reference)."""
    if ref_bits == 8:
        return IE_CONCAT_8, bytes((reference & 0xFF, total, sequence))
    return IE_CONCAT_16, bytes((reference >> 8 & 0xFF, reference & 0xFF, total, sequence))


def find_concat(ies: tuple[InformationElement, ...]) -> Concat | None:
    """The concatenation IE among ``ies``, or None.

    An IE with a zero total or a sequence of zero or above the total is ignored, as TS 23.040
    §9.2.3.24.1 tells the receiver; so is one of the wrong length.
    """
    for iei, data in ies:
        if iei == IE_CONCAT_8 and len(data) == 3:
            ref, bits, rest = data[0], 8, data[1:]
        elif iei == IE_CONCAT_16 and len(data) == 4:
            ref, bits, rest = data[0] << 8 | data[1], 16, data[2:]
        else:
            continue
        total, seq = rest
        if total and 1 <= seq <= total:
            return Concat(ref, total, seq, bits)
    return None


def find_shifts(ies: tuple[InformationElement, ...]) -> tuple[int | None, int | None]:
    """The national language identifiers (locking, single) named by IEs 0x25 / 0x24, if any."""
    locking = single = None
    for iei, data in ies:
        if iei == IE_LOCKING_SHIFT and len(data) == 1:
            locking = data[0]
        elif iei == IE_SINGLE_SHIFT and len(data) == 1:
            single = data[0]
    return locking, single


def udh_septets(udh_len: int) -> tuple[int, int]:
    """(septets, fill bits) a UDH of ``udh_len`` octets occupies (TS 23.040 §9.2.3.16)."""
    bits = 8 * udh_len
    septets = (bits + 6) // 7
    return septets, 7 * septets - bits
