"""Encoding policy, counting and splitting of outgoing text into carrier parts.

``count`` and ``split`` share one decision (:func:`_decide`) so they always agree; ``count`` then
only does arithmetic (and, when an escape or surrogate might straddle a boundary, walks the cut
points) while ``split`` builds payloads and headers. Limits (TS 23.040 §9.2.3.24.1, with the
UDH of §9.2.3.24): 160 septets / 70 UCS-2 units in one part; 153 / 67 per part with an 8-bit
concatenation reference, 152 / 66 with a 16-bit one; national shift IEs shrink these further.
Standard library only; pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from codec import _national, _tables, gsm7, udh
from codec._cuts import gsm_cuts as _gsm_cuts
from codec._cuts import ucs2_cuts as _ucs2_cuts
from codec.errors import SegmentLimitExceeded, UnencodableText

MODES: Final = ("transliterate", "ucs2", "gsm7-strict", "national")
GSM7: Final = "gsm7"
UCS2: Final = "ucs2"
GSM7_NATIONAL: Final = "gsm7-national"
MAX_OCTETS: Final = 140

_D: Final = gsm7.DEFAULT
_NON_BASIC_SEARCH: Final = _D.non_basic.search
_NON_BASIC_FINDALL: Final = _D.non_basic.findall
_NON_GSM_SEARCH: Final = _D.non_gsm.search
_EXT: Final = _D.extension_chars
_TRANSLIT: Final = _tables.TRANSLITERATION
_ENCODE_MAP: Final = _D.encode_map


@dataclass(frozen=True)
class Policy:
    """How to encode a text; per account, overridable per message. Hashable.

    Args:
        mode: ``transliterate`` (default: replace what GSM7 lacks, all or nothing, else UCS-2),
            ``ucs2`` (exact text; UCS-2 when GSM7 can't carry it), ``gsm7-strict`` (refuse what
            GSM7 can't carry) or ``national`` (TS 23.038 national shift tables, else UCS-2).
        max_parts: refuse texts that need more parts (1..255).
        ref_bits: concatenation reference size, 8 or 16.
        languages: national languages ``national`` may use (subset of pt, es, tr).
    """

    mode: str = "transliterate"
    max_parts: int = 5
    ref_bits: int = 8
    languages: tuple[str, ...] = ("pt", "es", "tr")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown encoding policy {self.mode!r}; one of {', '.join(MODES)}")
        if not 1 <= self.max_parts <= 255:
            raise ValueError(f"max_parts must be 1..255, not {self.max_parts}")
        if self.ref_bits not in (8, 16):
            raise ValueError(f"ref_bits must be 8 or 16, not {self.ref_bits}")
        unknown = set(self.languages) - set(_national.LANGUAGES)
        if unknown:
            raise ValueError(f"unknown national languages {sorted(unknown)}")


# NamedTuples rather than dataclasses: ``count`` runs at ingress for every message and building
# a tuple costs a third of a frozen dataclass; both are read-only values.
class Count(NamedTuple):
    """What a text costs: encoding, units (septets or UTF-16 units), parts, and what changed."""

    encoding: str
    units: int
    parts: int
    replacements: tuple[tuple[str, str], ...]
    text: str


class Part(NamedTuple):
    """One carrier payload. ``body`` is unpacked GSM7 septets (data_coding 0) or UTF-16BE (8)."""

    udh: bytes
    body: bytes
    data_coding: int
    udhi: bool


_NO_REPLACEMENTS: Final[tuple[tuple[str, str], ...]] = ()


def count(text: str, policy: Policy) -> Count:
    """Encoding, units and parts of ``text`` under ``policy``, building no payload.

    Raises:
        UnencodableText: ``gsm7-strict`` and a character GSM7 lacks.
        SegmentLimitExceeded: more parts than ``policy.max_parts``.
    """
    encoding, sent, replacements, n_ext, choice = _decide(text, policy)
    if encoding == GSM7:
        units = len(sent) + n_ext
        if units <= 160:
            return Count(GSM7, units, 1, replacements, sent)
        cap = 153 if policy.ref_bits == 8 else 152
        if n_ext:
            parts = len(_gsm_cuts(sent.translate(_ENCODE_MAP).encode("latin-1"), cap))
        else:
            parts = -(-units // cap)
    elif encoding == UCS2:
        body = sent.encode("utf-16-be")
        units = len(body) >> 1
        if units <= 70:
            return Count(UCS2, units, 1, replacements, sent)
        cap = 134 if policy.ref_bits == 8 else 132
        parts = len(_ucs2_cuts(body, cap)) if units != len(sent) else -(-units // (cap >> 1))
    else:
        units, parts = choice.units, choice.parts
    if parts > policy.max_parts:
        raise SegmentLimitExceeded(parts, policy.max_parts)
    return Count(encoding, units, parts, replacements, sent)


def split(text: str, policy: Policy, reference: int) -> list[Part]:
    """Cut ``text`` into carrier parts, each with its UDH, payload, data_coding and UDHI flag.

    Args:
        text: the text as submitted (transliterated here when the policy says so).
        policy: the encoding policy.
        reference: concatenation reference; only its low 8 or 16 bits (``policy.ref_bits``) are
            used, so a running counter may be passed as is.

    Raises:
        UnencodableText: ``gsm7-strict`` and a character GSM7 lacks.
        SegmentLimitExceeded: more parts than ``policy.max_parts``.
    """
    encoding, sent, _, _, choice = _decide(text, policy)
    if encoding == GSM7:
        body = sent.translate(_ENCODE_MAP).encode("latin-1")
        if len(body) <= 160:
            return [Part(b"", body, 0, False)]
        cuts = _gsm_cuts(body, 153 if policy.ref_bits == 8 else 152)
        dcs, shift_ies = 0, ()
    elif encoding == UCS2:
        body = sent.encode("utf-16-be")
        if len(body) <= MAX_OCTETS:
            return [Part(b"", body, 8, False)]
        cuts = _ucs2_cuts(body, 134 if policy.ref_bits == 8 else 132)
        dcs, shift_ies = 8, ()
    else:
        body, cuts = choice.septets, choice.cuts
        dcs, shift_ies = 0, choice.ies
    total = len(cuts)
    if total > policy.max_parts:
        raise SegmentLimitExceeded(total, policy.max_parts)
    if total == 1:
        return [Part(udh.build_udh(shift_ies), body, dcs, True)]
    bits, ref = policy.ref_bits, reference & ((1 << policy.ref_bits) - 1)
    return [
        Part(udh.build_udh((udh.concat_ie(ref, total, seq, bits), *shift_ies)), body[a:b], dcs, True)
        for seq, (a, b) in enumerate(cuts, 1)
    ]


def _decide(
    text: str, policy: Policy
) -> tuple[str, str, tuple[tuple[str, str], ...], int, _national.Choice | None]:
    """(encoding, text to send, replacements, extension chars, national choice) for ``text``."""
    first = _NON_BASIC_SEARCH(text)
    if first is None:
        return GSM7, text, _NO_REPLACEMENTS, 0, None
    mode = policy.mode
    if mode == "transliterate":
        char = first.group()
        if char in _EXT or char in _TRANSLIT:
            return _transliterate(text, first.start())
        return UCS2, text, _NO_REPLACEMENTS, 0, None
    odd = _NON_BASIC_FINDALL(text, first.start())
    if _EXT.issuperset(odd):
        return GSM7, text, _NO_REPLACEMENTS, len(odd), None
    if mode == "ucs2":
        return UCS2, text, _NO_REPLACEMENTS, 0, None
    if mode == "gsm7-strict":
        bad = _NON_GSM_SEARCH(text)
        assert bad is not None  # odd holds a character outside basic and extension
        raise UnencodableText(bad.group(), bad.start())
    choice = _national.choose(text, policy.languages, policy.ref_bits)
    if choice is None:
        return UCS2, text, _NO_REPLACEMENTS, 0, None
    return GSM7_NATIONAL, text, _NO_REPLACEMENTS, 0, choice


def _transliterate(
    text: str, start: int
) -> tuple[str, str, tuple[tuple[str, str], ...], int, None]:
    odd = _NON_BASIC_FINDALL(text, start)
    replacements = []
    n_ext = 0
    for char in dict.fromkeys(odd):
        if char in _EXT:
            n_ext += odd.count(char)
            continue
        replacement = _TRANSLIT.get(char)
        if replacement is None:  # all or nothing: one unmappable character keeps the original
            return UCS2, text, _NO_REPLACEMENTS, 0, None
        replacements.append((char, replacement))
    for char, replacement in replacements:
        text = text.replace(char, replacement)
    return GSM7, text, tuple(replacements), n_ext, None
