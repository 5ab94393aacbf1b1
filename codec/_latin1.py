"""Byte tables for the fast path: texts whose characters are all below U+0100, or made so.

Most traffic (English, Portuguese, Spanish, ...) is Latin-1, and for those texts every question
``count`` and ``split`` ask can be answered by ``bytes.translate`` over the Latin-1 encoding, one
C-speed pass each, instead of a per-character Python loop (profiled: the regex/str.translate
route cost 3-9 us per message, this one well under 1 us). Derived at import from ``_tables``; the
general path in ``segment`` stays the reference and a property test checks both agree.
Standard library only.
"""

from __future__ import annotations

from typing import Final

from codec import _tables, gsm7

_D: Final = gsm7.DEFAULT


def _latin1(chars: frozenset[str] | set[str]) -> bytes:
    return bytes(sorted(ord(c) for c in chars if ord(c) < 0x100))


# Deleting these from a text's Latin-1 bytes leaves exactly its non-basic characters.
BASIC: Final = _latin1(_D.basic_chars)
# Extension characters (two septets each); € is not Latin-1 and takes the general path.
EXTENSION: Final = _latin1(_D.extension_chars)
# Characters transliterated one-for-one into a basic GSM character.
SIMPLE_TRANSLIT: Final[dict[int, int]] = {
    ord(src): ord(dst)
    for src, dst in _tables.TRANSLITERATION.items()
    if ord(src) < 0x100 and len(dst) == 1
}
SIMPLE: Final = bytes(sorted(SIMPLE_TRANSLIT))
# (character, replacement) pairs by Latin-1 code, as Count.replacements reports them.
PAIRS: Final[dict[int, tuple[str, str]]] = {
    code: (chr(code), _tables.TRANSLITERATION[chr(code)]) for code in SIMPLE
}
# Text byte -> text byte after transliteration.
TRANSLIT: Final = bytes(SIMPLE_TRANSLIT.get(i, i) for i in range(256))

# Text byte -> septet. An extension character maps to a placeholder above 0x7F that
# ``expand_extensions`` turns into ESC + code; bytes no text reaching here holds map to 0xFF.
_PLACEHOLDERS: Final = {code: 0x80 + i for i, code in enumerate(EXTENSION)}
EXTENSION_SEQUENCES: Final = tuple(
    (bytes((0x80 + i,)), _D.encode_map[code].encode("latin-1")) for i, code in enumerate(EXTENSION)
)


def _septet(code: int) -> int:
    if code in _PLACEHOLDERS:
        return _PLACEHOLDERS[code]
    if chr(code) in _D.basic_chars:
        return ord(_D.encode_map[code])
    return 0xFF


SEPTETS: Final = bytes(_septet(i) for i in range(256))
TRANSLIT_SEPTETS: Final = bytes(SEPTETS[TRANSLIT[i]] for i in range(256))


def expand_extensions(body: bytes) -> bytes:
    """Replace extension placeholders in ``body`` by ESC + extension code."""
    for placeholder, sequence in EXTENSION_SEQUENCES:
        if placeholder in body:
            body = body.replace(placeholder, sequence)
    return body


# The accented letters Portuguese and Spanish texts transliterate (most traffic): the fast path
# checks each one's presence with a memchr (``int in bytes``) instead of building the set of a
# text's odd characters. COMMON_REPLACEMENTS maps the tuple of those ten presences (a tuple of
# bools hashes faster than bools shifted into an int) to the replacements.
COMMON: Final = tuple(ord(c) for c in "áâãçêíóôõú")
COMMON_REPLACEMENTS: Final[dict[tuple[bool, ...], tuple[tuple[str, str], ...]]] = {
    tuple(bool(mask >> i & 1) for i in range(len(COMMON))): tuple(
        sorted(PAIRS[code] for i, code in enumerate(COMMON) if mask >> i & 1)
    )
    for mask in range(1 << len(COMMON))
}

# Byte -> the same byte if basic GSM, its replacement if one of COMMON (FAST_TRANSLIT only),
# EXT_MARK if an extension character, MARK otherwise. ``raw.translate(FAST_*) == raw`` says in
# one C pass that every character is basic; without MARK, the result is the transliterated text
# with EXT_MARK where the escapes go. The marks (C1 controls) are never basic, so no text changed
# by the table can compare equal, and no other byte of the result is EXT_MARK. One text is left
# unchanged although not basic: one holding U+0080 (MARK itself), which callers check for.
MARK: Final = 0x80
EXT_MARK: Final = 0x81


