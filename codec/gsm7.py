"""GSM 7-bit alphabets (TS 23.038 §6.2): text <-> septets, and septet packing (§6.1.2.1).

Septets are carried as ``bytes`` holding one septet per octet ("unpacked", what most SMPP SMSCs
expect with data_coding 0). :func:`pack_septets` / :func:`unpack_septets` convert to and from the
packed air-interface form, with fill bits after a user data header. Pure functions, standard
library only; no logging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from codec import _tables
from codec.errors import CodecError

_ESC_CHAR: Final = chr(_tables.ESC)


@dataclass(frozen=True)
class Alphabet:
    """A locking-shift table plus a single-shift (extension) table, with derived lookups.

    Args:
        basic: 128 characters indexed by septet; ``"\\x1b"`` at the escape position, ``"\\x00"``
            at unused positions (except septet 0 of the default table, which is '@').
        extension: septet -> character reached through the escape septet.
    """

    basic: str
    extension: dict[int, str]
    basic_chars: frozenset[str] = field(init=False, repr=False)
    extension_chars: frozenset[str] = field(init=False, repr=False)
    encode_map: dict[int, str] = field(init=False, repr=False)
    decode_map: dict[int, str] = field(init=False, repr=False)
    non_basic: re.Pattern[str] = field(init=False, repr=False)
    non_gsm: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        basic = {
            c: i for i, c in enumerate(self.basic) if c != _ESC_CHAR and (c != "\x00" or i == 0)
        }
        ext = {c: i for i, c in self.extension.items() if c not in basic}
        enc = {ord(c): chr(i) for c, i in basic.items()}
        enc.update({ord(c): _ESC_CHAR + chr(i) for c, i in ext.items()})
        dec = {i: c for c, i in basic.items()}
        # TS 23.038 §6.2.1.1: an unknown extension code shows the locking-shift character.
        set_obj = object.__setattr__
        set_obj(self, "basic_chars", frozenset(basic))
        set_obj(self, "extension_chars", frozenset(ext))
        set_obj(self, "encode_map", enc)
        set_obj(self, "decode_map", dec)
        set_obj(self, "non_basic", re.compile(_negated_class(basic)))
        set_obj(self, "non_gsm", re.compile(_negated_class({**basic, **ext})))

    def encode(self, text: str) -> bytes:
        """Encode ``text`` (every character in this alphabet) to unpacked septets.

        Raises:
            UnencodableText: never for validated text; a stray character raises CodecError.
        """
        out = text.translate(self.encode_map)
        try:
            return out.encode("latin-1")
        except UnicodeEncodeError as exc:  # a character outside the alphabet: a caller bug
            raise CodecError(f"character {out[exc.start]!r} is not in this alphabet") from exc

    def decode(self, septets: bytes) -> str:
        """Decode unpacked septets (an escape followed by its code counts as one character).

        An extension code the table lacks decodes as the locking-shift character for that code
        (TS 23.038 §6.2.1.1); a trailing lone escape decodes as a space (the spec's display rule
        for reserved escapes). Septets above 0x7F raise :class:`CodecError`.
        """
        if max(septets, default=0) > 0x7F:
            raise CodecError("septet value above 0x7F")
        head, *tails = septets.split(b"\x1b")
        out = [self._basic(head)]
        for tail in tails:
            if not tail:
                out.append(" ")
                continue
            code = tail[0]
            out.append(self.extension.get(code) or self.decode_map.get(code, " "))
            out.append(self._basic(tail[1:]))
        return "".join(out)

    def _basic(self, septets: bytes) -> str:
        dec = self.decode_map
        return "".join([dec.get(s, " ") for s in septets])


def _negated_class(chars: dict[str, int]) -> str:
    return "[^" + "".join(sorted(re.escape(c) for c in chars)) + "]"


DEFAULT: Final = Alphabet(_tables.DEFAULT_ALPHABET, _tables.DEFAULT_EXTENSION)


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets seven bits each, least significant first (TS 23.038 §6.1.2.1.1).

    Args:
        septets: one septet per octet (values 0..0x7F).
        fill_bits: zero bits to put first, so that the septets start on a septet boundary after a
            user data header (0..6).

    Returns:
        ``ceil((fill_bits + 7 * len(septets)) / 8)`` octets. When 7 bits are left spare at the
        end they hold CR (TS 23.038 §6.1.2.3.1), so that a receiver inferring the count from the
        length does not read a final '@'; other spare bits are zero.

    Raises:
        CodecError: a value above 0x7F or a fill outside 0..6.
    """
    _check_fill(fill_bits)
    if max(septets, default=0) > 0x7F:
        raise CodecError("septet value above 0x7F")
    value = 0
    for i, s in enumerate(septets):
        value |= s << (7 * i)
    nbits = fill_bits + 7 * len(septets)
    if nbits % 8 == 1:
        value |= 0x0D << (7 * len(septets))
    return (value << fill_bits).to_bytes((nbits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Inverse of :func:`pack_septets`: take ``count`` septets after ``fill_bits`` bits.

    Raises:
        CodecError: ``data`` is too short for ``count`` septets, or the fill is outside 0..6.
    """
    _check_fill(fill_bits)
    if count < 0 or fill_bits + 7 * count > 8 * len(data):
        raise CodecError(
            f"{len(data)} octets cannot hold {count} septets after {fill_bits} fill bits"
        )
    value = int.from_bytes(data, "little") >> fill_bits
    return bytes([(value >> (7 * i)) & 0x7F for i in range(count)])


def _check_fill(fill_bits: int) -> None:
    if not 0 <= fill_bits <= 6:
        raise CodecError(f"fill bits must be 0..6, not {fill_bits}")
