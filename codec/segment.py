"""Encoding policy, counting and splitting of outgoing text into carrier parts.

Two layers. The general path (:func:`_decide`, then ``_count_general`` / ``_split_general``)
handles every text and policy with precompiled regexes; it is the reference behaviour. In front
of it, ``count`` and ``split`` answer Latin-1 texts (most traffic) with ``bytes.translate``
tables (``codec._latin1``; ``count`` also with per-policy tables, ``codec._plan``) and send
UCS-2 texts straight to UTF-16; a text whose characters above U+00FF transliterate into Latin-1
or are GSM characters (standing in as Latin-1 ones, swapped back) takes the Latin-1 path too.
A property test checks that both layers give identical results (errors included), and another
that ``count`` agrees with ``split``. ``count`` builds no payload: it does arithmetic, and walks the cut points only when an
escape or surrogate could straddle a boundary.

Limits (TS 23.040 §9.2.3.24.1, UDH of §9.2.3.24): 160 septets / 70 UCS-2 units in one part;
153 / 67 per part with an 8-bit concatenation reference, 152 / 66 with a 16-bit one; national
shift IEs shrink these further. Imports the standard library only (no logging); pure apart from
a bounded memo of what sets of odd characters need (``codec._plan``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple

from codec import _latin1 as _L1
from codec import _national, _plan, _tables, gsm7, udh
from codec._cuts import gsm_cuts as _gsm_cuts
from codec._cuts import gsm_parts as _gsm_parts
from codec._cuts import ucs2_cuts as _ucs2_cuts
from codec.errors import CodecError, SegmentLimitExceeded, UnencodableText

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
        object.__setattr__(self, "languages", tuple(self.languages))  # a list stays hashable
        unknown = set(self.languages) - set(_national.LANGUAGES)
        if unknown:
            raise ValueError(f"unknown national languages {sorted(unknown)}")
        # count's precomputed tables (codec._plan); not fields: eq, hash and repr ignore them
        fast, odd, gsm_parts, ucs2_parts = _plan.for_policy(self.mode, self.max_parts, self.ref_bits)
        set_attribute = object.__setattr__
        set_attribute(self, "_fast", fast)
        set_attribute(self, "_odd", odd)
        set_attribute(self, "_gsm_parts", gsm_parts)
        set_attribute(self, "_ucs2_parts", ucs2_parts)

    # set by __post_init__ (see codec._plan)
    _fast: ClassVar[bytes]
    _odd: ClassVar[dict[frozenset[int], _plan.OddInfo]]
    _gsm_parts: ClassVar[tuple[int, ...]]
    _ucs2_parts: ClassVar[tuple[int, ...]]



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
_new: Final = tuple.__new__  # builds Count/Part without the NamedTuple __new__ call (hot path)
_GSM_CAP: Final = _plan.GSM_CAP  # septets per concatenated part
_UCS2_CAP: Final = {8: 134, 16: 132}  # octets per concatenated part
_UCS2_UNITS: Final = _plan.UCS2_CAP  # UTF-16 units per concatenated part
_SEQ: Final = [bytes((i,)) for i in range(256)]
# classes of codec._latin1.CLASS_*, as ints: ``int in bytes`` is a memchr, ``bytes in bytes`` is not
_X: Final = ord("x")
_E: Final = ord("e")
_S: Final = ord("s")
# module constants rather than attribute lookups: count() runs a million times a second
_L1_BASIC: Final = _L1.BASIC
_L1_CLASS_TRANSLIT: Final = _L1.CLASS_TRANSLIT
_L1_CLASS_EXACT: Final = _L1.CLASS_EXACT
_L1_TRANSLIT: Final = _L1.TRANSLIT
_L1_SEPTETS: Final = _L1.SEPTETS
_L1_TRANSLIT_SEPTETS: Final = _L1.TRANSLIT_SEPTETS
_L1_expand_extensions: Final = _L1.expand_extensions
_L1_WIDE_TRANSLIT: Final = _L1.WIDE_TRANSLIT
_L1_MARK: Final = _L1.MARK
_L1_EXT_MARK: Final = _L1.EXT_MARK
_L1_COMMON_REPLACEMENTS: Final = _L1.COMMON_REPLACEMENTS
_L1_widen: Final = _L1.widen
_L1_SEPTETS_OF: Final = _L1.SEPTETS_OF


def count(text: str, policy: Policy) -> Count:
    """Encoding, units and parts of ``text`` under ``policy``, building no payload.

    Raises:
        UnencodableText: ``gsm7-strict`` and a character GSM7 lacks.
        SegmentLimitExceeded: more parts than ``policy.max_parts``.
    """
    # The fast path costs a handful of C calls (each about as much as ten bytecodes). A text
    # that starts with a character above U+00FF (Cyrillic, Greek, Arabic, CJK... nearly always
    # do) goes to _count_wide at once: the Latin-1 encode below would find the same character,
    # but by raising UnicodeEncodeError, which costs more than all the rest of the count.
    if text >= _ABOVE_LATIN1:
        return _count_wide(text, policy, 0)
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        return _count_wide(text, policy, exc.start)
    # One bytes.translate (policy._fast) leaves basic characters alone, transliterates the
    # COMMON letters and marks the rest: EXT_MARK for extension characters, MARK for others.
    fast = raw.translate(policy._fast)
    if fast is raw and _L1_MARK not in raw:  # every character basic GSM (translate returns
        # its input when unchanged; were it a copy, the next branch would find the same, a
        # little slower). U+0080 is the one non-basic character the table leaves as it is: MARK.
        replacements, sent = _NO_REPLACEMENTS, text
    elif _L1_MARK not in fast:  # basic GSM, COMMON letters (transliterating) and extensions
        replacements = _L1_COMMON_REPLACEMENTS[
            (
                0xE1 in raw, 0xE2 in raw, 0xE3 in raw, 0xE7 in raw, 0xEA in raw,
                0xED in raw, 0xF3 in raw, 0xF4 in raw, 0xF5 in raw, 0xFA in raw,
            )
        ]
        if _L1_EXT_MARK in fast:
            sent = raw.translate(_L1_TRANSLIT).decode("latin-1") if replacements else text
            return _count_extended(raw, fast, sent, policy, replacements)
        sent = fast.decode("latin-1")
    else:  # other odd characters: what their set needs, memoised per set
        key = frozenset(raw.translate(None, _L1_BASIC))
        replacements, route = policy._odd.get(key) or _plan.odd(key, policy._odd)
        if route == _plan.GENERAL:  # a character the general path must decide
            return _count_ucs2(text, policy) if policy.mode == "ucs2" else _count_general(text, policy)
        sent = raw.translate(_L1_TRANSLIT).decode("latin-1") if replacements else text
        if route == _plan.EXTENDED:
            return _count_extended(raw, fast, sent, policy, replacements)
    units = len(raw)
    try:
        return _new(Count, (GSM7, units, policy._gsm_parts[units], replacements, sent))
    except IndexError:
        raise _too_long(units, _GSM_CAP, policy) from None


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
    mode = policy.mode
    if text >= _ABOVE_LATIN1 and _makes_ucs2(text[0], mode):  # see count
        return _split_ucs2(text, policy, reference)
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        if _makes_ucs2(text[exc.start], mode):
            return _split_ucs2(text, policy, reference)
        widened = _L1_widen(text, exc.start, mode)
        if widened is None:
            return _split_general(text, policy, reference)
        raw, stand_ins = widened[0], widened[3]
    else:
        stand_ins = ()
    # policy._fast classifies the text in one pass, as in count (a deleting translate, which
    # builds its table on every call, would cost twice as much).
    fast = raw.translate(policy._fast)
    if fast is raw and _L1_MARK not in raw:  # every character basic GSM (U+0080: see count)
        body = raw.translate(_L1_SEPTETS)
    elif _L1_MARK not in fast:  # basic GSM, COMMON letters (transliterating) and extensions
        body = raw.translate(_L1_TRANSLIT_SEPTETS)
        if _L1_EXT_MARK in fast:
            body = _L1_expand_extensions(body)
    else:  # other odd characters: what are they?
        odd = raw.translate(None, _L1_BASIC)
        classes = odd.translate(_L1_CLASS_TRANSLIT if mode == "transliterate" else _L1_CLASS_EXACT)
        if _X in classes:
            if mode == "ucs2":
                return _split_ucs2(text, policy, reference)
            return _split_general(text, policy, reference)
        body = raw.translate(_L1_TRANSLIT_SEPTETS if _S in classes else _L1_SEPTETS)
        if _E in classes:
            body = _L1_expand_extensions(body)
    if stand_ins:  # GSM characters above U+00FF (see codec._latin1.widen)
        for char, stand_in in stand_ins:
            body = body.replace(_L1_SEPTETS_OF[stand_in], _L1_SEPTETS_OF[char])
    if len(body) <= 160:
        return [_new(Part, (b"", body, 0, False))]
    return _concatenate(body, _gsm_cuts(body, _GSM_CAP[policy.ref_bits]), 0, policy, reference)


# ``text >= _ABOVE_LATIN1`` (strings compare by code point, first character first) says in one
# comparison that a text starts with a character above U+00FF.
_ABOVE_LATIN1: Final = "\u0100"
# A character above U+00FF outside these makes the text UCS-2 under these modes.
_WIDE_GSM_OR_TRANSLIT: Final = frozenset(_L1.WIDE_TRANSLIT) | frozenset(
    c for c in _D.basic_chars | _D.extension_chars if ord(c) > 0xFF
)
_UCS2_WHEN_UNMAPPABLE: Final = frozenset({"transliterate", "ucs2"})


def _makes_ucs2(char: str, mode: str) -> bool:
    """Whether ``char``, above U+00FF, makes the whole text UCS-2 under ``mode``: it has no GSM
    code and no transliteration (Cyrillic, CJK, emoji...), and the mode then sends UCS-2."""
    return char not in _WIDE_GSM_OR_TRANSLIT and mode in _UCS2_WHEN_UNMAPPABLE


def _count_wide(text: str, policy: Policy, start: int) -> Count:
    """``count`` for a text with a character above U+00FF at ``start``.

    A character that makes the text UCS-2 (see ``_makes_ucs2``) decides at once. Otherwise
    ``codec._latin1.widen`` makes the text Latin-1 if it can and ``count`` counts that: transliterations are
    basic GSM characters and stand-ins GSM characters of the same kind, so counting the widened
    text and adding the wide replacements is what the general path does in one step.
    """
    char = text[start]
    if char not in _WIDE_GSM_OR_TRANSLIT and policy.mode in _UCS2_WHEN_UNMAPPABLE:
        # "utf-16" (native order, with a BOM) is the one UTF-16 codec str.encode runs without a
        # codec registry lookup.
        units = (len(text.encode("utf-16")) >> 1) - 1
        if units != len(text):  # surrogate pairs: a part may end one unit early
            return _count_ucs2(text, policy, units)
        try:
            return _new(Count, (UCS2, units, policy._ucs2_parts[units], _NO_REPLACEMENTS, text))
        except IndexError:
            raise _too_long(units, _UCS2_UNITS, policy) from None
    widened = _L1_widen(text, start, policy.mode)
    if widened is None:
        return _count_general(text, policy)
    try:
        counted = count(widened[1], policy)
    except CodecError:
        return _count_general(text, policy)  # the error for the text as submitted
    encoding, units, parts, replacements, sent = counted
    if encoding != GSM7:  # all or nothing: the text as submitted is decided whole
        return _count_general(text, policy)
    if widened[3]:
        for char, stand_in in widened[3]:
            sent = sent.replace(stand_in, char)
    return _new(Count, (GSM7, units, parts, replacements + widened[2], sent))


def _count_extended(
    raw: bytes, marked: bytes, sent: str, policy: Policy, replacements: tuple[tuple[str, str], ...]
) -> Count:
    """``count`` for Latin-1 bytes ``raw`` with extension characters, where ``marked`` holds
    ``EXT_MARK`` (and nowhere else): two septets each, and a part may end one septet early so
    that an escape stays with its code. ``sent`` is the text to send."""
    units = len(raw) + marked.count(_L1_EXT_MARK)
    if units <= 160:
        return _new(Count, (GSM7, units, 1, replacements, sent))
    parts = _gsm_parts(marked, _L1_EXT_MARK, _GSM_CAP[policy.ref_bits])
    if parts > policy.max_parts:
        raise SegmentLimitExceeded(parts, policy.max_parts)
    return _new(Count, (GSM7, units, parts, replacements, sent))


def _too_long(units: int, caps: dict[int, int], policy: Policy) -> SegmentLimitExceeded:
    """The error for ``units`` (no escape, no surrogate pair) over ``policy.max_parts``."""
    return SegmentLimitExceeded(-(-units // caps[policy.ref_bits]), policy.max_parts)


def _checked(result: Count, policy: Policy) -> Count:
    if result.parts > policy.max_parts:
        raise SegmentLimitExceeded(result.parts, policy.max_parts)
    return result


def _count_ucs2(text: str, policy: Policy, units: int = -1) -> Count:
    """``count`` for a text sent as UCS-2; ``units`` if already known."""
    if units < 0:
        units = (len(text.encode("utf-16")) >> 1) - 1  # less the BOM
    if units <= 70:
        return _new(Count, (UCS2, units, 1, _NO_REPLACEMENTS, text))
    cap = _UCS2_CAP[policy.ref_bits]
    if units == len(text):
        parts = -(-units // (cap >> 1))
    else:  # surrogate pairs: a part may end one unit early
        parts = len(_ucs2_cuts(text.encode("utf-16-be"), cap))
    if parts > policy.max_parts:
        raise SegmentLimitExceeded(parts, policy.max_parts)
    return _new(Count, (UCS2, units, parts, _NO_REPLACEMENTS, text))


def _split_ucs2(text: str, policy: Policy, reference: int) -> list[Part]:
    body = text.encode("utf-16-be")
    if len(body) <= MAX_OCTETS:
        return [_new(Part, (b"", body, 8, False))]
    return _concatenate(body, _ucs2_cuts(body, _UCS2_CAP[policy.ref_bits]), 8, policy, reference)


def _count_general(text: str, policy: Policy) -> Count:
    """``count`` for any text, without the Latin-1 shortcuts (the reference behaviour)."""
    encoding, sent, replacements, n_ext, choice = _decide(text, policy)
    if encoding == UCS2:
        return _count_ucs2(sent, policy)
    if encoding == GSM7_NATIONAL:
        assert choice is not None
        return _checked(Count(encoding, choice.units, choice.parts, (), sent), policy)
    units = len(sent) + n_ext
    if units <= 160:
        return Count(GSM7, units, 1, replacements, sent)
    cap = _GSM_CAP[policy.ref_bits]
    parts = len(_gsm_cuts(_D.encode(sent), cap)) if n_ext else -(-units // cap)
    return _checked(Count(GSM7, units, parts, replacements, sent), policy)


def _split_general(text: str, policy: Policy, reference: int) -> list[Part]:
    """``split`` for any text, without the Latin-1 shortcuts (the reference behaviour)."""
    encoding, sent, _, _, choice = _decide(text, policy)
    if encoding == GSM7:
        body = _D.encode(sent)
        if len(body) <= 160:
            return [Part(b"", body, 0, False)]
        return _concatenate(body, _gsm_cuts(body, _GSM_CAP[policy.ref_bits]), 0, policy, reference)
    if encoding == UCS2:
        return _split_ucs2(sent, policy, reference)
    assert choice is not None
    if len(choice.cuts) == 1:
        return [Part(udh.build_udh(choice.ies), choice.septets, 0, True)]
    return _concatenate(choice.septets, choice.cuts, 0, policy, reference, choice.ies)


def _concatenate(
    body: bytes,
    cuts: list[tuple[int, int]],
    dcs: int,
    policy: Policy,
    reference: int,
    shift_ies: tuple[udh.InformationElement, ...] = (),
) -> list[Part]:
    """One Part per cut, each with its concatenation UDH (TS 23.040 §9.2.3.24.1 / .8)."""
    total = len(cuts)
    if total > policy.max_parts:
        raise SegmentLimitExceeded(total, policy.max_parts)
    bits = policy.ref_bits
    ref = reference & ((1 << bits) - 1)
    if shift_ies:
        headers = [
            udh.build_udh((udh.concat_ie(ref, total, seq, bits), *shift_ies))
            for seq in range(1, total + 1)
        ]
        return [Part(h, body[a:b], dcs, True) for h, (a, b) in zip(headers, cuts, strict=True)]
    if bits == 8:
        prefix = bytes((5, udh.IE_CONCAT_8, 3, ref, total))
    else:
        prefix = bytes((6, udh.IE_CONCAT_16, 4, ref >> 8, ref & 0xFF, total))
    return [
        _new(Part, (prefix + _SEQ[seq], body[a:b], dcs, True)) for seq, (a, b) in enumerate(cuts, 1)
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
    bad = _NON_GSM_SEARCH(text, first.start())  # everything before ``first`` is basic
    if bad is None:
        return GSM7, text, _NO_REPLACEMENTS, len(_NON_BASIC_FINDALL(text, first.start())), None
    if mode == "ucs2":
        return UCS2, text, _NO_REPLACEMENTS, 0, None
    if mode == "gsm7-strict":
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
    return GSM7, text, tuple(sorted(replacements)), n_ext, None