def _fast(translit: bool) -> bytes:
    def byte(i: int) -> int:
        if translit and i in COMMON:
            return SIMPLE_TRANSLIT[i]
        if chr(i) in _D.basic_chars:
            return i
        return EXT_MARK if i in EXTENSION else MARK

    return bytes(byte(i) for i in range(256))


FAST_EXACT: Final = _fast(translit=False)
FAST_TRANSLIT: Final = _fast(translit=True)


def _classes(translit: bool) -> bytes:
    """Byte -> class of a non-basic character: e(xtension), s(imple transliteration), x(other)."""
    table = bytearray(b"x" * 256)
    for code in EXTENSION:
        table[code] = ord("e")
    if translit:
        for code in SIMPLE:
            table[code] = ord("s")
    return bytes(table)


CLASS_TRANSLIT: Final = _classes(translit=True)
CLASS_EXACT: Final = _classes(translit=False)
# Characters above U+00FF that transliterate into Latin-1 (typographic punctuation, ...).
WIDE_TRANSLIT: Final[dict[str, str]] = {
    src: dst for src, dst in _tables.TRANSLITERATION.items() if ord(src) > 0xFF
}

# The GSM characters above U+00FF (the euro sign, an extension character, and ten Greek capitals,
# basic) stand in as a Latin-1 GSM character of the same kind, so the same septet count and
# escape positions, when the text does not hold that one: such texts then take the fast path
# (``segment._widen``), and the stand-ins are swapped back in the text (``count``) or in the
# septets (``split``, by SEPTETS_OF). No stand-in is a transliteration result, and no basic
# stand-in's septet is an extension code, so the swap touches nothing else (tests/codec).
STAND_INS: Final[dict[str, str]] = {
    "€": "\f",
    "Δ": "£",
    "Φ": "¥",
    "Γ": "¤",
    "Λ": "§",
    "Ω": "Ø",
    "Π": "ø",
    "Ψ": "Å",
    "Σ": "å",
    "Θ": "Æ",
    "Ξ": "æ",
}
SEPTETS_OF: Final[dict[str, bytes]] = {
    char: _D.encode(char) for pair in STAND_INS.items() for char in pair
}
_STAND_INS_MAX: Final = 3  # kinds of GSM character above U+00FF widen stands in for
_NOTHING: Final[tuple[tuple[str, str], ...]] = ()


def widen(
    text: str, start: int, mode: str
) -> tuple[bytes, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] | None:
    """Make a text with characters above U+00FF Latin-1, for the fast path, when possible.

    ``start`` is where the Latin-1 encoding fails. Each round replaces every occurrence of the
    failing character and encodes again (cheaper than a regex scan for the one to three kinds of
    such character a text holds). Typographic punctuation and other letters are replaced by
    their transliteration (``transliterate`` only); a GSM character (the euro sign, Greek
    capitals) by its stand-in (STAND_INS) if the text does not hold that one, for up to
    _STAND_INS_MAX kinds: the general path (``segment``) treats GSM characters as any other, in
    one regex pass, cheaper than a round (~1 us) for each of many Greek capitals.

    Returns the Latin-1 bytes, the new text, the (sorted) transliterations made and the
    (character, stand-in) pairs; or None when the general path must decide.
    """
    translit = mode == "transliterate"
    replacements = stand_ins = _NOTHING
    while True:
        char = text[start]
        replacement = WIDE_TRANSLIT.get(char) if translit else None
        if replacement is not None:
            replacements += ((char, replacement),)
            text = text.replace(char, replacement)
        else:
            stand_in = STAND_INS.get(char)
            if stand_in is None or stand_in in text or len(stand_ins) == _STAND_INS_MAX:
                return None
            stand_ins += ((char, stand_in),)
            text = text.replace(char, stand_in)
        try:
            raw = text.encode("latin-1")
        except UnicodeEncodeError as exc:
            start = exc.start
        else:
            if len(replacements) > 1:
                replacements = tuple(sorted(replacements))
            return raw, text, replacements, stand_ins
