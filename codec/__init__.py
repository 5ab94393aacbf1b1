"""Septet's codec: GSM 03.38 / UCS-2 text encoding, transliteration, national shift tables,
concatenation (count and split), septet packing, UDHs, decoding and reassembly of received parts.

Pure functions over ``str``/``bytes``; imports the standard library only (STYLE.md §1, checked by
tests/test_layers.py). See docs/codec.md.
"""

from __future__ import annotations

from codec.errors import CodecError, InvalidUDH, SegmentLimitExceeded, UnencodableText
from codec.gsm7 import pack_septets, unpack_septets
from codec.receive import Reassembler, ReceivedPart, decode_part, reassemble
from codec.segment import Count, Part, Policy, count, split
from codec.udh import Concat, build_udh, parse_udh

__all__ = [
    "CodecError",
    "Concat",
    "Count",
    "InvalidUDH",
    "Part",
    "Policy",
    "Reassembler",
    "ReceivedPart",
    "SegmentLimitExceeded",
    "UnencodableText",
    "build_udh",
    "count",
    "decode_part",
    "pack_septets",
    "parse_udh",
    "reassemble",
    "split",
    "unpack_septets",
]
